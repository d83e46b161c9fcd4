"""How an order, its request and its fills are written into a journal row's JSON, and how
rows are read back into orders. On every order's path: the encoders are written out by hand."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel

from .models import Fill, Order, OrderRequest, OrderStatus

log = logging.getLogger(__name__)

# Row kinds. Order rows other than INTENT carry the order's resulting "state".
INTENT = "intent"
RISK_REJECT = "risk_reject"
REJECT = "reject"
ACK = "ack"
UPDATE = "update"
FILL = "fill"
CANCEL = "cancel"
UNKNOWN = "unknown"
RECONCILE = "reconcile"
HALT = "halt"
RESUME = "resume"
REDUCE_ONLY = "reduce_only"
RECONNECT = "reconnect"
RISK = "risk"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")


dumps = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False).encode
quote = json.encoder.encode_basestring  # the C implementation where there is one


def order_state(order: Order) -> dict[str, Any]:
    """The mutable part of an order, as a journal row records it."""
    return {
        "status": order.status.value,
        "broker_order_id": order.broker_order_id,
        "filled_quantity": str(order.filled_quantity),
        "avg_fill_price": None if order.avg_fill_price is None else str(order.avg_fill_price),
        "reject_code": None if order.reject_code is None else str(order.reject_code),
        "reject_reason": order.reject_reason,
    }


_STATE = (
    '{"status":"%s","broker_order_id":%s,"filled_quantity":%s,"avg_fill_price":%s,'
    '"reject_code":%s,"reject_reason":%s}'
)
_FILL = '{"fill_id":%s,"quantity":"%s","price":"%s","commission":"%s","currency":%s,"timestamp":"%s"%s}'
_DATES = ',"trade_date":"%s","settlement_date":"%s"'


_DATES_SEEN: dict[tuple[date, date], str] = {}


def _dates(fill: Fill) -> str:
    """The fill's trade and settlement dates as JSON members, when it carries both (a restart
    reads them back with the fill). Made once per pair of dates: a day's fills share one."""
    trade_date, settlement_date = fill.trade_date, fill.settlement_date
    if trade_date is None or settlement_date is None:
        return ""
    key = (trade_date, settlement_date)
    text = _DATES_SEEN.get(key)
    if text is None:
        if len(_DATES_SEEN) >= 256:
            _DATES_SEEN.clear()
        text = _DATES_SEEN[key] = _DATES % (trade_date.isoformat(), settlement_date.isoformat())
    return text


def state_json(order: Order) -> str:
    """The JSON of ``order_state(order)``, written out by hand: it is in every acknowledgement,
    fill and refusal row, and ``json`` on a dict costs several times as much. (A finite
    Decimal's str() holds only digits, '.', '-' and 'E': safe inside quotes as it is.)"""
    broker_order_id = order.broker_order_id
    average = order.avg_fill_price
    code = order.reject_code
    reason = order.reject_reason
    return _STATE % (
        order.status.value,
        "null" if broker_order_id is None else quote(broker_order_id),
        '"' + str(order.filled_quantity) + '"',
        "null" if average is None else '"' + str(average) + '"',
        "null" if code is None else quote(str(code)),
        "null" if reason is None else quote(reason),
    )


def order_row(order: Order, fills: list[Fill] | None = None) -> str:
    """The JSON of ``{"state": order_state(order), "fills": [fill_data(f), ...]}``, written out
    by hand like ``state_json``."""
    state = state_json(order)
    if not fills:
        return '{"state":' + state + "}"
    rows = ",".join(
        [
            _FILL
            % (
                quote(f.fill_id),
                f.quantity,
                f.price,
                f.commission,
                quote(f.currency),
                f.timestamp.isoformat(),
                _dates(f),
            )
            for f in fills
        ]
    )
    return '{"state":' + state + ',"fills":[' + rows + "]}"


def request_data(request: OrderRequest) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)


