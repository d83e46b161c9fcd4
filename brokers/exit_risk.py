"""Pre-trade checks on the exits of a bracket, OTO or OCO order, and on an exit leg changed on
its own.

The entry is checked by ``brokers.risk``'s checks like any order; these judge what it leaves
working at the broker:

- **the market**: an exit already through the price it starts from would act at once (a
  stop-loss would trigger, a take-profit fill), which is never what a bracket is for. The price
  it starts from is where the entry would fill: the last price for a MARKET entry, or an entry
  the market has already reached; the entry's own price for one that rests (the order model
  already keeps the exits on the right side of that). An OCO pair and a leg changed on its own
  start from the last price.
- **the price band**: each exit's price is held to the band the entry's price is, against the
  last price.
- **the notional limit**: each exit is an order of its own at the broker, valued at its own price
  for the entry's quantity, against the per-order limit. The exits close what the entry opens and
  only one of a pair can fill, so they are neither added to the entry's value nor counted as new
  exposure by the position limit.
- **working orders**: a bracket needs room for every order the broker may hold for it at once
  (IB holds the parent and both children together): the entry and each exit.

Every refusal names the field (``take_profit``, ``stop_loss``) and the limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from .enums import OrderType, RejectCode, Side
from .legs import STOP_LOSS_SUFFIX, exit_requests
from .order_request import OrderClass, OrderRequest

if TYPE_CHECKING:
    from .risk import RiskContext, RiskLimits

__all__ = ["bracket_refusal", "leg_refusal"]


def _num(value: Decimal) -> str:
    return f"{value.normalize():,f}"


def _scope(account: str | None) -> str:
    return account if account is not None else "all accounts together"


def _exits(request: OrderRequest) -> list[tuple[str, Decimal]]:
    return [
        (name, price)
        for name, price in (("take_profit", request.take_profit), ("stop_loss", request.stop_loss))
        if price is not None
    ]


def _start_price(request: OrderRequest, last: Decimal | None) -> tuple[Decimal | None, bool]:
    """Where the exits start from, and whether that is the market's price (else the entry's)."""
    if request.legs is OrderClass.OCO:
        return last, True
    kind, buy = request.order_type, request.side is Side.BUY
    if kind is OrderType.MARKET:
        return last, True
    if kind is OrderType.LIMIT:
        limit = request.limit_price
        if last is None or limit is None:
            return limit, False
        # A limit the market has reached fills there at once; one that rests fills at its price.
        reached = limit >= last if buy else limit <= last
        return (last, True) if reached else (limit, False)
    stop = request.stop_price
    if last is None or stop is None:
        return stop, False
    # A stop the market has passed triggers at once; else the entry starts at its stop.
    passed = stop <= last if buy else stop >= last
    return (last, True) if passed else (stop, False)


def _through(
    name: str, price: Decimal, exit_side: Side, start: Decimal, at_market: bool, symbol: str
) -> str | None:
    """Why an exit at ``price`` would act at once from ``start``, naming the field; or None."""
    sells = exit_side is Side.SELL
    stop = name == "stop_loss"
    # A selling stop triggers once the price falls to it, so it must sit under the start; a
    # selling take-profit limit fills once the price reaches it, so it must sit above. Buying
    # exits (closing a short), the other way round.
    through = (
        (price >= start if stop else price <= start)
        if sells
        else (price <= start if stop else price >= start)
    )
    if not through:
        return None
    where = f"the last price {_num(start)} of {symbol}" if at_market else f"the entry price {_num(start)}"
    relation = (
        ("at or above" if stop else "at or below") if sells else ("at or below" if stop else "at or above")
    )
    acts = "trigger" if stop else "fill"
    return f"{name} {_num(price)} is {relation} {where}: it would {acts} at once"


def _in_band(name: str, price: Decimal, last: Decimal, band: Decimal, symbol: str) -> str | None:
    off = abs(price - last) * 100 / last
    if off > band:
        return (
            f"{name} {_num(price)} is {off:.1f}% away from the last price {_num(last)} of "
            f"{symbol}; the band is {_num(band)}%"
        )
    return None


def bracket_refusal(
    request: OrderRequest,
    account: str | None,
    limits: RiskLimits,
    ctx: RiskContext,
    *,
    with_account_state: bool = True,
) -> tuple[RejectCode, str] | None:
    """The first reason the exits of ``request`` are refused, or None. ``with_account_state``
    off judges the order alone (a parent before it is split across accounts)."""
    exits = _exits(request)
    if not exits:
        return None
    symbol = request.symbol
    last = ctx.last_price(request.instrument, account)
    if last is not None and last <= 0:
        last = None
    band = limits.price_band_percent
    if band is not None:
        if last is None:
            name = exits[0][0]
            return RejectCode.PRICE_BAND, (
                f"no last price for {symbol} to check {name} against, so the order is refused "
                f"(price band {_num(band)}%)"
            )
        for name, price in exits:
            problem = _in_band(name, price, last, band, symbol)
            if problem is not None:
                return RejectCode.PRICE_BAND, problem
    start, at_market = _start_price(request, last)
    if start is not None:
        exit_side = request.exit_side
        for name, price in exits:
            problem = _through(name, price, exit_side, start, at_market, symbol)
            if problem is not None:
                return RejectCode.PRICE_BAND, problem
    cap = limits.max_order_notional
    quantity = request.quantity
    if cap is not None and quantity is not None:
        currency = ctx.order_currency(request, account)
        for name, price in exits:
            value = ctx.to_base(quantity * price, currency)
            if value is None:
                return RejectCode.MAX_NOTIONAL, (
                    f"cannot value the {name} exit in {ctx.base_currency}: no exchange rate for "
                    f"{currency}, so the notional limit cannot be checked"
                )
            if value > cap:
                return RejectCode.MAX_NOTIONAL, (
                    f"{name} exit value {value:,.2f} {ctx.base_currency} ({_num(quantity)} at "
                    f"{_num(price)}) is above the limit of {cap:,.2f} {ctx.base_currency} per order "
                    f"for {_scope(account)}"
                )
    most = limits.max_open_orders
    if with_account_state and most is not None:
        working = ctx.open_orders(account)
        needed = 1 + len(exit_requests(request))
        if working + needed > most:
            legs = " and ".join(name for name, _price in exits)
            return RejectCode.MAX_OPEN_ORDERS, (
                f"{_scope(account)} has {working} working orders and this {request.legs.value} order "
                f"needs room for {needed} (the entry and its {legs}); the limit is {most}"
            )
    return None


def leg_refusal(
    request: OrderRequest, account: str | None, ctx: RiskContext
) -> tuple[RejectCode, str] | None:
    """Why a stop-loss leg with these terms (one changed on its own, named by its id) would
    trigger at once against the last price, naming the field; or None. A take-profit moved
    through the market only takes the profit now, and is left to the price band."""
    price = request.stop_price
    if (
        price is None
        or request.order_type is not OrderType.STOP
        or not request.client_order_id.endswith(STOP_LOSS_SUFFIX)
    ):
        return None
    last = ctx.last_price(request.instrument, account)
    if last is None or last <= 0:
        return None
    problem = _through("stop_loss", price, request.side, last, True, request.symbol)
    return None if problem is None else (RejectCode.PRICE_BAND, problem)
