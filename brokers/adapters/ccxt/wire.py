"""ccxt's unified vocabulary: our requests as ``create_order`` arguments, each market's precision
and minimums checked before the venue sees an order, and ccxt's order statuses as ours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ...enums import AssetClass, OrderStatus, OrderType
from ...instruments import normalize_symbol
from ...models import OrderRequest
from .settings import Venue

# ccxt's precision modes (ccxt.base.decimal_to_precision), without importing ccxt for them.
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

_TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK"}


@dataclass(frozen=True, slots=True)
class OrderCall:
    """The arguments of one ``create_order``."""

    symbol: str
    type: str
    side: str
    amount: str
    price: str | None
    params: dict[str, Any]


def market_symbol(symbol: str) -> str:
    """Our symbol as ccxt's unified market symbol: ``BTCUSD`` and ``btc/usd`` are ``BTC/USD``."""
    return normalize_symbol(symbol, AssetClass.CRYPTO)


def dec(value: object) -> Decimal | None:
    """A number ccxt reports (float, int or string) as a Decimal; None for none or garbage."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def table(value: object) -> dict[str, Any]:
    """A JSON object ccxt passed on, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def order_call(request: OrderRequest, venue: Venue) -> OrderCall:
    kind = request.order_type
    params: dict[str, Any] = {venue.client_id_param: request.client_order_id}
    if kind is not OrderType.MARKET:
        params["timeInForce"] = _TIF[request.time_in_force.value]
    price: str | None = None
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and request.limit_price is not None:
        price = plain(request.limit_price)
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and request.stop_price is not None:
        params[venue.stop_param] = plain(request.stop_price)
    return OrderCall(
        symbol=market_symbol(request.symbol),
        type="market" if kind in (OrderType.MARKET, OrderType.STOP) else "limit",
        side=request.side.value.lower(),
        amount=plain(request.units),
        price=price,
        params=params,
    )


def _step(precision: object, mode: int) -> Decimal | None:
    """The smallest increment a market takes, from its ccxt precision value."""
    value = dec(precision)
    if value is None or value <= 0:
        return None
    if mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    if mode == TICK_SIZE:
        return value
    return None  # significant digits: no fixed step to check against


def market_refusal(
    request: OrderRequest, market: dict[str, Any], mode: int, reference: Decimal | None, venue: str
) -> str | None:
    """Why the venue would refuse this order under the market's precision and minimums, naming
    the limit; None when it fits. ``reference`` prices a market order for the cost minimum."""
    symbol = str(market.get("symbol") or market_symbol(request.symbol))
    precision = table(market.get("precision"))
    limits = table(market.get("limits"))
    amount_step = _step(precision.get("amount"), mode)
    if amount_step is not None and request.units % amount_step != 0:
        return f"{symbol} at {venue} takes quantities in steps of {plain(amount_step)}; {request.units} is not one"
    price_step = _step(precision.get("price"), mode)
    for field, price in (("limit_price", request.limit_price), ("stop_price", request.stop_price)):
        if price is not None and price_step is not None and price % price_step != 0:
            return f"{symbol} at {venue} takes prices in steps of {plain(price_step)}; {field} {price} is not one"
    amount_limits = table(limits.get("amount"))
    low, high = dec(amount_limits.get("min")), dec(amount_limits.get("max"))
    if low is not None and request.units < low:
        return f"{symbol} at {venue}: quantity {request.units} is below the minimum amount {plain(low)}"
    if high is not None and high > 0 and request.units > high:
        return f"{symbol} at {venue}: quantity {request.units} is above the maximum amount {plain(high)}"
    price_limits = table(limits.get("price"))
    low_price = dec(price_limits.get("min"))
    for field, price in (("limit_price", request.limit_price), ("stop_price", request.stop_price)):
        if price is not None and low_price is not None and price < low_price:
            return f"{symbol} at {venue}: {field} {price} is below the minimum price {plain(low_price)}"
    cost_limits = table(limits.get("cost"))
    low_cost = dec(cost_limits.get("min"))
    price = request.limit_price or request.stop_price or reference
    if low_cost is not None and price is not None and request.units * price < low_cost:
        quote = market.get("quote") or ""
        return (
            f"{symbol} at {venue}: the order is worth about {plain(request.units * price)} {quote}, "
            f"below the minimum cost {plain(low_cost)} {quote}".replace("  ", " ")
        )
    return None


def map_status(status: object, filled: Decimal, quantity: Decimal) -> OrderStatus:
    """ccxt's unified order status as ours."""
    text = str(status or "").lower()
    if text == "open":
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
    if text == "closed":
        return OrderStatus.FILLED if filled >= quantity else OrderStatus.PARTIALLY_FILLED
    if text in ("canceled", "cancelled"):
        return OrderStatus.CANCELLED
    if text == "expired":
        return OrderStatus.EXPIRED
    if text == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.SUBMITTED


def stamp(milliseconds: object) -> datetime | None:
    value = dec(milliseconds)
    if value is None or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
