"""Schwab's Trader API vocabulary: our requests as order specs, its order statuses as ours, its
executions as fills, its positions and balances."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ...enums import OrderStatus, OrderType, TimeInForce
from ...models import OrderRequest

_DURATION = {
    TimeInForce.DAY: "DAY",
    TimeInForce.GTC: "GOOD_TILL_CANCEL",
    TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
    TimeInForce.FOK: "FILL_OR_KILL",
}
_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
    OrderType.STOP_LIMIT: "STOP_LIMIT",
}
_WORKING = {
    "AWAITING_PARENT_ORDER",
    "AWAITING_CONDITION",
    "AWAITING_STOP_CONDITION",
    "AWAITING_MANUAL_REVIEW",
    "ACCEPTED",
    "AWAITING_UR_OUT",
    "PENDING_ACTIVATION",
    "QUEUED",
    "WORKING",
    "PENDING_CANCEL",
    "PENDING_REPLACE",
    "NEW",
    "AWAITING_RELEASE_TIME",
    "PENDING_ACKNOWLEDGEMENT",
    "PENDING_RECALL",
}
_ORDER_ID = re.compile(r"/orders/(\d+)/?$")


def dec(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def order_spec(request: OrderRequest) -> dict[str, Any]:
    """An equity order as the Trader API takes it (the shape schwab-py's order builders make)."""
    spec: dict[str, Any] = {
        "session": "NORMAL",
        "duration": _DURATION[request.time_in_force],
        "orderType": _TYPE[request.order_type],
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {
                "instruction": request.side.value,
                "quantity": int(request.units),
                "instrument": {"symbol": request.symbol, "assetType": "EQUITY"},
            }
        ],
    }
    if request.limit_price is not None:
        spec["price"] = plain(request.limit_price)
    if request.stop_price is not None:
        spec["stopPrice"] = plain(request.stop_price)
    return spec


def order_id_from(location: str | None) -> str | None:
    """The new order's id from the ``Location`` header of a placed order."""
    match = _ORDER_ID.search(location or "")
    return match.group(1) if match else None


def map_status(status: object, filled: Decimal, quantity: Decimal) -> OrderStatus:
    text = str(status or "").upper()
    if text == "FILLED":
        return OrderStatus.FILLED if filled >= quantity else OrderStatus.PARTIALLY_FILLED
    if text in ("CANCELED", "REPLACED"):
        return OrderStatus.CANCELLED
    if text == "REJECTED":
        return OrderStatus.REJECTED
    if text == "EXPIRED":
        return OrderStatus.EXPIRED
    if text in _WORKING:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
    return OrderStatus.UNKNOWN


def parse_time(value: object) -> datetime | None:
    """Schwab writes times as 2020-03-30T15:36:12+0000."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None


def executions(payload: dict[str, Any]) -> list[tuple[str, Decimal, Decimal, datetime | None]]:
    """Each execution leg of an order: (id, quantity, price, time). The activity list only grows,
    so an execution's place in it is its id."""
    found = []
    activities = payload.get("orderActivityCollection")
    for a_index, activity in enumerate(activities if isinstance(activities, list) else []):
        activity = table(activity)
        if activity.get("activityType") != "EXECUTION":
            continue
        legs = activity.get("executionLegs")
        for l_index, leg in enumerate(legs if isinstance(legs, list) else []):
            leg = table(leg)
            quantity, price = dec(leg.get("quantity")), dec(leg.get("price"))
            if quantity and quantity > 0 and price and price > 0:
                found.append((f"{a_index}.{l_index}", quantity, price, parse_time(leg.get("time"))))
    return found
