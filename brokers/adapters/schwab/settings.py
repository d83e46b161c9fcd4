"""The settings of a Charles Schwab account, and what it can trade through this adapter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...base import ACCOUNT_KEYS
from ...errors import ConfigError
from ...identifiers import account_name
from ...models import AssetClass, BrokerCapabilities, OrderType, TimeInForce

# Schwab's refresh token lives seven days from the login that made it; refreshing the access
# token does not extend it.
REFRESH_TOKEN_DAYS = 7
DEFAULT_CALLBACK = "https://127.0.0.1:8182"

_GENERIC_KEYS = {"name", "live", "currency"}
_OWN_KEYS = {
    "account_number",
    "base_url",
    "timeout",
    "poll_interval",
    "key_env",
    "secret_env",
    "callback_url",
}


@dataclass(frozen=True, slots=True)
class SchwabSettings:
    name: str
    live: bool = True
    account_number: str | None = None
    base_url: str | None = None
    timeout: float = 10.0
    poll_interval: float = 2.0
    key_env: str = "SCHWAB_APP_KEY"
    secret_env: str = "SCHWAB_APP_SECRET"
    callback_url: str = DEFAULT_CALLBACK


def read_settings(settings: Mapping[str, object]) -> SchwabSettings:
    unknown = sorted(set(settings) - _GENERIC_KEYS - ACCOUNT_KEYS - _OWN_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_GENERIC_KEYS | _OWN_KEYS))
        hint = ""
        if any("key" in key or "secret" in key or "token" in key for key in unknown):
            hint = " (secrets belong in the keyring: run `trading-console set-creds ACCOUNT`)"
        raise ConfigError(f"schwab account: unknown setting {unknown[0]!r}{hint}; allowed: {allowed}")
    try:
        name = account_name(settings.get("name"), "'name'")
    except ValueError as exc:
        raise ConfigError(f"schwab account: {exc}") from None
    prefix = f"schwab account {name!r}"
    live = settings.get("live", True)
    if not isinstance(live, bool):
        raise ConfigError(f"{prefix}: 'live' must be true or false, not {live!r}")
    base_url = settings.get("base_url")
    if base_url is not None and (
        not isinstance(base_url, str)
        or not base_url.startswith(("http://", "https://"))
        or len(base_url) > 300
    ):
        raise ConfigError(
            f"{prefix}: 'base_url' must be a URL starting with http:// or https://, not {base_url!r}"
        )
    check_paper(live, base_url if isinstance(base_url, str) else None, prefix)
    currency = settings.get("currency", "USD")
    if not isinstance(currency, str) or currency.strip().upper() != "USD":
        raise ConfigError(f"{prefix}: 'currency' must be USD (Schwab accounts are in USD), not {currency!r}")
    number = settings.get("account_number")
    if number is not None and (not isinstance(number, str) or not re.fullmatch(r"\d{4,20}", number)):
        raise ConfigError(
            f"{prefix}: 'account_number' must be the account's digits as text, such as \"12345678\""
        )
    numbers: dict[str, float] = {}
    for key, low, high in (("timeout", 0.1, 120.0), ("poll_interval", 0.05, 300.0)):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(
                    f"{prefix}: {key!r} must be a number of seconds from {low} to {high}, not {value!r}"
                )
            numbers[key] = float(value)
    variables: dict[str, str] = {}
    for key in ("key_env", "secret_env"):
        if key in settings:
            value = settings[key]
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
                raise ConfigError(f"{prefix}: {key!r} must be an environment variable name, not {value!r}")
            variables[key] = value
    callback = settings.get("callback_url", DEFAULT_CALLBACK)
    if not isinstance(callback, str) or not callback.startswith("https://"):
        raise ConfigError(
            f"{prefix}: 'callback_url' must be the https:// callback URL registered with the app"
        )
    defaults = SchwabSettings(name)
    return SchwabSettings(
        name=name,
        live=live,
        account_number=number if isinstance(number, str) else None,
        base_url=base_url if isinstance(base_url, str) else None,
        timeout=numbers.get("timeout", defaults.timeout),
        poll_interval=numbers.get("poll_interval", defaults.poll_interval),
        key_env=variables.get("key_env", defaults.key_env),
        secret_env=variables.get("secret_env", defaults.secret_env),
        callback_url=callback,
    )


def check_paper(live: bool, base_url: str | None, where: str) -> None:
    if not live and base_url is None:
        raise ConfigError(
            f"{where}: Schwab has no paper-trading service; set live = true to trade real money, "
            "or base_url to a test server"
        )


CAPABILITIES = BrokerCapabilities(
    order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}),
    time_in_force=frozenset({TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
    asset_classes=frozenset({AssetClass.STOCK}),
    fractional_quantities=False,
    short_selling=True,
    bulk_cancel=False,
    streaming_updates=False,
    session_expiry=True,
    currencies=frozenset({"USD"}),
)
