"""The settings of a read-only account kept in a position export: which file, in which layout,
and for a generic file the column map."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...base import ACCOUNT_KEYS
from ...errors import ConfigError
from ...identifiers import account_name
from ...paths import expand_path
from .layouts import COLUMN_KEYS, LAYOUTS, REQUIRED_COLUMNS, Layout

_OWN_KEYS = {"path", "format", "columns", "cash_symbols"}
FORMATS = (*sorted(LAYOUTS), "generic")


@dataclass(frozen=True, slots=True)
class CsvSettings:
    name: str
    path: Path
    layout: Layout
    currency: str = "USD"


def read_settings(settings: Mapping[str, object]) -> CsvSettings:
    unknown = sorted(set(settings) - {"name", "live", "currency"} - ACCOUNT_KEYS - _OWN_KEYS)
    if unknown:
        allowed = ", ".join(sorted({"name", "currency"} | _OWN_KEYS))
        raise ConfigError(f"csv account: unknown setting {unknown[0]!r}; allowed: {allowed}")
    try:
        name = account_name(settings.get("name"), "'name'")
    except ValueError as exc:
        raise ConfigError(f"csv account: {exc}") from None
    prefix = f"csv account {name!r}"
    if settings.get("live", False) is not False:
        raise ConfigError(
            f"{prefix}: 'live' must be false: the account is read from a file and takes no orders"
        )
    path = settings.get("path")
    if not isinstance(path, str) or not path.strip() or len(path) > 1000:
        raise ConfigError(
            f"{prefix}: 'path' is required: the position export to read, such as ~/Downloads/positions.csv"
        )
    kind = settings.get("format", "generic")
    if kind not in FORMATS:
        raise ConfigError(f"{prefix}: 'format' must be one of {', '.join(FORMATS)}, not {kind!r}")
    currency = settings.get("currency", "USD")
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise ConfigError(f"{prefix}: 'currency' must be a 3-letter code such as USD, not {currency!r}")
    if kind == "generic":
        layout = _generic(settings, prefix)
    else:
        for key in ("columns", "cash_symbols"):
            if key in settings:
                raise ConfigError(
                    f'{prefix}: {key!r} is for format = "generic" only; {kind} files have a known layout'
                )
        layout = LAYOUTS[str(kind)]
    return CsvSettings(
        name=name, path=expand_path(path.strip()), layout=layout, currency=currency.strip().upper()
    )


def _generic(settings: Mapping[str, object], prefix: str) -> Layout:
    columns = settings.get("columns")
    if not isinstance(columns, Mapping):
        raise ConfigError(
            f"{prefix}: a generic file needs 'columns', a table naming the header of each of "
            f"{', '.join(COLUMN_KEYS)} (symbol and quantity, and price or value, required)"
        )
    unknown = sorted(set(columns) - set(COLUMN_KEYS))
    if unknown:
        raise ConfigError(
            f"{prefix}: columns.{unknown[0]} is not a column this reads; allowed: {', '.join(COLUMN_KEYS)}"
        )
    named: dict[str, str] = {}
    for key, value in columns.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{prefix}: columns.{key} must be a column header, not {value!r}")
        named[str(key)] = value.strip()
    for key in REQUIRED_COLUMNS:
        if key not in named:
            raise ConfigError(f"{prefix}: columns.{key} is required")
    if "price" not in named and "value" not in named:
        raise ConfigError(f"{prefix}: columns needs price or value")
    cash = settings.get("cash_symbols", [])
    if not isinstance(cash, list) or not all(isinstance(s, str) for s in cash):
        raise ConfigError(f"{prefix}: 'cash_symbols' must be a list of symbols such as [\"SPAXX\"]")
    return Layout(
        title="CSV",
        symbol=named["symbol"],
        quantity=named["quantity"],
        price=named.get("price"),
        value=named.get("value"),
        average_cost=named.get("average_cost"),
        description=named.get("description"),
        cash_symbols=frozenset(s.strip().upper() for s in cash),
    )
