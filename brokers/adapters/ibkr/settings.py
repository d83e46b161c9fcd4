"""The settings of an IB account and what IB can trade through this adapter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...base import ACCOUNT_KEYS
from ...errors import ConfigError
from ...identifiers import account_name, currency_code
from ...models import AssetClass, BrokerCapabilities, OrderType, TimeInForce

PAPER_PORT = 7497
LIVE_PORT = 7496
SETTING_NAMES = (
    "name",
    "live",
    "currency",
    "host",
    "port",
    "client_id",
    "account",
    "timeout",
    "readonly",
    "market_data_lines",
    "cash_account",
)
#: TWS's default allowance of simultaneous market data lines (more with quote booster packs).
DEFAULT_MARKET_DATA_LINES = 100


@dataclass(frozen=True, slots=True)
class IBSettings:
    name: str
    live: bool
    currency: str
    host: str
    port: int
    client_id: int
    account: str | None
    timeout: float
    readonly: bool
    market_data_lines: int = DEFAULT_MARKET_DATA_LINES
    # A cash account spends settled cash only. IB's account data does not say which kind an
    # account is, so the config does.
    cash_account: bool = False


def read_settings(settings: Mapping[str, object]) -> IBSettings:
    """An ibkr account's settings from the config, or ConfigError naming the key and what is
    allowed."""
    unknown = sorted(set(settings) - set(SETTING_NAMES) - ACCOUNT_KEYS)
    if unknown:
        raise ConfigError(f"unknown ibkr setting {unknown[0]!r}; allowed: {', '.join(SETTING_NAMES)}")
    try:
        name = account_name(settings.get("name"), "ibkr setting 'name'")
        currency = currency_code(settings.get("currency", "USD"), "ibkr setting 'currency'")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    live = _setting_bool(settings, "live", False)
    host = settings.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip() or any(ch.isspace() for ch in host.strip()):
        raise ConfigError(f"ibkr setting 'host' must be a host name or IP address, not {host!r}")
    account = settings.get("account")
    if account is not None and (
        not isinstance(account, str) or not re.fullmatch(r"[A-Za-z0-9]{1,32}", account)
    ):
        raise ConfigError(
            f"ibkr setting 'account' must be an IB account code such as DU1234567, not {account!r}"
        )
    timeout = settings.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(
            f"ibkr setting 'timeout' must be a number of seconds above 0 and at most 300, not {timeout!r}"
        )
    return IBSettings(
        name=name,
        live=live,
        currency=currency,
        host=host.strip(),
        port=_setting_int(settings, "port", LIVE_PORT if live else PAPER_PORT, 1, 65535),
        client_id=_setting_int(settings, "client_id", 1, 0, 2**31 - 1),
        account=account,
        timeout=float(timeout),
        readonly=_setting_bool(settings, "readonly", False),
        market_data_lines=_setting_int(settings, "market_data_lines", DEFAULT_MARKET_DATA_LINES, 0, 10_000),
        cash_account=_setting_bool(settings, "cash_account", False),
    )


def _setting_int(settings: Mapping[str, object], key: str, default: int, low: int, high: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"ibkr setting {key!r} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _setting_bool(settings: Mapping[str, object], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"ibkr setting {key!r} must be true or false, not {value!r}")
    return value


# Fractional shares need a separate IB permission and API flag, so whole quantities only.
CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(OrderType),
    time_in_force=frozenset(TimeInForce),
    asset_classes=frozenset(
        {AssetClass.STOCK, AssetClass.OPTION, AssetClass.FUTURE, AssetClass.FOREX, AssetClass.CFD}
    ),
    fractional_quantities=False,
    short_selling=True,
    bulk_cancel=True,
    streaming_updates=True,
    modify_orders=True,
    # Parent and child orders with an OCA group: TWS holds the exits.
    bracket_orders=True,
    oto_orders=True,
    oco_orders=True,
    session_expiry=False,
    currencies=frozenset(
        {
            "USD",
            "EUR",
            "GBP",
            "CHF",
            "JPY",
            "CAD",
            "AUD",
            "HKD",
            "SEK",
            "NOK",
            "DKK",
            "SGD",
            "NZD",
            "MXN",
            "CNH",
            "KRW",
            "INR",
            "ZAR",
            "PLN",
            "CZK",
            "HUF",
            "ILS",
        }
    ),
)