def request_json(request: OrderRequest) -> str:
    """``request.model_dump_json(exclude_none=True)``, written out by hand like ``order_row``:
    it is on every order's path. Every string goes through JSON quoting, so a request built
    without validation (``model_construct``) still gives valid JSON."""
    values = request.__dict__
    text = f'{{"symbol":{quote(values["symbol"])},"side":"{values["side"]._value_}"'
    for name in ("quantity", "notional"):
        if values[name] is not None:
            text += f',"{name}":{quote(str(values[name]))}'
    text += f',"order_type":"{values["order_type"]._value_}"'
    for name in ("limit_price", "stop_price", "trail_percent", "trail_amount"):
        if values[name] is not None:
            text += f',"{name}":{quote(str(values[name]))}'
    text += f',"time_in_force":"{values["time_in_force"]._value_}"'
    if values["account"] is not None:
        text += f',"account":{quote(values["account"])}'
    text += f',"asset_class":"{values["asset_class"]._value_}"'
    for name in ("exchange", "currency"):
        if values[name] is not None:
            text += f',"{name}":{quote(values[name])}'
    # The exits travel with their parent's intent: after a restart they are known to belong to it.
    for name in ("take_profit", "stop_loss"):
        if values.get(name) is not None:
            text += f',"{name}":{quote(str(values[name]))}'
    if values.get("order_class") is not None:
        text += f',"order_class":"{values["order_class"]._value_}"'
    return text + f',"client_order_id":{quote(values["client_order_id"])}}}'


def request_text(request: OrderRequest) -> str:
    try:
        return request_json(request)
    except (AttributeError, KeyError, TypeError):  # a request never validated, of the wrong types
        return request.model_dump_json(exclude_none=True)


def fill_data(fill: Fill) -> dict[str, Any]:
    """A fill without what its order row already says (account, symbol, side, ids)."""
    data: dict[str, Any] = {
        "fill_id": fill.fill_id,
        "quantity": str(fill.quantity),
        "price": str(fill.price),
        "commission": str(fill.commission),
        "currency": fill.currency,
        "timestamp": fill.timestamp.isoformat(),
    }
    if fill.trade_date is not None and fill.settlement_date is not None:
        data["trade_date"] = fill.trade_date.isoformat()
        data["settlement_date"] = fill.settlement_date.isoformat()
    return data


def replay_rows(rows: list[tuple[Any, ...]]) -> dict[str, Order]:
    result: dict[str, Order] = {}
    for ts, kind, client_order_id, account, raw in rows:
        try:
            _replay(result, ts, kind, client_order_id, account, json.loads(raw))
        except (ValueError, TypeError, KeyError):
            log.exception("journal row for %s could not be read; skipped", client_order_id)
    return result


def _replay(
    result: dict[str, Order],
    ts: int,
    kind: str,
    client_order_id: str,
    account: str | None,
    data: dict[str, Any],
) -> None:
    at = datetime.fromtimestamp(ts / 1_000_000, UTC)
    order = result.get(client_order_id)
    request = data.get("request")
    if request is not None and (order is None or kind == INTENT):
        # An intent starts the order afresh (an id refused before it reached a broker may be
        # sent again); the entry moves to the end, as the newest order.
        result.pop(client_order_id, None)
        order = Order(
            request=OrderRequest.model_validate(request), account=account, created_at=at, updated_at=at
        )
        result[client_order_id] = order
    if order is None:
        return  # an event for an order this journal never saw the intent of
    if request is not None and kind != INTENT and kind != RISK_REJECT:
        # Modified at the broker: the terms it holds now.
        order.request = OrderRequest.model_validate(request)
    request = order.request
    for raw in data.get("fills") or ():
        parsed = Fill.model_validate(
            {
                "account": order.account or account or "",
                "symbol": request.symbol,
                "side": request.side,
                "asset_class": request.asset_class,
                "broker_order_id": order.broker_order_id,
                "client_order_id": client_order_id,
                **raw,
            }
        )
        order.take_fill(parsed)
    state = data.get("state")
    if state is not None:
        # The journal recorded what we believed then; replaying it is not a new transition.
        order.status = OrderStatus(state["status"])
        order.broker_order_id = state.get("broker_order_id") or order.broker_order_id
        order.filled_quantity = Decimal(state.get("filled_quantity") or 0)
        avg = state.get("avg_fill_price")
        order.avg_fill_price = None if avg is None else Decimal(avg)
        order.reject_code = state.get("reject_code")
        order.reject_reason = state.get("reject_reason")
        order.updated_at = at
