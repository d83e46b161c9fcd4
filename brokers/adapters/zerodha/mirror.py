"""Our copy of every order at Kite, updated from its order book and trade book.

Kite has no push channel for order updates: the order book is read on every poll, and the trade
book only when an order's filled quantity runs ahead of the trades already seen. Each fill is
reported once, then the orders that changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from ...base import BrokerEvent
from ...credentials import redact
from ...errors import BrokerAPIError
from ...models import Fill, Order, OrderRequest, OrderStatus
from .account import UNREADABLE, unreadable
from .session import KiteSession
from .wire import FUNDS, as_modified, dec, fill_from_trade, kite_time, map_status, request_from_order

log = logging.getLogger(__name__)


class BookWatcher(Protocol):
    """Told of each order book read before the mirror takes it in: the GTT triggers are read
    then, so an order a trigger placed is known as that trigger's leg before it is seen here."""

    async def before_book(self, book: list[Any], *, emit: bool) -> None: ...


@dataclass
class Tracked:
    """One order at Kite, with what a cancel must name besides its id."""

    order: Order
    variety: str
    parent_order_id: str | None
    # Placed by Kite for a GTT leg: followed as that leg (its id and terms), not as an order of
    # its own. Kite places a leg as a LIMIT at the leg's price, which is no change of ours.
    gtt_leg: bool = False


