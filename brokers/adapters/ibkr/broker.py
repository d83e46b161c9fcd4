"""The Interactive Brokers adapter: one account, reached through a running TWS or IB Gateway.

ib_async (and ib_insync) run on asyncio, so every call here is made on the running loop; nothing
blocks it and no thread is involved. Symbol formats are described in ``instruments``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ...base import Broker
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    ConfigError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...models import (
    AccountStatus,
    Balance,
    BrokerCapabilities,
    ConnectionState,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    Side,
    utcnow,
)
from ...pubsub import TurnBatch
from ..retry import read_retrying
from .api import ib_api
from .codes import (
    CANCEL_FAILED,
    CONNECTIVITY_LOST,
    ORDER_CANCELLED,
    RESTORED_DATA_KEPT,
    RESTORED_DATA_LOST,
    SERVER_CONNECTIVITY_BROKEN,
    effective_status,
    error_for,
    is_notice,
)
from .executions import ExecutionLedger, add_fill, replace_fill
from .instruments import (
    contract_for,
    figure,
    ib_order_for,
    modified_request,
    price_or_none,
    request_from_ib,
    symbol_for,
    to_amount,
)
from .settings import CAPABILITIES, LIVE_PORT, PAPER_PORT, read_settings

log = logging.getLogger(__name__)

REJECT_CODE = "BROKER_REJECTED"
_WAITING_STATUSES = frozenset({"PendingSubmit", "ApiPending", ""})


@dataclass(eq=False)
class _Tracked:
    """Our view of one order at IB, kept across reconnects (the client library forgets)."""

    order: Order
    order_id: int = 0
    perm_id: int = 0
    trade: Any = None
    acked: bool = False
    seen_by_broker: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    # The filled quantity taken from a Filled status whose executions TWS did not list (see
    # _apply_filled); fills that arrive later never count the order below it.
    status_filled: Decimal = Decimal(0)
    waiters: list[tuple[Callable[[_Tracked], bool], asyncio.Future[None]]] = field(default_factory=list)


class IBKRBroker(Broker):
    """One account at Interactive Brokers, reached through a running TWS or IB Gateway."""

    broker_type = "ibkr"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: TWS may still act on an order message it read before the socket dropped.
    late_order_window = 30.0
    #: How long a fill waits for its commission report before it is reported without one.
    commission_grace = 0.5
    #: How long a Filled status waits for its executions before they are asked for, and then
    #: taken from the status if still missing.
    execution_grace = 2.0
    read_attempts = 3

    def __init__(
        self,
        name: str = "ibkr",
        *,
        live: bool = False,
        currency: str = "USD",
        host: str = "127.0.0.1",
        port: int | None = None,
        client_id: int = 1,
        account: str | None = None,
        timeout: float = 10.0,
        readonly: bool = False,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        self.host = host
        self.port = port if port is not None else (LIVE_PORT if live else PAPER_PORT)
        self.client_id = client_id
        self.account_code = account
        self.timeout = float(timeout)
        self.readonly = readonly
        self._ib: Any = None
        self._ib_account = account or ""
        self._base_currency = currency
        self._state = ConnectionState.DISCONNECTED
        self._last_error: str | None = None
        self._last_refresh: datetime | None = None
        self._latency_ms: float | None = None
        self._connecting = False
        self._closing = False
        self._orders: dict[str, _Tracked] = {}
        self._by_order_id: dict[int, str] = {}
        self._by_perm_id: dict[int, str] = {}
        self._seen_exec_ids: set[str] = set()
        self._executions = ExecutionLedger()
        # Orders TWS reports Filled whose executions have not all arrived; checked together.
        self._overdue: set[str] = set()
        self._overdue_timer: asyncio.TimerHandle | None = None
        self._overdue_task: asyncio.Task[None] | None = None
        self._executions_current = False
        self._pending_fills: dict[str, tuple[Any, asyncio.TimerHandle]] = {}
        # Statuses are applied at the end of the loop turn: the client library marks an order
        # Cancelled just *before* it reports the error that explains why.
        self._dirty: TurnBatch[str] = TurnBatch(self._apply_dirty)
        self._resync_task: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> IBKRBroker:
        read = read_settings(settings)
        return cls(
            read.name,
            live=read.live,
            currency=read.currency,
            host=read.host,
            port=read.port,
            client_id=read.client_id,
            account=read.account,
            timeout=read.timeout,
            readonly=read.readonly,
        )

    # -- connection -----------------------------------------------------------------------
    @property
    def capabilities(self) -> BrokerCapabilities:
        return CAPABILITIES

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def is_connected(self) -> bool:
        return (
            self._ib is not None
            and self._ib.isConnected()
            and not self._closing
            and self._state
            in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.DEGRADED)
        )

    def status(self) -> AccountStatus:
        return AccountStatus(
            name=self.name,
            broker_type=self.broker_type,
            live=self.live,
            state=self._state,
            last_error=self._last_error,
            last_refresh=self._last_refresh,
            latency_ms=self._latency_ms,
            currency=self.currency,
        )

    async def connect(self) -> None:
        if self.is_connected():
            return
        self._closing = False
        self._set_state(ConnectionState.CONNECTING)
        try:
            await self._open_session()
        except Exception as exc:
            self._set_state(ConnectionState.FAILED, str(exc) or type(exc).__name__)
            raise

    async def disconnect(self) -> None:
        self._closing = True
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._release_all_fills()
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
            self._overdue_timer = None
        if self._overdue_task is not None:
            self._overdue_task.cancel()
        self._fail_waiters(BrokerConnectionError("disconnected", broker=self.name))
        if self._ib is not None:
            self._ib.disconnect()
        self._set_state(ConnectionState.DISCONNECTED)

    async def ping(self) -> float:
        """Round trip to TWS in milliseconds (also kept for ``status().latency_ms``)."""
        ib = self._require_ib()
        started = time.perf_counter()
        await self._read("current time", ib.reqCurrentTimeAsync)
        self._latency_ms = (time.perf_counter() - started) * 1000
        self._last_refresh = utcnow()
        return self._latency_ms

    def _ensure_ib(self) -> Any:
        if self._ib is None:
            ib = ib_api.IB()
            ib.orderStatusEvent += self._on_trade
            ib.openOrderEvent += self._on_trade
            ib.execDetailsEvent += self._on_exec_details
            ib.commissionReportEvent += self._on_commission
            ib.errorEvent += self._on_error
            ib.disconnectedEvent += self._on_disconnected
            self._ib = ib
        return self._ib

    async def _open_session(self) -> None:
        ib = self._ensure_ib()
        where = f"TWS/IB Gateway at {self.host}:{self.port}"
        self._connecting = True
        try:
            await ib.connectAsync(
                self.host,
                self.port,
                clientId=self.client_id,
                timeout=self.timeout,
                readonly=self.readonly,
                account=self.account_code or "",
            )
        except TimeoutError:
            raise BrokerTimeoutError(
                f"{where} did not finish the API handshake within {self.timeout:g} s "
                f"(is the API enabled and client id {self.client_id} free?)",
                broker=self.name,
            ) from None
        except OSError as exc:
            raise BrokerConnectionError(
                f"cannot reach {where}: {exc.strerror or exc}", broker=self.name
            ) from None
        finally:
            self._connecting = False
        try:
            self._choose_account(ib.managedAccounts())
        except ConfigError:
            self._closing = True
            ib.disconnect()
            raise
        self._set_state(ConnectionState.RESYNCING)
        self._reconcile(executions_current=True)  # the client library asked for them on connecting
        self._set_state(ConnectionState.CONNECTED)
        self._last_refresh = utcnow()

    def _choose_account(self, accounts: list[str]) -> None:
        if self.account_code:
            if self.account_code not in accounts:
                raise ConfigError(
                    f"IB account {self.account_code} is not managed by this TWS login "
                    f"(it manages {', '.join(accounts) or 'none'}); fix the 'account' setting"
                )
            code = self.account_code
        elif len(accounts) == 1:
            code = accounts[0]
        else:
            raise ConfigError(
                f"this TWS login manages several accounts ({', '.join(accounts)}); "
                f"set 'account' for {self.name!r} to one of them"
            )
        # IB paper accounts are the D-prefixed ones (DU..., DF...): refuse to trade real money
        # from an account the config calls paper.
        if not self.live and not code.upper().startswith("D"):
            raise ConfigError(
                f"account {self.name!r} is configured as paper (live = false) but TWS is "
                f"logged in to live account {code}; log TWS in to paper or set live = true"
            )
        if self.live and code.upper().startswith("D"):
            log.warning("%s is configured as live but TWS is logged in to paper account %s", self.name, code)
        self._ib_account = code

    def _set_state(self, state: ConnectionState, error: str | None = None) -> None:
        if state is not self._state:
            log.info("%s: %s -> %s", self.name, self._state.value, state.value)
        self._state = state
        if error is not None:
            self._last_error = error
        elif state is ConnectionState.CONNECTED:
            self._last_error = None

    def _require_ib(self) -> Any:
        if self._ib is None or not self._ib.isConnected() or self._closing:
            raise BrokerConnectionError(
                f"not connected to TWS/IB Gateway ({self._state.value.lower()})", broker=self.name
            )
        return self._ib

    def _on_disconnected(self) -> None:
        if self._connecting or self._closing:
            return
        log.warning("%s: connection to TWS/IB Gateway lost", self.name)
        # Fills received before the drop are real: report them now rather than lose them.
        self._release_all_fills()
        self._fail_waiters(BrokerConnectionError("connection to TWS/IB Gateway lost", broker=self.name))
        self._set_state(ConnectionState.DISCONNECTED, "connection to TWS/IB Gateway lost")

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            self._set_state(ConnectionState.DEGRADED, f"IB {code}: {message}")
        elif code == RESTORED_DATA_LOST and not self._connecting:
            # Orders may have filled or ended unseen: ask again before trading on.
            self._set_state(ConnectionState.RESYNCING, f"IB {code}: {message}")
            self._start_resync(full=True)
        elif code == RESTORED_DATA_KEPT and not self._connecting:
            self._set_state(ConnectionState.CONNECTED)
            self._start_resync(full=False)  # nothing should be missing; checking is cheap
        tracked = self._tracked_for_order_id(req_id) if req_id > 0 else None
        if tracked is None:
            if not is_notice(code):
                log.info("%s: IB %s (request %s): %s", self.name, code, req_id, message)
            return
        tracked.errors.append((code, message))
        self._mark_dirty(tracked)

    def _start_resync(self, *, full: bool) -> None:
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.ensure_future(self._resync(full=full))

    async def _resync(self, *, full: bool) -> None:
        try:
            await self._refresh_orders(executions=True)
            if full:
                await self._read("account summary", self._ib.reqAccountSummaryAsync)
        except BrokerError as exc:
            log.warning("%s: resync after TWS reconnected to IB failed: %s", self.name, exc)
            if self._state is ConnectionState.RESYNCING:
                self._set_state(ConnectionState.DEGRADED, f"resync failed: {exc}")
            return
        # Only a resync that is still wanted ends it: TWS may have lost IB again meanwhile.
        if self._state is ConnectionState.RESYNCING:
            self._set_state(ConnectionState.CONNECTED)
        self._last_refresh = utcnow()

    # -- orders ---------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        problem = self.capabilities.supports(request)
        if problem:
            raise OrderRejectedError(problem, broker=self.name, code="UNSUPPORTED")
        if self.readonly:
            raise OrderRejectedError("the connection to TWS is read-only (readonly = true)", broker=self.name)
        try:
            contract = contract_for(request)
        except InvalidSymbolError as exc:
            exc.broker = self.name
            raise
        existing = self._orders.get(request.client_order_id)
        if existing is not None:
            # Same client order id again: never a second order at the broker.
            return self._snapshot(existing)
        ib = self._require_ib()
        if self._state is not ConnectionState.CONNECTED:
            raise BrokerConnectionError(
                f"TWS is {self._state.value.lower()}; order not sent", broker=self.name
            )
        ib_order = ib_order_for(request, self._ib_account)
        try:
            trade = ib.placeOrder(contract, ib_order)
        except ConnectionError as exc:
            raise BrokerConnectionError(f"order not sent: {exc}", broker=self.name) from None
        tracked = _Tracked(
            order=Order(request=request, account=self.name), order_id=ib_order.orderId, trade=trade
        )
        tracked.order.broker_order_id = str(ib_order.orderId)
        tracked.order.transition(OrderStatus.SUBMITTED)
        self._index(tracked)
        try:
            await self._wait(tracked, lambda t: t.acked or t.order.is_terminal)
        except BrokerTimeoutError:
            tracked.order.transition(OrderStatus.UNKNOWN)
            self._changed(tracked)
            raise BrokerTimeoutError(
                f"no answer from TWS within {self.timeout:g} s to order "
                f"{request.client_order_id}; its outcome is unknown",
                broker=self.name,
            ) from None
        except BrokerConnectionError:
            tracked.order.transition(OrderStatus.UNKNOWN)
            self._changed(tracked)
            raise BrokerConnectionError(
                f"connection lost before TWS answered order {request.client_order_id}; "
                "its outcome is unknown",
                broker=self.name,
            ) from None
        if tracked.order.status is OrderStatus.REJECTED:
            code, message = self._reject_error(tracked)
            raise error_for(code, message, self.name)
        return self._snapshot(tracked)

    async def cancel_order(self, broker_order_id: str) -> Order:
        if self.readonly:
            raise BrokerAPIError("the connection to TWS is read-only (readonly = true)", broker=self.name)
        tracked = self._tracked_for_broker_id(broker_order_id)
        if tracked is None:
            await self._refresh_orders()
            tracked = self._tracked_for_broker_id(broker_order_id)
        if tracked is None:
            raise OrderNotFoundError(f"no order {broker_order_id} at {self.name}", broker=self.name)
        if tracked.order.is_terminal:
            return self._snapshot(tracked)
        if not tracked.order_id:
            # TWS takes a cancel by order id only from the client that placed the order.
            raise BrokerAPIError(
                f"order {broker_order_id} was placed in TWS or by another API client; "
                "cancel it there, or cancel all orders",
                broker=self.name,
            )
        ib = self._require_ib()
        ib_order = (
            tracked.trade.order if tracked.trade is not None else ib_api.Order(orderId=tracked.order_id)
        )
        errors_before = len(tracked.errors)
        try:
            ib.cancelOrder(ib_order)
        except ConnectionError as exc:
            raise BrokerConnectionError(f"cancel not sent: {exc}", broker=self.name) from None

        def refused(t: _Tracked) -> bool:
            return any(code in CANCEL_FAILED for code, _ in t.errors[errors_before:])

        await self._wait(tracked, lambda t: t.order.is_terminal or refused(t))
        if not tracked.order.is_terminal:
            # Refused: most often the order filled or ended a moment ago. Ask before saying so.
            await self._refresh_orders(executions=True)
        if not tracked.order.is_terminal:
            code, message = next((c, m) for c, m in tracked.errors[errors_before:] if c in CANCEL_FAILED)
            raise error_for(code, message, self.name)
        return self._snapshot(tracked)

    async def cancel_all_orders(self) -> list[str]:
        if self.readonly:
            raise BrokerAPIError("the connection to TWS is read-only (readonly = true)", broker=self.name)
        ib = self._require_ib()
        for trade in ib.openTrades():
            self._sync_trade(trade)
        asked = [
            t.order.broker_order_id
            for t in self._orders.values()
            if t.order.is_working and t.order.broker_order_id
        ]
        # reqGlobalCancel cancels every working order of this TWS login, whichever client placed it.
        try:
            ib.reqGlobalCancel()
        except ConnectionError as exc:
            raise BrokerConnectionError(f"cancel-all not sent: {exc}", broker=self.name) from None
        return asked

    async def get_order(self, broker_order_id: str) -> Order:
        tracked = self._tracked_for_broker_id(broker_order_id)
        if tracked is None or not tracked.order.is_terminal:
            await self._refresh_orders()
            tracked = self._tracked_for_broker_id(broker_order_id)
        if tracked is None:
            raise OrderNotFoundError(f"no order {broker_order_id} at {self.name}", broker=self.name)
        return self._snapshot(tracked)

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        tracked = self._orders.get(client_order_id)
        if tracked is not None and tracked.seen_by_broker and tracked.order.is_terminal:
            return self._snapshot(tracked)
        await self._refresh_orders(executions=True)
        tracked = self._orders.get(client_order_id)
        if tracked is None or not tracked.seen_by_broker:
            return None
        return self._snapshot(tracked)

    async def get_open_orders(self) -> list[Order]:
        ib = self._require_ib()
        if self.readonly:
            trades = ib.openTrades()
        else:
            trades = await self._read("open orders", ib.reqAllOpenOrdersAsync)
        listed = {id(tracked) for tracked in map(self._sync_trade, trades) if tracked is not None}
        self._dirty.flush()
        in_flight = (OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)
        return [
            self._snapshot(t)
            for t in self._orders.values()
            if t.order.is_working and (id(t) in listed or t.order.status in in_flight)
        ]

    async def _refresh_orders(self, *, executions: bool = False) -> None:
        """Ask TWS for every open and completed order (and fills), then bring ours up to date."""
        ib = self._require_ib()
        if not self.readonly:
            await self._read("open orders", ib.reqAllOpenOrdersAsync)
            await self._read("completed orders", lambda: ib.reqCompletedOrdersAsync(False))
        if executions:
            await self._read("executions", ib.reqExecutionsAsync)
        self._reconcile(executions_current=executions)

    # -- account --------------------------------------------------------------------------
    async def _summary(self) -> tuple[dict[str, str], str]:
        ib = self._require_ib()
        values = await self._read("account summary", lambda: ib.accountSummaryAsync(self._ib_account))
        tags: dict[str, str] = {}
        base = ""
        for value in values:
            if value.account != self._ib_account:
                continue
            if value.tag == "NetLiquidation":
                base = value.currency
            # Ledger tags come once per currency and once as BASE; the BASE one is the total.
            if value.currency == "BASE" or value.tag not in tags:
                tags[value.tag] = value.value
        if "NetLiquidation" not in tags:
            raise BrokerAPIError(f"TWS sent no account summary for {self._ib_account}", broker=self.name)
        self._last_refresh = utcnow()
        self._base_currency = base or self.currency
        return tags, self._base_currency

    async def get_balance(self) -> Balance:
        tags, currency = await self._summary()
        return Balance(
            account=self.name,
            currency=currency,
            cash=self._figure(tags, "TotalCashValue"),
            equity=self._figure(tags, "NetLiquidation"),
            buying_power=self._figure(tags, "BuyingPower" if "BuyingPower" in tags else "AvailableFunds"),
            realized_pnl=self._figure(tags, "RealizedPnL"),
            unrealized_pnl=self._figure(tags, "UnrealizedPnL"),
        )

    def _figure(self, tags: dict[str, str], tag: str) -> Decimal:
        return figure(tags.get(tag), tag, self.name)

    async def get_margin(self) -> MarginInfo:
        tags, currency = await self._summary()
        equity, gross = to_amount(tags.get("NetLiquidation")), to_amount(tags.get("GrossPositionValue"))
        leverage = to_amount(tags.get("Leverage")) or (gross / equity if equity > 0 else Decimal(0))
        return MarginInfo(
            account=self.name,
            currency=currency,
            initial_margin=to_amount(tags.get("InitMarginReq")),
            maintenance_margin=to_amount(tags.get("MaintMarginReq")),
            available_funds=to_amount(tags.get("AvailableFunds")),
            excess_liquidity=to_amount(tags.get("ExcessLiquidity")),
            leverage=leverage,
        )

    async def get_positions(self) -> list[Position]:
        ib = self._require_ib()
        positions = await self._read("positions", ib.reqPositionsAsync)
        marks = {item.contract.conId: item for item in ib.portfolio(self._ib_account)}
        result = []
        for held in positions:
            if held.account != self._ib_account or not held.position:
                continue
            contract = held.contract
            symbol, asset = symbol_for(contract)
            multiplier = to_amount(contract.multiplier) or Decimal(1)
            mark = marks.get(contract.conId)
            result.append(
                Position(
                    symbol=symbol,
                    quantity=figure(held.position, f"a position in {symbol} of", self.name),
                    # IB's average cost includes the multiplier; ours is per unit of price.
                    avg_price=to_amount(
                        figure(held.avgCost, f"an average cost for {symbol} of", self.name) / multiplier
                    ),
                    account=self.name,
                    asset_class=asset,
                    currency=contract.currency or self.currency,
                    last_price=price_or_none(mark.marketPrice) if mark else None,
                    realized_pnl=to_amount(mark.realizedPNL) if mark else Decimal(0),
                    multiplier=multiplier,
                    exchange=contract.exchange or contract.primaryExchange or None,
                )
            )
        self._last_refresh = utcnow()
        return result

    def last_price_nowait(self, symbol: str) -> Decimal | None:
        if self._ib is None or not self._ib_account:
            return None
        for item in self._ib.portfolio(self._ib_account):
            if symbol_for(item.contract)[0] == symbol:
                return price_or_none(item.marketPrice)
        return None

    async def get_last_price(self, symbol: str) -> Decimal | None:
        return self.last_price_nowait(symbol)

    async def get_fx_rates(self) -> dict[str, Decimal]:
        """What TWS reports as ExchangeRate in the account values (1 unit in the base currency)."""
        if self._ib is None or not self._ib_account:
            return {}
        base = self._base_currency
        rates = {}
        for value in self._ib.accountValues(self._ib_account):
            rate = to_amount(value.value)
            if value.tag == "ExchangeRate" and value.currency not in ("BASE", base) and rate > 0:
                rates[f"{value.currency}{base}"] = rate
        return rates

    # -- reads ----------------------------------------------------------------------------
    async def _read(self, what: str, request: Callable[[], Awaitable[Any]]) -> Any:
        """A read request with a timeout, retried with backoff while the failure is transient.
        One at a time per kind: the client library keys some answers by kind, not by request."""
        self._require_ib()  # no point waiting out the retries while nothing is connected
        lock = self._locks.setdefault(what, asyncio.Lock())
        async with lock:
            async for attempt in read_retrying(self.read_attempts, first_wait=0.2):
                with attempt:
                    self._require_ib()
                    try:
                        result = await asyncio.wait_for(request(), self.timeout)
                    except TimeoutError:
                        raise BrokerTimeoutError(
                            f"no answer to the {what} request within {self.timeout:g} s", broker=self.name
                        ) from None
                    except ConnectionError as exc:
                        raise BrokerConnectionError(
                            f"{what} request failed: {exc}", broker=self.name
                        ) from None
        return result

    # -- keeping our orders in step with TWS ------------------------------------------------
    def _index(self, tracked: _Tracked) -> None:
        self._orders[tracked.order.client_order_id] = tracked
        if tracked.order_id > 0:
            self._by_order_id[tracked.order_id] = tracked.order.client_order_id
        if tracked.perm_id:
            self._by_perm_id[tracked.perm_id] = tracked.order.client_order_id

    def _tracked_for_order_id(self, order_id: int) -> _Tracked | None:
        key = self._by_order_id.get(order_id)
        return self._orders.get(key) if key else None

    def _tracked_for_broker_id(self, broker_order_id: str) -> _Tracked | None:
        text = str(broker_order_id).strip()
        if text.isdigit():
            return self._tracked_for_order_id(int(text))
        if text[:1] == "P" and text[1:].isdigit():
            key = self._by_perm_id.get(int(text[1:]))
            return self._orders.get(key) if key else None
        return None

    def _lookup(self, order_ref: str, perm_id: int, client_id: int, order_id: int) -> _Tracked | None:
        if order_ref and order_ref in self._orders:
            return self._orders[order_ref]
        if perm_id and perm_id in self._by_perm_id:
            return self._orders.get(self._by_perm_id[perm_id])
        if order_id > 0 and client_id == self.client_id:
            return self._tracked_for_order_id(order_id)
        return None

    def _sync_trade(self, trade: Any) -> _Tracked | None:
        """Match an IB trade to our order (creating one for orders placed elsewhere) and schedule
        its status to be brought up to date."""
        ib_order = trade.order
        tracked = self._lookup(ib_order.orderRef, ib_order.permId, ib_order.clientId, ib_order.orderId)
        if tracked is None:
            if ib_order.account not in ("", self._ib_account):
                return None
            try:
                request = request_from_ib(trade.contract, ib_order)
            except ValueError as exc:
                log.warning("%s: cannot show IB order %s: %s", self.name, ib_order.permId, exc)
                return None
            tracked = self._orders.get(request.client_order_id) or _Tracked(
                order=Order(request=request, account=self.name)
            )
        tracked.trade = trade
        modified = self._follow_modification(tracked, ib_order)
        if ib_order.clientId == self.client_id and ib_order.orderId > 0:
            tracked.order_id = ib_order.orderId
        tracked.perm_id = ib_order.permId or tracked.perm_id
        if tracked.order.broker_order_id is None:
            tracked.order.broker_order_id = (
                str(tracked.order_id)
                if tracked.order_id
                else f"P{tracked.perm_id}"
                if tracked.perm_id
                else None
            )
        self._index(tracked)
        if modified:
            self._changed(tracked)
        self._mark_dirty(tracked)
        return tracked

    def _follow_modification(self, tracked: _Tracked, ib_order: Any) -> bool:
        order = tracked.order
        try:
            changed = modified_request(order.request, ib_order)
        except ValueError as exc:
            log.warning("%s: cannot follow the change to order %s: %s", self.name, order.client_order_id, exc)
            return False
        if changed is None:
            return False
        log.info(
            "%s: order %s was modified at IB: quantity %s, limit %s, stop %s",
            self.name,
            order.client_order_id,
            changed.quantity,
            changed.limit_price,
            changed.stop_price,
        )
        order.request = changed
        return True

    def _on_trade(self, trade: Any) -> None:
        self._sync_trade(trade)

    def _mark_dirty(self, tracked: _Tracked) -> None:
        self._dirty.add(tracked.order.client_order_id)

    def _apply_dirty(self, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            tracked = self._orders.get(key)
            if tracked is not None and self._apply_status(tracked):
                self._changed(tracked)
            elif tracked is not None:
                self._notify(tracked)

    def _apply_status(self, tracked: _Tracked) -> bool:
        trade, order = tracked.trade, tracked.order
        if trade is None:
            return False
        ib_status, code = effective_status(trade)
        # ib_insync files some refusals (110 price increment, 202 cancelled) under warnings and
        # leaves the order pending; TWS has dropped it all the same.
        if ib_status in _WAITING_STATUSES and tracked.errors:
            last = tracked.errors[-1][0]
            if last == ORDER_CANCELLED:
                ib_status = "Cancelled"
            elif last not in CANCEL_FAILED and not is_notice(last):
                ib_status, code = "Cancelled", last
        if ib_status not in _WAITING_STATUSES:
            tracked.acked = tracked.seen_by_broker = True
        if any(
            fill.execution.permId == tracked.perm_id or fill.execution.orderRef == order.client_order_id
            for fill, _ in self._pending_fills.values()
        ):
            return False  # the fill goes first, or FILLED would come before its quantity
        before = (order.status, order.reject_reason)
        if ib_status in ("PendingSubmit", "ApiPending"):
            order.transition(OrderStatus.SUBMITTED)
        elif ib_status in ("PreSubmitted", "Submitted"):
            order.transition(
                OrderStatus.PARTIALLY_FILLED if order.filled_quantity > 0 else OrderStatus.ACCEPTED
            )
        elif ib_status == "Filled":
            self._apply_filled(tracked)
        elif ib_status in ("Cancelled", "ApiCancelled", "Inactive"):
            # Ended by an error (201 margin, ...) rather than by a cancel: a rejection, unless
            # part of it had already filled.
            rejected = ib_status == "Inactive" or code not in (0, ORDER_CANCELLED)
            if rejected and order.filled_quantity == 0:
                code, message = self._reject_error(tracked)
                order.reject(REJECT_CODE, f"IB {code}: {message}" if code else message)
            else:
                order.transition(OrderStatus.CANCELLED)
        return (order.status, order.reject_reason) != before

    def _apply_filled(self, tracked: _Tracked) -> None:
        """TWS says the order is Filled. orderStatus and execDetails are separate messages whose
        relative order the TWS API does not promise
        (https://interactivebrokers.github.io/tws-api/order_submission.html#order_status): the
        status can come first. An order is FILLED only once its fills add up to its quantity;
        until then it stays working, so that what it will buy still counts against the limits,
        and its executions are asked for when overdue. Where TWS has just listed every
        execution and they still fall short (an order filled on an earlier day), Filled means
        the whole quantity, at the status's average price."""
        order, trade = tracked.order, tracked.trade
        if order.filled_quantity < order.quantity and self._executions_current:
            status = trade.orderStatus
            tracked.status_filled = max(order.quantity, to_amount(status.filled))
            order.filled_quantity = tracked.status_filled
            order.avg_fill_price = price_or_none(status.avgFillPrice) or order.avg_fill_price
            log.warning(
                "%s: TWS reports order %s filled but lists executions for less; taking the status's figures",
                self.name,
                order.client_order_id,
            )
        if order.filled_quantity >= order.quantity:
            self._overdue.discard(order.client_order_id)
            order.transition(OrderStatus.FILLED)
            return
        order.transition(OrderStatus.PARTIALLY_FILLED if order.filled_quantity > 0 else OrderStatus.ACCEPTED)
        self._overdue.add(order.client_order_id)
        if self._overdue_timer is None:
            self._overdue_timer = asyncio.get_running_loop().call_later(
                self.execution_grace, self._executions_overdue
            )

    def _executions_overdue(self) -> None:
        self._overdue_timer = None
        self._overdue = {
            key
            for key in self._overdue
            if (t := self._orders.get(key)) is not None and not t.order.is_terminal
        }
        if self._overdue and (self._overdue_task is None or self._overdue_task.done()):
            self._overdue_task = asyncio.ensure_future(self._ask_for_executions())

    async def _ask_for_executions(self) -> None:
        if self._closing:
            return
        try:
            # Reconciled with every execution listed: an order still short takes its status.
            await self._refresh_orders(executions=True)
            self._overdue.clear()
        except BrokerConnectionError:
            return  # reconnecting reconciles every order with the executions TWS lists
        except BrokerError as exc:
            # Until TWS answers, the orders keep counting as working; ask again later.
            log.warning("%s: executions of filled orders not read: %s", self.name, exc)
            if self._overdue_timer is None:
                self._overdue_timer = asyncio.get_running_loop().call_later(
                    self.execution_grace, self._executions_overdue
                )

    def _reject_error(self, tracked: _Tracked) -> tuple[int, str]:
        for code, message in reversed(tracked.errors):
            if code not in CANCEL_FAILED and code != ORDER_CANCELLED and not is_notice(code):
                return code, message
        return 0, "the order was rejected by Interactive Brokers"

    def _changed(self, tracked: _Tracked) -> None:
        self._emit(self._snapshot(tracked))
        self._notify(tracked)

    def _snapshot(self, tracked: _Tracked) -> Order:
        return tracked.order.snapshot()

    def _reconcile(self, *, executions_current: bool = False) -> None:
        """After a (re)connect or refresh: match every trade TWS reported, then take every fill
        it replayed (each at most once), then bring statuses up to date. executions_current:
        TWS has just listed every execution of the day."""
        if self._ib is None:
            return
        for trade in self._ib.trades():
            self._sync_trade(trade)
        for ib_fill in self._ib.fills():
            self._take_fill(ib_fill)
        self._executions_current = executions_current
        try:
            self._dirty.flush()
        finally:
            self._executions_current = False

    # -- fills ----------------------------------------------------------------------------
    def _on_exec_details(self, trade: Any, ib_fill: Any) -> None:
        self._sync_trade(trade)
        exec_id = ib_fill.execution.execId
        if exec_id in self._seen_exec_ids or exec_id in self._pending_fills:
            return
        # TWS sends the commission a moment after the execution; a fill is reported once, so
        # it waits a little for it.
        timer = asyncio.get_running_loop().call_later(self.commission_grace, self._release_fill, exec_id)
        self._pending_fills[exec_id] = (ib_fill, timer)

    def _on_commission(self, trade: Any, ib_fill: Any, report: Any) -> None:
        if report.execId in self._pending_fills:
            self._release_fill(report.execId)

    def _release_fill(self, exec_id: str) -> None:
        pending = self._pending_fills.pop(exec_id, None)
        if pending is not None:
            pending[1].cancel()
            self._take_fill(pending[0])
            self._dirty.flush()

    def _release_all_fills(self) -> None:
        for exec_id in list(self._pending_fills):
            self._release_fill(exec_id)

    def _take_fill(self, ib_fill: Any) -> None:
        execution = ib_fill.execution
        if execution.execId in self._seen_exec_ids or execution.execId in self._pending_fills:
            return
        if execution.acctNumber and execution.acctNumber != self._ib_account:
            return
        tracked = self._lookup(execution.orderRef, execution.permId, execution.clientId, execution.orderId)
        if tracked is None:
            trade = next((t for t in self._ib.trades() if t.order.permId == execution.permId), None)
            tracked = self._sync_trade(trade) if trade is not None and execution.permId else None
        if tracked is None:
            log.warning("%s: execution %s for an order not known here", self.name, execution.execId)
            return
        report = ib_fill.commissionReport
        when = execution.time if isinstance(execution.time, datetime) else utcnow()
        try:
            fill = Fill(
                fill_id=execution.execId,
                account=self.name,
                symbol=tracked.order.symbol,
                side=Side.BUY if execution.side in ("BOT", "BUY") else Side.SELL,
                quantity=to_amount(execution.shares),
                price=to_amount(execution.price),
                commission=to_amount(report.commission) if report.execId else Decimal(0),
                currency=ib_fill.contract.currency or self.currency,
                broker_order_id=tracked.order.broker_order_id,
                client_order_id=tracked.order.client_order_id,
                timestamp=when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC),
            )
        except ValueError as exc:
            log.warning("%s: unusable execution %s: %s", self.name, execution.execId, exc)
            return
        self._seen_exec_ids.add(fill.fill_id)
        tracked.acked = tracked.seen_by_broker = True
        # A correction replaces the execution it corrects, under the id that one was first
        # reported with (see executions): never a second fill.
        counted_as = self._executions.counted_as(fill.fill_id)
        if counted_as == fill.fill_id:
            if add_fill(tracked.order, fill, tracked.status_filled):
                self._emit(fill)
                self._changed(tracked)
        elif counted_as is not None:
            corrected = fill.model_copy(update={"fill_id": counted_as})
            if replace_fill(tracked.order, corrected, tracked.status_filled):
                log.info("%s: execution %s corrected by %s", self.name, counted_as, fill.fill_id)
                self._changed(tracked)
        self._mark_dirty(tracked)

    # -- waiting for TWS --------------------------------------------------------------------
    async def _wait(self, tracked: _Tracked, done: Callable[[_Tracked], bool]) -> None:
        if done(tracked):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (done, future)
        tracked.waiters.append(waiter)
        try:
            await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise BrokerTimeoutError(
                f"no answer from TWS within {self.timeout:g} s", broker=self.name
            ) from None
        finally:
            if waiter in tracked.waiters:
                tracked.waiters.remove(waiter)

    def _notify(self, tracked: _Tracked) -> None:
        for done, future in list(tracked.waiters):
            if not future.done() and done(tracked):
                future.set_result(None)

    def _fail_waiters(self, error: BrokerError) -> None:
        for tracked in self._orders.values():
            for _, future in tracked.waiters:
                if not future.done():
                    future.set_exception(error)
