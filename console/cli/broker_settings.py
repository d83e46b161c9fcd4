"""What ``trading-console add`` asks for each broker type, and how each answer is read: one
``Setting`` per question, a parser that names the field and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from console.typed_input import ungrouped


@dataclass(frozen=True)
class Setting:
    """One broker-specific question ``add`` asks."""

    key: str
    question: str
    parse: Callable[[str], Any]
    default: Callable[[dict[str, Any]], Any]
    comment: str = ""
    # Whether the question is asked for the answers so far (a column map only for a generic file).
    applies: Callable[[dict[str, Any]], bool] = lambda account: True
    # An optional setting left blank is not written at all.
    optional: bool = False


def _positive_decimal(field: str, ceiling: Decimal = Decimal("1e15")) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = Decimal(ungrouped(text, field).strip().replace("_", ""))
        except InvalidOperation:
            raise ValueError(f"{field} must be a number, not {text!r}") from None
        if not value.is_finite() or value <= 0 or value > ceiling:
            raise ValueError(f"{field} must be greater than 0 and at most {ceiling:,}")
        return int(value) if value == value.to_integral_value() else float(value)

    return parse


def _integer(field: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{field} must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{field} must be from {low} to {high}")
        return value

    return parse


def choice(field: str, choices: tuple[str, ...], *, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise ValueError(f"{field} must be one of {', '.join(choices)}, not {text!r}")
        return value

    return parse


def _yes_no(field: str) -> Callable[[str], bool | None]:
    """yes or no; blank for the broker's default (not written)."""

    def parse(text: str) -> bool | None:
        value = text.strip().lower()
        if not value:
            return None
        if value in ("yes", "y", "true"):
            return True
        if value in ("no", "n", "false"):
            return False
        raise ValueError(f"{field} must be yes or no, not {text!r}")

    return parse


# The broker's account data does not say whether the account is a cash account: asked.
_CASH_ACCOUNT = Setting(
    "cash_account",
    "Cash account, buying with settled cash only (yes, no; blank: no)",
    _yes_no("cash_account"),
    lambda a: None,
    "true: buys that would need unsettled sale proceeds are refused before the broker",
    optional=True,
)


def _text(field: str, pattern: str, hint: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{field} must be {hint}, not {text!r}")
        return value

    return parse


TYPE_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "sim": (
        Setting(
            "initial_cash",
            "Starting cash",
            _positive_decimal("initial_cash"),
            lambda a: 100_000,
            "starting cash in the account currency",
        ),
        Setting(
            "account_type",
            "Account type (margin, cash)",
            choice("account_type", ("margin", "cash")),
            lambda a: "margin",
            "a cash account cannot short or borrow",
        ),
        Setting(
            "tick_interval",
            "Seconds between price moves",
            _positive_decimal("tick_interval", Decimal(3600)),
            lambda a: 0.5,
            "random-walk prices",
        ),
    ),
    "alpaca": (
        Setting(
            "timeout",
            "Seconds per REST call",
            _positive_decimal("timeout", Decimal(120)),
            lambda a: 10,
            "seconds per REST call",
        ),
    ),
    "ibkr": (
        Setting(
            "host",
            "TWS / IB Gateway host",
            _text("host", r"[A-Za-z0-9_.:-]{1,253}", "a host name or address"),
            lambda a: "127.0.0.1",
        ),
        Setting(
            "port",
            "TWS / IB Gateway port",
            _integer("port", 1, 65535),
            lambda a: 7496 if a.get("live") else 7497,
            "TWS paper 7497, TWS live 7496, Gateway paper 4002, Gateway live 4001",
        ),
        Setting(
            "client_id",
            "API client id",
            _integer("client_id", 0, 2**31 - 1),
            lambda a: 1,
            "unique per connection to the same gateway",
        ),
        _CASH_ACCOUNT,
    ),
    "zerodha": (
        Setting(
            "exchange",
            "Exchange for plain symbols (NSE, BSE, NFO, BFO, CDS, BCD, MCX)",
            choice("exchange", ("NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"), upper=True),
            lambda a: "NSE",
        ),
        Setting(
            "product",
            "Product (CNC, MIS, NRML)",
            choice("product", ("CNC", "MIS", "NRML"), upper=True),
            lambda a: "CNC",
            "CNC delivery, MIS intraday, NRML F&O",
        ),
        _CASH_ACCOUNT,
    ),
}


