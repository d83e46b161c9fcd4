"""Validation of a zerodha account's settings (every bad value names its key and what is allowed),
and what the account can trade through this adapter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...errors import ConfigError
from ...models import AssetClass, BrokerCapabilities, TimeInForce
from .wire import IST, KITE_ORDER_TYPE

MIN_POLL_INTERVAL = 0.2  # Kite allows about 10 requests a second per user; a poll costs one or two
SETTINGS = (
    "name",
    "live",
    "currency",
    "root",
    "ticker_root",
    "exchange",
    "product",
    "variety",
    "poll_interval",
    "timeout",
    "token_issued_at",
    "cash_account",
)
SECRET_KEYS = frozenset({"api_key", "access_token", "api_secret", "secret"})


def setting_error(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"zerodha setting {key!r} must be {allowed}, not {value!r}")


def choice(key: str, value: Any, allowed: frozenset[str], *, upper: bool = True) -> str:
    text = value.strip() if isinstance(value, str) else None
    text = text.upper() if text and upper else text.lower() if text else text
    if text not in allowed:
        raise setting_error(key, "one of " + ", ".join(sorted(allowed)), value)
    return text


def seconds(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise setting_error(key, f"a number of seconds from {low:g} to {high:g}", value)
    try:
        number = float(value)
    except ValueError:
        raise setting_error(key, f"a number of seconds from {low:g} to {high:g}", value) from None
    if not low <= number <= high:
        raise setting_error(key, f"a number of seconds from {low:g} to {high:g}", value)
    return number


def issued_at(value: Any) -> datetime | None:
    if value is None:
        return None
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise setting_error(
                "token_issued_at", "an ISO date and time such as 2024-12-10T08:30:00+05:30", value
            ) from None
    if not isinstance(when, datetime):
        raise setting_error("token_issued_at", "a date and time", value)
    # A bare time is read as IST: that is the clock a Kite login happens on.
    return (when.replace(tzinfo=IST) if when.tzinfo is None else when).astimezone(UTC)


def capabilities_for(product: str) -> BrokerCapabilities:
    """What the account can trade here; ``product`` decides whether it may sell short."""
    return BrokerCapabilities(
        order_types=frozenset(KITE_ORDER_TYPE),
        time_in_force=frozenset({TimeInForce.DAY, TimeInForce.IOC}),
        asset_classes=frozenset({AssetClass.STOCK, AssetClass.FUTURE, AssetClass.OPTION}),
        fractional_quantities=False,
        short_selling=product != "CNC",  # delivery sells need the shares in the demat
        bulk_cancel=False,
        streaming_updates=True,
        modify_orders=True,
        # An OCO pair is one two-leg GTT trigger, held by Kite. Kite has nothing that sends
        # exits once an entry fills, so brackets and OTO orders are refused, never simulated.
        oco_orders=True,
        session_expiry=True,
        currencies=frozenset({"INR"}),
    )
