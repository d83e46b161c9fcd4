"""The paper venue's books: working orders, matching, fills, account and prices.

Synchronous and free of I/O: the broker around it adds the connection, latency, faults and the
update stream. Every change to an order or a new fill is appended to ``events`` (when
``listening()`` says someone will receive it) for the broker to deliver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal

from ..account_state import SettledCashSource
from ..base import BrokerEvent
from ..errors import InsufficientFundsError, InvalidSymbolError, OrderNotFoundError, OrderRejectedError
from ..legs import exit_requests
from ..models import (
    TERMINAL_STATUSES,
    Balance,
    Fill,
    MarginInfo,
    Order,
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)
from ..settlement import settlement_of
from .account import MARGIN, CommissionSchedule, PendingCash, SimAccount
from .clock import Clock
from .legs import LegLinks
from .matching import RestingOrder, estimated_price, execution_price, trailing_stop_level, update_trigger

_ZERO = Decimal(0)
_ACCEPTED = OrderStatus.ACCEPTED
_CANCELLED = OrderStatus.CANCELLED
_REJECTED = OrderStatus.REJECTED
_EXPIRED = OrderStatus.EXPIRED
_MARKET = OrderType.MARKET
_IOC = TimeInForce.IOC
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_DAY = TimeInForce.DAY


def snapshot(order: Order) -> Order:
    """A copy that later changes to ``order`` cannot reach (its fill list included)."""
    return order.snapshot()


class SessionCalendar:
    """The daily close at which DAY orders expire (every day; the paper venue has no holidays)."""

    def __init__(self, close: time, zone: tzinfo) -> None:
        self.close = close.replace(tzinfo=None)
        self.zone = zone

    def next_close(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        close = datetime.combine(local.date(), self.close, tzinfo=self.zone)
        if close <= local:
            close = datetime.combine(local.date() + timedelta(days=1), self.close, tzinfo=self.zone)
        return close.astimezone(UTC)


class SimVenue:
    def __init__(
        self,
        *,
        name: str,
        currency: str,
        account: SimAccount,
        commission: CommissionSchedule,
        prices: dict[str, Decimal],
        clock: Clock,
        listening: Callable[[], bool],
        slippage_bps: Decimal = _ZERO,
        liquidity_per_tick: Decimal | None = None,
        tick: Decimal | None = None,
        history_limit: int = 100_000,
        calendar: SessionCalendar | None = None,
    ) -> None:
        self.name = name
        self.currency = currency
        self.account = account
        self.commission = commission
        self.prices = prices
        # The day's P&L is counted from here: the prices the paper session opened at, then the
        # last prices at each session close.
        self.previous_close = dict(prices)
        self.clock = clock
        self.listening = listening
        self.slippage_bps = slippage_bps
        self.liquidity_per_tick = liquidity_per_tick
        self.tick = tick
        self.history_limit = history_limit
        self.calendar = calendar
        self.next_close = calendar.next_close(clock()) if calendar is not None else None
        self.events: list[BrokerEvent] = []

        self.orders: dict[str, Order] = {}  # every order still remembered, by broker id
        self.by_client: dict[str, str] = {}  # client_order_id -> broker id
        self.working: dict[str, RestingOrder] = {}  # in time priority
        self.book: dict[str, dict[str, RestingOrder]] = {}  # symbol -> its working orders
        self.finished: deque[str] = deque()  # terminal orders, oldest first, to bound memory
        self.order_seq = 0
        self.links = LegLinks()  # brackets, OTO and OCO: see ``_linked``

    # -- orders in ------------------------------------------------------------------------
    def place(self, request: OrderRequest) -> Order:
        """Accept and work a new order, or raise the broker's definite refusal."""
        if request.quantity is None:
            raise OrderRejectedError(
                "this paper account takes orders by quantity only, not notional orders",
                broker=self.name,
                code="UNSUPPORTED",
            )
        symbol = request.symbol
        price = self.prices.get(symbol)
        if price is None:
            known = ", ".join(sorted(self.prices)[:10]) or "none"
            raise InvalidSymbolError(
                f"unknown symbol {symbol}: this paper account has no price for it (it trades {known})",
                broker=self.name,
                code="UNKNOWN_SYMBOL",
            )
        if request.client_order_id in self.by_client:
            raise OrderRejectedError(
                f"client_order_id {request.client_order_id} was already used for order "
                f"{self.by_client[request.client_order_id]}",
                broker=self.name,
                code="DUPLICATE_CLIENT_ORDER_ID",
            )
        if request.currency is not None and request.currency != self.currency:
            raise OrderRejectedError(
                f"this paper account trades in {self.currency}, not {request.currency}",
                broker=self.name,
                code="CURRENCY",
            )
        slippage = self.slippage_bps
        if request.order_type is _MARKET and not slippage:
            estimate = price  # what estimated_price() comes to, without the calls
        else:
            estimate = estimated_price(request, price, slippage, self.tick)
        quantity = request.quantity
        commission = self.commission.total(quantity, quantity * estimate)
        if self.account.is_cash:
            self.account.settle(self.clock())
        refusal = self.account.refusal(symbol, request.side, quantity, estimate, commission, self.prices)
        if refusal is not None:
            code, text = refusal
            error = InsufficientFundsError if code == "INSUFFICIENT_FUNDS" else OrderRejectedError
            raise error(text, broker=self.name, code=code)

        now = self.clock()
        self.order_seq += 1
        broker_order_id = f"SIM-{self.order_seq:06d}"
        # The request was validated when it was made; validating it again costs more than the
        # rest of accepting it.
        order = Order.for_request(request, self.name, broker_order_id=broker_order_id, at=now)
        order.transition(_ACCEPTED, at=now)
        self.orders[broker_order_id] = order
        self.by_client[request.client_order_id] = broker_order_id
        if request.take_profit is not None or request.stop_loss is not None:
            legs = request.legs
            if legs is OrderClass.BRACKET or legs is OrderClass.OTO:
                # Before any fill: the entry's fill sends its exits (see ``_linked``).
                self.links.await_fill(broker_order_id, request)
        tif = request.time_in_force
        if request.order_type is _MARKET and self.liquidity_per_tick is None and (tif is _DAY or tif is _GTC):
            # Fills in full at once, as _work() would have it: no need to put it on the book
            # only to take it off again.
            self._fill_at_once(order, estimate, commission, now)
            return order.snapshot()
        self._record(order)
        resting = RestingOrder.open(order, price)
        self.working[broker_order_id] = resting
        book = self.book.get(symbol)
        if book is None:
            book = self.book[symbol] = {}
        book[broker_order_id] = resting

        if tif is _FOK and not self._fills_completely(resting, price):
            self._end(resting, _CANCELLED)
        else:
            # The check above already priced this first fill prudently; a fill now happens at
            # the moment of acceptance.
            self._work(resting, price, check_funds=False, at=now)
            if tif is _IOC and not order.is_terminal:
                self._end(resting, _CANCELLED)
        if request.legs is OrderClass.OCO and order.is_working and not order.filled_quantity:
            # The order is the pair's take-profit; its stop-loss rests beside it.
            self._open_exits(request, request.units, {broker_order_id})
        return snapshot(order)

    def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        """Give a working order new terms in place (quantity, limit and stop prices, time in
        force), or raise the definite refusal. A new price is a new place in the queue: the
        order is worked again at once, as a new order would be."""
        order = self.order(broker_order_id)
        resting = self.working.get(broker_order_id)
        if resting is None:
            raise OrderRejectedError(
                f"order {broker_order_id} is {order.status.value} and can no longer be changed",
                broker=self.name,
                code="NOT_WORKING",
            )
        old = order.request
        if (
            request.client_order_id != old.client_order_id
            or request.symbol != old.symbol
            or request.side is not old.side
            or request.order_type is not old.order_type
        ):
            raise OrderRejectedError(
                "a change to an order may touch its quantity, prices and time in force only",
                broker=self.name,
                code="INVALID_MODIFY",
            )
        if request.units <= order.filled_quantity:
            raise OrderRejectedError(
                f"quantity {request.units} is not above the {order.filled_quantity} already filled",
                broker=self.name,
                code="INVALID_MODIFY",
            )
        price = self.prices[request.symbol]
        remaining = request.units - order.filled_quantity
        estimate = estimated_price(request, price, self.slippage_bps, self.tick)
        commission = self.commission.total(remaining, remaining * estimate)
        refusal = self.account.refusal(
            request.symbol, request.side, remaining, estimate, commission, self.prices
        )
        if refusal is not None:
            code, text = refusal
            error = InsufficientFundsError if code == "INSUFFICIENT_FUNDS" else OrderRejectedError
            raise error(text, broker=self.name, code=code)
        now = self.clock()
        repriced = (request.limit_price, request.stop_price, request.trail_amount, request.trail_percent) != (
            old.limit_price,
            old.stop_price,
            old.trail_amount,
            old.trail_percent,
        )
        order.request = request
        order.updated_at = now
        if repriced:
            resting.on_book = False
        self._record(order)
        self._work(resting, price, at=now)
        if request.time_in_force is _IOC and not order.is_terminal:
            self._end(resting, _CANCELLED)
        return snapshot(order)

    def cancel(self, broker_order_id: str) -> Order:
        order = self.order(broker_order_id)
        resting = self.working.get(broker_order_id)
        if resting is not None:
            # A cancelled entry sends no exits, whatever part of it filled; a cancelled exit
            # takes its partner with it.
            self.links.take_entry(broker_order_id)
            others = self.links.take_others(broker_order_id)
            self._end(resting, _CANCELLED)
            self._cancel_each(others)
        return snapshot(order)

    def cancel_all(self) -> list[str]:
        cancelled = list(self.working)
        for broker_order_id in cancelled:
            self.links.take_entry(broker_order_id)
        for broker_order_id in cancelled:
            resting = self.working.get(broker_order_id)
            if resting is not None:
                self._end(resting, _CANCELLED)
        return cancelled

    def _cancel_each(self, broker_order_ids: tuple[str, ...]) -> None:
        for broker_order_id in broker_order_ids:
            resting = self.working.get(broker_order_id)
            if resting is not None:
                self._end(resting, _CANCELLED)

    # -- linked orders ----------------------------------------------------------------------
    def _linked(self, order: Order) -> None:
        """After a fill or the end of an order that belongs to a bracket, OTO or OCO group: the
        first fill of an exit cancels its partner, so at most one ever fills; an entry that is
        done (filled, or expired part-filled) sends its exits for the quantity it filled."""
        broker_order_id = order.broker_order_id or ""
        filled = order.filled_quantity
        if filled or order.is_terminal:
            others = self.links.take_others(broker_order_id)
            if others and filled:
                self._cancel_each(others)
        if order.is_terminal:
            request = self.links.take_entry(broker_order_id)
            if request is not None and order.filled_quantity:
                self._open_exits(request, order.filled_quantity, set())

    def _open_exits(self, parent: OrderRequest, quantity: Decimal, grouped: set[str]) -> None:
        """Rest the exits of ``parent`` for ``quantity`` as orders of their own, grouped with
        ``grouped`` and each other, then give each its chance at the current price."""
        price = self.prices[parent.symbol]
        now = self.clock()
        ids = set(grouped)
        fresh: list[RestingOrder] = []
        for leg in exit_requests(parent, quantity):
            self.order_seq += 1
            broker_order_id = f"SIM-{self.order_seq:06d}"
            order = Order.for_request(leg, self.name, broker_order_id=broker_order_id, at=now)
            order.transition(_ACCEPTED, at=now)
            self.orders[broker_order_id] = order
            self.by_client[leg.client_order_id] = broker_order_id
            self._record(order)
            resting = RestingOrder.open(order, price)
            self.working[broker_order_id] = resting
            self.book.setdefault(leg.symbol, {})[broker_order_id] = resting
            ids.add(broker_order_id)
            fresh.append(resting)
        if len(ids) > 1:
            self.links.group(sorted(ids))
        for resting in fresh:
            if not resting.order.is_terminal:
                self._work(resting, price, at=now)

    def expire_day_orders(self) -> list[str]:
        expired = []
        for broker_order_id, resting in list(self.working.items()):
            if resting.order.request.time_in_force is _DAY:
                self._end(resting, _EXPIRED)
                expired.append(broker_order_id)
        return expired

    def roll_session(self) -> None:
        """Expire DAY orders if the clock has passed the session close since we last looked."""
        if self.next_close is None or self.calendar is None:
            return
        now = self.clock()
        if now >= self.next_close:
            self.expire_day_orders()
            self.previous_close = dict(self.prices)
            self.next_close = self.calendar.next_close(now)

    def reset(self) -> None:
        for resting in list(self.working.values()):
            self._end(resting, _CANCELLED)
        self.links.clear()
        self.account.reset()
        self.orders.clear()
        self.by_client.clear()
        self.working.clear()
        self.book.clear()
        self.finished.clear()

    # -- the market moves -----------------------------------------------------------------
    def set_price(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = price
        self.previous_close.setdefault(symbol, price)
        self.roll_session()
        self._match(symbol, price)

    def move(self, prices: dict[str, Decimal]) -> None:
        self.prices.update(prices)
        self.roll_session()
        for symbol, price in prices.items():
            self._match(symbol, price)

    # -- reading ----------------------------------------------------------------------------
    def order(self, broker_order_id: str) -> Order:
        order = self.orders.get(broker_order_id)
        if order is None:
            raise OrderNotFoundError(
                f"no order {broker_order_id!r} at this account", broker=self.name, code="NOT_FOUND"
            )
        return order

    def order_by_client(self, client_order_id: str) -> Order | None:
        broker_order_id = self.by_client.get(client_order_id)
        return snapshot(self.orders[broker_order_id]) if broker_order_id is not None else None

    def open_orders(self) -> list[Order]:
        return [snapshot(resting.order) for resting in self.working.values()]

    def stop_level(self, broker_order_id: str) -> Decimal | None:
        resting = self.working.get(broker_order_id)
        if resting is None:
            return None
        request = resting.order.request
        if request.order_type is OrderType.TRAILING_STOP and resting.extreme is not None:
            return trailing_stop_level(request, resting.extreme)
        return request.stop_price

    def balance(self) -> Balance:
        account, prices = self.account, self.prices
        account.settle(self.clock())
        return Balance(
            account=self.name,
            currency=self.currency,
            cash=account.cash,
            equity=account.equity(prices),
            buying_power=account.buying_power(prices),
            realized_pnl=account.realized_pnl,
            unrealized_pnl=account.unrealized_pnl(prices),
            timestamp=self.clock(),
            settled_cash=account.settled_cash,
            unsettled_cash=account.unsettled_cash,
            settled_source=SettledCashSource.BROKER,
            cash_account=account.is_cash,
            margin_used=self._margin_used(),
        )

    def _margin_used(self) -> Decimal:
        account = self.account
        if account.account_type != MARGIN:
            return _ZERO
        return account.gross_exposure(self.prices) / account.leverage

    def pending_settlements(self) -> list[PendingCash]:
        self.account.settle(self.clock())
        return self.account.pending()

    def positions(self) -> list[Position]:
        return [
            Position(
                symbol=symbol,
                quantity=holding.quantity,
                avg_price=holding.avg_price,
                account=self.name,
                asset_class=holding.asset_class,
                currency=self.currency,
                last_price=self.prices.get(symbol),
                realized_pnl=holding.realized_pnl,
                previous_close=self.previous_close.get(symbol),
            )
            for symbol, holding in self.account.holdings.items()
            if holding.quantity
        ]

    def margin(self) -> MarginInfo:
        account, prices = self.account, self.prices
        if account.account_type != MARGIN:
            cash = max(account.cash, _ZERO)
            return MarginInfo(
                account=self.name,
                currency=self.currency,
                available_funds=cash,
                excess_liquidity=cash,
                leverage=Decimal(1),
                timestamp=self.clock(),
            )
        equity = account.equity(prices)
        # Reg T style: initial margin is the leveraged share of gross exposure, maintenance half that.
        initial = self._margin_used()
        maintenance = initial / 2
        return MarginInfo(
            account=self.name,
            currency=self.currency,
            initial_margin=initial,
            maintenance_margin=maintenance,
            available_funds=equity - initial,
            excess_liquidity=equity - maintenance,
            leverage=account.leverage,
            timestamp=self.clock(),
        )

    # -- matching ---------------------------------------------------------------------------
    def _fills_completely(self, resting: RestingOrder, price: Decimal) -> bool:
        order = resting.order
        if not update_trigger(resting, price):
            return False
        fill_price = execution_price(resting, price, self.slippage_bps, self.tick)
        if fill_price is None:
            return False
        remaining = order.request.units - order.filled_quantity
        if self.liquidity_per_tick is not None and self.liquidity_per_tick < remaining:
            return False
        return self._fill_refusal(resting, remaining, fill_price) is None

    def _match(self, symbol: str, price: Decimal) -> None:
        book = self.book.get(symbol)
        if not book:
            return
        for resting in list(book.values()):
            # An order ended by another's fill in this same pass (an OCO partner) is skipped.
            if not resting.order.is_terminal:
                self._work(resting, price)

    def _work(
        self, resting: RestingOrder, price: Decimal, *, check_funds: bool = True, at: datetime | None = None
    ) -> None:
        """Give one working order its chance at ``price``."""
        order = resting.order
        if not resting.triggered and not update_trigger(resting, price):
            return
        fill_price = execution_price(resting, price, self.slippage_bps, self.tick)
        if fill_price is None:
            resting.on_book = True
            return
        quantity = order.request.units - order.filled_quantity
        liquidity = self.liquidity_per_tick
        if liquidity is not None and quantity > liquidity:
            quantity = liquidity
        if check_funds:
            refusal = self._fill_refusal(resting, quantity, fill_price)
            if refusal is not None:
                code, text = refusal
                self._end(resting, _REJECTED if order.filled_quantity == 0 else _CANCELLED, code, text)
                return
        self._fill(resting, quantity, fill_price, at)
        if not order.is_terminal:
            resting.on_book = True

    def _fill_refusal(
        self, resting: RestingOrder, quantity: Decimal, price: Decimal
    ) -> tuple[str, str] | None:
        order = resting.order
        commission = self._commission_for(resting, quantity, price)
        if self.account.is_cash:
            self.account.settle(self.clock())
        return self.account.refusal(
            order.request.symbol, order.request.side, quantity, price, commission, self.prices
        )

    def _commission_for(self, resting: RestingOrder, quantity: Decimal, price: Decimal) -> Decimal:
        """What a fill adds to its order's commission (the minimum is per order, not per fill)."""
        if self.commission.is_free:
            return _ZERO
        order = resting.order
        notional = (order.avg_fill_price or _ZERO) * order.filled_quantity + price * quantity
        return self.commission.total(order.filled_quantity + quantity, notional) - resting.commission_paid

    def _fill(
        self, resting: RestingOrder, quantity: Decimal, price: Decimal, at: datetime | None = None
    ) -> None:
        order = resting.order
        commission = self._commission_for(resting, quantity, price)
        resting.commission_paid += commission
        fill = self._book_fill(order, quantity, price, commission, self.clock() if at is None else at)
        if self.listening():
            self.events.append(fill)
            self.events.append(snapshot(order))
        if order.status in TERMINAL_STATUSES:
            self._retire(resting)
        if self.links:
            self._linked(order)

    def _fill_at_once(self, order: Order, price: Decimal, commission: Decimal, at: datetime) -> None:
        """What _work() and _fill() do for a market order that fills in full on arrival:
        ``price`` is the execution price (the estimate of a market order is exactly that) and
        ``commission`` its commission, both as the funds check priced them."""
        listening = self.listening()
        if listening:
            self.events.append(order.snapshot())  # accepted
        fill = self._book_fill(order, order.request.units, price, commission, at)
        if listening:
            self.events.append(fill)
            self.events.append(order.snapshot())
        self._finished(order.broker_order_id or "")
        if self.links:
            self._linked(order)

    def _book_fill(
        self, order: Order, quantity: Decimal, price: Decimal, commission: Decimal, at: datetime
    ) -> Fill:
        """Record an execution of ``order`` in the account and in the order itself."""
        request = order.request
        settlement = settlement_of(request.instrument, at, self.currency)
        fill = Fill(
            fill_id=f"{order.broker_order_id}-{len(order.fills) + 1}",
            account=self.name,
            symbol=request.symbol,
            side=request.side,
            quantity=quantity,
            price=price,
            commission=commission,
            currency=self.currency,
            broker_order_id=order.broker_order_id,
            client_order_id=request.client_order_id,
            timestamp=at,
            asset_class=request.asset_class,
            trade_date=settlement.trade_date,
            settlement_date=settlement.settlement_date,
        )
        self.account.apply_fill(
            request.symbol, request.side, quantity, price, commission, request.asset_class
        )
        if settlement.settles_at > at:
            amount = quantity * price
            amount = amount - commission if request.side is Side.SELL else -(amount + commission)
            self.account.add_pending(settlement.settles_at, settlement.settlement_date, amount)
        order.apply_fill(fill)
        return fill

    def _end(
        self, resting: RestingOrder, status: OrderStatus, code: str | None = None, reason: str | None = None
    ) -> None:
        order = resting.order
        if code is not None:
            order.reject_code = code
            order.reject_reason = reason
        order.transition(status, at=self.clock())
        self._record(order)
        self._retire(resting)
        if self.links:
            self._linked(order)

    def _retire(self, resting: RestingOrder) -> None:
        order = resting.order
        broker_order_id = order.broker_order_id or ""
        self.working.pop(broker_order_id, None)
        book = self.book.get(order.request.symbol)
        if book is not None:
            book.pop(broker_order_id, None)
        self._finished(broker_order_id)

    def _finished(self, broker_order_id: str) -> None:
        finished = self.finished
        finished.append(broker_order_id)
        if len(finished) > self.history_limit:
            forgotten = self.orders.pop(finished.popleft(), None)
            if forgotten is not None:
                self.by_client.pop(forgotten.client_order_id, None)

    def _record(self, order: Order) -> None:
        # Snapshots cost a copy each; none are made when nobody could receive them.
        if self.listening():
            self.events.append(snapshot(order))
