"""alpaca-py's blocking pieces, made safe to use from an asyncio program.

``TradingStream`` runs an event loop of its own; it gets a thread of its own here so it never
touches the console's loop, and it reports its connection going up and down so the broker can
resync after a gap. ``TimeoutSession`` gives alpaca-py's requests the timeout it never sets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import requests
from alpaca.trading.stream import TradingStream

from ...credentials import RedactingFilter, redact

log = logging.getLogger(__name__)


# The websocket library logs frames at DEBUG, and the stream's first frame carries the keys.
_REDACTING_FILTER = RedactingFilter(fields=("key_id", "secret_key", "key", "secret"))
for _name in ("websockets.client", "websockets.protocol", "alpaca.trading.stream"):
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)


class UpdateStream(TradingStream):
    """alpaca-py's TradingStream, telling us when its connection comes up and goes down."""

    def __init__(
        self,
        *args: Any,
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        reconnect_delay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_up = on_up
        self._on_down = on_down
        self._reconnect_min_backoff = reconnect_delay
        self._reconnect_max_backoff = max(30.0, reconnect_delay)

    # alpaca-py leaves these three untyped; each is bound to a typed name before it is called.
    async def _start_ws(self) -> None:
        start: Callable[[], Awaitable[None]] = super()._start_ws
        try:
            await start()
        except Exception as exc:
            self._on_down(f"order update stream could not connect: {redact(exc) or type(exc).__name__}")
            raise
        self._on_up()

    async def _consume(self) -> None:
        consume: Callable[[], Awaitable[None]] = super()._consume
        try:
            await consume()
        except Exception as exc:
            self._on_down(f"order update stream dropped: {redact(exc) or type(exc).__name__}")
            raise

    async def serve(self) -> None:
        """Connect, listen and reconnect with backoff until cancelled."""
        run_forever: Callable[[], Awaitable[None]] = self._run_forever
        await run_forever()


CLOSE_WITHIN = 2.0
"""Seconds a stopping stream thread gives its websocket to close."""


class StreamThread:
    """Runs one of alpaca-py's websocket streams on its own event loop in its own daemon thread:
    ``serve`` until cancelled, then ``close``.

    Stopping cancels the stream's task rather than using the stream's own ``stop()``, which only
    notices between 5-second receive timeouts.
    """

    def __init__(
        self,
        serve: Callable[[], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        *,
        name: str,
        what: str,
    ) -> None:
        self._serve = serve
        self._close = close
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._task = asyncio.ensure_future(self._serve(), loop=loop)
        self._ready.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s stopped unexpectedly", self._what)
        finally:
            try:
                # Bounded: a closing handshake with a peer that has gone waits out the
                # websocket library's own timeout (10 s) otherwise.
                loop.run_until_complete(asyncio.wait_for(self._close(), CLOSE_WITHIN))
            except Exception:  # closing a socket that is already gone
                pass
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop has already finished
                pass
        self._thread.join(timeout)


class TimeoutSession(requests.Session):
    """alpaca-py passes no timeout, and a request without one can hang forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.request_timeout = timeout

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.request_timeout)
        return super().request(method, url, *args, **kwargs)
