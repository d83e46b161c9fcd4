"""The connection to Alpaca: the REST client and its calls (in worker threads, with a request
timeout and no hidden retries), the trade-update stream in its own thread, and the state of the
link, with a resync from REST after every gap in the stream (Alpaca never replays)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from ...credentials import redact, require_secret
from ...errors import BrokerAPIError, BrokerConnectionError, BrokerError, BrokerTimeoutError
from ...models import ConnectionState, utcnow
from ..retry import SharedReads, read_retrying
from .stream import StreamThread, TimeoutSession, UpdateStream
from .wire import api_error, payload_dict

log = logging.getLogger(__name__)

MAYBE_PLACED = "; the order may or may not have been placed"
_READ_ATTEMPTS = 3


class SessionSettings(Protocol):
    """What the session is told by its owner, read each time it is used: a setting may be changed
    after the session is built."""

    @property
    def name(self) -> str: ...
    @property
    def live(self) -> bool: ...
    @property
    def base_url(self) -> str: ...
    @property
    def stream_url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def reconnect_delay(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """The keys as given, or the environment variables to look them up in (after the keyring) on
    connecting."""

    api_key: str | None = field(repr=False)
    secret_key: str | None = field(repr=False)
    key_env: str
    secret_env: str


class AlpacaSession:
    """The REST client and trade-update stream of one account.

    ``on_trade_update`` takes each message the stream sends, on our loop. ``resync`` brings every
    order up to date from REST; ``since`` is the start of a stream gap, or None on connecting.
    """

    def __init__(
        self,
        settings: SessionSettings,
        credentials: Credentials,
        *,
        on_trade_update: Callable[[Any], None],
        resync: Callable[[datetime | None], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._on_trade_update = on_trade_update
        self._resync = resync
        self._reads = SharedReads()
        self._client: TradingClient | None = None
        self._stream: StreamThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.state = ConnectionState.DISCONNECTED
        self.last_error: str | None = None
        self.last_refresh: datetime | None = None
        self.latency_ms: float | None = None
        self._stream_live = asyncio.Event()
        self._stream_seen = False
        self._connecting = False
        self._stream_down_at: datetime | None = None
        self._resync_wanted = False
        self._resync_task: asyncio.Task[None] | None = None

    def is_connected(self) -> bool:
        return self.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)

    def refreshed(self) -> None:
        self.last_refresh = utcnow()

    # -- opening and closing ------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        settings, credentials, name = self._settings, self._credentials, self._settings.name
        self._loop = asyncio.get_running_loop()
        self.state = ConnectionState.CONNECTING
        self.last_error = None
        try:
            api_key = credentials.api_key or require_secret(name, "api_key", credentials.key_env)
            secret_key = credentials.secret_key or require_secret(name, "secret_key", credentials.secret_env)
            client = TradingClient(
                api_key=api_key,
                secret_key=secret_key,
                paper=not settings.live,
                raw_data=True,
                url_override=settings.base_url,
            )
            # alpaca-py would otherwise sleep 3 s in our worker thread and send again on 429 and
            # 504, which for a submit can place the same order twice.
            client._retry = 0
            client._retry_codes = []
            client._session = TimeoutSession(settings.timeout)
            self._client = client
            self._note_account_flags(
                payload_dict(await self.read(client.get_account, what="read the account"), "account")
            )
        except BaseException as exc:
            self._client = None
            self.state = ConnectionState.FAILED
            self.last_error = redact(exc)
            raise
        self._stream_live = asyncio.Event()  # bound to this loop; a later connect may use another
        self._stream_seen = False
        self._stream_down_at = None
        self._resync_wanted = False
        self._connecting = True
        started = utcnow()
        self._start_stream(api_key, secret_key)
        try:
            try:
                await asyncio.wait_for(self._stream_live.wait(), settings.timeout)
            except TimeoutError:
                self.last_error = self.last_error or "order update stream did not connect in time"
            self.state = ConnectionState.RESYNCING
            await self._resync(None)
        except BaseException as exc:
            await self.close()
            self.state = ConnectionState.FAILED
            self.last_error = redact(exc)
            raise
        finally:
            self._connecting = False
        if self._stream_live.is_set():
            self.state = ConnectionState.CONNECTED
            self._stream_down_at = None
        else:
            # Whatever happens before the stream first connects is a gap like any other.
            self.state = ConnectionState.DEGRADED
            self._stream_down_at = started

    async def close(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(stream.stop, self._settings.timeout + 2)
        client, self._client = self._client, None
        if client is not None:
            client._session.close()
        self._stream_live.clear()
        self.state = ConnectionState.DISCONNECTED

    def _note_account_flags(self, account: dict[str, Any]) -> None:
        blocked = [
            flag
            for flag in ("account_blocked", "trading_blocked", "trade_suspended_by_user")
            if account.get(flag)
        ]
        if blocked:
            self.last_error = f"Alpaca reports {', '.join(blocked)} on this account"
            log.warning("%s: %s", self._settings.name, self.last_error)

    # -- the trade-update stream --------------------------------------------------------------
    def _start_stream(self, api_key: str, secret_key: str) -> None:
        settings = self._settings
        stream = UpdateStream(
            api_key,
            secret_key,
            paper=not settings.live,
            raw_data=True,
            url_override=settings.stream_url,
            websocket_params={
                "ping_interval": 10,
                "ping_timeout": 20,
                "max_queue": 1024,
                "open_timeout": settings.timeout,
                "close_timeout": 1,
            },
            on_up=lambda: self._post(self._stream_up),
            on_down=lambda reason: self._post(self._stream_down, reason),
            reconnect_delay=settings.reconnect_delay,
        )

        async def on_trade_update(message: dict[str, Any]) -> None:
            self._post(self._on_trade_update, message)

        stream.subscribe_trade_updates(on_trade_update)
        self._stream = StreamThread(
            stream.serve, stream.close, name=f"alpaca-stream-{settings.name}", what="order update stream"
        )
        self._stream.start()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand work from the stream's thread to our event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    def _stream_up(self) -> None:
        if self._client is None:
            return
        self._stream_live.set()
        first, self._stream_seen = not self._stream_seen, True
        if first and self._connecting:
            self._stream_down_at = None
            return
        self.state = ConnectionState.RESYNCING
        # A running resync may already have listed orders before this latest gap: go round again.
        self._resync_wanted = True
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.get_running_loop().create_task(self._resync_after_gap())

    def _stream_down(self, reason: str) -> None:
        if self._client is None:
            return
        self._stream_live.clear()
        self.last_error = reason
        if self._stream_down_at is None:
            self._stream_down_at = utcnow()
        if self.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING):
            self.state = ConnectionState.DEGRADED

    async def _resync_after_gap(self) -> None:
        """The stream was down; what happened meanwhile is only in REST (Alpaca never replays)."""
        delay = self._settings.reconnect_delay
        while self._client is not None and self._resync_wanted:
            self._resync_wanted = False
            try:
                await self._resync(self._stream_down_at or utcnow())
            except BrokerError as exc:
                self._resync_wanted = True
                self.last_error = f"resync after reconnect failed: {exc}"
                self.state = ConnectionState.DEGRADED
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if self._client is not None and self._stream_live.is_set():
            self._stream_down_at = None
            self.state = ConnectionState.CONNECTED
            self.last_error = None

    # -- calling alpaca-py ----------------------------------------------------------------
    def require_client(self) -> TradingClient:
        if self._client is None:
            raise BrokerConnectionError("not connected to Alpaca", broker=self._settings.name)
        return self._client

    async def read(self, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        """A read: retried with backoff, on transient failures only; the same read asked for
        twice at once (``get_balance`` and ``get_positions`` both list positions) is sent once."""
        return await self._reads.read(what + repr(args), lambda: self._read_retrying(fn, *args, what=what))

    async def _read_retrying(self, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        async for attempt in read_retrying(_READ_ATTEMPTS, first_wait=0.2):
            with attempt:
                return await self.call(fn, *args, op="read", what=what)
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(self, fn: Callable[..., Any], *args: Any, op: str, what: str) -> Any:
        """One call in a worker thread, never retried here; failures become our errors."""
        name, timeout = self._settings.name, self._settings.timeout
        maybe = MAYBE_PLACED if op == "submit" else ""
        started = time.monotonic()
        try:
            return await asyncio.to_thread(fn, *args)
        except APIError as exc:
            raise api_error(exc, broker=name, op=op, what=what) from None
        except ValueError as exc:  # a 2xx answer that is not JSON
            error_cls = BrokerConnectionError if op == "submit" else BrokerAPIError
            raise error_cls(
                f"Alpaca's answer cannot be read when asked to {what}{maybe}: {redact(exc)[:200]}",
                broker=name,
            ) from None
        except requests.Timeout:
            raise BrokerTimeoutError(
                f"Alpaca did not answer within {timeout:g} s when asked to {what}{maybe}",
                broker=name,
            ) from None
        except requests.RequestException as exc:
            raise BrokerConnectionError(
                f"lost the connection to Alpaca when asked to {what}{maybe} ({type(exc).__name__})",
                broker=name,
            ) from None
        finally:
            self.latency_ms = round((time.monotonic() - started) * 1000, 1)
