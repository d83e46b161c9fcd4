"""Every order the execution layer knows, kept up to date from what the brokers report.

Orders are found by client order id and by (account, broker order id); broker snapshots and
fills are merged into them along the order state machine, counted once, journaled, and passed
to subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from decimal import Decimal

from pydantic import ValidationError

from . import journal as jr
from .base import AccountDirectory
from .book import Book
from .events import FillEvent, ManagerEvent, OrderEvent
from .legs import exit_requests, leg_parent_id
from .models import (
    TERMINAL_STATUSES,
    Fill,
    Order,
    OrderClass,
    OrderRequest,
    OrderStatus,
    RejectCode,
    can_transition,
    describe_validation_error,
)
from .pubsub import EventHub, TurnBatch

__all__ = ["OrderCallback", "OrderTracker", "SentIds"]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
_REJECT_CODES = frozenset(code.value for code in RejectCode)

OrderCallback = Callable[[Order], object]


class SentIds:
    """The client ids handed to a broker: those sent by this process, held here, and any other
    the journal knows of, looked up there (``Journal.was_sent``) when asked about."""

    __slots__ = ("_fresh", "_ids", "_journal")

    def __init__(self, journal: jr.Journal | None) -> None:
        self._ids: set[str] = set()
        self._journal = journal
        # The last id the journal did not know: a refused order asks about its id up to three
        # times in one submit, and one look-up answers them all (an id sent since is in _ids).
        self._fresh: str | None = None

    def __contains__(self, client_order_id: object) -> bool:
        if client_order_id in self._ids:
            return True
        journal = self._journal
        if journal is None or not isinstance(client_order_id, str) or client_order_id == self._fresh:
            return False
        if journal.was_sent(client_order_id):
            return True
        self._fresh = client_order_id
        return False

    def includes(self, request: OrderRequest) -> bool:
        """Whether ``request``'s client id was sent. An id the request model generated itself
        (not given by the caller, so not among ``model_fields_set``) is 72 fresh random bits
        that no journal holds: only this process may have sent it, and that is in memory. The
        journal is asked only about ids given from outside (one look-up, a few microseconds)."""
        client_order_id = request.client_order_id
        if client_order_id in self._ids:
            return True
        if "client_order_id" in request.model_fields_set:
            return client_order_id in self
        self._fresh = client_order_id
        return False

    def add(self, client_order_id: str) -> None:
        self._ids.add(client_order_id)

    def __len__(self) -> int:
        """How many were sent or found sent by this process (not the journal's history)."""
        return len(self._ids)


class OrderTracker:
    """Orders by client id and broker id, the book they move, and who hears of changes."""

    def __init__(self, book: Book, journal: jr.Journal | None) -> None:
        self.book = book
        self.journal = journal
        self.orders: dict[str, Order] = {}
        self.by_broker_id: dict[tuple[str, str], Order] = {}
        # Orders whose submit lost its answer (UNKNOWN, or PENDING after a crash), until settled.
        self.unsettled: set[str] = set()
        # Orders whose place_order has not answered yet: reconcile must not judge them.
        self.in_flight: set[str] = set()
        # client order id -> the terms a change of ours is asking its broker for, while the
        # broker has not answered: an echo of those terms is our own change, not the broker's.
        self.amending: dict[str, OrderRequest] = {}
        # client_order_ids handed to a broker: it may hold them, so they are never sent again.
        self.sent = SentIds(journal)
        # Working orders in the journal whose account is not configured here (see ``restore``).
        self.orphaned: set[str] = set()
        self.hub: EventHub[Order] = EventHub("execution")
        # Manager events waiting to be applied (see ``receive``).
        self._inbox: TurnBatch[ManagerEvent] = TurnBatch(self._apply_all)
        self._listening = False
        # Called with an account whose positions moved by more than the fills seen (a final
        # snapshot filled beyond its fills: see ``absorb``), to read them from the broker.
        self.reseed: Callable[[str], object] | None = None
        # Orders whose filled quantity a broker snapshot raised above what their fills add up
        # to, until they are final: then the fills are counted once (see ``absorb``).
        self._filled_by_word: set[str] = set()
        # Orders filled beyond their fills, until their account's positions are read again.
        self.gaps: set[str] = set()
        # client order id -> how much of the order's fills a reading of its account's positions
        # already put in the book: those fills, should they still arrive, do not move it again.
        self.covered: dict[str, Decimal] = {}

    def restore(self, accounts: Collection[str]) -> None:
        """Take up the journal's working orders, and remember every client id it shows was
        handed to a broker (an intent the final kill-switch check did not refuse), through the
        journal's indexes: an id a broker has seen is never sent again, restart or not.

        A working order of an account not among ``accounts`` is orphaned: known and shown, but
        no account here can reach it, so it counts nowhere as working and is neither settled
        nor cancelled (see ``orphan_note``)."""
        journal = self.journal
        if journal is None:
            return
        for order in journal.open_orders():
            coid = order.client_order_id
            if coid in self.orders:
                continue
            self.sent.add(coid)
            if order.account not in accounts:
                self.orphaned.add(coid)
                self.register(order)
                continue
            self.remember(order)
            if order.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING):
                self.unsettled.add(coid)
        # The ids sent before this process are not loaded: ``sent`` asks the journal about an
        # id it has not seen, through an index, so a restart costs what is open, not history.

    # -- finding and remembering ---------------------------------------------------------
    def get(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def orphan_note(self, order: Order) -> str | None:
        """What to do about an orphaned order (see ``restore``); None for any other order."""
        if order.client_order_id not in self.orphaned:
            return None
        return (
            f"orphaned: account {order.account!r} is not in this configuration, so the order "
            f"cannot be followed or cancelled from here; it may still be working at the broker. "
            f"Add the account back to cancel it there, or it belongs to another configuration "
            f"that shares this journal"
        )

    def find(self, account: str, broker_order_id: str) -> Order | None:
        return self.by_broker_id.get((account, broker_order_id))

    def register(self, order: Order) -> None:
        """Index ``order`` by its ids; a resubmitted client id moves to the end."""
        coid = order.client_order_id
        known = self.orders.get(coid)
        if known is not order:
            if known is not None:
                del self.orders[coid]
            self.orders[coid] = order
        if order.broker_order_id is not None and order.account is not None:
            self.by_broker_id[(order.account, order.broker_order_id)] = order

    def remember(self, order: Order) -> None:
        """Index ``order`` and count it as working or not in the book, after any change."""
        self.register(order)
        self.book.track(order)

    def notify(self, order: Order) -> None:
        self.hub.publish(order)

    # -- outcomes ------------------------------------------------------------------------
    def refuse(self, order: Order, code: str, reason: str, *, journal_kind: str | None = None) -> Order:
        """``order`` REJECTED with ``code`` and a sentence, known and told to subscribers (and
        journaled as ``journal_kind`` when its intent is already in the journal)."""
        order.reject(code.value if isinstance(code, RejectCode) else code, reason)
        coid = order.client_order_id
        # A refused resend of an id already in flight must not displace the original.
        if coid not in self.sent or self.get(coid) is order:
            self.remember(order)
        if journal_kind is not None:
            self.journal_order(journal_kind, order)
        self.notify(order)
        return order

    def lose(self, order: Order, detail: str) -> Order:
        """``order`` UNKNOWN: the broker may or may not have it. Never retried; the sweep asks
        the broker by client id until it is settled."""
        order.reject_reason = (
            f"{detail}; the order may or may not be at the broker - it is UNKNOWN "
            f"until reconciled by client id, and is not retried"
        )
        order.transition(OrderStatus.UNKNOWN)
        self.unsettled.add(order.client_order_id)
        self.remember(order)
        self.journal_order(jr.UNKNOWN, order)
        log.warning("order %s at %s is UNKNOWN: %s", order.client_order_id, order.account, detail)
        self.notify(order)
        return order

    # -- journal -------------------------------------------------------------------------
    def journal_order(
        self, kind: str, order: Order, fills: list[Fill] | None = None, *, with_request: bool = False
    ) -> None:
        """What became of an order whose intent is committed: these rows commit by the end of
        the loop's turn or with the next intent, whichever is first (see ``brokers.journal``).
        ``with_request``: the order was modified at its broker; the row carries the new request."""
        if self.journal is None:
            return
        try:
            self.journal.record_order(kind, order, fills=fills, soon=True, with_request=with_request)
        except Exception:
            log.exception("could not journal %s for order %s", kind, order.client_order_id)

    def journal_refusal(self, order: Order, *, resent: bool) -> None:
        """An order refused before its intent was journaled (see ``Journal.record_refusal``)."""
        if self.journal is None:
            return
        try:
            self.journal.record_refusal(order, resent=resent)
        except Exception:
            log.exception("could not journal the refusal of order %s", order.client_order_id)

    def record(
        self,
        kind: str,
        client_order_id: str | None,
        account: str | None,
        data: dict[str, object],
        *,
        soon: bool = False,
    ) -> None:
        """Journal an event that is not one order's state; a journal fault is logged, not raised.
        ``soon``: the row may wait for the end of the loop's turn (see ``brokers.journal``)."""
        if self.journal is None:
            return
        try:
            self.journal.record(kind, client_order_id=client_order_id, account=account, data=data, soon=soon)
        except Exception:
            log.exception("could not journal %s", kind)

    # -- what brokers say ----------------------------------------------------------------
    def listen(self, manager: AccountDirectory) -> None:
        """Apply the manager's events from now on. Call on the event loop."""
        self._listening = True
        manager.add_listener(self.receive)

    def stop_listening(self, manager: AccountDirectory) -> bool:
        """Apply nothing more, not even what has arrived; False if not listening."""
        if not self._listening:
            return False
        self._listening = False
        self._inbox.discard()
        manager.remove_listener(self.receive)
        return True

    def receive(self, event: ManagerEvent) -> None:
        """The manager's listener: events are applied at the end of this turn of the loop, in
        arrival order, all that arrived in the turn at once; the same turn a queue and a task
        would take, without a queue operation and a task switch per event."""
        if self._listening:
            self._inbox.add(event)

    def _apply_all(self, events: list[ManagerEvent]) -> None:
        for event in events:
            if not self._listening:
                return  # stopped by one of these events: the rest are not ours to apply
            try:
                self.apply_event(event)
            except Exception:
                log.exception("could not apply broker event %r", type(event).__name__)

    def apply_event(self, event: ManagerEvent) -> None:
        """Apply one manager event: an order update or a fill (other kinds are not ours)."""
        match event:
            case OrderEvent(account=account, order=snapshot):
                self.on_order(account, snapshot)
            case FillEvent(account=account, fill=fill):
                self.on_fill(account, fill)
            case _:
                pass

    def absorb(self, order: Order, snapshot: Order, kind: str, *, force: bool = False) -> bool:
        """Merge a broker's view of an order into ours; journal and notify if anything changed."""
        status = snapshot.status
        current = order.status
        modified = _modification(order.request, snapshot.request)
        if modified is not None:
            asked = self.amending.get(order.client_order_id)
            if asked is not None and _terms(asked) == _terms(snapshot.request):
                # The broker echoing the change we are making, ahead of its answer to us: the
                # change is taken up (and journaled) once, when that answer comes.
                modified = None
        if (
            not force
            and (status is current or not can_transition(current, status))
            and snapshot.filled_quantity <= order.filled_quantity
            and len(snapshot.fills) <= len(order.fills)
            and snapshot.broker_order_id in (None, order.broker_order_id)
            and modified is None
        ):
            return False  # old news: the usual case for updates that trail the broker's answer
        changed = False
        if modified is not None:
            # Changed at the broker (a quantity or price edited in the broker's own app): its
            # word is the order now, and the book's working quantity follows it.
            try:
                order.request = OrderRequest.model_validate({**order.request.__dict__, **modified})
            except ValidationError as exc:
                log.error(
                    "order %s at %s was modified at the broker into something that cannot be "
                    "followed (%s); its terms here are the ones sent",
                    order.client_order_id,
                    order.account,
                    describe_validation_error(exc),
                )
            else:
                log.warning(
                    "order %s at %s was modified at the broker: %s",
                    order.client_order_id,
                    order.account,
                    ", ".join(f"{name} {value}" for name, value in modified.items()),
                )
                changed = True
        if snapshot.broker_order_id and snapshot.broker_order_id != order.broker_order_id:
            order.broker_order_id = snapshot.broker_order_id
            changed = True
        new_fills = [fill for fill in snapshot.fills if self._take_fill(order, fill)]
        if new_fills:
            self._count_fills(order)
        if snapshot.filled_quantity > order.filled_quantity:
            # More filled than the fills seen add up to (see ``_ask_reseed``).
            order.filled_quantity = snapshot.filled_quantity
            if snapshot.avg_fill_price is not None:
                order.avg_fill_price = snapshot.avg_fill_price
            self._filled_by_word.add(order.client_order_id)
            changed = True
        if status is not order.status and can_transition(order.status, status):
            if status is OrderStatus.REJECTED:
                code = snapshot.reject_code
                order.reject_code = code if code in _REJECT_CODES else RejectCode.BROKER_REJECTED.value
                order.reject_reason = snapshot.reject_reason or f"{order.account} refused the order"
            elif status is OrderStatus.UNKNOWN:
                # The broker's own word for the order could not be read: ask it again, as for a
                # lost answer.
                order.reject_reason = (
                    f"{order.account} reported a status that cannot be read; the order "
                    f"is UNKNOWN until asked again by client id"
                )
                self.unsettled.add(order.client_order_id)
            order.transition(status, at=snapshot.updated_at)
            changed = True
        elif new_fills:
            self._status_from_fills(order)
        changed = changed or bool(new_fills)
        if (
            order.reject_reason is not None
            and order.reject_code is None
            and order.status is not OrderStatus.UNKNOWN
        ):
            order.reject_reason = None  # the UNKNOWN explanation no longer applies
        if order.status.is_terminal and order.client_order_id in self._filled_by_word:
            self._filled_by_word.discard(order.client_order_id)
            if self._beyond_fills(order):
                self._ask_reseed(order)
        if changed or force:
            self.remember(order)
            self.journal_order(kind, order, fills=new_fills, with_request=modified is not None)
            self.notify(order)
        return changed

    @staticmethod
    def _beyond_fills(order: Order) -> bool:
        """Whether the order is filled beyond the fills seen: a broker may report an order
        filled without its executions (some never come, for one filled on an earlier day)."""
        filled = order.filled_quantity
        return filled > 0 and filled > sum((f.quantity for f in order.fills), _ZERO)

    def _ask_reseed(self, order: Order) -> None:
        coid = order.client_order_id
        if coid in self.gaps or coid in self.covered or self.reseed is None or order.account is None:
            return
        self.gaps.add(coid)
        self.reseed(order.account)

    def cover_gaps(self, account: str, coids: set[str]) -> None:
        """``account``'s positions were just read into the book, after the orders ``coids``
        were found filled beyond their fills: what those fills lack is in the book now."""
        for coid in coids:
            self.gaps.discard(coid)
            order = self.orders.get(coid)
            if order is None or order.account != account:
                continue
            missing = order.filled_quantity - sum((f.quantity for f in order.fills), _ZERO)
            if missing > 0:
                self.covered[coid] = missing

    def on_fill(self, account: str, fill: Fill) -> None:
        order = None
        if fill.client_order_id is not None:
            order = self.orders.get(fill.client_order_id)
        if order is None and fill.broker_order_id is not None:
            order = self.by_broker_id.get((account, fill.broker_order_id))
        if order is None and fill.client_order_id is not None:
            order = self._adopt_leg(account, fill.client_order_id, None, fill.broker_order_id)
        if order is None:
            # Placed elsewhere (the broker's own app): it still moves the position.
            if self.book.add_fill(account, fill):
                self.record(jr.FILL, None, account, {"foreign_fill": fill})
            return
        if not self._take_fill(order, fill):
            return
        self._count_fills(order)
        self._status_from_fills(order)
        self.remember(order)
        self.journal_order(jr.FILL, order, fills=[fill])
        self.notify(order)

    def on_order(self, account: str, snapshot: Order) -> None:
        order = self.orders.get(snapshot.client_order_id)
        if order is None and snapshot.broker_order_id is not None:
            order = self.by_broker_id.get((account, snapshot.broker_order_id))
        if order is None:
            order = self._adopt_leg(
                account, snapshot.client_order_id, snapshot.request, snapshot.broker_order_id
            )
        if order is None or order.account != account:
            return
        if (
            order.status in TERMINAL_STATUSES
            and snapshot.filled_quantity <= order.filled_quantity
            and len(snapshot.fills) <= len(order.fills)
        ):
            return  # trailing news of an order already settled (the common case after an ack)
        self.absorb(order, snapshot, jr.UPDATE)

    def _adopt_leg(
        self, account: str, coid: str, request: OrderRequest | None, broker_order_id: str | None
    ) -> Order | None:
        """An exit its broker sent for an order of ours (a bracket's take-profit, an OCO
        pair's stop-loss), first seen in an update: known, journaled as an intent of its own
        (so a restart finds it and, by its id, its parent) and followed like any order. None
        for anything that is not such a leg."""
        parent_id = leg_parent_id(coid)
        if parent_id is None:
            return None
        parent = self.orders.get(parent_id)
        if parent is None or parent.account != account or not parent.request.has_legs:
            return None
        if request is None:
            oco = parent.request.legs is OrderClass.OCO
            quantity = None if oco or not parent.filled_quantity else parent.filled_quantity
            found = [leg for leg in exit_requests(parent.request, quantity) if leg.client_order_id == coid]
            if not found:
                return None
            request = found[0]
        leg = Order.for_request(request, account, broker_order_id=broker_order_id)
        self.sent.add(coid)
        self.remember(leg)
        if self.journal is not None:
            try:
                self.journal.record_intent(leg)
            except Exception:
                log.exception("could not journal exit %s of order %s", coid, parent_id)
        log.info("order %s at %s: exit %s is working at the broker", parent_id, account, coid)
        return leg

    def _take_fill(self, order: Order, fill: Fill) -> bool:
        """Record a fill on the order and the book, once."""
        if not order.take_fill(fill):
            return False
        account = order.account or fill.account
        coid = order.client_order_id
        covered = self.covered.get(coid)
        if covered is None:
            self.book.add_fill(account, fill)
            return True
        # Already in the book through a reading of the account's positions (see ``cover_gaps``):
        # only what goes beyond that moves it.
        if fill.quantity <= covered:
            self.covered[coid] = covered - fill.quantity
            if covered == fill.quantity:
                del self.covered[coid]
            return True
        del self.covered[coid]
        self.book.add_fill(account, fill.model_copy(update={"quantity": fill.quantity - covered}))
        return True

    @staticmethod
    def _count_fills(order: Order) -> None:
        """Filled quantity and average price as the fills add up, but never below what a broker
        snapshot already reported. Run once for a batch of new fills (a snapshot may bring
        many), not once for each fill in it."""
        fills = order.fills
        from_fills = sum((f.quantity for f in fills), _ZERO)
        if from_fills > order.filled_quantity:
            order.filled_quantity = from_fills
            order.avg_fill_price = sum((f.quantity * f.price for f in fills), _ZERO) / from_fills

    @staticmethod
    def _status_from_fills(order: Order) -> None:
        if order.status.is_terminal:
            return
        quantity = order.quantity
        # A notional order is FILLED only when its broker says so.
        done = quantity is not None and order.filled_quantity >= quantity
        target = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        if can_transition(order.status, target):
            order.transition(target)


# What a broker may change on an order after it was placed (in its own app, say).
_MODIFIABLE = ("quantity", "order_type", "limit_price", "stop_price", "trail_percent", "trail_amount")


def _terms(request: OrderRequest) -> tuple[object, ...]:
    return (
        request.quantity,
        request.order_type,
        request.limit_price,
        request.stop_price,
        request.trail_percent,
        request.trail_amount,
    )


def _modification(ours: OrderRequest, theirs: OrderRequest) -> dict[str, object] | None:
    """The terms a broker's snapshot changed on the request we sent, or None."""
    if theirs is ours:
        return None
    before, after = _terms(ours), _terms(theirs)
    if before == after:
        return None
    return {name: new for name, old, new in zip(_MODIFIABLE, before, after, strict=True) if new != old}
