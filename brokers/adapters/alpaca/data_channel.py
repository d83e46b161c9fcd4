"""One Alpaca data stream (stocks, or crypto) kept streaming: its symbols, its thread, and what
happens when Alpaca refuses it.

alpaca-py's data streams log a refusal and carry on: a login refused (402 auth failed, 406
connection limit exceeded, 409 insufficient subscription) is retried every few seconds for
ever, and an error frame after subscribing (405 symbol limit exceeded, 409) is only logged,
the connection staying up with nothing on it. Either way quotes would simply stop. Here the
stream reports each refusal and the subscription's acknowledgement (``Watched``), a refused
stream is stopped, the channel says so (``on_state``, so that its instruments are asked for as
snapshots meanwhile) and a new stream is tried later, with exponential backoff (tenacity,
as the adapters' reads are retried), until one is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from alpaca.data.live.crypto import CryptoDataStream
from alpaca.data.live.stock import StockDataStream
from alpaca.data.live.websocket import DataStream
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from ...credentials import redact
from .stream import StreamThread

log = logging.getLogger(__name__)

Handler = Callable[[object], Awaitable[None]]
OnUp = Callable[[], None]
OnRefused = Callable[[str], None]
OnState = Callable[[str | None], None]
"""Called on the console's loop when the channel stops streaming (the reason) and when it
streams again (None)."""

RETRY_AT_MOST = 300.0
"""The longest wait between two tries of a refused stream, in seconds."""


class StreamRefused(Exception):
    """A data stream was refused, lost or never acknowledged; the text says why."""


# -- alpaca-py's streams, telling us what they would only log --------------------------------
class _Watch:
    """The callbacks of one stream, called on its thread."""

    def __init__(self, what: str, on_up: OnUp, on_refused: OnRefused) -> None:
        self.what = what
        self.on_up = on_up
        self.on_refused = on_refused
        self.refused = False

    async def start(self, start: Callable[[], Awaitable[None]]) -> None:
        """Connect and log in; a refusal is reported and ends the stream."""
        try:
            await start()
        except ValueError as exc:  # alpaca-py's word for the error frame that answered the login
            self._refuse(f"Alpaca's {self.what} refused the login: {redact(exc) or 'no reason given'}")
        except Exception as exc:
            self._refuse(f"Alpaca's {self.what} could not connect: {redact(exc) or type(exc).__name__}")

    def frame(self, message: dict[str, Any]) -> None:
        """A message before alpaca-py dispatches it: the subscription's acknowledgement, or an
        error frame (which alpaca-py only logs)."""
        kind = message.get("T")
        if kind == "subscription":
            self.on_up()
        elif kind == "error":
            text = redact(str(message.get("msg") or "no reason given"))[:200]
            self._refuse(f"Alpaca's {self.what} refused: {text} ({message.get('code')})")

    def _refuse(self, reason: str) -> None:
        self.refused = True
        self.on_refused(reason)
        # Ends the stream's task as StreamThread.stop would: alpaca-py catches any Exception and
        # reconnects at once, which for a refusal only asks to be refused again.
        raise asyncio.CancelledError


class _WatchedStream(DataStream):
    """A data stream whose start and frames ``watch`` sees first (one of these per feed below)."""

    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    async def _start_ws(self) -> None:
        await self._watch.start(super()._start_ws)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        self._watch.frame(msg)
        await super()._dispatch(msg)


class WatchedStockStream(_WatchedStream, StockDataStream):
    pass


class WatchedCryptoStream(_WatchedStream, CryptoDataStream):
    pass


Stream = WatchedStockStream | WatchedCryptoStream
MakeStream = Callable[[_Watch], Stream]


# -- the channel ------------------------------------------------------------------------------
class Channel:
    """The symbols one data stream is subscribed to, and the task that keeps it streaming.

    ``make(watch)`` builds a stream reporting to ``watch``; ``on_state`` hears, on the console's
    loop, the reason the channel stopped streaming and None when it streams again. A stream is
    counted as streaming once Alpaca acknowledges its subscription; one not acknowledged within
    ``confirm_within`` seconds counts as refused. After a refusal the next try waits
    ``retry_first`` seconds, then twice that, and so on up to ``RETRY_AT_MOST``; a stream that
    worked and then failed is tried again at once (alpaca-py reconnects at once after a cut too),
    and backs off from the start if refused again.
    """

    def __init__(
        self,
        name: str,
        what: str,
        make: MakeStream,
        on_quote: Handler,
        on_trade: Handler,
        on_state: OnState,
        *,
        join_within: float,
        confirm_within: float,
        retry_first: float,
    ) -> None:
        self.name = name
        self.what = what
        self._make = make
        self._on_quote = on_quote
        self._on_trade = on_trade
        self._on_state = on_state
        self._join_within = join_within
        self._confirm_within = confirm_within
        self._retry_first = retry_first
        self._thread: StreamThread | None = None
        self._stream: Stream | None = None
        self._events: asyncio.Queue[str | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.symbols: frozenset[str] = frozenset()
        self.down: str | None = None
        """Why the channel is not streaming its symbols, while it is not."""

    async def set(self, symbols: frozenset[str]) -> None:
        """Stream exactly ``symbols`` from now on."""
        if not symbols:
            await self.stop()
            return
        if self._task is None or self._task.done():
            self.symbols = symbols
            self._task = asyncio.create_task(self._keep_streaming(), name=self.name)
            return
        added = sorted(symbols - self.symbols)
        dropped = sorted(self.symbols - symbols)
        self.symbols = symbols
        stream, thread = self._stream, self._thread
        if stream is not None and thread is not None and thread.is_alive():
            await asyncio.to_thread(self._change, stream, added, dropped)
        # Between tries: the next stream subscribes to ``symbols`` as they are then.

    def _change(self, stream: Stream, added: list[str], dropped: list[str]) -> None:
        """On a worker thread: alpaca-py waits here for the stream's own loop to send."""
        if dropped:
            stream.unsubscribe_quotes(*dropped)
            stream.unsubscribe_trades(*dropped)
        if added:
            stream.subscribe_quotes(self._on_quote, *added)
            stream.subscribe_trades(self._on_trade, *added)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.symbols = frozenset()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_thread()
        self._set_down(None)

    # -- keeping it streaming ---------------------------------------------------------------
    async def _keep_streaming(self) -> None:
        while True:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(StreamRefused),
                wait=wait_exponential(multiplier=self._retry_first, max=RETRY_AT_MOST)
                + wait_random(0, self._retry_first / 2),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self._open()
            self._set_down(None)
            reason = await self._until_refused()
            await self._stop_thread()
            self._set_down(reason)

    async def _open(self) -> None:
        """Start a stream of the channel's symbols and wait for Alpaca to acknowledge it;
        StreamRefused (once it is stopped) when Alpaca refuses it or says nothing."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str | None] = asyncio.Queue()

        def tell(reason: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the console's loop has closed
                loop.call_soon_threadsafe(events.put_nowait, reason)

        try:
            stream = self._make(_Watch(self.what, lambda: tell(None), tell))
            symbols = sorted(self.symbols)
            # Before the thread starts nothing runs: these only record the handlers, and the
            # stream subscribes to all of them once it has logged in.
            stream.subscribe_quotes(self._on_quote, *symbols)
            stream.subscribe_trades(self._on_trade, *symbols)
            # alpaca-py's run loop is private API, typed here once.
            run_forever: Callable[[], Awaitable[None]] = stream._run_forever
            thread = StreamThread(run_forever, stream.close, name=self.name, what=f"Alpaca's {self.what}")
            self._stream, self._thread, self._events = stream, thread, events
            await asyncio.to_thread(thread.start)
        except Exception as exc:  # no keys, no thread: the same as a refusal, tried again later
            await self._refused(
                f"Alpaca's {self.what} could not be started: {redact(exc) or type(exc).__name__}"
            )
        try:
            async with asyncio.timeout(self._confirm_within):
                reason = await events.get()
        except TimeoutError:
            reason = (
                f"Alpaca's {self.what} did not acknowledge the subscription within {self._confirm_within:g} s"
            )
        if reason is not None:
            await self._refused(reason)

    async def _refused(self, reason: str) -> NoReturn:
        await self._stop_thread()
        if self.down is None:
            self._set_down(reason)
        else:
            log.debug("%s: still refused: %s", self.name, reason)
        raise StreamRefused(reason)

    async def _until_refused(self) -> str:
        events = self._events
        assert events is not None  # set by _open
        while True:
            reason = await events.get()
            if reason is not None:
                return reason
            # Another acknowledgement: a change of symbols, or alpaca-py's own reconnect.

    async def _stop_thread(self) -> None:
        thread, self._thread, self._stream = self._thread, None, None
        if thread is not None:
            await asyncio.to_thread(thread.stop, self._join_within)

    def _set_down(self, reason: str | None) -> None:
        if reason == self.down:
            return
        self.down = reason
        try:
            self._on_state(reason)
        except Exception:
            log.exception("%s: reporting the stream's state failed", self.name)
