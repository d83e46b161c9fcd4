"""Translation between Alpaca's v2 JSON and our models: statuses, orders, positions, errors.

Pure functions only, so each can be checked against Alpaca's documented example payloads.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass as AlpacaOrderClass
from alpaca.trading.enums import OrderSide
from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)
from pydantic import ValidationError

from ...credentials import redact
from ...errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    InsufficientFundsError,
    InvalidSymbolError,
    MarketClosedError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...identifiers import currency_code
from ...models import (
    AssetClass,
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    describe_validation_error,
    to_decimal,
)

# Every value of alpaca-py's ``OrderStatus`` is named below. ``pending_review``: Alpaca is
# reviewing the order before it goes to the market, and the order can still be cancelled or fill.
_SUBMITTED = {"accepted", "pending_new", "accepted_for_bidding", "pending_review"}
_WORKING = {
    "new",
    "partially_filled",
    "done_for_day",
    "pending_cancel",
    "pending_replace",
    "held",
    "stopped",
    "suspended",
    "calculated",
}
_FINAL = {
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    # A replaced order stops working; its replacement arrives as an order of its own.
    "replaced": OrderStatus.CANCELLED,
}
ASSET_CLASSES = {"us_equity": AssetClass.STOCK, "crypto": AssetClass.CRYPTO, "us_option": AssetClass.OPTION}
_TIME_IN_FORCE = {
    "day": TimeInForce.DAY,
    "gtc": TimeInForce.GTC,
    "ioc": TimeInForce.IOC,
    "fok": TimeInForce.FOK,
    "opg": TimeInForce.DAY,
    "cls": TimeInForce.DAY,
}
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")
_OUR_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,48}")


def map_status(alpaca_status: str, filled: Decimal, quantity: Decimal | None) -> OrderStatus:
    """Alpaca's order status (plus how much has filled) as one of ours. A notional order
    (``quantity`` None) is as filled as Alpaca says."""
    status = (alpaca_status or "").strip().lower()
    if quantity is None:
        quantity = Decimal(0)
    if status == "filled" and 0 < quantity and filled < quantity:
        # "filled" with less than the order filled contradicts itself: believe the quantities.
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.UNKNOWN
    if status in _FINAL:
        return _FINAL[status]
    if status in _SUBMITTED:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.SUBMITTED
    if status in _WORKING:
        if quantity > 0 and filled >= quantity:
            return OrderStatus.FILLED
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
    return OrderStatus.UNKNOWN


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 as Alpaca writes it (up to nanoseconds, Z or an offset) -> aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{base}.{micros}{zone}").astimezone(UTC)
    except ValueError:
        return None


def crypto_symbol(symbol: str) -> str:
    """Alpaca's positions (and older payloads) write BTCUSD; orders use BTC/USD. We use BTC/USD."""
    if "/" in symbol:
        return symbol
    for quote in _CRYPTO_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def dec(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    return to_decimal(value, field)


def required(payload: dict[str, Any], field: str) -> Decimal:
    value = dec(payload.get(field), field)
    if value is None:
        raise BrokerAPIError(f"Alpaca sent no {field}")
    return value


def wire_decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


_JSON_KINDS = {
    type(None): "null",
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "an object",
}


def payload_dict(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        kind = _JSON_KINDS.get(type(payload), "something else")
        article = "an" if what[:1] in "aeiou" else "a"
        raise BrokerAPIError(f"Alpaca sent {kind} where {article} {what} was expected")
    return payload


def unreadable(exc: Exception) -> str:
    """Why a payload could not be read, in words: a missing key, or the field and what is wrong."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]}" if exc.args else "a field is missing"
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return str(exc)


def currency_of(payload: dict[str, Any]) -> str:
    """The account's currency: a 3-letter code, USD when Alpaca leaves it out."""
    value = payload.get("currency") or "USD"
    try:
        return currency_code(value)
    except ValueError:
        raise BrokerAPIError(
            f"Alpaca sent currency {str(value)[:20]!r}, which is not a 3-letter code"
        ) from None


def check_order_id(broker_order_id: str, broker: str) -> None:
    """Alpaca order ids are UUIDs; anything else cannot name an order there."""
    try:
        UUID(str(broker_order_id))
    except ValueError:
        raise OrderNotFoundError(f"{broker_order_id!r} is not an Alpaca order id", broker=broker) from None


# -- orders out ---------------------------------------------------------------------------


def alpaca_refusal(request: OrderRequest) -> str | None:
    """Alpaca's rules that depend on more than one field, checked before any network call."""
    kind, tif = request.order_type, request.time_in_force
    if request.has_legs:
        # Alpaca's advanced orders: equities, whole shares, DAY or GTC.
        if request.asset_class is not AssetClass.STOCK:
            return f"Alpaca holds take-profit and stop-loss exits on US stock orders only, not {request.asset_class.value}"
        if tif not in (TimeInForce.DAY, TimeInForce.GTC):
            return f"Alpaca takes orders with exits with time in force DAY or GTC only, not {tif.value}"
        whole = request.units
        if whole != whole.to_integral_value():
            return f"Alpaca takes orders with exits for whole shares only, not {whole}"
        return None
    if request.asset_class is AssetClass.CRYPTO:
        if kind not in (OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT):
            return f"Alpaca takes crypto orders of type MARKET, LIMIT or STOP_LIMIT only, not {kind.value}"
        if tif not in (TimeInForce.GTC, TimeInForce.IOC):
            return f"Alpaca takes crypto orders with time in force GTC or IOC only, not {tif.value}"
        return None
    if kind is OrderType.TRAILING_STOP and tif not in (TimeInForce.DAY, TimeInForce.GTC):
        return f"Alpaca takes TRAILING_STOP orders with time in force DAY or GTC only, not {tif.value}"
    quantity = request.quantity
    if quantity is None:
        # Notional equity orders are fractional orders: market orders for the day only
        # (Alpaca's fractional trading rules).
        if tif is not TimeInForce.DAY:
            return f"Alpaca takes notional orders with time in force DAY only, not {tif.value}"
        return None
    if quantity != quantity.to_integral_value():
        if kind is OrderType.TRAILING_STOP:
            return "Alpaca takes fractional quantities on MARKET, LIMIT, STOP and STOP_LIMIT orders only"
        if tif is not TimeInForce.DAY:
            return f"Alpaca takes fractional quantities with time in force DAY only, not {tif.value}"
    return None


_REQUEST_MODELS = {
    OrderType.MARKET: MarketOrderRequest,
    OrderType.LIMIT: LimitOrderRequest,
    OrderType.STOP: StopOrderRequest,
    OrderType.STOP_LIMIT: StopLimitOrderRequest,
    OrderType.TRAILING_STOP: TrailingStopOrderRequest,
}


def order_fields(request: OrderRequest) -> dict[str, Any]:
    """The POST /v2/orders body. alpaca-py's request model checks the combination of fields;
    it holds numbers as floats, so the body then gets our exact decimals as strings."""
    prices = {
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "trail_percent": request.trail_percent,
        "trail_price": request.trail_amount,
    }
    given = {key: value for key, value in prices.items() if value is not None}
    # Exactly one of qty and notional: Alpaca refuses a body with both.
    size = {"qty": request.quantity} if request.quantity is not None else {"notional": request.notional}
    legs: dict[str, Any] = {}
    take_profit, stop_loss = request.take_profit, request.stop_loss
    if request.has_legs:
        legs["order_class"] = _ORDER_CLASSES[request.legs]
        if take_profit is not None:
            legs["take_profit"] = TakeProfitRequest(limit_price=float(take_profit))
        if stop_loss is not None:
            legs["stop_loss"] = StopLossRequest(stop_price=float(stop_loss))
    model = _REQUEST_MODELS[request.order_type](
        symbol=request.symbol,
        side=OrderSide.BUY if request.side is Side.BUY else OrderSide.SELL,
        time_in_force=AlpacaTimeInForce(request.time_in_force.value.lower()),
        client_order_id=request.client_order_id,
        **{key: float(value) for key, value in size.items() if value is not None},
        **{key: float(value) for key, value in given.items()},
        **legs,
    )
    fields = model.to_request_fields()
    fields.update({key: wire_decimal(value) for key, value in size.items() if value is not None})
    fields.update({key: wire_decimal(value) for key, value in given.items()})
    if take_profit is not None:
        fields["take_profit"] = {"limit_price": wire_decimal(take_profit)}
    if stop_loss is not None:
        fields["stop_loss"] = {"stop_price": wire_decimal(stop_loss)}
    return fields


_ORDER_CLASSES = {
    OrderClass.BRACKET: AlpacaOrderClass.BRACKET,
    OrderClass.OTO: AlpacaOrderClass.OTO,
    OrderClass.OCO: AlpacaOrderClass.OCO,
}


# -- payloads in --------------------------------------------------------------------------


def asset_class_of(payload: dict[str, Any]) -> AssetClass:
    """The asset class of an order or position Alpaca sent (US equity when it names none). A
    class we do not model is OTHER: shown as held, never taken for a stock."""
    return ASSET_CLASSES.get(str(payload.get("asset_class") or "us_equity"), AssetClass.OTHER)


def request_from_payload(payload: dict[str, Any]) -> OrderRequest:
    """An order placed elsewhere (the web dashboard, another program), as a request of ours.
    Raises ValueError for what we cannot represent (multi-leg orders, a notional order that is
    not a market order)."""
    size: dict[str, Any]
    if payload.get("qty") not in (None, ""):
        size = {"quantity": payload["qty"]}
    elif payload.get("notional") not in (None, ""):
        # A dollar-amount order: Alpaca omits its qty and sends the notional.
        size = {"notional": payload["notional"]}
    else:
        raise ValueError(f"order {payload.get('id')} names neither a quantity nor a notional")
    asset_class = asset_class_of(payload)
    symbol = str(payload.get("symbol") or "").strip()
    kind = OrderType(str(payload.get("type") or payload.get("order_type") or "market"))
    fields: dict[str, Any] = {
        "symbol": crypto_symbol(symbol) if asset_class is AssetClass.CRYPTO else symbol,
        "side": Side(str(payload.get("side") or "")),
        **size,
        "order_type": kind,
        "time_in_force": _TIME_IN_FORCE.get(str(payload.get("time_in_force") or "day"), TimeInForce.DAY),
        "asset_class": asset_class,
    }
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        fields["limit_price"] = payload.get("limit_price")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        fields["stop_price"] = payload.get("stop_price")
    if kind is OrderType.TRAILING_STOP:
        if payload.get("trail_percent") not in (None, ""):
            fields["trail_percent"] = payload["trail_percent"]
        else:
            fields["trail_amount"] = payload.get("trail_price")
    client_id = str(payload.get("client_order_id") or "")
    # Alpaca allows 128 characters of anything; fall back to its own id when ours cannot hold it.
    fields["client_order_id"] = client_id if _OUR_CLIENT_ID.fullmatch(client_id) else str(payload["id"])
    return OrderRequest(**fields)


class FillSource(NamedTuple):
    """What a fill repeats of the order it belongs to."""

    broker_id: str
    client_order_id: str | None
    symbol: str
    side: Side
    asset_class: AssetClass = AssetClass.STOCK


def foreign_source(broker_id: str, payload: dict[str, Any]) -> FillSource:
    """The order behind an execution of an order placed elsewhere that no request describes."""
    asset_class = asset_class_of(payload)
    symbol = str(payload.get("symbol") or "").strip().upper()
    if not symbol:
        # A multi-leg order: its executions are per leg, and only positions show them.
        raise ValueError(f"order {broker_id} names no symbol; its legs' fills show in positions")
    return FillSource(
        broker_id,
        None,
        crypto_symbol(symbol) if asset_class is AssetClass.CRYPTO else symbol,
        Side(str(payload.get("side") or "")),
        asset_class,
    )


def position_from_payload(payload: dict[str, Any], account: str) -> Position:
    asset_class = asset_class_of(payload)
    symbol = str(payload["symbol"]).strip()
    quantity = abs(required(payload, "qty"))
    if str(payload.get("side", "long")).lower() == "short":
        quantity = -quantity
    return Position(
        symbol=crypto_symbol(symbol) if asset_class is AssetClass.CRYPTO else symbol,
        quantity=quantity,
        avg_price=dec(payload.get("avg_entry_price"), "avg_entry_price") or Decimal(0),
        account=account,
        asset_class=asset_class,
        currency="USD",
        last_price=dec(payload.get("current_price"), "current_price"),
        multiplier=Decimal(100) if asset_class is AssetClass.OPTION else Decimal(1),
        exchange=payload.get("exchange") or None,
        # Alpaca's day: yesterday's close and the open quantity's P&L since (its "intraday").
        previous_close=dec(payload.get("lastday_price"), "lastday_price") or None,
        day_pnl=dec(payload.get("unrealized_intraday_pl"), "unrealized_intraday_pl"),
    )


# -- errors -------------------------------------------------------------------------------


def error_body(exc: APIError) -> tuple[int | None, str]:
    """Alpaca's error JSON is {"code": 40310000, "message": "..."}; some gateways send text."""
    raw = str(exc)
    try:
        body = json.loads(raw)
    except ValueError:
        return None, raw.strip() or "no details"
    if not isinstance(body, dict):
        return None, raw.strip()
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or raw).strip()


def api_error(exc: APIError, *, broker: str, op: str, what: str) -> BrokerError:
    """An HTTP error as our exception. ``op`` is "read", "submit" or "cancel": the same status
    means different things for each (a 5xx on a submit leaves the order's fate unknown)."""
    status = exc.status_code or 0
    code, message = error_body(exc)
    text = redact(message)[:300]
    lowered = text.lower()
    detail = f"Alpaca refused to {what}: {text} (HTTP {status})"
    kw: dict[str, Any] = {"broker": broker, "code": code or status}
    if status == 401:
        return AuthenticationError(f"Alpaca refused the API keys: {text} (HTTP 401)", **kw)
    if status == 404:
        return OrderNotFoundError(detail, **kw)
    if status == 429:
        if op == "submit":
            return OrderRejectedError(f"{detail}; the order was not placed", **kw)
        return BrokerAPIError(detail, retryable=True, **kw)
    if status >= 500:
        if op == "read":
            return BrokerAPIError(detail, retryable=True, **kw)
        if op == "submit":
            detail += "; the order may or may not have been placed"
        return (BrokerTimeoutError if status == 504 else BrokerConnectionError)(detail, **kw)
    if op == "read" or (status == 403 and lowered.rstrip(".") == "forbidden"):
        return AuthenticationError(detail, **kw) if status == 403 else BrokerAPIError(detail, **kw)
    if status == 403 and "buying power" in lowered:
        return InsufficientFundsError(detail, **kw)
    if op == "submit" and any(
        words in lowered for words in ("not found", "could not find", "invalid symbol", "not tradable")
    ):
        return InvalidSymbolError(detail, **kw)
    if op == "submit" and ("market hours" in lowered or "market is closed" in lowered):
        return MarketClosedError(detail, **kw)
    return OrderRejectedError(detail, **kw)
