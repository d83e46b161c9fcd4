"""Kite's GTT (good-till-triggered) triggers in our terms: how the legs of a trigger are named,
what its statuses mean for those legs, and the checks a two-leg trigger must pass before it is
sent.

A GTT is held by Kite, not by this program: once the last price crosses one of its trigger
values, Kite places that leg's LIMIT order and the trigger becomes ``triggered`` (a two-leg
trigger's other leg is then void: one cancels the other). Each leg is known here by a broker
order id of its own, ``gtt:<trigger id>:<leg index>``, journaled with the leg, so that a restart
finds the trigger again from the journal alone: Kite keeps no tag of ours on a trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError

from ...enums import OrderStatus, OrderType, Side, TimeInForce
from ...order_request import OrderClass, OrderRequest
from .wire import asset_class_of, dec

__all__ = [
    "GTT_OCO",
    "GTT_SINGLE",
    "GttLeg",
    "GttView",
    "LegState",
    "leg_broker_id",
    "leg_states",
    "may_fire",
    "oco_problem",
    "parse_leg_broker_id",
    "read_gtt",
    "requests_for",
    "stop_leg_index",
    "wire_price",
]

# kiteconnect's GTT_TYPE_OCO and GTT_TYPE_SINGLE.
GTT_OCO = "two-leg"
GTT_SINGLE = "single"

_LEG_ID = re.compile(r"gtt:(\d{1,18}):([01])")

# A trigger's own status, for legs that were not the one a trigger placed (kiteconnect's
# GTT_STATUS_*). ``triggered`` is read leg by leg (``leg_states``).
_UNTRIGGERED: dict[str, tuple[OrderStatus, str]] = {
    "active": (OrderStatus.ACCEPTED, "held by Kite until the last price crosses its trigger"),
    "disabled": (OrderStatus.CANCELLED, "Kite disabled the trigger; it no longer guards the position"),
    "expired": (OrderStatus.EXPIRED, "the trigger expired at Kite without being crossed"),
    "cancelled": (OrderStatus.CANCELLED, "the trigger was cancelled at Kite"),
    "rejected": (OrderStatus.REJECTED, "Kite rejected the trigger"),
    "deleted": (OrderStatus.CANCELLED, "the trigger was deleted"),
}


def may_fire(status: str) -> bool:
    """Whether a trigger in ``status`` may still place an order: an active one, and (failing
    closed) one whose status Kite does not document."""
    return status == "active" or (status != "triggered" and status not in _UNTRIGGERED)


def leg_broker_id(trigger_id: int, index: int) -> str:
    return f"gtt:{trigger_id}:{index}"


def parse_leg_broker_id(broker_order_id: str) -> tuple[int, int] | None:
    """(trigger id, leg index) of a GTT leg's broker order id; None for any other id."""
    match = _LEG_ID.fullmatch(broker_order_id)
    return None if match is None else (int(match[1]), int(match[2]))


@dataclass(frozen=True)
class GttLeg:
    """One order of a trigger: what Kite places when its trigger value is crossed, and, once
    placed, the outcome of that placement (``result``)."""

    side: Side
    quantity: Decimal
    price: Decimal
    product: str
    placed_order_id: str | None
    failure: str | None

    @property
    def triggered(self) -> bool:
        return self.placed_order_id is not None or self.failure is not None


@dataclass(frozen=True)
class GttView:
    trigger_id: int
    kind: str
    status: str
    exchange: str
    tradingsymbol: str
    trigger_values: tuple[Decimal, ...]
    last_price: Decimal
    legs: tuple[GttLeg, ...]


def _positive(value: object, name: str) -> Decimal:
    """A number a trigger cannot do without: a missing, zero or negative one is not read as 0."""
    number = dec(value)
    if number <= 0:
        raise ValueError(f"a GTT {name} must be a positive number, not {value!r}")
    return number


