"""The link to one crypto venue through ccxt: the exchange client (built, and ccxt imported, only
on connecting), its markets, every call with a time limit and ccxt's errors turned into ours, and
the state of the link."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from ...credentials import redact, require_secret
from ...errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...models import ConnectionState, utcnow
from .settings import VENUES

log = logging.getLogger(__name__)

T = TypeVar("T")

MAYBE_PLACED = "; the order may or may not have been placed"


class Exchange(Protocol):
    """What this adapter uses of a ``ccxt.async_support`` exchange."""

    id: str
    markets: dict[str, Any] | None
    urls: dict[str, Any]
    has: dict[str, Any]
    precisionMode: int

    async def load_markets(self, reload: bool = False) -> dict[str, Any]: ...
    async def close(self) -> None: ...
    async def fetch_balance(self, params: dict[str, Any] = ...) -> dict[str, Any]: ...
    async def fetch_tickers(self, symbols: list[str] | None = None) -> dict[str, Any]: ...
    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float | str,
        price: float | str | None = None,
        params: dict[str, Any] = ...,
    ) -> dict[str, Any]: ...
    async def cancel_order(self, id: str, symbol: str | None = None) -> dict[str, Any]: ...
    async def cancel_all_orders(self, symbol: str | None = None) -> Any: ...
    async def cancel_all_orders_after(self, timeout: int) -> Any: ...  # noqa: ASYNC109 (ccxt's name)
    async def fetch_order(self, id: str, symbol: str | None = None) -> dict[str, Any]: ...
    async def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    async def fetch_closed_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    async def fetch_my_trades(
        self, symbol: str | None = None, since: int | None = None
    ) -> list[dict[str, Any]]: ...
    def market(self, symbol: str) -> dict[str, Any]: ...


class StreamingExchange(Exchange, Protocol):
    """What this adapter uses of a ``ccxt.pro`` exchange besides its REST calls: each returns the
    updates that arrived since the last call, waiting for one if there are none."""

    async def watch_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    async def watch_my_trades(self, symbol: str | None = None) -> list[dict[str, Any]]: ...


class SessionSettings(Protocol):
    """What the session is told by its owner, read each time it is used."""

    @property
    def name(self) -> str: ...
    @property
    def exchange_id(self) -> str: ...
    @property
    def live(self) -> bool: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def request_interval(self) -> float | None: ...
    @property
    def key_env(self) -> str: ...
    @property
    def secret_env(self) -> str: ...
    @property
    def order_stream(self) -> bool: ...


def pointed_at(urls: Mapping[str, Any], root: str) -> dict[str, Any]:
    """The venue's API URLs with their scheme and host replaced by ``root``'s, paths kept: a
    sandbox or a test server that speaks the venue's protocol. A websocket URL keeps its kind:
    ``wss://`` on an ``http://`` root becomes ``ws://``."""
    target = urlsplit(root)
    secure = target.scheme == "https"
    moved: dict[str, Any] = {}
    for key, url in urls.items():
        if isinstance(url, str):
            parts = urlsplit(url)
            scheme = target.scheme
            if parts.scheme in ("ws", "wss"):
                scheme = "wss" if secure else "ws"
            moved[key] = parts._replace(scheme=scheme, netloc=target.netloc).geturl()
        elif isinstance(url, Mapping):
            moved[key] = pointed_at(url, root)
        else:
            moved[key] = url
    return moved


def _error_classes() -> tuple[type[Exception], ...]:
    errors = importlib.import_module("ccxt.base.errors")
    names = (
        "RequestTimeout",
        "NetworkError",
        "AuthenticationError",
        "PermissionDenied",
        "AccountSuspended",
        "InsufficientFunds",
        "BadSymbol",
        "OrderNotFound",
        "InvalidOrder",
        "BadRequest",
        "NotSupported",
        "ExchangeError",
        "BaseError",
    )
    return tuple(cast(type[Exception], getattr(errors, name)) for name in names)