class OrderMirror:
    """Every order of one account at Kite by Kite's order id; ``emit`` passes on each Order
    snapshot and Fill. ``clock`` is asked for the time on each use."""

    def __init__(
        self,
        account: str,
        session: KiteSession,
        *,
        variety: str,
        emit: Callable[[BrokerEvent], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._account = account
        self._session = session
        self._variety = variety
        self._emit = emit
        self._clock = clock
        self._sync_lock = asyncio.Lock()
        self._baseline_done = False
        self._requests: dict[str, OrderRequest] = {}  # by Kite tag
        self._tracked: dict[str, Tracked] = {}  # by Kite order_id
        self._seen_fills: set[str] = set()
        self._traded: dict[str, Decimal] = {}  # order_id -> quantity of the trades seen
        self._watcher: BookWatcher | None = None

    def get(self, order_id: str) -> Tracked | None:
        return self._tracked.get(order_id)

    def require(self, order_id: str) -> Tracked:
        """An order known to be tracked (KeyError if it is not)."""
        return self._tracked[order_id]

    def expect(self, tag: str, request: OrderRequest) -> None:
        """Known before the order is sent, so a poll that sees it first still ties it to the request."""
        self._requests[tag] = request

    def adopt(self, tag: str, request: OrderRequest) -> None:
        """A request found at Kite by its tag, kept unless one is already known for it."""
        self._requests.setdefault(tag, request)

    def placed(self, order_id: str, request: OrderRequest) -> Tracked:
        """An order Kite accepted, tracked as submitted unless a poll saw it first."""
        tracked = self._tracked.get(order_id)
        if tracked is None:
            order = Order(request=request, account=self._account, broker_order_id=order_id)
            order.transition(OrderStatus.SUBMITTED)
            tracked = self._tracked[order_id] = Tracked(order, self._variety, None)
            self._emit(order.snapshot())
        return tracked

    def claim(self, order_id: str, leg: Order) -> Order:
        """The order Kite placed for a triggered GTT leg, followed from now on as ``leg``: its
        status and fills are the leg's, under the leg's broker order id."""
        tracked = self._tracked.get(order_id)
        if tracked is None:
            self._tracked[order_id] = Tracked(leg, self._variety, None, gtt_leg=True)
        elif tracked.order is not leg:
            tracked.order = leg
            tracked.gtt_leg = True
        return leg

    def watch_book(self, watcher: BookWatcher | None) -> None:
        """``watcher`` sees each order book read before it is taken in (see ``BookWatcher``)."""
        self._watcher = watcher

    # -- one order payload ----------------------------------------------------------------
    def _request_from(self, data: dict[str, Any], client_order_id: str | None) -> OrderRequest:
        tag = data.get("tag") or ""
        known = self._requests.get(tag) if tag else None
        if known is not None and client_order_id in (None, known.client_order_id):
            return known
        return request_from_order(data, self._account, client_order_id)

    def _absorb(self, data: dict[str, Any], client_order_id: str | None = None) -> tuple[Order, bool]:
        """Fold one Kite order payload into our copy. Returns the order and whether it changed."""
        order_id = str(data["order_id"])
        tracked = self._tracked.get(order_id)
        created = tracked is None
        if tracked is None:
            order = Order(
                request=self._request_from(data, client_order_id),
                account=self._account,
                broker_order_id=order_id,
                created_at=kite_time(data.get("order_timestamp")) or self._clock(),
            )
            tracked = self._tracked[order_id] = Tracked(order, self._variety, None)
        order = tracked.order
        tracked.variety = str(data.get("variety") or tracked.variety)
        tracked.parent_order_id = data.get("parent_order_id") or None
        before = (order.status, order.filled_quantity, order.avg_fill_price, order.reject_reason)
        modified = None if tracked.gtt_leg else as_modified(order.request, data)
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

    def absorb_safely(self, data: Any, *, emit: bool) -> Order | None:
        """Fold in one order of a listing, where one unreadable order must not stop the rest."""
        try:
            order, changed = self._absorb(data)
        except UNREADABLE as exc:
            log.warning(
                "%s: skipped an order Kite sent that could not be read: %s", self._account, unreadable(exc)
            )
            return None
        if changed and emit:
            self._emit(order.snapshot())
        return order

    def absorb_and_emit(self, data: dict[str, Any], client_order_id: str | None = None) -> Order:
        """Fold in one order asked for: what cannot be read is an API error."""
        try:
            order, changed = self._absorb(data, client_order_id)
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite sent an order that could not be read: {unreadable(exc)}", broker=self._account
            ) from None
        if changed:
            self._emit(order.snapshot())
        return order

    def fill_from(self, data: dict[str, Any]) -> Fill | None:
        """One trade of the trade book as our Fill; None (and a warning) if it cannot be read."""
        try:
            tracked = self._tracked.get(str(data["order_id"]))
            order = tracked.order if tracked else None
            fill = fill_from_trade(
                data,
                self._account,
                order.symbol if order else None,
                order.client_order_id if order else None,
                self._clock(),
            )
            if tracked is not None and tracked.gtt_leg:
                fill = fill.model_copy(update={"broker_order_id": tracked.order.broker_order_id})
            return fill
        except UNREADABLE as exc:
            log.warning(
                "%s: skipped a trade Kite sent that could not be read: %s", self._account, unreadable(exc)
            )
            return None

    # -- the whole book -------------------------------------------------------------------
    async def catch_up(self) -> None:
        """On connecting: the first read of the books is the baseline and reports nothing; later
        ones (a reconnect) report whatever happened while we were away."""
        await self.sync(emit=self._baseline_done, force_trades=True)
        self._baseline_done = True

    async def sync(self, *, emit: bool, force_trades: bool = False) -> None:
        """Read the order book (and the trade book when fills are owed) and report what changed:
        fills first, then the orders they belong to. A fill is reported once per adapter."""
        session = self._session
        async with self._sync_lock:
            changed: dict[str, Order] = {}
            book = await session.call("orders")
            if not isinstance(book, list):
                # Not a book at all: nothing in it can be trusted, so the poll fails (DEGRADED).
                raise BrokerAPIError(
                    "Kite sent an order book that is not a list of orders", broker=self._account
                )
            if self._watcher is not None:
                await self._watcher.before_book(book, emit=emit)
            for data in book:
                try:
                    order, did = self._absorb(data)
                except UNREADABLE as exc:
                    log.warning(
                        "%s: skipped an order Kite sent that could not be read: %s",
                        self._account,
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
                trades = await session.call("trades")
                if not isinstance(trades, list):
                    raise BrokerAPIError(
                        "Kite sent a trade book that is not a list of trades", broker=self._account
                    )
                for data in trades:
                    fill = self.fill_from(data)
                    if fill is None or fill.fill_id in self._seen_fills:
                        continue
                    self._seen_fills.add(fill.fill_id)
                    oid = str(data["order_id"])
                    self._traded[oid] = self._traded.get(oid, Decimal(0)) + fill.quantity
                    fills.append(fill)
            session.last_refresh = self._clock()
            if emit:
                for fill in fills:
                    self._emit(fill)
                for order in changed.values():
                    self._emit(order.snapshot())
