"""Kite Connect's vocabulary: exchanges, order types and statuses, tags, numbers and times."""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ...errors import InsufficientFundsError, InvalidSymbolError, MarketClosedError, OrderRejectedError
from ...models import AssetClass, Fill, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from ...settlement import dated

IST = timezone(timedelta(hours=5, minutes=30), "IST")
TOKEN_EXPIRY_HOUR_IST = 6
EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"})
CASH_EXCHANGES = frozenset({"NSE", "BSE"})
PRODUCTS = frozenset({"CNC", "MIS", "NRML"})
# co, iceberg and auction orders need fields (a stop for the cover leg, leg counts, an auction
# number) that an OrderRequest cannot carry, so only these two varieties can be honoured.
VARIETIES = frozenset({"regular", "amo"})
MAX_TAG_LEN = 20

KITE_ORDER_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "SL-M",
    OrderType.STOP_LIMIT: "SL",
}
ORDER_TYPE_FROM_KITE = {v: k for k, v in KITE_ORDER_TYPE.items()}
# Statuses of an order the OMS holds but the exchange has not confirmed yet.
_BEFORE_EXCHANGE = frozenset(
    {"PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "AMO REQ RECEIVED"}
)
FUNDS = re.compile(r"insufficient (funds|margin)|margin exceeds|required margin", re.I)
SYMBOL = re.compile(r"tradingsymbol|instrument", re.I)
CLOSED = re.compile(r"market (is )?closed|markets are closed|outside (the )?market hours|after market", re.I)
NOT_FOUND = re.compile(r"(couldn't|could not|cannot|can't) find|not found|invalid `?order_id", re.I)


def token_expiry(issued_at: datetime) -> datetime:
    """Kite tokens stop working at the first 06:00 IST after they were issued."""
    local = issued_at.astimezone(IST)
    expiry = local.replace(hour=TOKEN_EXPIRY_HOUR_IST, minute=0, second=0, microsecond=0)
    if local >= expiry:
        expiry += timedelta(days=1)
    return expiry.astimezone(UTC)


def tag_for(client_order_id: str) -> str:
    """Kite's order tag holds 20 alphanumerics; longer ids get a stable digest that fits."""
    if len(client_order_id) <= MAX_TAG_LEN and client_order_id.isalnum():
        return client_order_id
    return "H" + hashlib.sha256(client_order_id.encode()).hexdigest()[: MAX_TAG_LEN - 1].upper()


def instrument(symbol: str, exchange: str | None, default_exchange: str, broker: str) -> tuple[str, str]:
    """(exchange, tradingsymbol) for "INFY", "NSE:INFY" or "INFY" with exchange="NSE"; a bare
    symbol is on ``default_exchange``."""
    prefix, _, rest = symbol.strip().upper().rpartition(":")
    if prefix and exchange and prefix != exchange.upper():
        raise InvalidSymbolError(
            f"symbol {symbol} names exchange {prefix} but the order says {exchange}", broker=broker
        )
    venue = (prefix or exchange or default_exchange).upper()
    if venue not in EXCHANGES:
        raise InvalidSymbolError(
            f"Kite has no exchange {venue}; it has {', '.join(sorted(EXCHANGES))}", broker=broker
        )
    if not rest or not re.fullmatch(r"[A-Z0-9][A-Z0-9&_.-]*", rest):
        raise InvalidSymbolError(f"{symbol!r} is not a Kite trading symbol", broker=broker)
    return venue, rest


def dec(value: Any, places: int = 6) -> Decimal:
    """A Kite JSON number as a Decimal, without float noise or exponent notation."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    number = number.quantize(Decimal(1).scaleb(-places)).normalize()
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number


def kite_time(value: Any) -> datetime | None:
    """Kite timestamps are IST wall-clock times; kiteconnect hands them over naive."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=IST) if value.tzinfo is None else value).astimezone(UTC)
    if isinstance(value, str) and len(value) == 19:
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST).astimezone(UTC)
    return None


def map_status(kite_status: str | None, filled: Decimal) -> OrderStatus:
    status = (kite_status or "").strip().upper()
    if status == "COMPLETE":
        return OrderStatus.FILLED
    if status.startswith("CANCELLED"):
        return OrderStatus.CANCELLED
    if status == "REJECTED":
        return OrderStatus.REJECTED
    if status in ("EXPIRED", "LAPSED"):
        return OrderStatus.EXPIRED
    if filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return OrderStatus.SUBMITTED if status in _BEFORE_EXCHANGE else OrderStatus.ACCEPTED


