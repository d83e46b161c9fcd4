"""Our copy of every order at Alpaca, updated from what it reports.

Every order payload, whether it came from REST or the stream, goes through ``ingest``: it moves
the order along the state machine and emits each new fill exactly once. A fill's id is the order
id plus the order's cumulative filled quantity, so the same execution seen twice (stream, then a
resync after a reconnect) is recognised, and executions missed during a gap are not lost.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ...base import BrokerEvent
from ...credentials import redact
from ...errors import BrokerAPIError
from ...legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from ...models import AssetClass, Fill, Order, OrderRequest, OrderStatus, can_transition, utcnow
from ...settlement import dated
from .wire import (
    FillSource,
    dec,
    foreign_source,
    map_status,
    parse_time,
    payload_dict,
    request_from_payload,
    unreadable,
    wire_decimal,
)

log = logging.getLogger(__name__)

_MAX_TRACKED = 10_000


@dataclass(frozen=True, slots=True)
class _Progress:
    filled: Decimal
    average: Decimal | None


class OrderMirror:
    """Every order of one account at Alpaca by Alpaca's order id; ``emit`` passes on each Order
    snapshot and Fill.

    ``expect`` announces an order about to be sent, so that it is known by its request whichever
    answer arrives first: the REST reply or the stream.
    """

    def __init__(self, account: str, emit: Callable[[BrokerEvent], None]) -> None:
        self._account = account
        self._emit = emit
        self._orders: OrderedDict[str, Order] = OrderedDict()
        # Orders placed elsewhere that no ``Order`` can describe: how much of each has filled.
        self._foreign: OrderedDict[str, _Progress] = OrderedDict()
        self._pending: dict[str, OrderRequest] = {}
        # Alpaca's id of an order being replaced -> the terms asked for (see ``_carry_over``).
        self._replacing: dict[str, OrderRequest] = {}
        # Alpaca's id of an exit leg of one of our orders -> the client id it is known by here
        # (``<parent id>-TP`` or ``-SL``: Alpaca names legs itself; see ``brokers.legs``).
        self._leg_names: dict[str, str] = {}

    def expect(self, request: OrderRequest) -> None:
        self._pending[request.client_order_id] = request

    def forget(self, request: OrderRequest) -> None:
        """The order was refused before it reached Alpaca: it will never turn up."""
        self._pending.pop(request.client_order_id, None)

    def order(self, broker_id: str) -> Order | None:
        """The order we follow under Alpaca's id, as it stands now."""
        return self._orders.get(broker_id)

    def expect_replacement(self, broker_id: str, request: OrderRequest) -> None:
        """The order ``broker_id`` is about to be replaced with ``request``'s terms."""
        self._replacing[broker_id] = request

    def forget_replacement(self, broker_id: str) -> None:
        self._replacing.pop(broker_id, None)

    def followed(self) -> list[tuple[str, Order]]:
        """The orders we follow, by Alpaca's id, as they stand now: a later payload still moves them."""
        return list(self._orders.items())

    # -- the ways in ----------------------------------------------------------------------
    def on_trade_update(self, message: Any) -> None:
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("order"), dict):
            log.warning("%s: ignored a trade update without an order", self._account)
            return
        self.ingest_quietly(data["order"], history=True, event=data)

    def ingest_read(self, payload: Any) -> Order:
        """``ingest`` for a single order asked for: what cannot be read is an API error."""
        try:
            return self.ingest(payload_dict(payload, "order"), history=False).snapshot()
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerAPIError(
                f"Alpaca sent an order that cannot be shown: {unreadable(exc)}", broker=self._account
            ) from None

    def ingest_quietly(
        self, payload: Any, *, history: bool, event: dict[str, Any] | None = None
    ) -> Order | None:
        """``ingest`` for lists and the stream, where one unreadable payload must not stop the rest."""
        try:
            return self.ingest(payload_dict(payload, "order"), history=history, event=event)
        except (BrokerAPIError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "%s: ignored an order Alpaca sent that cannot be read: %s", self._account, redact(exc)
            )
            return None

    # -- the one path every order payload takes -------------------------------------------
    def ingest(
        self,
        payload: dict[str, Any],
        *,
        history: bool,
        request: OrderRequest | None = None,
        event: dict[str, Any] | None = None,
    ) -> Order:
        """Apply one order payload; emit each new fill, then the order if it changed.

        ``history`` says whether the fills already on an order we have never seen are news: they
        are for our own orders, on the stream and for orders placed during a stream gap; an order
        merely found on a listing (placed before we connected) reports none of its past.
        """
        broker_id = str(payload.get("id") or "")
        if not broker_id:
            raise BrokerAPIError("Alpaca sent an order without an id", broker=self._account)
        order = self._orders.get(broker_id)
        carried = False
        if order is None:
            order = self._carry_over(broker_id, payload)
            carried = order is not None
        fresh = order is None
        if not fresh:
            history = True  # anything new on an order we already follow is news
        if order is None:
            request = request or self._pending.get(str(payload.get("client_order_id") or ""))
            history = history or request is not None
            if request is None and broker_id in self._leg_names:
                terms = request_from_payload(payload)
                request = OrderRequest.model_validate(
                    {**terms.__dict__, "client_order_id": self._leg_names[broker_id]}
                )
                history = True
            if request is None:
                try:
                    request = request_from_payload(payload)
                except ValueError:
                    # Not an order we can show (a dollar amount, a multi-leg order), but its
                    # executions move the position all the same.
                    self._follow_foreign(broker_id, payload, event, history=history)
                    raise
            self._pending.pop(request.client_order_id, None)
            order = Order(
                request=request,
                account=self._account,
                broker_order_id=broker_id,
                created_at=parse_time(payload.get("created_at")) or utcnow(),
            )
            reported = self._foreign.pop(broker_id, None)
            if reported is not None:
                # Followed by its executions until now (a dollar amount that has since got a
                # quantity): what was reported then is not reported again.
                order.filled_quantity, order.avg_fill_price = reported.filled, reported.average
            self._remember(broker_id, order)
        fills, changed = self._apply(order, payload, event, history=history)
        for fill in fills:
            self._emit(fill)
        if fresh or changed or carried:
            self._emit(order.snapshot())
        legs = payload.get("legs")
        if isinstance(legs, list) and legs and order.request.has_legs:
            self.name_legs(order.client_order_id, legs)
        return order

    def by_client_id(self, client_order_id: str) -> Order | None:
        """A snapshot of the order followed under our client order id, if any."""
        for order in self._orders.values():
            if order.client_order_id == client_order_id:
                return order.snapshot()
        return None

    def name_legs(self, parent_id: str, legs: list[Any]) -> None:
        """Follow the exits Alpaca holds for our order ``parent_id`` under the names the library
        gives exits: the limit is the take-profit, the stop the stop-loss."""
        for leg in legs:
            if not isinstance(leg, dict) or not leg.get("id"):
                continue
            leg_id = str(leg["id"])
            followed = self._orders.get(leg_id)
            if followed is not None and not self._leg_names.get(leg_id):
                # Seen first as an order placed elsewhere (its update came before its parent
                # was asked about): it is this exit, by our name from now on.
                kind = str(leg.get("type") or leg.get("order_type") or "")
                name = parent_id + (TAKE_PROFIT_SUFFIX if kind == "limit" else STOP_LOSS_SUFFIX)
                followed.request = OrderRequest.model_validate(
                    {**followed.request.__dict__, "client_order_id": name}
                )
                self._leg_names[leg_id] = name
            if leg_id not in self._leg_names:
                kind = str(leg.get("type") or leg.get("order_type") or "")
                suffix = TAKE_PROFIT_SUFFIX if kind == "limit" else STOP_LOSS_SUFFIX
                self._leg_names[leg_id] = parent_id + suffix
            self.ingest_quietly(leg, history=True)

    def _carry_over(self, broker_id: str, payload: dict[str, Any]) -> Order | None:
        """A replacement (``replaces`` names an order we follow) continues that order: the same
        client order id here, Alpaca's new id and the new terms. The old id keeps leading to it,
        for whatever Alpaca still says of the old order."""
        replaced = str(payload.get("replaces") or "")
        order = self._orders.get(replaced) if replaced else None
        if order is None:
            return None
        request = self._replacing.pop(replaced, None)
        if request is None:  # replaced elsewhere (the dashboard, another program)
            try:
                terms = request_from_payload(payload)
            except ValueError:
                return None
            request = OrderRequest.model_validate(
                {**terms.model_dump(), "client_order_id": order.client_order_id}
            )
        order.request = request
        order.broker_order_id = broker_id
        self._remember(broker_id, order)
        return order

    def _replaced_by_another(self, order: Order, payload: dict[str, Any]) -> bool:
        """Whether a replaced order lives on as another that we follow or will: one carried over
        already, one of our replaces in flight, or one that names its replacement."""
        broker_id = str(payload.get("id") or "")
        return bool(
            order.broker_order_id != broker_id or broker_id in self._replacing or payload.get("replaced_by")
        )

    def _apply(
        self, order: Order, payload: dict[str, Any], event: dict[str, Any] | None, *, history: bool
    ) -> tuple[list[Fill], bool]:
        """Returns the new fills and whether the order changed at all."""
        cumulative = dec(payload.get("filled_qty"), "filled_qty") or Decimal(0)
        if order.quantity is not None and cumulative > order.quantity:
            raise BrokerAPIError(
                f"Alpaca reported {cumulative} filled of order {order.broker_order_id} for {order.quantity}",
                broker=self._account,
            )
        average = dec(payload.get("filled_avg_price"), "filled_avg_price")
        at = parse_time(payload.get("updated_at")) or utcnow()
        fills: list[Fill] = []
        changed = False
        if cumulative > order.filled_quantity and not history:
            order.filled_quantity = cumulative
            order.avg_fill_price = average
            changed = True
        elif cumulative > order.filled_quantity:
            fill = self._fill_for(order, cumulative, average, event, _executed_at(payload, at))
            if fill is not None and order.apply_fill(fill):
                fills.append(fill)
        if average is not None and cumulative > 0 and order.filled_quantity == cumulative:
            order.avg_fill_price = average  # Alpaca's own average is the one to show
        status = str(payload.get("status") or "")
        if status == "replaced" and self._replaced_by_another(order, payload):
            # Not the end of our order: it goes on as the replacement (see ``_carry_over``).
            return fills, changed or bool(fills)
        target = map_status(status, cumulative, order.quantity)
        if target is not order.status and can_transition(order.status, target):
            if target is OrderStatus.REJECTED:
                order.reject_code = "BROKER_REJECTED"
                order.reject_reason = str(payload.get("reject_reason") or "Alpaca rejected the order")
            changed = order.transition(target, at=at) or changed
        elif target is not order.status:
            # A listing older than an update already applied: the newer state stands.
            log.debug(
                "%s: kept %s for %s over a stale %s",
                self._account,
                order.status.value,
                order.broker_order_id,
                target.value,
            )
        return fills, changed or bool(fills)

    def _fill_for(
        self,
        order: Order,
        cumulative: Decimal,
        average: Decimal | None,
        event: dict[str, Any] | None,
        at: datetime,
    ) -> Fill | None:
        """The execution(s) that took the order from what we knew to ``cumulative``."""
        return self._execution(
            _Progress(order.filled_quantity, order.avg_fill_price),
            FillSource(
                str(order.broker_order_id),
                order.client_order_id,
                order.symbol,
                order.side,
                order.request.asset_class,
            ),
            cumulative,
            average,
            event,
            at,
        )

    def _execution(
        self,
        known: _Progress,
        source: FillSource,
        cumulative: Decimal,
        average: Decimal | None,
        event: dict[str, Any] | None,
        at: datetime,
    ) -> Fill | None:
        delta = cumulative - known.filled
        price: Decimal | None = None
        if event is not None and event.get("event") in ("fill", "partial_fill"):
            if dec(event.get("qty"), "qty") == delta:
                price = dec(event.get("price"), "price")
            at = parse_time(event.get("timestamp")) or at
        if price is None and average is not None:
            # Several executions seen at once (after a gap): their average price, from the totals.
            known_cost = (known.average or Decimal(0)) * known.filled
            derived = (average * cumulative - known_cost) / delta
            price = derived if derived > 0 else average
        if price is None or price <= 0:
            log.warning(
                "%s: %s filled %s but Alpaca sent no price yet", self._account, source.broker_id, delta
            )
            return None
        if price.as_tuple().exponent < -9:  # type: ignore[operator]
            price = price.quantize(Decimal("1e-9")).normalize()
        fill = Fill(
            # The same id whichever way the execution is seen: stream, listing, or both.
            fill_id=f"{source.broker_id}:{wire_decimal(cumulative)}",
            account=self._account,
            symbol=source.symbol,
            side=source.side,
            quantity=delta,
            price=price,
            currency="USD",
            asset_class=source.asset_class,
            # Alpaca's option contracts are standard US equity options: 100 shares each.
            multiplier=Decimal(100) if source.asset_class is AssetClass.OPTION else Decimal(1),
            broker_order_id=source.broker_id,
            client_order_id=source.client_order_id,
            timestamp=at,
        )
        return dated(fill)

    def _follow_foreign(
        self, broker_id: str, payload: dict[str, Any], event: dict[str, Any] | None, *, history: bool
    ) -> None:
        """Emit the new executions of an order placed elsewhere that no ``Order`` can describe."""
        cumulative = dec(payload.get("filled_qty"), "filled_qty") or Decimal(0)
        average = dec(payload.get("filled_avg_price"), "filled_avg_price")
        known = self._foreign.get(broker_id)
        if known is None:
            # Found on a listing (placed before we connected): its past is not news.
            known = _Progress(Decimal(0), None) if history else _Progress(cumulative, average)
            self._foreign[broker_id] = known
            while len(self._foreign) > _MAX_TRACKED:
                self._foreign.popitem(last=False)
        if cumulative <= known.filled:
            return
        fill = self._execution(
            known,
            foreign_source(broker_id, payload),
            cumulative,
            average,
            event,
            _executed_at(payload, parse_time(payload.get("updated_at")) or utcnow()),
        )
        if fill is None:
            return
        self._foreign[broker_id] = _Progress(cumulative, average or fill.price)
        self._emit(fill)

    def _remember(self, broker_id: str, order: Order) -> None:
        self._orders[broker_id] = order
        if len(self._orders) > _MAX_TRACKED:
            for old_id, old in list(self._orders.items()):
                if len(self._orders) <= _MAX_TRACKED:
                    break
                if old.is_terminal:
                    del self._orders[old_id]


def _executed_at(payload: dict[str, Any], fallback: datetime) -> datetime:
    """When the last execution seen on an order listing happened: ``filled_at`` once the order
    is filled (its last execution), else the time of the order's last change."""
    return parse_time(payload.get("filled_at")) or fallback
