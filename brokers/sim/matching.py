"""When a working order triggers and at what price it executes.

Pure functions over one order and one price, so each order type's rule can be read (and tested)
on its own. The broker decides how much fills; this module decides whether and where.

Conventions, as on most venues:
- A limit order executes when the price touches its limit. When it arrives marketable it takes
  the market price (with slippage, never past the limit); once it has rested on the book it is
  the liquidity others trade against, so it fills at its limit with no slippage.
- A stop order triggers when the price touches the stop and then executes as a market order
  at the price of the triggering update, gaps included; a stop-limit becomes a limit order.
- A trailing stop's stop level follows the best price seen since submission (the high for a
  sell, the low for a buy) and never moves back.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..models import Order, OrderRequest, OrderType, Side
from .feed import round_down_to_tick, round_up_to_tick

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
_HUNDRED = Decimal(100)
_STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_LIMIT_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})


@dataclass(slots=True, eq=False)
class RestingOrder:
    """A working order and the venue's private state about it."""

    order: Order
    triggered: bool
    extreme: Decimal | None = None  # best price since submission, for trailing stops
    on_book: bool = False  # a limit order that has rested fills at its limit
    commission_paid: Decimal = _ZERO

    @classmethod
    def open(cls, order: Order, price: Decimal) -> RestingOrder:
        kind = order.request.order_type
        return cls(
            order=order,
            triggered=kind not in _STOP_TYPES,
            extreme=price if kind is OrderType.TRAILING_STOP else None,
        )


def is_limit(request: OrderRequest) -> bool:
    return request.order_type in _LIMIT_TYPES


def trailing_stop_level(request: OrderRequest, extreme: Decimal) -> Decimal:
    """The stop price a trailing stop holds when the best price so far is ``extreme``."""
    if request.trail_amount is not None:
        offset = request.trail_amount
    else:
        offset = extreme * (request.trail_percent or _ZERO) / _HUNDRED
    return extreme - offset if request.side is Side.SELL else extreme + offset


def update_trigger(resting: RestingOrder, price: Decimal) -> bool:
    """Feed one price to an untriggered stop order; True once it has triggered."""
    if resting.triggered:
        return True
    request = resting.order.request
    buy = request.side is Side.BUY
    stop: Decimal | None
    if request.order_type is OrderType.TRAILING_STOP:
        extreme = resting.extreme if resting.extreme is not None else price
        if (buy and price < extreme) or (not buy and price > extreme):
            extreme = price
        resting.extreme = extreme
        stop = trailing_stop_level(request, extreme)
    else:
        stop = request.stop_price
        assert stop is not None  # OrderRequest validation guarantees it for STOP and STOP_LIMIT
    if (buy and price >= stop) or (not buy and price <= stop):
        resting.triggered = True
    return resting.triggered


def slipped(price: Decimal, side: Side, slippage_bps: Decimal, tick: Decimal | None = None) -> Decimal:
    """``price`` moved against the trader by ``slippage_bps``, rounded to the tick against them
    too, so a slippage smaller than a tick is still paid."""
    if not slippage_bps:
        return price
    if side is Side.BUY:
        return round_up_to_tick(price * (1 + slippage_bps / _BPS), tick)
    return round_down_to_tick(price * (1 - slippage_bps / _BPS), tick)


def execution_price(
    resting: RestingOrder, price: Decimal, slippage_bps: Decimal, tick: Decimal | None = None
) -> Decimal | None:
    """Where a triggered order executes at market price ``price``, or None if it cannot now."""
    request = resting.order.request
    side = request.side
    if request.order_type not in _LIMIT_TYPES:
        return slipped(price, side, slippage_bps, tick)
    limit = request.limit_price
    assert limit is not None
    if side is Side.BUY:
        if price > limit:
            return None
        return limit if resting.on_book else min(slipped(price, side, slippage_bps, tick), limit)
    if price < limit:
        return None
    return limit if resting.on_book else max(slipped(price, side, slippage_bps, tick), limit)


def estimated_price(
    request: OrderRequest, price: Decimal, slippage_bps: Decimal, tick: Decimal | None = None
) -> Decimal:
    """A prudent guess at the execution price, for the buying-power check at submission."""
    side = request.side
    reference = price
    if request.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and request.stop_price is not None:
        # A stop executes no better than its stop level.
        stop = request.stop_price
        reference = max(price, stop) if side is Side.BUY else min(price, stop)
    estimate = slipped(reference, side, slippage_bps, tick)
    if request.limit_price is not None:
        limit = request.limit_price
        estimate = min(estimate, limit) if side is Side.BUY else max(estimate, limit)
    return estimate