def asset_class_of(exchange: str, tradingsymbol: str) -> AssetClass:
    if exchange in CASH_EXCHANGES:
        return AssetClass.STOCK
    if tradingsymbol.endswith(("CE", "PE")):
        return AssetClass.OPTION
    return AssetClass.FUTURE


def refusal_class(message: str, error_type: str | None) -> type[OrderRejectedError]:
    if error_type == "MarginException" or FUNDS.search(message):
        return InsufficientFundsError
    if CLOSED.search(message):
        return MarketClosedError
    if error_type in (None, "InputException", "GeneralException") and SYMBOL.search(message):
        return InvalidSymbolError
    return OrderRejectedError


def request_from_order(data: dict[str, Any], account: str, client_order_id: str | None) -> OrderRequest:
    """The request behind an order we did not place in this process (another app, an earlier run).
    Its client id is the tag when that is one of ours, else one made from Kite's order id."""
    tag = str(data.get("tag") or "")
    order_type = ORDER_TYPE_FROM_KITE.get(str(data.get("order_type")), OrderType.MARKET)
    exchange, symbol = str(data["exchange"]), str(data["tradingsymbol"])
    return OrderRequest(
        symbol=symbol,
        side=data["transaction_type"],
        quantity=data["quantity"],
        order_type=order_type,
        limit_price=data.get("price") if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=data.get("trigger_price")
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        else None,
        time_in_force=TimeInForce.IOC if data.get("validity") == "IOC" else TimeInForce.DAY,
        account=account,
        asset_class=asset_class_of(exchange, symbol),
        exchange=exchange,
        currency="INR",
        client_order_id=client_order_id or (tag if tag.isalnum() else f"KITE-{data['order_id']}"),
    )


def as_modified(request: OrderRequest, data: dict[str, Any]) -> OrderRequest | None:
    """The request as Kite now holds it, when the order was modified (in Kite's own app, by
    another program) to another quantity, type, price or trigger; None when it was not. Kite's
    order history shows such a change as MODIFY VALIDATION PENDING, MODIFIED, then the order
    again with the new values."""
    if request.order_type is OrderType.TRAILING_STOP:
        return None  # Kite has no such type: the request is not Kite's to restate
    order_type = ORDER_TYPE_FROM_KITE.get(str(data.get("order_type")), request.order_type)
    price, trigger = dec(data.get("price")), dec(data.get("trigger_price"))
    wanted: dict[str, Any] = {
        "quantity": dec(data.get("quantity")) or request.quantity,
        "order_type": order_type,
        "limit_price": (price or request.limit_price)
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        else None,
        "stop_price": (trigger or request.stop_price)
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        else None,
    }
    if request.model_dump(include=set(wanted)) == wanted:
        return None
    return OrderRequest.model_validate({**request.model_dump(), **wanted})


def holding_key(exchange: str, tradingsymbol: str, isin: str | None) -> tuple[str, str]:
    """What makes two of Kite's rows one instrument. A share is one holding whichever cash
    exchange lists it: Kite shows a demat holding under one exchange (its mock lists SBIN on
    BSE) and nets a sale on the other against it, so NSE and BSE rows of one ISIN (or, where
    Kite sends no ISIN, of one trading symbol) are one instrument. Derivatives are their
    exchange's own."""
    if exchange in CASH_EXCHANGES:
        return ("EQ", isin or tradingsymbol)
    return (exchange, tradingsymbol)


def fill_from_trade(
    data: dict[str, Any], account: str, symbol: str | None, client_order_id: str | None, now: datetime
) -> Fill:
    """One Kite trade as a Fill; its id joins order and trade ids, which Kite keeps unique."""
    order_id, trade_id = str(data["order_id"]), str(data["trade_id"])
    exchange, tradingsymbol = str(data.get("exchange") or ""), str(data["tradingsymbol"])
    # Dated by the exchange's time of the trade, in the market of the exchange it was made on.
    fill = Fill(
        fill_id=f"{order_id}:{trade_id}",
        account=account,
        symbol=symbol or str(data["tradingsymbol"]),
        side=Side(data["transaction_type"]),
        quantity=dec(data.get("quantity")),
        price=dec(data.get("average_price")),
        currency="INR",
        asset_class=asset_class_of(exchange, tradingsymbol),
        exchange=exchange or None,
        broker_order_id=order_id,
        client_order_id=client_order_id,
        timestamp=kite_time(data.get("fill_timestamp")) or kite_time(data.get("exchange_timestamp")) or now,
    )
    return dated(fill)
