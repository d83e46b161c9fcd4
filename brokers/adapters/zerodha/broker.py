"""The Kite Connect adapter.

kiteconnect is synchronous, so every call runs in a worker thread. Its REST client has no push
channel for order updates, so the update stream polls the order book and reads the trade book
only when an order's filled quantity runs ahead of the trades already seen. Kite's access token
dies every morning at 06:00 IST; ``session_expires_at`` says when, and a refused token marks the
account as needing a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from ...base import ACCOUNT_KEYS, Broker
from ...credentials import redact, register_secret, require_secret
from ...errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    ConfigError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
    is_transient,
)
from ...identifiers import ACCOUNT_NAME_RULE, account_name
from ...models import (
    AccountStatus,
    AssetClass,
    Balance,
    BrokerCapabilities,
    ConnectionState,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    TimeInForce,
    utcnow,
)
from ..retry import SharedReads, read_retrying
from .account import UNREADABLE, balance_from, margin_from, positions_from, unreadable
from .failures import TOKEN_REFUSED, CallFailed, translate
from .settings import (
    MIN_POLL_INTERVAL,
    SECRET_KEYS,
    SETTINGS,
    choice,
    issued_at,
    seconds,
    setting_error,
)
from .wire import (
    CASH_EXCHANGES,
    EXCHANGES,
    FUNDS,
    KITE_ORDER_TYPE,
    PRODUCTS,
    VARIETIES,
    as_modified,
    dec,
    fill_from_trade,
    kite_time,
    map_status,
    request_from_order,
    tag_for,
    token_expiry,
)

log = logging.getLogger(__name__)


@dataclass
class _Tracked:
    order: Order
    variety: str
    parent_order_id: str | None


# ---------------------------------------------------------------------------------------------
# The adapter


class ZerodhaBroker(Broker):
    """One Kite Connect account. Credentials: "api_key" (KITE_API_KEY), "access_token"
    (KITE_ACCESS_TOKEN), from the keyring or the environment, loaded at ``connect``."""

    broker_type = "zerodha"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: an HTTP request that timed out or lost its connection may still be processed.
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "zerodha",
        *,
        live: bool = False,
        currency: str = "INR",
        root: str | None = None,
        exchange: str = "NSE",
        product: str = "CNC",
        variety: str = "regular",
        poll_interval: float = 1.0,
        timeout: float = 7.0,
        token_issued_at: datetime | str | None = None,
        api_key: str | None = None,
        access_token: str | None = None,
        read_attempts: int = 3,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        try:
            name = account_name(name)
        except ValueError:
            raise setting_error("name", ACCOUNT_NAME_RULE, name) from None
        if not isinstance(live, bool):
            raise setting_error("live", "true or false", live)
        if root is not None and (not isinstance(root, str) or not re.match(r"https?://[^\s/]+", root)):
            raise setting_error("root", "an http(s) URL such as https://api.kite.trade", root)
        if not live and root is None:
            raise ConfigError(
                f"zerodha account {name!r}: Kite has no paper-trading service, so every order is real. "
                "Set live = true to trade it, or point root at a test server."
            )
        if isinstance(currency, str) and currency.strip().upper() != "INR":
            log.debug("zerodha account %s holds INR; ignoring currency %s", name, currency)
        super().__init__(name, live=live, currency="INR")
        self._root = root.rstrip("/") if root else None
        self._exchange = choice("exchange", exchange, EXCHANGES)
        self._product = choice("product", product, PRODUCTS)
        self._variety = choice("variety", variety, VARIETIES, upper=False)
        self._poll_interval = seconds("poll_interval", poll_interval, MIN_POLL_INTERVAL, 60)
        self._timeout = seconds("timeout", timeout, 0.1, 60)
        self._configured_issue = issued_at(token_issued_at)
        self._clock = clock
        self._read_attempts = max(1, int(read_attempts))
        register_secret(api_key)
        register_secret(access_token)
        self._given = (api_key, access_token)

        self._kite: Any = None
        self._token_digest: str | None = None
        self._token_issued: datetime | None = None
        self._token_refused_at: datetime | None = None
        self._state = ConnectionState.DISCONNECTED
        self._last_error: str | None = None
        self._last_refresh: datetime | None = None
        self._latency_ms: float | None = None
        self._poller: asyncio.Task[None] | None = None
        self._poll_failures = 0
        self._sync_lock = asyncio.Lock()
        self._baseline_done = False
        self._tls = threading.local()
        self._requests: dict[str, OrderRequest] = {}  # by Kite tag
        self._tracked: dict[str, _Tracked] = {}  # by Kite order_id
        self._seen_fills: set[str] = set()
        self._traded: dict[str, Decimal] = {}  # order_id -> quantity of the trades seen
        self._prices: dict[tuple[str, str], Decimal] = {}
        self._reads = SharedReads()
        self._capabilities = BrokerCapabilities(
            order_types=frozenset(KITE_ORDER_TYPE),
            time_in_force=frozenset({TimeInForce.DAY, TimeInForce.IOC}),
            asset_classes=frozenset({AssetClass.STOCK, AssetClass.FUTURE, AssetClass.OPTION}),
            fractional_quantities=False,
            short_selling=self._product != "CNC",  # delivery sells need the shares in the demat
            bulk_cancel=False,
            streaming_updates=True,
            session_expiry=True,
            currencies=frozenset({"INR"}),
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> ZerodhaBroker:
        given = dict(settings)
        for key in list(given):
            if key in ACCOUNT_KEYS:
                given.pop(key)
            elif key.lower() in SECRET_KEYS:
                raise ConfigError(
                    f"zerodha setting {key!r} is a secret and never belongs in the config file: run "
                    f"`trading-console set-creds {given.get('name', 'ACCOUNT')}` or set KITE_API_KEY and "
                    "KITE_ACCESS_TOKEN"
                )
            elif key not in SETTINGS:
                raise ConfigError(f"unknown zerodha setting {key!r}; allowed: {', '.join(SETTINGS)}")
        return super().from_config(given)

    # -- connection -----------------------------------------------------------------------
    def is_connected(self) -> bool:
        return self._kite is not None and self._state in (
            ConnectionState.CONNECTED,
            ConnectionState.RESYNCING,
        )

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def session_expires_at(self) -> datetime | None:
        issued = self._token_issued or self._configured_issue
        expiry = token_expiry(issued) if issued else None
        if self._token_refused_at is not None:
            return min(expiry, self._token_refused_at) if expiry else self._token_refused_at
        return expiry

    @property
    def needs_new_token(self) -> bool:
        expiry = self.session_expires_at
        return self._token_refused_at is not None or (expiry is not None and expiry <= self._clock())

    def status(self) -> AccountStatus:
        return AccountStatus(
            name=self.name,
            broker_type=self.broker_type,
            live=self.live,
            state=self._state,
            last_error=self._last_error,
            last_refresh=self._last_refresh,
            latency_ms=self._latency_ms,
            session_expires_at=self.session_expires_at,
            currency=self.currency,
        )

    async def connect(self) -> None:
        if self.is_connected():
            return
        await self._stop_poller()
        self._state = ConnectionState.CONNECTING
        try:
            api_key, token = await asyncio.to_thread(self._load_credentials)
            kiteconnect = await asyncio.to_thread(importlib.import_module, "kiteconnect")
            self._adopt_token(token)
            self._close_client()
            self._kite = kiteconnect.KiteConnect(
                api_key, access_token=token, root=self._root, timeout=self._timeout
            )
            self._kite.reqsession.hooks["response"].append(self._note_error_type)
            await self._call("profile")  # proves the token before anything else is read
            self._token_refused_at = None
            resync = self._baseline_done
            self._state = ConnectionState.RESYNCING
            await self._sync(emit=resync, force_trades=True)
            self._baseline_done = True
        except BaseException as exc:
            self._close_client()
            if isinstance(exc, Exception):
                self._last_error = redact(exc)
                self._state = ConnectionState.FAILED
            else:
                self._state = ConnectionState.DISCONNECTED
            raise
        self._state = ConnectionState.CONNECTED
        self._last_error = None
        self._poll_failures = 0
        self._poller = asyncio.create_task(self._poll_loop(), name=f"kite-poll-{self.name}")

    async def disconnect(self) -> None:
        await self._stop_poller()
        self._close_client()
        if self._state is not ConnectionState.FAILED or self._token_refused_at is None:
            self._state = ConnectionState.DISCONNECTED

    async def _stop_poller(self) -> None:
        poller, self._poller = self._poller, None
        if poller is None or poller is asyncio.current_task():
            return
        # Asked until it has ended: a cancel can be lost when the call it interrupts finishes in
        # the same instant (asyncio.wait_for before Python 3.12), and the poll would go on.
        while not poller.done():
            poller.cancel()
            await asyncio.wait([poller], timeout=1.0)
        if not poller.cancelled():
            poller.exception()  # retrieved: an error in the last poll is not "never retrieved"

    async def health_check(self) -> float:
        """Round-trip time of a cheap authenticated call, in milliseconds."""
        await self._call("profile")
        return self._latency_ms or 0.0

    def _load_credentials(self) -> tuple[str, str]:
        api_key, token = self._given
        api_key = api_key or require_secret(self.name, "api_key", "KITE_API_KEY")
        token = token or require_secret(self.name, "access_token", "KITE_ACCESS_TOKEN")
        return api_key, token

    def _adopt_token(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest == self._token_digest:
            return  # the same token again: reconnecting must not push its expiry out
        first = self._token_digest is None
        self._token_digest = digest
        self._token_refused_at = None
        self._token_issued = self._configured_issue if first and self._configured_issue else self._clock()

    def _close_client(self) -> None:
        kite, self._kite = self._kite, None
        if kite is not None:
            with contextlib.suppress(Exception):
                kite.reqsession.close()

    # -- calls ----------------------------------------------------------------------------
    def _note_error_type(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # kiteconnect turns error types it has no class for (MarginException, HoldingException)
        # into GeneralException; keep the name Kite sent so the mapping can use it.
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            with contextlib.suppress(Exception):
                self._tls.error_type = response.json().get("error_type")

    def _in_worker(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._tls.error_type = None
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise CallFailed(exc, getattr(self._tls, "error_type", None)) from exc

    async def _call(self, method_name: str, *args: Any, op: str = "read", **kwargs: Any) -> Any:
        kite = self._kite
        if kite is None:
            raise BrokerConnectionError("not connected to Kite", broker=self.name)
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self._in_worker, getattr(kite, method_name), args, kwargs),
                self._timeout * 2 + 1,
            )
        except TimeoutError:
            raise BrokerTimeoutError(
                f"Kite did not answer within {self._timeout:g} s", broker=self.name
            ) from None
        except CallFailed as failed:
            error = translate(failed.cause, failed.error_type, op, broker=self.name, timeout=self._timeout)
            if error.code == TOKEN_REFUSED:
                self._token_refused()
            raise error from None
        self._latency_ms = (time.monotonic() - started) * 1000
        return result

    def _token_refused(self) -> None:
        if self._token_refused_at is None:
            self._token_refused_at = self._clock()
        self._state = ConnectionState.FAILED
        self._last_error = "Kite access token expired or revoked: a new login is needed"

    async def _read(self, method_name: str, *args: Any) -> Any:
        """A read, retried with backoff on transient failures; concurrent identical reads share
        one request so a refresh that asks for balance and positions at once costs no extra."""
        return await self._reads.read(
            method_name + repr(args), lambda: self._read_retrying(method_name, *args)
        )

    async def _read_retrying(self, method_name: str, *args: Any) -> Any:
        result = None
        async for attempt in read_retrying(self._read_attempts, first_wait=0.1):
            with attempt:
                result = await self._call(method_name, *args)
        return result

    # -- orders ---------------------------------------------------------------------------
    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    def instrument(self, symbol: str, exchange: str | None = None) -> tuple[str, str]:
        """(exchange, tradingsymbol) for "INFY", "NSE:INFY" or "INFY" with exchange="NSE"."""
        prefix, _, rest = symbol.strip().upper().rpartition(":")
        if prefix and exchange and prefix != exchange.upper():
            raise InvalidSymbolError(
                f"symbol {symbol} names exchange {prefix} but the order says {exchange}", broker=self.name
            )
        venue = (prefix or exchange or self._exchange).upper()
        if venue not in EXCHANGES:
            raise InvalidSymbolError(
                f"Kite has no exchange {venue}; it has {', '.join(sorted(EXCHANGES))}", broker=self.name
            )
        if not rest or not re.fullmatch(r"[A-Z0-9][A-Z0-9&_.-]*", rest):
            raise InvalidSymbolError(f"{symbol!r} is not a Kite trading symbol", broker=self.name)
        return venue, rest

    def _order_params(self, request: OrderRequest) -> dict[str, Any]:
        exchange, tradingsymbol = self.instrument(request.symbol, request.exchange)
        if request.currency not in (None, "INR"):
            raise OrderRejectedError(f"Kite trades in INR only, not {request.currency}", broker=self.name)
        if exchange in CASH_EXCHANGES and request.asset_class in (AssetClass.FUTURE, AssetClass.OPTION):
            raise OrderRejectedError(
                f"{request.asset_class.value} contracts trade on NFO, BFO, MCX or CDS, not {exchange}",
                broker=self.name,
            )
        if exchange == "MCX" and request.time_in_force is TimeInForce.IOC:
            raise OrderRejectedError("MCX takes no IOC orders from algorithms; use DAY", broker=self.name)
        # CNC is delivery of shares; on a derivatives segment its counterpart is NRML.
        product = "NRML" if self._product == "CNC" and exchange not in CASH_EXCHANGES else self._product
        kite_type = KITE_ORDER_TYPE[request.order_type]
        params: dict[str, Any] = {
            "variety": self._variety,
            "exchange": exchange,
            "tradingsymbol": tradingsymbol,
            "transaction_type": request.side.value,
            "quantity": int(request.quantity),
            "product": product,
            "order_type": kite_type,
            "validity": request.time_in_force.value,
            "tag": tag_for(request.client_order_id),
        }
        if request.limit_price is not None:
            params["price"] = str(request.limit_price)
        if request.stop_price is not None:
            params["trigger_price"] = str(request.stop_price)
        if kite_type in ("MARKET", "SL-M"):
            # Exchange rules refuse algo market and SL-M orders without a protection band; -1 lets
            # Kite apply the standard one.
            params["market_protection"] = -1
        return params

    async def place_order(self, request: OrderRequest) -> Order:
        reason = self.capabilities.supports(request)
        if reason is not None:
            raise OrderRejectedError(reason, broker=self.name, code="UNSUPPORTED")
        params = self._order_params(request)
        if not self.is_connected():
            raise BrokerConnectionError("not connected to Kite; the order was not sent", broker=self.name)
        # Known before the call, so a poll that sees the order first still ties it to the request.
        self._requests[params["tag"]] = request
        order_id = str(await self._call("place_order", op="place", **params))
        tracked = self._tracked.get(order_id)
        if tracked is None:
            order = Order(request=request, account=self.name, broker_order_id=order_id)
            order.transition(OrderStatus.SUBMITTED)
            tracked = self._tracked[order_id] = _Tracked(order, self._variety, None)
            self._emit(order.snapshot())
        try:
            # Kite answers a placement before its risk checks run; one read shows an RMS refusal.
            history = await self._call("order_history", order_id)
            if history:
                self._absorb_and_emit(history[-1])
        except BrokerError as exc:
            log.info("%s: could not read order %s back after placing it: %s", self.name, order_id, exc)
        return tracked.order.snapshot()

    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._cancel(str(broker_order_id), refresh=True)

    async def _cancel(self, order_id: str, *, refresh: bool) -> Order:
        tracked = self._tracked.get(order_id)
        if tracked is None:
            await self.get_order(order_id)
            tracked = self._tracked[order_id]
        if tracked.order.is_terminal:
            return tracked.order.snapshot()
        try:
            await self._call(
                "cancel_order",
                tracked.variety,
                order_id,
                parent_order_id=tracked.parent_order_id,
                op="cancel",
            )
        except BrokerAPIError:
            current = await self.get_order(order_id)
            if current.is_terminal:  # filled or gone before the cancel arrived: nothing to cancel
                return current
            raise
        if refresh:
            with contextlib.suppress(BrokerError):
                return await self.get_order(order_id)
        return tracked.order.snapshot()

    async def cancel_all_orders(self) -> list[str]:
        """Kite has no bulk cancel: every working order is cancelled on its own, a few at a time."""
        book = await self._read("orders")
        working = []
        for data in book:
            order = self._absorb_safely(data, emit=True)
            if order is not None and order.is_working:
                working.append(str(order.broker_order_id))
        gate = asyncio.Semaphore(4)

        async def cancel(order_id: str) -> Order:
            async with gate:
                return await self._cancel(order_id, refresh=False)

        results = await asyncio.gather(*(cancel(oid) for oid in working), return_exceptions=True)
        failures = [(oid, r) for oid, r in zip(working, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            detail = "; ".join(f"{oid}: {redact(exc)}" for oid, exc in failures)
            raise BrokerAPIError(
                f"cancel failed for {len(failures)} of {len(working)} orders ({detail})",
                broker=self.name,
                retryable=any(is_transient(exc) for _, exc in failures),
            )
        return working

    async def get_order(self, broker_order_id: str) -> Order:
        history = await self._read("order_history", str(broker_order_id))
        if not history:
            raise OrderNotFoundError(f"Kite has no order {broker_order_id}", broker=self.name)
        return self._absorb_and_emit(history[-1]).snapshot()

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        tag = tag_for(client_order_id)
        matches = [
            d for d in await self._read("orders") if d.get("tag") == tag or tag in (d.get("tags") or ())
        ]
        if not matches:
            return None
        data = matches[-1]
        tracked = self._tracked.get(str(data.get("order_id")))
        if tracked is not None and tracked.order.client_order_id != client_order_id:
            tracked.order.request = tracked.order.request.model_copy(
                update={"client_order_id": client_order_id}
            )
        order = self._absorb_and_emit(data, client_order_id=client_order_id)
        self._requests.setdefault(tag, order.request)
        return order.snapshot()

    async def get_open_orders(self) -> list[Order]:
        result = []
        for data in await self._read("orders"):
            order = self._absorb_safely(data, emit=True)
            if order is not None and order.is_working:
                result.append(order.snapshot())
        return result

    async def get_fills(self) -> list[Fill]:
        """Today's executions at Kite (its trade book), e.g. to reconcile after a restart."""
        fills = []
        for data in await self._read("trades"):
            fill = self._fill_from(data)
            if fill is not None:
                fills.append(fill)
        return fills

    # -- order book bookkeeping -----------------------------------------------------------
    def _request_from(self, data: dict[str, Any], client_order_id: str | None) -> OrderRequest:
        tag = data.get("tag") or ""
        known = self._requests.get(tag) if tag else None
        if known is not None and client_order_id in (None, known.client_order_id):
            return known
        return request_from_order(data, self.name, client_order_id)

    def _absorb(self, data: dict[str, Any], client_order_id: str | None = None) -> tuple[Order, bool]:
        """Fold one Kite order payload into our copy. Returns the order and whether it changed."""
        order_id = str(data["order_id"])
        tracked = self._tracked.get(order_id)
        created = tracked is None
        if tracked is None:
            order = Order(
                request=self._request_from(data, client_order_id),
                account=self.name,
                broker_order_id=order_id,
                created_at=kite_time(data.get("order_timestamp")) or self._clock(),
            )
            tracked = self._tracked[order_id] = _Tracked(order, self._variety, None)
        order = tracked.order
        tracked.variety = str(data.get("variety") or tracked.variety)
        tracked.parent_order_id = data.get("parent_order_id") or None
        before = (order.status, order.filled_quantity, order.avg_fill_price, order.reject_reason)
        modified = as_modified(order.request, data)
        if modified is not None:
            order.request = modified
        filled = dec(data.get("filled_quantity"))
        if filled > order.filled_quantity:  # never backwards: an older read may arrive late
            order.filled_quantity = filled
            average = dec(data.get("average_price"))
            order.avg_fill_price = average if average > 0 else order.avg_fill_price
        at = kite_time(data.get("exchange_update_timestamp")) or self._clock()
        target = map_status(data.get("status"), order.filled_quantity)
        if target is not order.status or target is OrderStatus.PARTIALLY_FILLED:
            order.transition(target, at=at)
        if order.status is OrderStatus.REJECTED and order.reject_reason is None:
            reason = redact(data.get("status_message") or "rejected by Kite")
            order.reject_reason = reason
            order.reject_code = "INSUFFICIENT_FUNDS" if FUNDS.search(reason) else "BROKER_REJECTED"
        after = (order.status, order.filled_quantity, order.avg_fill_price, order.reject_reason)
        return order, created or after != before or modified is not None

    def _absorb_safely(self, data: Any, *, emit: bool) -> Order | None:
        try:
            order, changed = self._absorb(data)
        except UNREADABLE as exc:
            log.warning(
                "%s: skipped an order Kite sent that could not be read: %s", self.name, unreadable(exc)
            )
            return None
        if changed and emit:
            self._emit(order.snapshot())
        return order

    def _absorb_and_emit(self, data: dict[str, Any], client_order_id: str | None = None) -> Order:
        try:
            order, changed = self._absorb(data, client_order_id)
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite sent an order that could not be read: {unreadable(exc)}", broker=self.name
            ) from None
        if changed:
            self._emit(order.snapshot())
        return order

    def _fill_from(self, data: dict[str, Any]) -> Fill | None:
        try:
            tracked = self._tracked.get(str(data["order_id"]))
            order = tracked.order if tracked else None
            return fill_from_trade(
                data,
                self.name,
                order.symbol if order else None,
                order.client_order_id if order else None,
                self._clock(),
            )
        except UNREADABLE as exc:
            log.warning(
                "%s: skipped a trade Kite sent that could not be read: %s", self.name, unreadable(exc)
            )
            return None

    async def _sync(self, *, emit: bool, force_trades: bool = False) -> None:
        """Read the order book (and the trade book when fills are owed) and report what changed:
        fills first, then the orders they belong to. A fill is reported once per adapter."""
        async with self._sync_lock:
            changed: dict[str, Order] = {}
            book = await self._call("orders")
            if not isinstance(book, list):
                # Not a book at all: nothing in it can be trusted, so the poll fails (DEGRADED).
                raise BrokerAPIError("Kite sent an order book that is not a list of orders", broker=self.name)
            for data in book:
                try:
                    order, did = self._absorb(data)
                except UNREADABLE as exc:
                    log.warning(
                        "%s: skipped an order Kite sent that could not be read: %s",
                        self.name,
                        unreadable(exc),
                    )
                    continue
                if did:
                    changed[str(order.broker_order_id)] = order
            owed = any(
                t.order.filled_quantity > self._traded.get(oid, Decimal(0))
                for oid, t in self._tracked.items()
            )
            fills = []
            if owed or force_trades:
                trades = await self._call("trades")
                if not isinstance(trades, list):
                    raise BrokerAPIError(
                        "Kite sent a trade book that is not a list of trades", broker=self.name
                    )
                for data in trades:
                    fill = self._fill_from(data)
                    if fill is None or fill.fill_id in self._seen_fills:
                        continue
                    self._seen_fills.add(fill.fill_id)
                    oid = str(fill.broker_order_id)
                    self._traded[oid] = self._traded.get(oid, Decimal(0)) + fill.quantity
                    fills.append(fill)
            self._last_refresh = self._clock()
            if emit:
                for fill in fills:
                    self._emit(fill)
                for order in changed.values():
                    self._emit(order.snapshot())

    async def _poll_loop(self) -> None:
        while True:
            backoff = min(self._poll_interval * 2**self._poll_failures, 30.0)
            await asyncio.sleep(backoff)
            try:
                # After failures this poll is the resync: it re-reads the whole trade book, and the
                # state stays DEGRADED until it has succeeded, so no order goes out on a dead link.
                await self._sync(emit=True, force_trades=self._poll_failures > 0)
            except AuthenticationError as exc:
                self._state = ConnectionState.FAILED
                self._last_error = redact(exc)
                log.warning("%s: order polling stopped: %s", self.name, self._last_error)
                return
            except Exception as exc:  # the stream must outlive any one bad poll
                self._poll_failures += 1
                self._last_error = redact(exc)
                # One lost poll is noise; two in a row mean the link is down.
                self._state = (
                    ConnectionState.DEGRADED if self._poll_failures >= 2 else ConnectionState.CONNECTED
                )
                log.warning(
                    "%s: order poll failed (%d in a row): %s", self.name, self._poll_failures, redact(exc)
                )
                continue
            self._poll_failures = 0
            self._state = ConnectionState.CONNECTED
            self._last_error = None

    # -- account --------------------------------------------------------------------------
    def _segment(self) -> str:
        return "commodity" if self._exchange == "MCX" else "equity"

    async def _margins(self) -> dict[str, Any]:
        data = await self._read("margins")
        segment = data.get(self._segment()) if isinstance(data, dict) else None
        if not isinstance(segment, dict):
            raise BrokerAPIError(f"Kite margins had no {self._segment()} segment", broker=self.name)
        return segment

    async def get_balance(self) -> Balance:
        segment, holdings, positions = await asyncio.gather(
            self._margins(), self._read("holdings"), self._read("positions")
        )
        try:
            return balance_from(self.name, segment, holdings, positions, self._clock())
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite balance could not be read: {unreadable(exc)}", broker=self.name
            ) from None

    async def get_margin(self) -> MarginInfo:
        segment = await self._margins()
        try:
            return margin_from(self.name, segment, self._clock())
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite margins could not be read: {unreadable(exc)}", broker=self.name
            ) from None

    async def get_positions(self) -> list[Position]:
        holdings, positions = await asyncio.gather(self._read("holdings"), self._read("positions"))
        try:
            return positions_from(self.name, holdings, positions, self._prices)
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite positions could not be read: {unreadable(exc)}", broker=self.name
            ) from None

    async def get_last_price(self, symbol: str) -> Decimal | None:
        try:
            exchange, tradingsymbol = self.instrument(symbol)
            key = f"{exchange}:{tradingsymbol}"
            quote = (await self._read("ltp", key)).get(key)
            price = dec(quote["last_price"]) if quote else None
        except (BrokerError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            log.debug("%s: no last price for %s: %s", self.name, symbol, redact(exc))
            return None
        if price:
            self._prices[(exchange, tradingsymbol)] = price
        return price or None

    def last_price_nowait(self, symbol: str) -> Decimal | None:
        try:
            return self._prices.get(self.instrument(symbol))
        except InvalidSymbolError:
            return None
