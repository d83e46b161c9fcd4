"""Execution monitoring: alerts when orders do not behave as they should, and the day's commission.

``ExecutionMonitor`` follows every order change the execution service reports and raises an
``Alert`` when

- a sent order gets no answer from its broker within ``stale_after_seconds`` (it stays PENDING or
  SUBMITTED: a broker that took the call should have acknowledged it);
- a fill's price is worse than the price at submit (the limit, else the last price then) by more
  than ``slippage_bps`` basis points;
- ``reject_burst`` or more orders are rejected within ``reject_window_seconds`` (with
  ``reduce_on_reject_storm``, trading moves to REDUCING: something is wrong with the orders
  being sent, and only orders that shrink a position go on);
- a partly filled order gets no further fill within ``partial_stall_seconds``.

Each alert is raised once per order (a burst once per window), logged, journaled when there is
a journal, and passed to listeners (the console's event log and its alert counter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from .clock import utcnow
from .instruments import Instrument
from .journal import Journal
from .killswitch import KillSwitch
from .models import Order, OrderStatus, RejectCode, Side, TradingState

__all__ = [
    "Alert",
    "AlertKind",
    "ExecutionMonitor",
    "MonitorSettings",
    "commission_by_account",
]

log = logging.getLogger(__name__)

ALERT = "alert"  # journal kind
REJECT_STORM_SOURCE = "monitor:reject_storm"
_BPS = Decimal(10_000)
_AWAITING_ANSWER = (OrderStatus.PENDING, OrderStatus.SUBMITTED)
_EXPECTED_REFUSALS = frozenset({RejectCode.SYSTEM_HALTED.value})


class AlertKind(str, Enum):
    STALE_ORDER = "STALE_ORDER"
    SLIPPAGE = "SLIPPAGE"
    REJECT_BURST = "REJECT_BURST"
    PARTIAL_STALL = "PARTIAL_STALL"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    time: datetime
    message: str
    client_order_id: str | None = None
    account: str | None = None


class MonitorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stale_after_seconds: float = Field(default=30.0, gt=0)
    slippage_bps: Decimal = Field(default=Decimal(50), gt=0)
    reject_burst: int = Field(default=5, ge=2)
    reject_window_seconds: float = Field(default=10.0, gt=0)
    partial_stall_seconds: float = Field(default=120.0, gt=0)
    reduce_on_reject_storm: bool = False
    check_interval_seconds: float = Field(default=1.0, gt=0)


AlertListener = Callable[[Alert], object]
OrderListener = Callable[[Order], object]
LastPrice = Callable[[Instrument, str | None], Decimal | None]


@dataclass(slots=True)
class _Seen:
    """What the monitor knows of one order."""

    reference: Decimal | None
    changed_at: float
    status: OrderStatus
    filled: Decimal
    fills: int
    alerted: set[AlertKind]


class ExecutionMonitor:
    def __init__(
        self,
        *,
        subscribe: Callable[[OrderListener], None],
        unsubscribe: Callable[[OrderListener], None],
        last_price: LastPrice,
        kill_switch: KillSwitch | None = None,
        journal: Journal | None = None,
        settings: MonitorSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings or MonitorSettings()
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._last_price = last_price
        self.kill_switch = kill_switch
        self.journal = journal
        self._clock = clock
        self._now = now
        self._orders: dict[str, tuple[Order, _Seen]] = {}
        self._rejects: deque[float] = deque()
        self._burst_alerted_at: float | None = None
        self.alerts: list[Alert] = []
        self._listeners: list[AlertListener] = []
        self._task: asyncio.Task[None] | None = None
        self._started = False

    # -- life cycle --------------------------------------------------------------------------
    def add_listener(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    def start(self, *, periodic: bool = True) -> None:
        """Follow order changes from now on; with ``periodic``, check for silent orders every
        ``check_interval_seconds`` (call on the event loop)."""
        if self._started:
            return
        self._started = True
        self._subscribe(self.on_order)
        if periodic:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="execution-monitor")

    async def stop(self) -> None:
        if self._started:
            self._unsubscribe(self.on_order)
            self._started = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval_seconds)
            try:
                self.check()
            except Exception:
                log.exception("execution monitor check failed")

    @property
    def count(self) -> int:
        return len(self.alerts)

    # -- what the service reports --------------------------------------------------------------
    def on_order(self, order: Order) -> None:
        coid = order.client_order_id
        now = self._clock()
        known = self._orders.get(coid)
        if known is None or known[0] is not order:
            seen = _Seen(
                reference=self._reference(order),
                changed_at=now,
                status=order.status,
                filled=order.filled_quantity,
                fills=len(order.fills),
                alerted=set(),
            )
            self._orders[coid] = (order, seen)
            if order.status is OrderStatus.REJECTED:
                self._rejected(order, now)
            self._check_fills(order, seen, 0)
            self._forget_if_done(order)
            return
        seen = known[1]
        before_fills = seen.fills
        if order.status is not seen.status or order.filled_quantity != seen.filled:
            seen.changed_at = now
        if order.status is OrderStatus.REJECTED and seen.status is not OrderStatus.REJECTED:
            self._rejected(order, now)
        seen.status = order.status
        seen.filled = order.filled_quantity
        seen.fills = len(order.fills)
        self._check_fills(order, seen, before_fills)
        self._forget_if_done(order)

    def _forget_if_done(self, order: Order) -> None:
        if order.is_terminal:
            self._orders.pop(order.client_order_id, None)

    def _reference(self, order: Order) -> Decimal | None:
        """The price at submit: the limit where there is one, else the last price now."""
        request = order.request
        if request.limit_price is not None:
            return request.limit_price
        return self._last_price(request.instrument, order.account)

    def _check_fills(self, order: Order, seen: _Seen, already: int) -> None:
        reference = seen.reference
        if reference is None or reference <= 0 or AlertKind.SLIPPAGE in seen.alerted:
            return
        for fill in order.fills[already:]:
            adverse = fill.price - reference if order.side is Side.BUY else reference - fill.price
            bps = adverse * _BPS / reference
            if bps > self.settings.slippage_bps:
                seen.alerted.add(AlertKind.SLIPPAGE)
                self._raise(
                    AlertKind.SLIPPAGE,
                    f"{order.side.value} {order.symbol} at {order.account} filled at {fill.price}, "
                    f"{bps:.0f} bps worse than {reference} at submit (limit {self.settings.slippage_bps} bps)",
                    order,
                )
                return

    def _rejected(self, order: Order, now: float) -> None:
        if order.reject_code in _EXPECTED_REFUSALS:
            return  # the trader halted trading: refusals then are what was asked for
        settings = self.settings
        rejects = self._rejects
        rejects.append(now)
        while rejects and now - rejects[0] > settings.reject_window_seconds:
            rejects.popleft()
        if len(rejects) < settings.reject_burst:
            return
        last = self._burst_alerted_at
        if last is not None and now - last <= settings.reject_window_seconds:
            return
        self._burst_alerted_at = now
        message = (
            f"{len(rejects)} orders rejected within {settings.reject_window_seconds:g}s "
            f"(the last: {order.reject_code}: {order.reject_reason})"
        )
        switch = self.kill_switch
        if settings.reduce_on_reject_storm and switch is not None and switch.state is TradingState.ACTIVE:
            switch.reduce_only(f"reject storm: {message}", source=REJECT_STORM_SOURCE)
            message += "; trading is now reduce-only"
        self._raise(AlertKind.REJECT_BURST, message, None)

    # -- the periodic look ---------------------------------------------------------------------
    def check(self) -> list[Alert]:
        """Look for orders left without an answer or a further fill; returns the new alerts."""
        settings = self.settings
        now = self._clock()
        raised: list[Alert] = []
        for order, seen in list(self._orders.values()):
            silent = now - seen.changed_at
            if (
                order.status in _AWAITING_ANSWER
                and silent > settings.stale_after_seconds
                and AlertKind.STALE_ORDER not in seen.alerted
            ):
                seen.alerted.add(AlertKind.STALE_ORDER)
                raised.append(
                    self._raise(
                        AlertKind.STALE_ORDER,
                        f"{order.side.value} {order.quantity} {order.symbol} at {order.account} is "
                        f"{order.status.value} with no answer from the broker for {silent:.0f}s",
                        order,
                    )
                )
            if (
                order.status is OrderStatus.PARTIALLY_FILLED
                and silent > settings.partial_stall_seconds
                and AlertKind.PARTIAL_STALL not in seen.alerted
            ):
                seen.alerted.add(AlertKind.PARTIAL_STALL)
                raised.append(
                    self._raise(
                        AlertKind.PARTIAL_STALL,
                        f"{order.side.value} {order.symbol} at {order.account} stalled at "
                        f"{order.filled_quantity} of {order.quantity} for {silent:.0f}s",
                        order,
                    )
                )
        return raised

    def _raise(self, kind: AlertKind, message: str, order: Order | None) -> Alert:
        alert = Alert(
            kind,
            self._now(),
            message,
            order.client_order_id if order is not None else None,
            order.account if order is not None else None,
        )
        self.alerts.append(alert)
        del self.alerts[:-1000]
        log.warning("execution alert %s: %s", kind.value, message)
        if self.journal is not None:
            try:
                self.journal.record(
                    ALERT,
                    client_order_id=alert.client_order_id,
                    account=alert.account,
                    data={"alert": kind.value, "message": message},
                    soon=True,
                )
            except Exception:
                log.exception("could not journal an execution alert")
        for listener in list(self._listeners):
            try:
                listener(alert)
            except Exception:
                log.exception("execution alert listener failed")
        return alert


def commission_by_account(orders: Iterable[Order], since: datetime) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> the commission of every fill at or after ``since``."""
    totals: dict[tuple[str, str], Decimal] = {}
    for order in orders:
        for fill in order.fills:
            if fill.timestamp >= since and fill.commission:
                key = (fill.account or order.account or "", fill.currency)
                totals[key] = totals.get(key, Decimal(0)) + fill.commission
    return totals