def _leg(data: object) -> GttLeg:
    if not isinstance(data, dict):
        raise ValueError("a GTT order is not an object")
    result = data.get("result")
    placed: str | None = None
    failure: str | None = None
    if isinstance(result, dict):
        outcome = result.get("order_result")
        outcome = outcome if isinstance(outcome, dict) else {}
        order_id = str(outcome.get("order_id") or "")
        if outcome.get("status") == "success" and order_id:
            placed = order_id
        else:
            failure = str(outcome.get("rejection_reason") or "Kite could not place the triggered order")
    return GttLeg(
        side=Side(str(data["transaction_type"]).upper()),
        quantity=_positive(data["quantity"], "quantity"),
        price=_positive(data["price"], "price"),
        product=str(data.get("product") or ""),
        placed_order_id=placed,
        failure=failure,
    )


def read_gtt(data: object) -> GttView:
    """One trigger as Kite describes it (``get_gtt``, an item of ``get_gtts``). Raises
    ``ValueError``, ``KeyError`` or ``TypeError`` for what cannot be read."""
    if not isinstance(data, dict):
        raise ValueError("a GTT is not an object")
    condition = data["condition"]
    if not isinstance(condition, dict):
        raise ValueError("a GTT's condition is not an object")
    triggers = tuple(_positive(v, "trigger value") for v in condition["trigger_values"])
    orders = data["orders"]
    if not isinstance(orders, list):
        raise ValueError("a GTT's orders are not a list")
    legs = tuple(_leg(o) for o in orders)
    kind = str(data.get("type") or "")
    if not legs or len(legs) != len(triggers) or len(legs) > 2:
        raise ValueError(f"GTT {data.get('id')} has {len(triggers)} trigger(s) for {len(legs)} order(s)")
    return GttView(
        trigger_id=int(data["id"]),
        kind=kind,
        status=str(data.get("status") or "").strip().lower(),
        exchange=str(condition["exchange"]),
        tradingsymbol=str(condition["tradingsymbol"]),
        trigger_values=triggers,
        last_price=dec(condition.get("last_price")),
        legs=legs,
    )


@dataclass(frozen=True)
class LegState:
    """Where a leg stands by its trigger. ``placed_order_id``: the order Kite placed for it,
    whose own status and fills are the leg's from then on."""

    status: OrderStatus
    reason: str
    placed_order_id: str | None = None


def leg_states(view: GttView) -> list[LegState]:
    """Each leg's status by the trigger's. A status Kite has not documented fails closed:
    UNKNOWN, which still counts as working (a halt still deletes it, risk still counts it)."""
    status = view.status
    if status == "triggered":
        fired = [leg for leg in view.legs if leg.triggered]
        if not fired:
            return [
                LegState(OrderStatus.UNKNOWN, f"GTT {view.trigger_id} triggered but shows no placed order")
                for _ in view.legs
            ]
        states = []
        for leg in view.legs:
            if leg.placed_order_id is not None:
                states.append(
                    LegState(
                        OrderStatus.SUBMITTED,
                        f"GTT {view.trigger_id} placed order {leg.placed_order_id}",
                        leg.placed_order_id,
                    )
                )
            elif leg.failure is not None:
                states.append(
                    LegState(
                        OrderStatus.REJECTED,
                        f"GTT {view.trigger_id} triggered, but Kite could not place the order: {leg.failure}",
                    )
                )
            else:
                states.append(
                    LegState(
                        OrderStatus.CANCELLED,
                        f"GTT {view.trigger_id}: the other leg triggered (one cancels the other)",
                    )
                )
        return states
    known = _UNTRIGGERED.get(status)
    if known is None:
        reason = f"GTT {view.trigger_id} has a status Kite does not document ({status or 'none'})"
        return [LegState(OrderStatus.UNKNOWN, reason) for _ in view.legs]
    return [LegState(known[0], f"GTT {view.trigger_id}: {known[1]}") for _ in view.legs]


