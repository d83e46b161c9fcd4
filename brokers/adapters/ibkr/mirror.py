"""Our record of every order at IB, kept in step with what TWS reports: order statuses, executions
and their commissions, modifications made in TWS, and orders placed elsewhere on the account.

The record outlives reconnects (the client library forgets); each change is passed on once, as an
Order snapshot or a Fill.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from ...base import BrokerEvent
from ...errors import BrokerConnectionError, BrokerError, BrokerTimeoutError
from ...models import Fill, Order, OrderStatus, Side, utcnow
from ...pubsub import TurnBatch
from ...settlement import dated
from .codes import CANCEL_FAILED, ORDER_CANCELLED, effective_status, is_notice
from .executions import ExecutionLedger, add_fill, replace_fill
from .instruments import modified_request, price_or_none, request_from_ib, to_amount
from .session import IBSession

log = logging.getLogger(__name__)

REJECT_CODE = "BROKER_REJECTED"
_WAITING_STATUSES = frozenset({"PendingSubmit", "ApiPending", ""})


class MirrorSettings(Protocol):
    """What the mirror is told by its owner, read each time it is used: a setting may be changed
    after the mirror is built."""

    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def client_id(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def timeout(self) -> float: ...
    @property
    def commission_grace(self) -> float:
        """How long a fill waits for its commission report before it is reported without one."""
        ...

    @property
    def execution_grace(self) -> float:
        """How long a Filled status waits for its executions before they are asked for, and then
        taken from the status if still missing."""
        ...


@dataclass(eq=False)
class Mirrored:
    """Our view of one order at IB, kept across reconnects (the client library forgets)."""

    order: Order
    order_id: int = 0
    perm_id: int = 0
    trade: Any = None
    acked: bool = False
    seen_by_broker: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    # The filled quantity taken from a Filled status whose executions TWS did not list (see
    # OrderMirror._apply_filled); fills that arrive later never count the order below it.
    status_filled: Decimal = Decimal(0)
    waiters: list[tuple[Callable[[Mirrored], bool], asyncio.Future[None]]] = field(default_factory=list)


class OrderMirror:
    """Every order of the account at IB by client order id, IB order id and permanent id.

    The client library's callbacks (``on_trade``, ``on_exec_details``, ``on_commission``,
    ``on_error``) feed it; ``emit`` passes on each Order snapshot and Fill.
    """

    def __init__(
        self, settings: MirrorSettings, session: IBSession, emit: Callable[[BrokerEvent], None]
    ) -> None:
        self._settings = settings
        self._session = session
        self._emit = emit
        self._orders: dict[str, Mirrored] = {}
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

    # -- finding orders -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Mirrored]:
        return iter(self._orders.values())

    def get(self, client_order_id: str) -> Mirrored | None:
        return self._orders.get(client_order_id)

    def add(self, tracked: Mirrored) -> None:
        """Index ``tracked`` under its client order id and whichever IB ids it has."""
        self._orders[tracked.order.client_order_id] = tracked
        if tracked.order_id > 0:
            self._by_order_id[tracked.order_id] = tracked.order.client_order_id
        if tracked.perm_id:
            self._by_perm_id[tracked.perm_id] = tracked.order.client_order_id

    def by_order_id(self, order_id: int) -> Mirrored | None:
        key = self._by_order_id.get(order_id)
        return self._orders.get(key) if key else None

    def by_broker_id(self, broker_order_id: str) -> Mirrored | None:
        """By our broker order id: the IB order id, or ``P`` and the permanent id for an order
        placed in TWS or by another API client."""
        text = str(broker_order_id).strip()
        if text.isdigit():
            return self.by_order_id(int(text))
        if text[:1] == "P" and text[1:].isdigit():
            key = self._by_perm_id.get(int(text[1:]))
            return self._orders.get(key) if key else None
        return None

    def _lookup(self, order_ref: str, perm_id: int, client_id: int, order_id: int) -> Mirrored | None:
        if order_ref and order_ref in self._orders:
            return self._orders[order_ref]
        if perm_id and perm_id in self._by_perm_id:
            return self._orders.get(self._by_perm_id[perm_id])
        if order_id > 0 and client_id == self._settings.client_id:
            return self.by_order_id(order_id)
        return None

    @property
    def pending_fills(self) -> int:
        """How many fills wait for their commission report."""
        return len(self._pending_fills)

    # -- what TWS reports ---------------------------------------------------------------------
    def on_trade(self, trade: Any) -> None:
        self.sync_trade(trade)

    def on_error(self, req_id: int, code: int, message: str) -> None:
        tracked = self.by_order_id(req_id) if req_id > 0 else None
        if tracked is None:
            if not is_notice(code):
                log.info("%s: IB %s (request %s): %s", self._settings.name, code, req_id, message)
            return
        tracked.errors.append((code, message))
        self._mark_dirty(tracked)

    def sync_trade(self, trade: Any) -> Mirrored | None:
        """Match an IB trade to our order (creating one for orders placed elsewhere) and schedule
        its status to be brought up to date."""
        settings = self._settings
        ib_order = trade.order
        tracked = self._lookup(ib_order.orderRef, ib_order.permId, ib_order.clientId, ib_order.orderId)
        if tracked is None:
            if ib_order.account not in ("", self._session.account):
                return None
            try:
                request = request_from_ib(trade.contract, ib_order)
            except ValueError as exc:
                log.warning("%s: cannot show IB order %s: %s", settings.name, ib_order.permId, exc)
                return None
            tracked = self._orders.get(request.client_order_id) or Mirrored(
                order=Order(request=request, account=settings.name)
            )
        tracked.trade = trade
        modified = self._follow_modification(tracked, ib_order)
        if ib_order.clientId == settings.client_id and ib_order.orderId > 0:
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
        self.add(tracked)
        if modified:
            self.changed(tracked)
        self._mark_dirty(tracked)
        return tracked

    def _follow_modification(self, tracked: Mirrored, ib_order: Any) -> bool:
        order = tracked.order
        try:
            changed = modified_request(order.request, ib_order)
        except ValueError as exc:
            log.warning(
                "%s: cannot follow the change to order %s: %s",
                self._settings.name,
                order.client_order_id,
                exc,
            )
            return False
        if changed is None:
            return False
        log.info(
            "%s: order %s was modified at IB: quantity %s, limit %s, stop %s",
            self._settings.name,
            order.client_order_id,
            changed.quantity,
            changed.limit_price,
            changed.stop_price,
        )
        order.request = changed
        return True

    # -- statuses -----------------------------------------------------------------------------
    def _mark_dirty(self, tracked: Mirrored) -> None:
        self._dirty.add(tracked.order.client_order_id)

    def flush(self) -> None:
        """Bring every status TWS changed up to date now rather than at the end of the loop turn."""
        self._dirty.flush()

    def _apply_dirty(self, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            tracked = self._orders.get(key)
            if tracked is not None and self._apply_status(tracked):
                self.changed(tracked)
            elif tracked is not None:
                self._notify(tracked)

    def _apply_status(self, tracked: Mirrored) -> bool:
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
                code, message = self.reject_error(tracked)
                order.reject(REJECT_CODE, f"IB {code}: {message}" if code else message)
            else:
                order.transition(OrderStatus.CANCELLED)
        return (order.status, order.reject_reason) != before

    def _apply_filled(self, tracked: Mirrored) -> None:
        """TWS says the order is Filled. orderStatus and execDetails are separate messages whose
        relative order the TWS API does not promise
        (https://interactivebrokers.github.io/tws-api/order_submission.html#order_status): the
        status can come first. An order is FILLED only once its fills add up to its quantity;
        until then it stays working, so that what it will buy still counts against the limits,
        and its executions are asked for when overdue. Where TWS has just listed every
        execution and they still fall short (an order filled on an earlier day), Filled means
        the whole quantity, at the status's average price."""
        order, trade = tracked.order, tracked.trade
        quantity = order.request.units  # TWS orders are by quantity
        if order.filled_quantity < quantity and self._executions_current:
            status = trade.orderStatus
            tracked.status_filled = max(quantity, to_amount(status.filled))
            order.filled_quantity = tracked.status_filled
            order.avg_fill_price = price_or_none(status.avgFillPrice) or order.avg_fill_price
            log.warning(
                "%s: TWS reports order %s filled but lists executions for less; taking the status's figures",
                self._settings.name,
                order.client_order_id,
            )
        if order.filled_quantity >= quantity:
            self._overdue.discard(order.client_order_id)
            order.transition(OrderStatus.FILLED)
            return
        order.transition(OrderStatus.PARTIALLY_FILLED if order.filled_quantity > 0 else OrderStatus.ACCEPTED)
        self._overdue.add(order.client_order_id)
        if self._overdue_timer is None:
            self._overdue_timer = asyncio.get_running_loop().call_later(
                self._settings.execution_grace, self._executions_overdue
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
        if self._session.closing:
            return
        try:
            # Reconciled with every execution listed: an order still short takes its status.
            await self.refresh(executions=True)
            self._overdue.clear()
        except BrokerConnectionError:
            return  # reconnecting reconciles every order with the executions TWS lists
        except BrokerError as exc:
            # Until TWS answers, the orders keep counting as working; ask again later.
            log.warning("%s: executions of filled orders not read: %s", self._settings.name, exc)
            if self._overdue_timer is None:
                self._overdue_timer = asyncio.get_running_loop().call_later(
                    self._settings.execution_grace, self._executions_overdue
                )

    def reject_error(self, tracked: Mirrored) -> tuple[int, str]:
        """The IB error that ended the order, or code 0 where TWS gave none."""
        for code, message in reversed(tracked.errors):
            if code not in CANCEL_FAILED and code != ORDER_CANCELLED and not is_notice(code):
                return code, message
        return 0, "the order was rejected by Interactive Brokers"

    def changed(self, tracked: Mirrored) -> None:
        """Pass on the order as it is now, and wake whoever waits on it."""
        self._emit(tracked.order.snapshot())
        self._notify(tracked)

    # -- asking TWS for everything ------------------------------------------------------------
    def reconcile(self, *, executions_current: bool = False) -> None:
        """After a (re)connect or refresh: match every trade TWS reported, then take every fill
        it replayed (each at most once), then bring statuses up to date. executions_current:
        TWS has just listed every execution of the day."""
        ib = self._session.client
        if ib is None:
            return
        for trade in ib.trades():
            self.sync_trade(trade)
        for ib_fill in ib.fills():
            self._take_fill(ib_fill)
        self._executions_current = executions_current
        try:
            self._dirty.flush()
        finally:
            self._executions_current = False

    async def refresh(self, *, executions: bool = False) -> None:
        """Ask TWS for every open and completed order (and fills), then bring ours up to date."""
        ib = self._session.require()
        if not self._settings.readonly:
            await self._session.read("open orders", ib.reqAllOpenOrdersAsync)
            await self._session.read("completed orders", lambda: ib.reqCompletedOrdersAsync(False))
        if executions:
            await self._session.read("executions", ib.reqExecutionsAsync)
        self.reconcile(executions_current=executions)

    def stop(self) -> None:
        """Disconnecting: report the fills held back for their commission, and ask for no more
        executions."""
        self.release_all_fills()
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
            self._overdue_timer = None
        if self._overdue_task is not None:
            self._overdue_task.cancel()

    # -- fills --------------------------------------------------------------------------------
    def on_exec_details(self, trade: Any, ib_fill: Any) -> None:
        self.sync_trade(trade)
        exec_id = ib_fill.execution.execId
        if exec_id in self._seen_exec_ids or exec_id in self._pending_fills:
            return
        # TWS sends the commission a moment after the execution; a fill is reported once, so
        # it waits a little for it.
        timer = asyncio.get_running_loop().call_later(
            self._settings.commission_grace, self._release_fill, exec_id
        )
        self._pending_fills[exec_id] = (ib_fill, timer)

    def on_commission(self, trade: Any, ib_fill: Any, report: Any) -> None:
        if report.execId in self._pending_fills:
            self._release_fill(report.execId)

    def _release_fill(self, exec_id: str) -> None:
        pending = self._pending_fills.pop(exec_id, None)
        if pending is not None:
            pending[1].cancel()
            self._take_fill(pending[0])
            self._dirty.flush()

    def release_all_fills(self) -> None:
        """Report every fill held back for its commission now, without it."""
        for exec_id in list(self._pending_fills):
            self._release_fill(exec_id)

    def _take_fill(self, ib_fill: Any) -> None:
        settings = self._settings
        execution = ib_fill.execution
        if execution.execId in self._seen_exec_ids or execution.execId in self._pending_fills:
            return
        if execution.acctNumber and execution.acctNumber != self._session.account:
            return
        tracked = self._lookup(execution.orderRef, execution.permId, execution.clientId, execution.orderId)
        if tracked is None:
            trade = next(
                (t for t in self._session.client.trades() if t.order.permId == execution.permId), None
            )
            tracked = self.sync_trade(trade) if trade is not None and execution.permId else None
        if tracked is None:
            log.warning("%s: execution %s for an order not known here", settings.name, execution.execId)
            return
        report = ib_fill.commissionReport
        when = execution.time if isinstance(execution.time, datetime) else utcnow()
        try:
            fill = Fill(
                fill_id=execution.execId,
                account=settings.name,
                symbol=tracked.order.symbol,
                side=Side.BUY if execution.side in ("BOT", "BUY") else Side.SELL,
                quantity=to_amount(execution.shares),
                price=to_amount(execution.price),
                commission=to_amount(report.commission) if report.execId else Decimal(0),
                currency=ib_fill.contract.currency or settings.currency,
                asset_class=tracked.order.request.asset_class,
                multiplier=to_amount(ib_fill.contract.multiplier) or Decimal(1),
                broker_order_id=tracked.order.broker_order_id,
                client_order_id=tracked.order.client_order_id,
                timestamp=when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC),
            )
        except ValueError as exc:
            log.warning("%s: unusable execution %s: %s", settings.name, execution.execId, exc)
            return
        # Dated by the execution's own time and the market the contract is listed on.
        contract = ib_fill.contract
        fill = dated(fill, exchange=contract.primaryExchange or contract.exchange or None)
        self._seen_exec_ids.add(fill.fill_id)
        tracked.acked = tracked.seen_by_broker = True
        # A correction replaces the execution it corrects, under the id that one was first
        # reported with (see executions): never a second fill.
        counted_as = self._executions.counted_as(fill.fill_id)
        if counted_as == fill.fill_id:
            if add_fill(tracked.order, fill, tracked.status_filled):
                self._emit(fill)
                self.changed(tracked)
        elif counted_as is not None:
            corrected = fill.model_copy(update={"fill_id": counted_as})
            if replace_fill(tracked.order, corrected, tracked.status_filled):
                log.info("%s: execution %s corrected by %s", settings.name, counted_as, fill.fill_id)
                self.changed(tracked)
        self._mark_dirty(tracked)

    # -- waiting for TWS ----------------------------------------------------------------------
    async def wait(self, tracked: Mirrored, done: Callable[[Mirrored], bool]) -> None:
        """Until ``done(tracked)`` holds, checked as the order changes; BrokerTimeoutError after
        the timeout, BrokerConnectionError if the connection is lost meanwhile."""
        if done(tracked):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (done, future)
        tracked.waiters.append(waiter)
        timeout = self._settings.timeout
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrokerTimeoutError(
                f"no answer from TWS within {timeout:g} s", broker=self._settings.name
            ) from None
        finally:
            if waiter in tracked.waiters:
                tracked.waiters.remove(waiter)

    def _notify(self, tracked: Mirrored) -> None:
        for done, future in list(tracked.waiters):
            if not future.done() and done(tracked):
                future.set_result(None)

    def fail_waiters(self, error: BrokerError) -> None:
        for tracked in self._orders.values():
            for _, future in tracked.waiters:
                if not future.done():
                    future.set_exception(error)