def _cancel_after(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"cancel_after_seconds must be a whole number, not {text!r}") from None
    if value != 0 and not 10 <= value <= 86_400:
        raise ValueError("cancel_after_seconds must be 0 (off) or from 10 to 86400")
    return value


def _columns(text: str) -> dict[str, str]:
    """A column map typed as ``symbol=Ticker, quantity=Units, price=Mark``."""
    from brokers.adapters.csvfile.layouts import COLUMN_KEYS, REQUIRED_COLUMNS

    columns: dict[str, str] = {}
    for part in text.split(","):
        key, sep, header = part.partition("=")
        key, header = key.strip(), header.strip()
        if not sep or key not in COLUMN_KEYS or not header:
            raise ValueError(
                f"columns must be KEY=HEADER pairs separated by commas, KEY one of {', '.join(COLUMN_KEYS)}; "
                f"not {part.strip()!r}"
            )
        columns[key] = header
    missing = [key for key in REQUIRED_COLUMNS if key not in columns]
    if missing or ("price" not in columns and "value" not in columns):
        raise ValueError(f"columns needs {', '.join(missing) or 'price or value'}")
    return columns


def _export_path(text: str) -> str:
    from pathlib import Path

    value = text.strip()
    if not value:
        raise ValueError("path must name the position export, such as ~/Downloads/positions.csv")
    if not Path(value).expanduser().is_file():
        raise ValueError(f"path: no file at {value}")
    return value


TYPE_SETTINGS["ccxt"] = (
    Setting(
        "exchange",
        "Venue (kraken, binanceus, coinbase)",
        choice("exchange", ("kraken", "binanceus", "coinbase")),
        lambda a: "coinbase" if not a.get("live") else "kraken",
        "paper trading: Coinbase's sandbox only; Kraken and Binance.US trade real money",
    ),
    Setting(
        "poll_interval",
        "Seconds between order polls",
        _positive_decimal("poll_interval", Decimal(300)),
        lambda a: 2,
        "orders are polled: the venues' REST APIs",
    ),
    Setting(
        "cancel_after_seconds",
        "Cancel-all-after timer in seconds (0 = off)",
        _cancel_after,
        lambda a: 60,
        "Kraken cancels every order if the console is silent this long while orders work",
    ),
)
TYPE_SETTINGS["csv"] = (
    Setting(
        "format",
        "Export format (fidelity, vanguard, generic)",
        choice("format", ("fidelity", "vanguard", "generic")),
        lambda a: "fidelity",
        "the broker whose position export this is",
    ),
    Setting(
        "path",
        "Path of the position export (CSV)",
        _export_path,
        lambda a: None,
        "read again whenever the file changes",
    ),
    Setting(
        "columns",
        "Columns as KEY=HEADER pairs (symbol, quantity, price or value, average_cost)",
        _columns,
        lambda a: None,
        "",
        applies=lambda a: a.get("format") == "generic",
    ),
)


def _account_number(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if not value.isdigit() or not 4 <= len(value) <= 20:
        raise ValueError(f"account_number must be the account's digits, such as 12345678, not {text!r}")
    return value


TYPE_SETTINGS["schwab"] = (
    Setting(
        "account_number",
        "Account number (blank when the login has one account)",
        _account_number,
        lambda a: None,
        "which of the login's accounts; it is reached by its hash",
        optional=True,
    ),
    Setting(
        "poll_interval",
        "Seconds between order polls",
        _positive_decimal("poll_interval", Decimal(300)),
        lambda a: 2,
        "orders are polled: the Trader API has no push channel for them",
    ),
)
