"""Exits held by Kite: an OCO pair as one two-leg GTT trigger, and every trigger at the account
followed as orders (see ``gtt`` for how legs are named and read).

An OCO order is its take-profit (the order itself, a LIMIT) and its stop-loss (``<id>-SL``, a
STOP): here they are the two legs of one trigger. Kite places a leg as a LIMIT order at the
leg's price when the last price crosses the leg's trigger value, and the trigger then ends, so
the other leg can never fire: one cancels the other, at Kite, whether or not this program runs.
Triggers are read with the order book (``before_book``) while any leg is working, and whenever
a leg is asked about; what Kite placed for a leg is followed in the ``mirror`` as that leg.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...base import BrokerEvent
from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...legs import exit_requests
from ...models import Order, OrderRequest, OrderStatus, Position, Side, TimeInForce
from .account import UNREADABLE, unreadable
from .gtt import (
    GTT_OCO,
    GttLeg,
    GttView,
    leg_broker_id,
    leg_states,
    may_fire,
    oco_problem,
    parse_leg_broker_id,
    read_gtt,
    requests_for,
    stop_leg_index,
    wire_price,
)
from .mirror import OrderMirror
from .session import KiteSession
from .wire import CASH_EXCHANGES, dec

log = logging.getLogger(__name__)

PositionReader = Callable[[], Awaitable[list[Position]]]
# Seconds within which asking about unknown client ids tells the legs only once.
_TELL_EVERY = 5.0


@dataclass
class Held:
    """One trigger and its legs, index for index."""

    view: GttView
    legs: list[Order]
    product: str


@dataclass(frozen=True)
class Attempt:
    """An OCO placement whose answer was lost: what to look for among the triggers."""

    request: OrderRequest
    exchange: str
    tradingsymbol: str
    triggers: tuple[Decimal, Decimal]
    product: str


class ExitDesk:
    """The GTT triggers of one account, sent through ``session``; each leg's snapshots go to
    ``emit``, and what a trigger placed is followed in ``mirror``."""

    def __init__(
        self,
        account: str,
        session: KiteSession,
        mirror: OrderMirror,
        *,
        emit: Callable[[BrokerEvent], None],
        positions: PositionReader,
    ) -> None:
        self._account = account
        self._session = session
        self._mirror = mirror
        self._emit = emit
        self._positions = positions
        self._held: dict[int, Held] = {}
        self._by_client_id: dict[str, str] = {}  # client order id -> leg broker order id
        self._attempts: dict[str, Attempt] = {}
        self._ours: set[int] = set()  # triggers placed for an OCO by this process
        self._read_once = False
        self._told_at = -_TELL_EVERY

    # -- placing --------------------------------------------------------------------------
    async def place_oco(
        self, request: OrderRequest, *, exchange: str, tradingsymbol: str, product: str
    ) -> Order:
        """One two-leg trigger for an OCO pair: its stop-loss and take-profit, each a LIMIT
        order for the quantity at its own trigger value. Refused before anything is sent when
        Kite would refuse it: triggers on the wrong side of the last price, a quantity beyond
        the position the exits close."""
        account = self._account
        take_profit, stop_loss = request.take_profit, request.stop_loss
        if take_profit is None or stop_loss is None:
            raise OrderRejectedError("an OCO order needs both take_profit and stop_loss", broker=account)
        quantity = request.units
        side = request.side
        if request.time_in_force is not TimeInForce.DAY:
            raise OrderRejectedError(
                f"time_in_force {request.time_in_force.value}: Kite holds an OCO as a GTT until it "
                "triggers, is deleted or expires (a year on), so it takes DAY only",
                broker=account,
                code="INVALID_ORDER",
            )
        last = await self._last_price(exchange, tradingsymbol)
        problem = oco_problem(side, take_profit, stop_loss, last)
        if problem is not None:
            raise OrderRejectedError(problem, broker=account, code="INVALID_ORDER")
        await self._check_held(request, exchange, tradingsymbol)
        stop = stop_leg_index(side)
        triggers = (stop_loss, take_profit) if stop == 0 else (take_profit, stop_loss)
        orders = [
            {
                "transaction_type": side.value,
                "quantity": int(quantity),
                "order_type": "LIMIT",
                "product": product,
                "price": wire_price(price),
            }
            for price in triggers
        ]
        if not self._session.is_connected():
            raise BrokerConnectionError("not connected to Kite; the OCO was not sent", broker=account)
        attempt = Attempt(request, exchange, tradingsymbol, triggers, product)
        self._attempts[request.client_order_id] = attempt
        try:
            answer = await self._session.call(
                "place_gtt",
                op="place",
                trigger_type=GTT_OCO,
                tradingsymbol=tradingsymbol,
                exchange=exchange,
                trigger_values=[wire_price(t) for t in triggers],
                last_price=wire_price(last),
                orders=orders,
            )
        except (BrokerTimeoutError, BrokerConnectionError):
            # The trigger may have been made all the same: it carries no tag of ours, so it is
            # looked for by its terms before the outcome is called unknown.
            found = await self._find_attempt(request.client_order_id)
            if found is None:
                raise
            return found
        try:
            trigger_id = int(answer["trigger_id"])
        except (TypeError, KeyError, ValueError):
            raise BrokerAPIError(
                f"Kite answered the OCO without a trigger id ({answer!r})", broker=account
            ) from None
        view = GttView(
            trigger_id=trigger_id,
            kind=GTT_OCO,
            status="active",
            exchange=exchange,
            tradingsymbol=tradingsymbol,
            trigger_values=triggers,
            last_price=last,
            legs=tuple(GttLeg(side, quantity, price, product, None, None) for price in triggers),
        )
        return self._bind(view, attempt)

    def _bind(self, view: GttView, attempt: Attempt) -> Order:
        """The pair ``attempt`` asked for, as the legs of trigger ``view``: the take-profit is
        returned, the stop-loss is told (the execution layer takes it up as the order's leg)."""
        request = attempt.request
        self._attempts.pop(request.client_order_id, None)
        stop = stop_leg_index(request.side)
        stop_request = exit_requests(request)[0]
        requests = [stop_request, request] if stop == 0 else [request, stop_request]
        legs = []
        for index, leg_request in enumerate(requests):
            leg = Order.for_request(
                leg_request, self._account, broker_order_id=leg_broker_id(view.trigger_id, index)
            )
            leg.transition(OrderStatus.ACCEPTED)
            legs.append(leg)
            self._by_client_id[leg_request.client_order_id] = str(leg.broker_order_id)
        self._held[view.trigger_id] = Held(view, legs, attempt.product)
        self._ours.add(view.trigger_id)
        self._apply(view, emit=False)
        log.info(
            "%s: OCO %s held by Kite as GTT %s (stop-loss %s, take-profit %s)",
            self._account,
            request.client_order_id,
            view.trigger_id,
            request.stop_loss,
            request.take_profit,
        )
        self._emit(legs[stop].snapshot())
        return legs[1 - stop].snapshot()

    async def _find_attempt(self, client_order_id: str) -> Order | None:
        attempt = self._attempts.get(client_order_id)
        if attempt is None:
            return None
        try:
            views = await self._read_all()
        except BrokerError:
            return None
        known = self._ours
        quantity = attempt.request.units
        for view in views:
            if (
                view.trigger_id not in known
                and view.kind == GTT_OCO
                and (view.exchange, view.tradingsymbol) == (attempt.exchange, attempt.tradingsymbol)
                and view.trigger_values == attempt.triggers
                and all(leg.quantity == quantity and leg.side is attempt.request.side for leg in view.legs)
            ):
                order = self._bind(view, attempt)
                self._apply(view, emit=True)
                return self._leg(str(order.broker_order_id)).snapshot()
        return None

    async def _last_price(self, exchange: str, tradingsymbol: str) -> Decimal:
        key = f"{exchange}:{tradingsymbol}"
        try:
            quote = (await self._session.read("ltp", key)).get(key)
            price = dec(quote["last_price"]) if quote else Decimal(0)
        except (KeyError, TypeError, ValueError, AttributeError):
            price = Decimal(0)
        except BrokerError as exc:
            # Nothing has been sent: a definite refusal, not an outcome to look for later.
            raise OrderRejectedError(
                f"Kite's last price for {key} could not be read ({exc}); the GTT was not sent",
                broker=self._account,
            ) from None
        if price <= 0:
            raise OrderRejectedError(
                f"Kite gave no last price for {key}; a GTT needs it, so the OCO was not sent",
                broker=self._account,
            )
        return price

    async def _check_held(
        self, request: OrderRequest, exchange: str, tradingsymbol: str, *, excluding: int | None = None
    ) -> None:
        """An OCO closes a position already held: its quantity must not be more than that, less
        what the triggers already waiting for it (but trigger ``excluding``) would close."""
        try:
            positions = await self._positions()
        except BrokerError as exc:
            raise OrderRejectedError(
                f"the position in {tradingsymbol} could not be read ({exc}), so the OCO was not sent",
                broker=self._account,
            ) from None
        cash = exchange in CASH_EXCHANGES
        held = sum(
            (
                p.quantity
                for p in positions
                if p.symbol == tradingsymbol
                and (p.exchange == exchange or (cash and p.exchange in CASH_EXCHANGES))
            ),
            Decimal(0),
        )
        closable = held if request.side is Side.SELL else -held
        quantity = request.units
        if closable <= 0:
            raise OrderRejectedError(
                f"quantity {quantity}: there is no {'long' if request.side is Side.SELL else 'short'} "
                f"position in {tradingsymbol} at {self._account} for an OCO to {request.side.value.lower()}",
                broker=self._account,
                code="INVALID_ORDER",
            )
        if quantity > closable:
            raise OrderRejectedError(
                f"quantity {quantity} is more than the {closable} of {tradingsymbol} held at "
                f"{self._account}; an OCO's exits may close at most the position",
                broker=self._account,
                code="INVALID_ORDER",
            )
        # Exits already waiting at Kite for the same position: together they may close no more
        # than it, or the second to fire would sell what is no longer held.
        try:
            await self.refresh(emit=True)
        except BrokerError as exc:
            raise OrderRejectedError(
                f"the GTT triggers already at Kite could not be read ({exc}), so the OCO was not sent",
                broker=self._account,
            ) from None
        covered = sum(
            (
                max((leg.quantity for leg in held.view.legs if leg.side is request.side), default=Decimal(0))
                for held in self._held.values()
                if may_fire(held.view.status)
                and held.view.trigger_id != excluding
                and held.view.tradingsymbol == tradingsymbol
                and (held.view.exchange == exchange or (cash and held.view.exchange in CASH_EXCHANGES))
            ),
            Decimal(0),
        )
        if covered and quantity > closable - covered:
            raise OrderRejectedError(
                f"quantity {quantity} is more than the {max(closable - covered, Decimal(0))} of "
                f"{tradingsymbol} not already covered by GTT exits at {self._account} ({covered} of "
                f"the {closable} held are); change or delete those first",
                broker=self._account,
                code="INVALID_ORDER",
            )

    # -- changing and deleting -------------------------------------------------------------
    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        """A new price or quantity for one leg: Kite's modify_gtt with the trigger's terms, that
        leg's changed (a take-profit's ``limit_price``, a stop-loss's ``stop_price``)."""
        held, index = await self._current(broker_order_id)
        leg = held.legs[index]
        if held.view.status != "active":
            raise OrderRejectedError(
                f"order {broker_order_id} is {leg.status.value}: its GTT is {held.view.status} and can "
                "no longer be changed",
                broker=self._account,
            )
        if len(held.view.legs) != 2 or len(held.legs) != 2:
            raise OrderRejectedError(
                f"GTT {held.view.trigger_id} is not an OCO pair; change it in Kite", broker=self._account
            )
        price = request.limit_price if request.limit_price is not None else request.stop_price
        if price is None:
            raise OrderRejectedError("a GTT leg needs a limit_price or a stop_price", broker=self._account)
        triggers = list(held.view.trigger_values)
        triggers[index] = price
        quantities = [leg.quantity for leg in held.view.legs]
        quantities[index] = request.units
        side = held.view.legs[0].side
        stop = stop_leg_index(side)
        view = held.view
        if request.units > held.view.legs[index].quantity:
            await self._check_held(request, view.exchange, view.tradingsymbol, excluding=view.trigger_id)
        last = await self._last_price(view.exchange, view.tradingsymbol)
        problem = oco_problem(side, triggers[1 - stop], triggers[stop], last)
        if problem is not None:
            raise OrderRejectedError(problem, broker=self._account, code="INVALID_ORDER")
        orders = [
            {
                "transaction_type": side.value,
                "quantity": int(q),
                "order_type": "LIMIT",
                "product": held.product or view.legs[i].product,
                "price": wire_price(t),
            }
            for i, (q, t) in enumerate(zip(quantities, triggers, strict=True))
        ]
        if not self._session.is_connected():
            raise BrokerConnectionError(
                "not connected to Kite; the change was not sent", broker=self._account
            )
        await self._session.call(
            "modify_gtt",
            view.trigger_id,
            GTT_OCO,
            view.tradingsymbol,
            view.exchange,
            [wire_price(t) for t in triggers],
            wire_price(last),
            orders,
            op="modify",
        )
        leg.request = request
        await self._refresh_one(view.trigger_id, emit=True)
        return leg.snapshot()

    async def delete(self, broker_order_id: str) -> Order:
        """Delete the trigger a leg belongs to: both legs of an OCO pair end (one cancels the
        other). A leg whose trigger has already ended is answered as it stands."""
        held, index = await self._current(broker_order_id)
        if not may_fire(held.view.status):
            return held.legs[index].snapshot()
        trigger_id = held.view.trigger_id
        try:
            await self._session.call("delete_gtt", trigger_id, op="cancel")
        except (BrokerAPIError, OrderNotFoundError):
            held, index = await self._current(broker_order_id)
            if not may_fire(held.view.status):  # triggered or gone before the delete arrived
                return held.legs[index].snapshot()
            raise
        self._mark_deleted(held)
        return held.legs[index].snapshot()

    def _mark_deleted(self, held: Held) -> None:
        view = held.view
        held.view = GttView(
            view.trigger_id,
            view.kind,
            "deleted",
            view.exchange,
            view.tradingsymbol,
            view.trigger_values,
            view.last_price,
            view.legs,
        )
        for leg in held.legs:
            if leg.transition(OrderStatus.CANCELLED):
                self._emit(leg.snapshot())

    async def delete_all(self) -> list[str]:
        """Delete every trigger at the account that may still fire, as the bulk cancel of orders
        takes every working order: a halt leaves nothing that can still trade. Returns the
        legs' ids."""
        views = await self._read_all()
        for view in views:
            self._apply(view, emit=True)
        deleted: list[str] = []
        failures: list[str] = []
        for view in views:
            if not may_fire(view.status):
                continue
            try:
                await self._session.call("delete_gtt", view.trigger_id, op="cancel")
            except BrokerError as exc:
                failures.append(f"GTT {view.trigger_id}: {exc}")
                continue
            held = self._held.get(view.trigger_id)
            if held is not None:
                self._mark_deleted(held)
            deleted.extend(leg_broker_id(view.trigger_id, i) for i in range(len(view.legs)))
        if failures:
            raise BrokerAPIError(
                f"{len(failures)} GTT trigger(s) could not be deleted ({'; '.join(failures)})",
                broker=self._account,
            )
        return deleted

    # -- looking up -----------------------------------------------------------------------
    def placed_order_id(self, broker_order_id: str) -> str | None:
        """The order Kite placed for this leg, once its trigger fired; None before."""
        parsed = parse_leg_broker_id(broker_order_id)
        held = self._held.get(parsed[0]) if parsed else None
        if parsed is None or held is None or parsed[1] >= len(held.view.legs):
            return None
        return held.view.legs[parsed[1]].placed_order_id

    async def get(self, broker_order_id: str) -> Order:
        held, index = await self._current(broker_order_id)
        placed = held.view.legs[index].placed_order_id if index < len(held.view.legs) else None
        if placed is not None:
            history = await self._session.read("order_history", placed)
            if history:
                self._mirror.absorb_and_emit(history[-1])
        return held.legs[index].snapshot()

    async def by_client_id(self, client_order_id: str) -> Order | None:
        """A leg by its client id. One placed by an earlier run is not known by that id (Kite
        keeps no tag on a trigger): every trigger's legs are then told afresh, under the broker
        order ids the journal holds for them, and None is the answer."""
        broker_order_id = self._by_client_id.get(client_order_id)
        if broker_order_id is not None:
            return await self.get(broker_order_id)
        if client_order_id in self._attempts:
            return await self._find_attempt(client_order_id)
        # A restart's reconcile asks about every order it holds, one after another: the legs
        # are told once for them all, not once each.
        now = time.monotonic()
        if now - self._told_at >= _TELL_EVERY:
            await self._refresh_unless_idle(emit=True, every_leg=True)
            self._told_at = time.monotonic()
        return None

    async def open_legs(self) -> list[Order]:
        """The legs still held by Kite (those a trigger has placed are in the order book)."""
        await self._refresh_unless_idle(emit=True)
        return [
            leg.snapshot()
            for held in self._held.values()
            if may_fire(held.view.status)
            for leg in held.legs
            if leg.is_working
        ]

    def _leg(self, broker_order_id: str) -> Order:
        parsed = parse_leg_broker_id(broker_order_id)
        if parsed is None or parsed[0] not in self._held or parsed[1] >= len(self._held[parsed[0]].legs):
            raise OrderNotFoundError(f"Kite has no GTT leg {broker_order_id}", broker=self._account)
        return self._held[parsed[0]].legs[parsed[1]]

    async def _current(self, broker_order_id: str) -> tuple[Held, int]:
        parsed = parse_leg_broker_id(broker_order_id)
        if parsed is None:
            raise OrderNotFoundError(f"{broker_order_id} names no GTT leg", broker=self._account)
        trigger_id, index = parsed
        await self._refresh_one(trigger_id, emit=True)
        held = self._held.get(trigger_id)
        if held is None or index >= len(held.legs):
            raise OrderNotFoundError(f"Kite has no GTT leg {broker_order_id}", broker=self._account)
        return held, index

    # -- reading the triggers --------------------------------------------------------------
    async def before_book(self, book: list[Any], *, emit: bool) -> None:
        """Read with each order book while a leg is working, or when the book shows an order
        of no known tag that is not followed yet (a trigger may just have placed it)."""
        if not self._read_once or self._watching() or self._untagged_news(book):
            await self._refresh_unless_idle(emit=emit)

    async def _refresh_unless_idle(self, *, emit: bool, every_leg: bool = False) -> None:
        """``refresh``; a failure is raised only while a leg may still fire. With none, a
        trigger list Kite will not give (an account without GTT access) must not stop the
        orders: it is logged and asked again next time."""
        try:
            await self.refresh(emit=emit, every_leg=every_leg)
        except BrokerError as exc:
            if self._watching():
                raise
            log.warning("%s: GTT triggers could not be read: %s", self._account, exc)

    def _watching(self) -> bool:
        return any(may_fire(held.view.status) for held in self._held.values())

    def _untagged_news(self, book: list[Any]) -> bool:
        for data in book:
            if (
                isinstance(data, dict)
                and not data.get("tag")
                and self._mirror.get(str(data.get("order_id"))) is None
            ):
                return True
        return False

    async def refresh(self, *, emit: bool, every_leg: bool = False) -> None:
        """Read every trigger and bring the legs up to date; ``every_leg`` tells each leg's
        snapshot, changed or not."""
        views = await self._read_all()
        seen = set()
        for view in views:
            seen.add(view.trigger_id)
            self._apply(view, emit=emit, every_leg=every_leg)
        for trigger_id, held in list(self._held.items()):
            if trigger_id not in seen and may_fire(held.view.status):
                # Kite lists a trigger until it is deleted: one gone from the list guards nothing.
                log.warning("%s: GTT %s is no longer listed by Kite", self._account, trigger_id)
                if emit:
                    self._mark_deleted(held)
                else:
                    self._mark_quietly(held)
        self._read_once = True

    def _mark_quietly(self, held: Held) -> None:
        for leg in held.legs:
            leg.transition(OrderStatus.CANCELLED)

    async def _refresh_one(self, trigger_id: int, *, emit: bool) -> None:
        try:
            data = await self._session.read("get_gtt", trigger_id)
        except OrderNotFoundError:
            held = self._held.get(trigger_id)
            if held is not None and may_fire(held.view.status):
                log.warning("%s: Kite no longer has GTT %s", self._account, trigger_id)
                self._mark_deleted(held)
            return
        try:
            view = read_gtt(data)
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite sent GTT {trigger_id} in a form that could not be read: {unreadable(exc)}",
                broker=self._account,
            ) from None
        self._apply(view, emit=emit)

    async def _read_all(self) -> list[GttView]:
        data = await self._session.read("get_gtts")
        if not isinstance(data, list):
            raise BrokerAPIError("Kite sent a GTT list that is not a list", broker=self._account)
        views = []
        for item in data:
            try:
                views.append(read_gtt(item))
            except UNREADABLE as exc:
                log.warning(
                    "%s: skipped a GTT Kite sent that could not be read: %s", self._account, unreadable(exc)
                )
        return views

    def _apply(self, view: GttView, *, emit: bool, every_leg: bool = False) -> None:
        """Bring the legs of ``view``'s trigger to where Kite says it stands."""
        held = self._held.get(view.trigger_id)
        if held is None:
            legs = [
                Order.for_request(r, self._account, broker_order_id=leg_broker_id(view.trigger_id, i))
                for i, r in enumerate(requests_for(view, self._account))
            ]
            held = self._held[view.trigger_id] = Held(view, legs, view.legs[0].product)
        else:
            held.view = view
        for leg, state in zip(held.legs, leg_states(view), strict=False):
            changed = False
            if state.placed_order_id is not None:
                if self._mirror.get(state.placed_order_id) is None or not self._claimed(
                    state.placed_order_id, leg
                ):
                    self._mirror.claim(state.placed_order_id, leg)
                    changed = (
                        leg.transition(OrderStatus.SUBMITTED) if leg.status is OrderStatus.PENDING else False
                    )
            elif state.status is not leg.status:
                if state.status is OrderStatus.REJECTED:
                    leg.reject_code = "BROKER_REJECTED"
                    leg.reject_reason = state.reason
                changed = leg.transition(state.status)
                if changed and state.status in (OrderStatus.UNKNOWN, OrderStatus.REJECTED):
                    log.warning("%s: order %s: %s", self._account, leg.client_order_id, state.reason)
                elif changed:
                    log.info("%s: order %s: %s", self._account, leg.client_order_id, state.reason)
            if emit and (changed or every_leg):
                self._emit(leg.snapshot())

    def _claimed(self, order_id: str, leg: Order) -> bool:
        tracked = self._mirror.get(order_id)
        return tracked is not None and tracked.order is leg
