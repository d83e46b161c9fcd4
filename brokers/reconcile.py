"""Reconciliation: the brokers' word on orders and positions, taken over the execution layer's.

``reconcile`` asks each broker by ``client_order_id`` about every order not known to be final
(UNKNOWN ones above all) and compares positions; the resync hook does the same for one account
while the manager holds it RESYNCING after a (re)connect; the sweep asks again, now and then,
only about orders whose submit lost its answer. Differences are reported, never hidden.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from . import journal as jr
from .base import AccountDirectory, Broker
from .events import PositionDiff
from .fanout import describe_error
from .models import Order, OrderStatus, RejectCode, utcnow
from .tracking import OrderTracker

__all__ = ["ReconcileReport", "Reconciler"]

log = logging.getLogger(__name__)

_LOST = (OrderStatus.UNKNOWN, OrderStatus.PENDING)


@dataclass(slots=True)
class ReconcileReport:
    """What reconciling against the brokers found. Differences are listed, never hidden."""

    resolved: list[Order] = field(default_factory=list)  # orders whose state changed
    unresolved: dict[str, str] = field(default_factory=dict)  # client_order_id -> why
    positions: list[PositionDiff] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # account -> what failed

    @property
    def clean(self) -> bool:
        return not (self.unresolved or self.positions or self.errors)


class Reconciler:
    def __init__(self, manager: AccountDirectory, tracker: OrderTracker, call_timeout: float) -> None:
        self.manager = manager
        self.tracker = tracker
        self.call_timeout = call_timeout
        self._sweep_task: asyncio.Task[None] | None = None
        self._reseeds: dict[str, asyncio.Task[None]] = {}
        tracker.reseed = self.reseed

    async def reconcile(self, accounts: Iterable[str] | None = None) -> ReconcileReport:
        """Settle every working order and compare positions at each account (all by default)."""
        report = ReconcileReport()
        names = list(accounts) if accounts is not None else self.manager.names()
        await asyncio.gather(*(self.reconcile_account(name, report) for name in names))
        if report.positions:
            log.warning("positions differed from the brokers: %s", report.positions)
        return report

    async def reconcile_account(
        self, name: str, report: ReconcileReport, *, only: set[str] | None = None
    ) -> None:
        """Settle the account's working orders (or just those named in ``only``) and, for a full
        reconcile, compare its positions."""
        try:
            broker = self.manager.get(name)
        except KeyError:
            report.errors[name] = "unknown account"
            return
        tracker = self.tracker
        # The periodic sweep names a handful of orders: look those up, not every order of the day.
        candidates: Iterable[Order] = (
            tracker.orders.values() if only is None else filter(None, map(tracker.orders.get, only))
        )
        pending = [
            o
            for o in candidates
            if o.account == name and o.status.is_working and o.client_order_id not in tracker.in_flight
        ]
        if not broker.is_connected():
            report.errors[name] = "not connected"
            for order in pending:
                report.unresolved[order.client_order_id] = f"{name} is not connected"
            return
        for order in pending:
            await self._settle(name, order, broker, report)
        if only is not None:
            return
        try:
            async with asyncio.timeout(self.call_timeout):
                positions = await broker.get_positions()
        except Exception as exc:
            report.errors[name] = f"positions not read: {describe_error(exc)}"
            return
        report.positions.extend(tracker.book.seed(name, positions))

    async def _settle(self, name: str, order: Order, broker: Broker, report: ReconcileReport) -> None:
        coid = order.client_order_id
        try:
            async with asyncio.timeout(self.call_timeout):
                snapshot = await broker.get_order_by_client_id(coid)
        except Exception as exc:
            report.unresolved[coid] = describe_error(exc)
            return
        since = broker.remembers_since
        forgotten = since is not None and order.created_at < since
        if snapshot is None and order.broker_order_id is not None and not forgotten:
            snapshot = await self._by_broker_id(broker, order.broker_order_id)
        if snapshot is not None:
            if self.tracker.absorb(order, snapshot, jr.RECONCILE):
                report.resolved.append(order)
        elif since is not None and forgotten:
            self._forgotten(order, since)
            report.resolved.append(order)
        elif order.status not in _LOST:
            report.unresolved[coid] = f"{name} no longer reports this order"
        elif _may_still_arrive(order, broker):
            report.unresolved[coid] = (
                f"{name} does not show this order yet; a submit whose answer was lost can still "
                f"arrive, so it is asked again"
            )
        else:
            self._refuse_unsent(order)
            report.resolved.append(order)

    async def _by_broker_id(self, broker: Broker, broker_order_id: str) -> Order | None:
        """The order by the id its broker gave it, which the journal holds: some orders carry no
        client id at their broker (an exit Kite holds in a trigger, whose legs a restart
        rebuilds under other client ids). None if not found. Not asked of an account that
        started afresh since the order was sent: its venue gives the same ids out again."""
        try:
            async with asyncio.timeout(self.call_timeout):
                return await broker.get_order(broker_order_id)
        except Exception:
            return None

    def _forgotten(self, order: Order, since: datetime) -> None:
        """An order of an account that started afresh after it was sent (the paper broker, kept
        in one process only): it is gone with that process, and is shown so, not as working."""
        order.reject_reason = (
            f"{order.account} is a paper account that started afresh at {since:%H:%M:%S} UTC; "
            "orders sent before then went with the program that held them"
        )
        order.transition(OrderStatus.CANCELLED)
        tracker = self.tracker
        tracker.remember(order)
        tracker.journal_order(jr.RECONCILE, order)
        tracker.notify(order)

    def _refuse_unsent(self, order: Order) -> None:
        order.reject_code = RejectCode.BROKER_REJECTED.value
        order.reject_reason = (
            f"{order.account} has no order with client id {order.client_order_id}: "
            f"it never reached the broker"
        )
        order.transition(OrderStatus.REJECTED)
        tracker = self.tracker
        tracker.remember(order)
        tracker.journal_order(jr.RECONCILE, order)
        tracker.notify(order)

    async def resync(self, name: str) -> None:
        """The manager's resync hook: runs while ``name`` is RESYNCING after a (re)connect."""
        report = ReconcileReport()
        await self.reconcile_account(name, report)
        self.tracker.record(
            jr.RECONNECT,
            None,
            name,
            {
                "resolved": [o.client_order_id for o in report.resolved],
                "unresolved": report.unresolved,
                "positions": [[d.symbol, str(d.book), str(d.broker)] for d in report.positions],
            },
        )

    async def seed_positions(self) -> None:
        """Read every connected account's positions into the book."""

        async def one(name: str) -> None:
            broker = self.manager.get(name)
            if not broker.is_connected():
                return
            try:
                async with asyncio.timeout(self.call_timeout):
                    positions = await broker.get_positions()
            except Exception as exc:
                log.warning("positions at %s not read: %s", name, describe_error(exc))
                return
            self.tracker.book.seed(name, positions)

        await asyncio.gather(*(one(name) for name in self.manager.names()))

    def reseed(self, account: str) -> None:
        """Read ``account``'s positions into the book soon: an order there is reported filled
        beyond the fills seen (a broker may report it filled without its executions, some of
        which never come), so the book would miss part of the position until the next
        reconcile. Fills of that order that do arrive later are not counted twice (see
        ``OrderTracker.cover_gaps``)."""
        running = self._reseeds.get(account)
        if running is not None and not running.done():
            return  # it reads again when it finds orders it was not asked about
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("positions at %s are not read again: no event loop", account)
            return
        self._reseeds[account] = loop.create_task(self._reseed(account), name=f"execution-reseed-{account}")

    async def _reseed(self, account: str) -> None:
        tracker = self.tracker
        while True:
            wanted = {
                coid for coid in tracker.gaps if (o := tracker.orders.get(coid)) and o.account == account
            }
            if not wanted:
                return
            try:
                broker = self.manager.get(account)
                async with asyncio.timeout(self.call_timeout):
                    positions = await broker.get_positions()
            except Exception as exc:
                tracker.gaps -= wanted
                log.warning(
                    "positions at %s not read after an order filled beyond its fills: %s; the book "
                    "follows them at the next reconcile",
                    account,
                    describe_error(exc),
                )
                return
            diffs = tracker.book.seed(account, positions)
            tracker.cover_gaps(account, wanted)
            if diffs:
                log.warning("positions at %s taken from the broker: %s", account, diffs)

    # -- the sweep -----------------------------------------------------------------------
    def sweep_unsettled(self) -> None:
        """Ask the brokers again about orders whose submit lost its answer, so that they settle
        without waiting for a reconnect or a restart."""
        if self._sweep_task is not None and not self._sweep_task.done():
            return
        tracker = self.tracker
        orders = tracker.orders
        tracker.unsettled = {
            coid
            for coid in tracker.unsettled
            if (order := orders.get(coid)) is not None and order.status in _LOST
        }
        wanted = tracker.unsettled - tracker.in_flight
        accounts = sorted({account for coid in wanted if (account := orders[coid].account) is not None})
        if accounts:
            self._sweep_task = asyncio.get_running_loop().create_task(
                self._sweep(accounts, wanted), name="execution-sweep"
            )

    async def _sweep(self, accounts: list[str], wanted: set[str]) -> None:
        report = ReconcileReport()
        try:
            await asyncio.gather(*(self.reconcile_account(name, report, only=wanted) for name in accounts))
        except Exception:
            log.exception("asking the brokers about unsettled orders failed")

    async def stop(self) -> None:
        tasks = [task for task in (self._sweep_task, *self._reseeds.values()) if task is not None]
        self._sweep_task = None
        self._reseeds.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _may_still_arrive(order: Order, broker: Broker) -> bool:
    """A broker reached over a network may take an order after its answer was lost (the request
    was still on its way or being processed): "not found" means "never reached" only once the
    broker's ``late_order_window`` has passed since the order was lost."""
    window = broker.late_order_window
    return window > 0 and (utcnow() - order.updated_at).total_seconds() < window