def _stop_index(view: GttView) -> int | None:
    """Which leg of a two-leg trigger is the stop-loss: the one crossed as the price moves
    against the position (down for SELL exits, up for BUY exits)."""
    if len(view.legs) != 2:
        return None
    return stop_leg_index(view.legs[0].side)


def stop_leg_index(side: Side) -> int:
    """The index of the stop-loss in a two-leg trigger whose exits are on ``side``: trigger
    values go up, so a SELL pair stops at the lower one, a BUY pair at the upper one."""
    return 0 if side is Side.SELL else 1


def requests_for(view: GttView, account: str) -> list[OrderRequest]:
    """The requests a trigger stands for, for a trigger this process did not place (an earlier
    run, Kite's own app): a two-leg trigger as an OCO pair (the take-profit LIMIT, its
    stop-loss a STOP at the other trigger value), as ``brokers.legs`` names them; anything else
    as LIMIT orders at its prices. Their client ids are made from the trigger id; the execution
    layer knows its own legs by their broker order ids."""
    base = f"GTT{view.trigger_id}"
    common: dict[str, object] = {
        "symbol": view.tradingsymbol,
        "time_in_force": TimeInForce.DAY,
        "account": account,
        "asset_class": asset_class_of(view.exchange, view.tradingsymbol),
        "exchange": view.exchange,
        "currency": "INR",
    }
    stop = _stop_index(view)
    if stop is not None and view.legs[0].side is view.legs[1].side:
        target = view.legs[1 - stop]
        try:
            parent = OrderRequest.model_validate(
                {
                    **common,
                    "side": target.side,
                    "quantity": target.quantity,
                    "order_type": OrderType.LIMIT,
                    "limit_price": target.price,
                    "take_profit": target.price,
                    "stop_loss": view.trigger_values[stop],
                    "order_class": OrderClass.OCO,
                    "client_order_id": base,
                }
            )
            stop_leg = OrderRequest.model_validate(
                {
                    **common,
                    "side": view.legs[stop].side,
                    "quantity": view.legs[stop].quantity,
                    "order_type": OrderType.STOP,
                    "stop_price": view.trigger_values[stop],
                    "client_order_id": base + "-SL",
                }
            )
        except ValidationError:
            pass  # not a pair this program would place: shown leg by leg below
        else:
            pair = [parent, stop_leg]
            return pair if stop == 1 else pair[::-1]
    return [
        OrderRequest.model_validate(
            {
                **common,
                "side": leg.side,
                "quantity": leg.quantity,
                "order_type": OrderType.LIMIT,
                "limit_price": leg.price,
                "client_order_id": f"{base}_{index}",
            }
        )
        for index, leg in enumerate(view.legs)
    ]


def oco_problem(side: Side, take_profit: Decimal, stop_loss: Decimal, last_price: Decimal) -> str | None:
    """Why Kite would refuse a two-leg trigger with these exits at this last price, in words
    naming the field; None if it would not. Kite holds a two-leg trigger only with the last
    price strictly between its two trigger values."""
    if side is Side.SELL:
        if stop_loss >= last_price:
            return (
                f"stop_loss {stop_loss} must be below the last price {last_price}: Kite's GTT sells "
                "when the price falls to it"
            )
        if take_profit <= last_price:
            return (
                f"take_profit {take_profit} must be above the last price {last_price}: Kite's GTT "
                "sells when the price rises to it"
            )
    else:
        if stop_loss <= last_price:
            return (
                f"stop_loss {stop_loss} must be above the last price {last_price}: Kite's GTT buys "
                "when the price rises to it"
            )
        if take_profit >= last_price:
            return (
                f"take_profit {take_profit} must be below the last price {last_price}: Kite's GTT "
                "buys when the price falls to it"
            )
    return None


def wire_price(value: Decimal) -> float:
    """kiteconnect sends GTT prices as JSON numbers (it calls ``float`` on them itself)."""
    return float(value)