class CcxtSession:
    """The ccxt client of one account, and the state of its link."""

    def __init__(self, settings: SessionSettings) -> None:
        self._settings = settings
        self._exchange: Exchange | None = None
        self._streaming: StreamingExchange | None = None
        self._errors: tuple[type[Exception], ...] = ()
        self.state = ConnectionState.DISCONNECTED
        self.last_error: str | None = None
        self.last_refresh: datetime | None = None
        self.latency_ms: float | None = None
        # Why the venue's order stream is not delivering, while it is not; None while it is, or
        # when the account has no stream.
        self.stream_error: str | None = None
        self._poll_error: str | None = None

    def is_connected(self) -> bool:
        return self.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)

    def refreshed(self) -> None:
        self.last_refresh = utcnow()

    def require(self) -> Exchange:
        if self._exchange is None or not self.is_connected():
            raise BrokerConnectionError("not connected", broker=self._settings.name)
        return self._exchange

    def streaming(self) -> StreamingExchange:
        """The client's websocket side; only for an account whose client was built with one."""
        if self._streaming is None or not self.is_connected():
            raise BrokerConnectionError("not connected to the order stream", broker=self._settings.name)
        return self._streaming

    # -- the state of the link ------------------------------------------------------------------
    def poll_succeeded(self) -> None:
        self._poll_error = None
        self._settle()

    def poll_failed(self, error: str, degraded: bool) -> None:
        self._poll_error = error
        self._settle(degraded=degraded)

    def stream_delivering(self) -> None:
        self.stream_error = None
        self._settle()

    def stream_lost(self, error: str) -> None:
        self.stream_error = error
        self._settle()

    def _settle(self, *, degraded: bool = False) -> None:
        """CONNECTED while polls and the stream (where there is one) both work; DEGRADED, with the
        reason as the last error, while either does not."""
        if not self.is_connected():
            return
        self.last_error = self._poll_error or self.stream_error
        if degraded or (self._poll_error is None and self.stream_error is not None):
            self.state = ConnectionState.DEGRADED
        else:
            self.state = ConnectionState.CONNECTED

    # -- opening and closing ------------------------------------------------------------------
    async def open(self) -> None:
        if self._exchange is not None:
            return
        settings, name = self._settings, self._settings.name
        self.state = ConnectionState.CONNECTING
        self.last_error = None
        try:
            api_key = require_secret(name, "api_key", settings.key_env)
            secret = require_secret(name, "secret_key", settings.secret_env)
            # Imported here, on first use, and in a worker thread: ccxt takes a second or more to
            # import, which would freeze the event loop (and the halt key) meanwhile. ccxt.pro's
            # classes are the REST clients with the venue's websockets added.
            package = "ccxt.pro" if settings.order_stream else "ccxt.async_support"
            module = await asyncio.to_thread(importlib.import_module, package)
            self._errors = await asyncio.to_thread(_error_classes)
            exchange = self._build(module, api_key, secret)
        except BaseException as exc:
            self.state = ConnectionState.FAILED
            self.last_error = redact(exc)
            raise
        self._exchange = exchange
        self._streaming = cast(StreamingExchange, exchange) if settings.order_stream else None
        self.stream_error = self._poll_error = None
        try:
            await self.call(exchange.load_markets, what="load the markets")
            # A private read proves the keys before the account is marked usable.
            await self.call(exchange.fetch_balance, what="read the balance")
        except BaseException as exc:
            self._exchange = self._streaming = None
            await self._close_quietly(exchange)
            self.state = ConnectionState.FAILED
            self.last_error = redact(exc)
            raise
        self.state = ConnectionState.CONNECTED
        self.refreshed()

    def _build(self, module: object, api_key: str, secret: str) -> Exchange:
        settings = self._settings
        venue = VENUES[settings.exchange_id]
        factory = cast(Callable[[dict[str, Any]], Exchange], getattr(module, settings.exchange_id))
        config: dict[str, Any] = {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": int(settings.timeout * 1000),
            "options": {"warnOnFetchOpenOrdersWithoutSymbol": False, **dict(venue.ccxt_options)},
        }
        if settings.request_interval is not None:
            config["rateLimit"] = settings.request_interval * 1000
        exchange = factory(config)
        root = settings.base_url or (None if settings.live else venue.sandbox_url)
        if root is not None:
            exchange.urls["api"] = pointed_at(exchange.urls["api"], root)
        return exchange

    async def close(self) -> None:
        exchange, self._exchange, self._streaming = self._exchange, None, None
        self.state = ConnectionState.DISCONNECTED
        if exchange is not None:
            await self._close_quietly(exchange)

    async def _close_quietly(self, exchange: Exchange) -> None:
        try:
            async with asyncio.timeout(5.0):
                await exchange.close()
        except Exception as exc:  # closing an HTTP session must not stop a disconnect
            log.debug("%s: closing the ccxt client: %s", self._settings.name, redact(exc))

    # -- calls --------------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, what: str, submit: bool = False) -> T:
        """``fn(*args)`` under the time limit, with ccxt's errors as ours. ``submit`` marks a
        call whose lost answer leaves an order in doubt."""
        name = self._settings.name
        started = time.monotonic()
        try:
            # ccxt's own timeout covers the HTTP request; this guard adds room for its throttle,
            # which may hold a call back behind others (Kraken: one a second).
            async with asyncio.timeout(self._settings.timeout * 2 + 5.0):
                result = await fn(*args)
        except TimeoutError:
            raise BrokerTimeoutError(
                f"no answer to {what} within {self._settings.timeout:g} s{MAYBE_PLACED if submit else ''}",
                broker=name,
            ) from None
        except BrokerError:
            raise
        except Exception as exc:
            raise self.translate(exc, what, submit=submit) from None
        self.latency_ms = (time.monotonic() - started) * 1000
        return result

    def translate(self, exc: Exception, what: str, *, submit: bool) -> BrokerError:
        """A ccxt error as one of ours: definite refusals apart from failures that may pass."""
        name = self._settings.name
        text = redact(exc)[:300]
        maybe = MAYBE_PLACED if submit else ""
        if not self._errors:
            return BrokerConnectionError(f"could not {what}: {text}{maybe}", broker=name)
        (
            request_timeout,
            network,
            auth,
            permission,
            suspended,
            funds,
            bad_symbol,
            not_found,
            invalid_order,
            bad_request,
            not_supported,
            exchange_error,
            base_error,
        ) = self._errors
        if isinstance(exc, request_timeout):
            return BrokerTimeoutError(f"no answer to {what}{maybe}: {text}", broker=name)
        if isinstance(exc, network):
            return BrokerConnectionError(f"could not {what}{maybe}: {text}", broker=name)
        if isinstance(exc, auth | permission | suspended):
            return AuthenticationError(f"the venue refused the keys: {text}", broker=name)
        if isinstance(exc, funds):
            return InsufficientFundsError(f"not enough funds: {text}", broker=name)
        if isinstance(exc, bad_symbol):
            return InvalidSymbolError(f"the venue does not know the market: {text}", broker=name)
        if isinstance(exc, not_found):
            return OrderNotFoundError(f"no such order: {text}", broker=name)
        if isinstance(exc, invalid_order | bad_request | not_supported):
            kind = OrderRejectedError if submit else BrokerAPIError
            return kind(f"the venue refused to {what}: {text}", broker=name)
        if isinstance(exc, exchange_error):
            # An error the venue answered: for a submit, a refusal of the order.
            kind = OrderRejectedError if submit else BrokerAPIError
            return kind(f"the venue answered an error to {what}: {text}", broker=name)
        if isinstance(exc, base_error):
            return BrokerConnectionError(f"could not {what}{maybe}: {text}", broker=name)
        # Anything else (an answer ccxt could not parse, a bad key format) leaves a submit in
        # doubt and is worth a second look for a read.
        return BrokerConnectionError(f"could not {what}{maybe}: {type(exc).__name__}: {text}", broker=name)
