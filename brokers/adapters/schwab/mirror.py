"""Our copy of every order at Schwab, moved along by the order records it reports. Each
execution leg of an order is a fill, once: its id is the order's id and the leg's place in the
order's activity list, which only grows."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ...base import BrokerEvent
from ...enums import OrderStatus, OrderType, Side, TimeInForce
from ...errors import BrokerAPIError
from ...models import Fill, Order, OrderRequest, can_transition, utcnow
from ..listed_order import read_or_skip
from .wire import dec, executions, map_status, parse_time, table

log = logging.getLogger(__name__)

_MAX_TRACKED = 10_000
_TYPES = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP": OrderType.STOP,
    "STOP_LIMIT": OrderType.STOP_LIMIT,
}
_DURATIONS = {
    "DAY": TimeInForce.DAY,
    "GOOD_TILL_CANCEL": TimeInForce.GTC,
    "IMMEDIATE_OR_CANCEL": TimeInForce.IOC,
    "FILL_OR_KILL": TimeInForce.FOK,
}


class OrderMirror:
    def __init__(self, account: str, emit: Callable[[BrokerEvent], None]) -> None:
        self._account = account
        self._emit = emit
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._foreign: set[str] = set()

    def followed(self) -> list[tuple[str, Order]]:
        return list(self._orders.items())

    def by_client_id(self, client_order_id: str) -> Order | None:
        return next(
            (o.snapshot() for o in self._orders.values() if o.client_order_id == client_order_id), None
        )

    def ingest(self, payload: dict[str, Any], *, request: OrderRequest | None = None) -> Order:
        oid = str(payload.get("orderId") or "")
        if not oid:
            raise BrokerAPIError("Schwab sent an order without an orderId", broker=self._account)
        order = self._orders.get(oid)
        fresh = order is None
        if order is None:
            foreign = request is None
            request = request or self._request_from(payload, oid)
            order = Order(
                request=request,
                account=self._account,
                broker_order_id=oid,
                created_at=parse_time(payload.get("enteredTime")) or utcnow(),
            )
            if foreign:
                # Placed elsewhere: what filled before we looked is not news.
                self._foreign.add(oid)
                order.filled_quantity = min(
                    dec(payload.get("filledQuantity")) or Decimal(0), order.request.units
                )
            self._remember(oid, order)
        changed = self._apply(oid, order, payload)
        if fresh or changed:
            self._emit(order.snapshot())
        return order

    def ingest_quietly(self, payload: object) -> Order | None:
        """``ingest`` for listings, where one unreadable order must not stop the rest."""
        return read_or_skip(self.ingest, payload, self._account, "Schwab")

    def _apply(self, oid: str, order: Order, payload: dict[str, Any]) -> bool:
        changed = False
        if oid not in self._foreign:
            for leg_id, quantity, price, at in executions(payload):
                fill = Fill(
                    fill_id=f"{oid}:{leg_id}",
                    account=self._account,
                    symbol=order.symbol,
                    side=order.side,
                    quantity=quantity,
                    price=price,
                    currency="USD",
                    broker_order_id=oid,
                    client_order_id=order.client_order_id,
                    timestamp=at or utcnow(),
                )
                if order.apply_fill(fill):
                    self._emit(fill)
                    changed = True
        else:
            reported = dec(payload.get("filledQuantity")) or Decimal(0)
            if reported > order.filled_quantity:
                order.filled_quantity = min(reported, order.request.units)
                changed = True
        filled = dec(payload.get("filledQuantity")) or order.filled_quantity
        target = map_status(payload.get("status"), filled, order.request.units)
        if target in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED) and oid not in self._foreign:
            # Fills move the quantity and the status; until the executions are listed, it works.
            if order.status in (OrderStatus.PENDING, OrderStatus.SUBMITTED):
                return order.transition(OrderStatus.ACCEPTED) or changed
            return changed
        if (
            target is OrderStatus.UNKNOWN
            or target is order.status
            or not can_transition(order.status, target)
        ):
            return changed
        if target is OrderStatus.REJECTED:
            order.reject_code = "BROKER_REJECTED"
            order.reject_reason = str(payload.get("statusDescription") or "Schwab rejected the order")
        return order.transition(target) or changed

    def _request_from(self, payload: dict[str, Any], oid: str) -> OrderRequest:
        legs = payload.get("orderLegCollection")
        leg = table(legs[0]) if isinstance(legs, list) and len(legs) == 1 else {}
        symbol = str(table(leg.get("instrument")).get("symbol") or "")
        instruction = str(leg.get("instruction") or "")
        side = (
            Side.BUY
            if instruction.startswith("BUY")
            else Side.SELL
            if instruction.startswith("SELL")
            else None
        )
        quantity = dec(payload.get("quantity"))
        kind = _TYPES.get(str(payload.get("orderType")))
        if not symbol or side is None or not quantity or quantity <= 0 or kind is None:
            raise BrokerAPIError(
                f"order {oid} is not a single equity order this console can show", broker=self._account
            )
        return OrderRequest(
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type=kind,
            limit_price=dec(payload.get("price"))
            if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
            else None,
            stop_price=dec(payload.get("stopPrice"))
            if kind in (OrderType.STOP, OrderType.STOP_LIMIT)
            else None,
            time_in_force=_DURATIONS.get(str(payload.get("duration")), TimeInForce.DAY),
            client_order_id=f"schwab-{oid}",
        )

    def _remember(self, oid: str, order: Order) -> None:
        self._orders[oid] = order
        if len(self._orders) > _MAX_TRACKED:
            for old_id, old in list(self._orders.items()):
                if len(self._orders) <= _MAX_TRACKED:
                    break
                if old.is_terminal:
                    del self._orders[old_id]
                    self._foreign.discard(old_id)
