"""The settings of an Alpaca account, where its REST and stream endpoints are, and what it can
trade through this adapter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...base import ACCOUNT_KEYS
from ...errors import ConfigError
from ...identifiers import account_name
from ...models import AssetClass, BrokerCapabilities, OrderType, TimeInForce
from .data_settings import DATA_KEYS

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
PAPER_STREAM_URL = "wss://paper-api.alpaca.markets/stream"
LIVE_STREAM_URL = "wss://api.alpaca.markets/stream"

_GENERIC_KEYS = {"name", "live", "currency"}
_OWN_KEYS = {
    "base_url",
    "stream_url",
    "timeout",
    "key_env",
    "secret_env",
    "crypto",
    "reconnect_delay",
} | DATA_KEYS


@dataclass(frozen=True, slots=True)
class AlpacaSettings:
    """An account's settings as the config gave them; what it leaves out takes the
    constructor's default."""

    name: str
    live: bool = False
    crypto: bool = True
    base_url: str | None = None
    stream_url: str | None = None
    timeout: float = 10.0
    reconnect_delay: float = 1.0
    key_env: str = "ALPACA_API_KEY"
    secret_env: str = "ALPACA_SECRET_KEY"


def read_settings(settings: Mapping[str, object]) -> AlpacaSettings:
    """An alpaca account's settings from the config, or ConfigError naming the key and what is
    allowed."""
    unknown = sorted(set(settings) - _GENERIC_KEYS - ACCOUNT_KEYS - _OWN_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_GENERIC_KEYS | _OWN_KEYS))
        hint = ""
        if any("key" in key or "secret" in key for key in unknown):
            hint = " (secrets belong in the keyring: run `trading-console set-creds ACCOUNT`)"
        raise ConfigError(f"alpaca account: unknown setting {unknown[0]!r}{hint}; allowed: {allowed}")
    try:
        name = account_name(settings.get("name"), "'name'")
    except ValueError as exc:
        raise ConfigError(f"alpaca account: {exc}") from None
    prefix = f"alpaca account {name!r}"
    flags: dict[str, bool] = {}
    for key in ("live", "crypto"):
        if key in settings:
            flag = settings[key]
            if not isinstance(flag, bool):
                raise ConfigError(f"{prefix}: {key!r} must be true or false, not {flag!r}")
            flags[key] = flag
    currency = settings.get("currency", "USD")
    if not isinstance(currency, str) or currency.strip().upper() != "USD":
        raise ConfigError(f"{prefix}: 'currency' must be USD (Alpaca accounts are in USD), not {currency!r}")
    urls: dict[str, str] = {}
    for key, schemes in (("base_url", ("http://", "https://")), ("stream_url", ("ws://", "wss://"))):
        if key in settings:
            value = settings[key]
            if not isinstance(value, str) or not value.startswith(schemes) or len(value) > 300:
                raise ConfigError(
                    f"{prefix}: {key!r} must be a URL starting with {' or '.join(schemes)}, not {value!r}"
                )
            urls[key] = value
    delays: dict[str, float] = {}
    for key, low, high in (("timeout", 0.1, 120.0), ("reconnect_delay", 0.01, 60.0)):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(
                    f"{prefix}: {key!r} must be a number of seconds from {low} to {high}, not {value!r}"
                )
            delays[key] = float(value)
    variables: dict[str, str] = {}
    for key in ("key_env", "secret_env"):
        if key in settings:
            value = settings[key]
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
                raise ConfigError(
                    f"{prefix}: {key!r} must be an environment variable name such as "
                    f"ALPACA_API_KEY, not {value!r}"
                )
            variables[key] = value
    defaults = AlpacaSettings(name)
    return AlpacaSettings(
        name=name,
        live=flags.get("live", defaults.live),
        crypto=flags.get("crypto", defaults.crypto),
        base_url=urls.get("base_url", defaults.base_url),
        stream_url=urls.get("stream_url", defaults.stream_url),
        timeout=delays.get("timeout", defaults.timeout),
        reconnect_delay=delays.get("reconnect_delay", defaults.reconnect_delay),
        key_env=variables.get("key_env", defaults.key_env),
        secret_env=variables.get("secret_env", defaults.secret_env),
    )


def endpoints(live: bool, base_url: str | None, stream_url: str | None) -> tuple[str, str]:
    """The REST root and the stream URL: Alpaca's own unless given; a stream beside a given REST
    root unless given too."""
    base = (base_url or (LIVE_URL if live else PAPER_URL)).rstrip("/")
    if stream_url:
        return base, stream_url
    if base_url:
        return base, re.sub(r"^http", "ws", base) + "/stream"
    return base, LIVE_STREAM_URL if live else PAPER_STREAM_URL


def capabilities_for(crypto: bool) -> BrokerCapabilities:
    """What the account can trade here: US stocks, and crypto pairs unless ``crypto`` is off."""
    return BrokerCapabilities(
        order_types=frozenset(OrderType),
        time_in_force=frozenset(TimeInForce),
        asset_classes=frozenset({AssetClass.STOCK, AssetClass.CRYPTO} if crypto else {AssetClass.STOCK}),
        fractional_quantities=True,
        notional_orders=True,
        short_selling=True,
        bulk_cancel=True,
        streaming_updates=True,
        modify_orders=True,
        # order_class bracket, oto and oco: Alpaca holds the exits (US stocks).
        bracket_orders=True,
        oto_orders=True,
        oco_orders=True,
        session_expiry=False,
        currencies=frozenset({"USD"}),
    )
