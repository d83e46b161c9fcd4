"""The exits of a bracket, OTO or OCO order as orders of their own: their terms and their names.

A broker that holds exits natively names them its own way; the paper broker, and the execution
layer when it meets a leg it did not send, name each after its parent (``<parent id>-TP``,
``<parent id>-SL``), so the legs of an order are known to belong together from their ids and the
parent's journaled request alone, across a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from .enums import OrderType, TimeInForce
from .order_request import LEG_SUFFIX_LEN, OrderClass, OrderRequest

if TYPE_CHECKING:
    from .orders import Order

__all__ = ["STOP_LOSS_SUFFIX", "TAKE_PROFIT_SUFFIX", "exit_requests", "leg_parent_id", "working_quantity"]

TAKE_PROFIT_SUFFIX = "-TP"
STOP_LOSS_SUFFIX = "-SL"
assert len(TAKE_PROFIT_SUFFIX) == len(STOP_LOSS_SUFFIX) == LEG_SUFFIX_LEN

# An exit outlives a one-shot entry: what an IOC or FOK entry filled is guarded for the day.
_EXIT_TIF = {TimeInForce.IOC: TimeInForce.DAY, TimeInForce.FOK: TimeInForce.DAY}


def leg_parent_id(client_order_id: str) -> str | None:
    """The parent's client order id if ``client_order_id`` names an exit leg, else None."""
    if client_order_id.endswith((TAKE_PROFIT_SUFFIX, STOP_LOSS_SUFFIX)):
        return client_order_id[:-LEG_SUFFIX_LEN] or None
    return None


def exit_requests(parent: OrderRequest, quantity: Decimal | None = None) -> list[OrderRequest]:
    """The exit orders ``parent`` makes, each for ``quantity`` (the entry's filled quantity; an
    OCO pair's own quantity by default): for a bracket or OTO, those its entry's fill sends;
    for an OCO pair, the stop-loss beside the order itself (its take-profit). Empty for an
    order without exits."""
    legs = parent.legs
    if legs is OrderClass.SIMPLE:
        return []
    size = parent.units if quantity is None else quantity
    common: dict[str, object] = {
        "symbol": parent.symbol,
        "side": parent.exit_side,
        "quantity": size,
        "time_in_force": _EXIT_TIF.get(parent.time_in_force, parent.time_in_force),
        "account": parent.account,
        "asset_class": parent.asset_class,
        "exchange": parent.exchange,
        "currency": parent.currency,
    }
    coid = parent.client_order_id
    exits: list[OrderRequest] = []
    if parent.take_profit is not None and legs is not OrderClass.OCO:
        exits.append(
            OrderRequest.model_validate(
                {
                    **common,
                    "order_type": OrderType.LIMIT,
                    "limit_price": parent.take_profit,
                    "client_order_id": coid + TAKE_PROFIT_SUFFIX,
                }
            )
        )
    if parent.stop_loss is not None:
        exits.append(
            OrderRequest.model_validate(
                {
                    **common,
                    "order_type": OrderType.STOP,
                    "stop_price": parent.stop_loss,
                    "client_order_id": coid + STOP_LOSS_SUFFIX,
                }
            )
        )
    return exits


def working_quantity(orders: Iterable[Order]) -> Decimal:
    """What working orders on one side may still trade, in units: the exits of one order (an
    OCO pair, or a bracket's take-profit and stop-loss) counted once, at the larger of them,
    since one's fill cancels the other. Notional orders (their size is money) are left out."""
    total = Decimal(0)
    groups: dict[str, Decimal] = {}
    for order in orders:
        remaining = order.remaining_quantity
        if remaining is None:
            continue
        coid = order.client_order_id
        group = leg_parent_id(coid)
        if group is None and order.request.order_class is OrderClass.OCO:
            group = coid
        if group is None:
            total += remaining
        elif remaining > groups.get(group, Decimal(0)):
            groups[group] = remaining
    return total + sum(groups.values(), Decimal(0)) if groups else total
