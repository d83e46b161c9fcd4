"""What callers hand the order path, turned into an ``OrderRequest`` or a reason to refuse it.

An ``OrderRequest`` is validated when built; one built without validation (``model_construct``)
or a plain mapping is checked here, so that the execution layer validates whatever it receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .base import Broker
from .models import (
    AssetClass,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    describe_validation_error,
    new_client_order_id,
    to_decimal,
)

__all__ = ["currency_refusal", "refused_request", "validate"]

_ZERO = Decimal(0)


def validate(raw: object) -> OrderRequest | tuple[OrderRequest, str]:
    """``raw`` as a valid request, or a stand-in for it (see ``refused_request``) and why it is
    not one. Anything but a mapping or a request is a programming error.

    A request that came out of the model's validators is taken as it is; any other
    (``model_copy(update=...)``, ``model_construct``, a subclass's doing) is validated again from
    its values, and what comes back is a new, validated request."""
    if isinstance(raw, OrderRequest):
        if raw.validated:
            return raw
        values: Mapping[str, object] = raw.__dict__
        try:
            return OrderRequest.model_validate(values)
        except ValidationError as exc:
            return raw, describe_validation_error(exc)
        except Exception as exc:  # a value whose own methods fail is no order either
            return raw, f"the order could not be read ({type(exc).__name__})"
    if not isinstance(raw, Mapping):
        raise TypeError(f"submit takes an OrderRequest or a mapping, not {type(raw).__name__}")
    try:
        return OrderRequest.model_validate(dict(raw))
    except ValidationError as exc:
        return refused_request(raw), describe_validation_error(exc)


_ENUMS: dict[str, type[Side] | type[OrderType] | type[TimeInForce] | type[AssetClass]] = {
    "side": Side,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
    "asset_class": AssetClass,
}


def refused_request(raw: Mapping[str, object]) -> OrderRequest:
    """A refused request, built without validation, holding only values of the right types: it
    is shown, indexed and passed to subscribers like any order, and a missing symbol or an
    unhashable account must not break any of that. What was unusable reads as blank (the side
    as BUY); the reject reason says what was wrong."""
    values: dict[str, Any] = {}  # each value is checked below: model_construct checks none
    for name in ("symbol", "account", "exchange", "currency", "client_order_id"):
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            values[name] = value.strip()
    values.setdefault("symbol", "")
    values.setdefault("client_order_id", new_client_order_id())
    for name, enum in _ENUMS.items():
        try:
            values[name] = enum(raw[name])
        except (KeyError, ValueError, TypeError):
            if name == "side":
                values[name] = Side.BUY
    for name in ("quantity", "limit_price", "stop_price", "trail_percent", "trail_amount"):
        try:
            values[name] = to_decimal(raw[name], name)
        except (KeyError, ValueError, TypeError):
            if name == "quantity":
                values[name] = _ZERO
    return OrderRequest.model_construct(**values)


def currency_refusal(request: OrderRequest, account: str, broker: Broker) -> str | None:
    """Why ``account`` cannot take an order in ``request.currency``, or None when it can.

    An account trades in its own currency and in those its capabilities list; nothing else. A
    currency it does not trade would otherwise be believed by every check that values the order
    (a limit of 190 "INR" is read as 190 USD by a USD broker), so it is refused before them."""
    wanted = request.currency
    if wanted is None:
        return None
    own = broker.currency
    if wanted == own:
        return None
    traded = broker.capabilities.currencies
    if wanted in traded:
        return None
    others = sorted(traded - {own})
    also = f" (and {', '.join(others)})" if others else ""
    return (
        f"the order is in {wanted} but {account} trades in {own}{also}; "
        f"it cannot be sent there or valued in {wanted}"
    )
