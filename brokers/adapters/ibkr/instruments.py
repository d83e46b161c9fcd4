"""Our order requests and symbols as IB contracts and orders, and back.

Symbols (``OrderRequest.symbol`` with its ``asset_class``):

- STOCK: the IB symbol, e.g. ``AAPL`` or ``BRK B``; exchange SMART and currency USD unless given.
- OPTION: OCC, ``AAPL  240119C00150000`` (padding optional), or ``AAPL 20240119 150 C``.
- FUTURE: ``ES 202503`` (root and contract month or expiry date) or the local symbol ``ESH5``;
  the exchange (CME, ...) must be given.
- FOREX: ``EUR.USD``, ``EUR/USD`` or ``EURUSD``; the quantity is in the first currency.
- CFD: the underlying's IB symbol, with or without `` CFD`` after it (``AAPL`` or ``AAPL CFD``).

Positions and orders placed elsewhere show options in compact OCC form (``AAPL240119C00150000``),
futures as ``ROOT YYYYMM``, currency pairs as ``EUR.USD`` and CFDs as ``AAPL CFD``: a CFD is
never its underlying, so it never shares the underlying's symbol. Any other security type (a
bond, a warrant, a fund, ...) is OTHER, shown as ``SYMBOL SECTYPE`` (``XYZ WAR``) and not traded
from here.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ...errors import BrokerAPIError, InvalidSymbolError
from ...models import AssetClass, OrderRequest, OrderType, Side, TimeInForce
from .api import ib_api

UNSET_DOUBLE = 1.7976931348623157e308

ORDER_TYPES = {
    OrderType.MARKET: "MKT",
    OrderType.LIMIT: "LMT",
    OrderType.STOP: "STP",
    OrderType.STOP_LIMIT: "STP LMT",
    OrderType.TRAILING_STOP: "TRAIL",
}
_IB_ORDER_TYPES = {value: key for key, value in ORDER_TYPES.items()}
_SEC_TYPES = {
    "STK": AssetClass.STOCK,
    "OPT": AssetClass.OPTION,
    "FOP": AssetClass.OPTION,
    "FUT": AssetClass.FUTURE,
    "CASH": AssetClass.FOREX,
    "CRYPTO": AssetClass.CRYPTO,
    "CFD": AssetClass.CFD,
}

_OCC = re.compile(r"^([A-Z0-9.]{1,6})\s*(\d{6})([CP])(\d{8})$")
_SPACED_OPTION = re.compile(r"^([A-Z0-9.]{1,6})\s+(\d{8})\s+(\d+(?:\.\d+)?)\s*(C|P|CALL|PUT)$")
_FUTURE = re.compile(r"^([A-Z0-9]{1,6})\s+(\d{6}|\d{8})$")
_FUTURE_LOCAL = re.compile(r"^[A-Z0-9]{1,5}[FGHJKMNQUVXZ]\d{1,2}$")
_FOREX = re.compile(r"^([A-Z]{3})[./]?([A-Z]{3})$")
_CFD_SUFFIX = re.compile(r"\s+CFD$")


def contract_for(request: OrderRequest) -> Any:
    """The IB contract an order request names, or InvalidSymbolError saying which format to use."""
    symbol, asset = request.symbol, request.asset_class
    currency = request.currency or "USD"
    if asset is AssetClass.STOCK:
        return ib_api.Stock(symbol, request.exchange or "SMART", currency)
    if asset is AssetClass.OPTION:
        occ, spaced = _OCC.match(symbol), _SPACED_OPTION.match(symbol)
        if occ:
            root, yymmdd, right, strike_text = occ.groups()
            expiry, strike = "20" + yymmdd, Decimal(strike_text) / 1000
        elif spaced:
            root, expiry, strike_text, right = spaced.groups()
            strike, right = Decimal(strike_text), right[0]
        else:
            raise InvalidSymbolError(
                f"option symbol {symbol!r} is not OCC ('AAPL  240119C00150000') "
                "or 'ROOT YYYYMMDD STRIKE C|P' ('AAPL 20240119 150 C')"
            )
        return ib_api.Option(
            root,
            expiry,
            float(strike),
            right,
            request.exchange or "SMART",
            multiplier="100",
            currency=currency,
        )
    if asset is AssetClass.FUTURE:
        if not request.exchange:
            raise InvalidSymbolError(f"future {symbol!r} needs an exchange such as CME, CBOT or EUREX")
        spaced_future = _FUTURE.match(symbol)
        if spaced_future:
            root, expiry = spaced_future.groups()
            return ib_api.Future(root, expiry, request.exchange, currency=currency)
        if _FUTURE_LOCAL.match(symbol):
            return ib_api.Future(exchange=request.exchange, localSymbol=symbol, currency=currency)
        raise InvalidSymbolError(
            f"future symbol {symbol!r} is not 'ROOT YYYYMM' ('ES 202503') or a local symbol ('ESH5')"
        )
    if asset is AssetClass.FOREX:
        pair = _FOREX.match(symbol)
        if not pair:
            raise InvalidSymbolError(f"currency pair {symbol!r} is not 'EUR.USD', 'EUR/USD' or 'EURUSD'")
        base, quote = pair.groups()
        if request.currency and request.currency != quote:
            raise InvalidSymbolError(f"{symbol} is priced in {quote}, not {request.currency}")
        return ib_api.Forex(base + quote, exchange=request.exchange or "IDEALPRO")
    if asset is AssetClass.CFD:
        return ib_api.CFD(_CFD_SUFFIX.sub("", symbol), request.exchange or "SMART", currency)
    raise InvalidSymbolError(f"Interactive Brokers orders for {asset.value} are not supported here")


def symbol_for(contract: Any) -> tuple[str, AssetClass]:
    """Our symbol and asset class for an IB contract (see the module docstring)."""
    sec_type = contract.secType
    asset = _SEC_TYPES.get(sec_type, AssetClass.OTHER)
    if asset is AssetClass.OPTION and contract.lastTradeDateOrContractMonth and contract.strike:
        expiry = contract.lastTradeDateOrContractMonth[:8]
        strike = int((Decimal(str(contract.strike)) * 1000).to_integral_value())
        return f"{contract.symbol}{expiry[2:]}{contract.right[:1]}{strike:08d}", asset
    if asset is AssetClass.FUTURE and contract.lastTradeDateOrContractMonth:
        return f"{contract.symbol} {contract.lastTradeDateOrContractMonth[:6]}", asset
    if asset is AssetClass.FOREX:
        return f"{contract.symbol}.{contract.currency}", asset
    name = contract.symbol or contract.localSymbol
    if asset is AssetClass.CFD:
        return f"{name} CFD", asset
    if asset is AssetClass.OTHER:
        return f"{name} {sec_type or '?'}".strip(), asset
    return name, asset


def ib_order_for(request: OrderRequest, account: str) -> Any:
    order = ib_api.Order()
    order.action = request.side.value
    order.totalQuantity = float(request.units)
    order.orderType = ORDER_TYPES[request.order_type]
    order.tif = request.time_in_force.value
    order.orderRef = request.client_order_id
    order.account = account
    order.transmit = True
    if request.limit_price is not None:
        order.lmtPrice = float(request.limit_price)
    if request.stop_price is not None:
        order.auxPrice = float(request.stop_price)
    if request.trail_amount is not None:
        order.auxPrice = float(request.trail_amount)
    if request.trail_percent is not None:
        order.trailingPercent = float(request.trail_percent)
    return order


def price_or_none(value: float | None) -> Decimal | None:
    if value is None or value == UNSET_DOUBLE or value != value or value <= 0:
        return None
    return to_amount(value)


def figure(value: Any, what: str, broker: str) -> Decimal:
    """An account or position figure from TWS, strictly: empty or unset is 0, but a value that is
    not a finite number is an error naming it (``to_amount`` would quietly make it 0, and a
    balance that reads 0 by mistake is worse than one shown as unreadable)."""
    if value in (None, "") or value == UNSET_DOUBLE:
        return Decimal(0)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise BrokerAPIError(f"TWS sent {what} {str(value)[:30]!r}, which is not a number", broker=broker)
    return to_amount(number)


def to_amount(value: Any) -> Decimal:
    """A figure from TWS ("1234.5", 1234.5, "" or the unset marker) as a Decimal: 100 not 100.0."""
    if value in (None, "") or value == UNSET_DOUBLE:
        return Decimal(0)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
    if not result.is_finite():
        return Decimal(0)
    if result.adjusted() >= 28:
        return result  # past what quantize() can hold; the manager refuses figures this large
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


def request_from_ib(contract: Any, order: Any) -> OrderRequest:
    """Rebuild the request behind an order we did not place in this process (TWS, another client,
    an earlier run). Order types we do not model are shown as LIMIT or MARKET by their price."""
    symbol, asset = symbol_for(contract)
    order_type = _IB_ORDER_TYPES.get(order.orderType)
    limit, aux = price_or_none(order.lmtPrice), price_or_none(order.auxPrice)
    percent = price_or_none(order.trailingPercent)
    if order_type is None:
        order_type = OrderType.LIMIT if limit else OrderType.MARKET
    fields: dict[str, Any] = {}
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        fields["limit_price"] = limit
    if order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        fields["stop_price"] = aux
    if order_type is OrderType.TRAILING_STOP:
        fields["trail_percent" if percent else "trail_amount"] = percent or aux
    ref = order.orderRef or ""
    client_order_id = (
        ref if re.fullmatch(r"[A-Za-z0-9_-]{1,48}", ref) else f"IB{order.permId or order.orderId}"
    )
    if order.tif in TimeInForce.__members__:
        tif = TimeInForce[order.tif]
    else:
        tif = TimeInForce.GTC if order.tif == "GTD" else TimeInForce.DAY
    return OrderRequest(
        symbol=symbol,
        side=Side.BUY if order.action == "BUY" else Side.SELL,
        quantity=to_amount(order.totalQuantity),
        order_type=order_type,
        time_in_force=tif,
        asset_class=asset,
        currency=contract.currency or None,
        exchange=(contract.exchange or None) if asset is not AssetClass.STOCK else None,
        client_order_id=client_order_id,
        **fields,
    )


def modified_request(request: OrderRequest, ib_order: Any) -> OrderRequest | None:
    """``request`` with the quantity and prices of TWS's copy of the order, or None if they are
    the same. An order modified in TWS (or by another client) keeps its order id and permId;
    TWS sends openOrder again with the new totalQuantity and prices, and the client library
    copies them into the order it holds
    (https://interactivebrokers.github.io/tws-api/modifying_orders.html). ValueError if the
    result is not a valid request."""
    changes: dict[str, Decimal] = {}
    quantity = to_amount(ib_order.totalQuantity)
    if quantity > 0 and quantity != request.quantity:
        changes["quantity"] = quantity
    kind = request.order_type
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        limit = price_or_none(ib_order.lmtPrice)
        if limit is not None and limit != request.limit_price:
            changes["limit_price"] = limit
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        stop = price_or_none(ib_order.auxPrice)
        if stop is not None and stop != request.stop_price:
            changes["stop_price"] = stop
    if kind is OrderType.TRAILING_STOP:
        percent, amount = price_or_none(ib_order.trailingPercent), price_or_none(ib_order.auxPrice)
        if request.trail_percent is not None and percent is not None and percent != request.trail_percent:
            changes["trail_percent"] = percent
        if request.trail_amount is not None and amount is not None and amount != request.trail_amount:
            changes["trail_amount"] = amount
    if not changes:
        return None
    return OrderRequest.model_validate({**request.model_dump(), **changes})
