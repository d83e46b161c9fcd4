"""TOML configuration file -> validated settings.

Every error names the file, the key, the bad value and what is allowed. Secrets never live here:
a key that looks like one is refused with a message saying where secrets go.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .accounts import default_account
from .desk.settings import DeskSettings
from .errors import ConfigError
from .fx import FxSettings
from .identifiers import AccountName, CurrencyCode
from .journal_schedule import JournalSettings
from .killswitch import HaltSettings
from .monitoring import MonitorSettings
from .paths import expand_path, state_dir
from .quotes import QuoteSettings
from .risk import RiskLimits
from .routing import RoutingRule

JOURNAL_FILE = "journal.sqlite"
# The demo's orders never mix with a real configuration's: its journal is a file of its own in
# the same state folder, whose SYSTEM_HALTED flag it shares (a halt must reach every process).
DEMO_JOURNAL_FILE = "demo-journal.sqlite"
# Validation context key: the folder a relative ``state_dir`` is anchored to.
_CONFIG_DIR = "config_dir"

# Key names that hold secrets; names ending in "_env" only name an environment variable.
_SECRET_KEY = re.compile(
    r"(^|_)(secret|secret_key|access_key|password|passwd|passphrase|token|api_key|apikey|private_key|totp|pin)$",
    re.IGNORECASE,
)

DEFAULT_KEYMAP: dict[str, str] = {
    "halt": "f12,ctrl+k",
    "resume": "ctrl+r",
    "reduce_only": "ctrl+y",
    "submit": "enter",
    "cancel_order": "ctrl+x",
    "focus_order_entry": "ctrl+o",
    "focus_blotter": "ctrl+b",
    "focus_positions": "ctrl+p",
    "focus_watchlist": "ctrl+l",
    "quit": "ctrl+q",
}
WATCHLIST_MAX = 200
"""Symbols a watchlist holds at most: each is a row repainted from live quotes."""


def is_secret_key(name: str) -> bool:
    return not name.lower().endswith("_env") and bool(_SECRET_KEY.search(name))


class UISettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keymap: dict[str, str] = Field(default_factory=dict)
    confirm_notional_above: Decimal | None = Field(default=Decimal(50_000), gt=0)
    price_refresh_hz: int = Field(default=10, ge=1, le=10)
    refresh_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    watchlist: list[str] = Field(default_factory=list)

    @field_validator("keymap")
    @classmethod
    def _known_actions(cls, keymap: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(keymap) - set(DEFAULT_KEYMAP))
        if unknown:
            raise ValueError(f"unknown action {unknown[0]!r}; allowed: {', '.join(sorted(DEFAULT_KEYMAP))}")
        for action, keys in keymap.items():
            if not keys or not all(part.strip() for part in keys.split(",")):
                raise ValueError(f"keys for {action!r} must be key names like 'f12' or 'ctrl+k,f12'")
        return keymap

    @field_validator("watchlist", mode="before")
    @classmethod
    def _symbols(cls, value: object) -> object:
        if not isinstance(value, list):
            return value  # pydantic says what a list of symbols is
        from .models import OrderRequest, Side, field_errors

        symbols: list[str] = []
        for index, item in enumerate(value):
            try:
                symbol = OrderRequest(symbol=item, side=Side.BUY, quantity=Decimal(1)).symbol
            except ValidationError as exc:
                message = field_errors(exc).get("symbol", "not a symbol")
                raise ValueError(f"watchlist[{index}] {item!r}: {message}") from None
            if symbol not in symbols:
                symbols.append(symbol)
        if len(symbols) > WATCHLIST_MAX:
            raise ValueError(f"a watchlist holds at most {WATCHLIST_MAX} symbols, not {len(symbols)}")
        return symbols

    def keys_for(self, action: str) -> str:
        return self.keymap.get(action, DEFAULT_KEYMAP[action])


class AccountConfig(BaseModel):
    """One account. Keys other than the generic ones below are the broker type's own settings."""

    model_config = ConfigDict(extra="allow")

    name: AccountName
    type: str
    live: bool = False
    currency: CurrencyCode = "USD"
    default: bool = False
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    label: str | None = None
    risk: RiskLimits | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from .registry import BrokerFactory

        if value.lower() not in BrokerFactory.types():
            raise ValueError(f"unknown broker type {value!r}; allowed: {', '.join(BrokerFactory.types())}")
        return value.lower()

    @property
    def settings(self) -> dict[str, object]:
        return dict(self.model_extra or {})

    def broker_config(self) -> dict[str, object]:
        """What ``BrokerFactory.create`` takes."""
        return {
            "type": self.type,
            "name": self.name,
            "live": self.live,
            "currency": self.currency,
            **self.settings,
        }


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_currency: CurrencyCode = "USD"
    accounts: list[AccountConfig] = Field(default_factory=list)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    routing: list[RoutingRule] = Field(default_factory=list)
    halt: HaltSettings = Field(default_factory=HaltSettings)
    # Execution monitoring: alert thresholds, and whether a reject storm moves trading to REDUCING.
    monitoring: MonitorSettings = Field(default_factory=MonitorSettings)
    fx: FxSettings = Field(default_factory=FxSettings)
    ui: UISettings = Field(default_factory=UISettings)
    # When the journal's closed days move to the archive, and how long archive files stay.
    journal: JournalSettings = Field(default_factory=JournalSettings)
    quotes: QuoteSettings = Field(default_factory=QuoteSettings)
    # Desk mode: the trading state shared through PostgreSQL by every process of the desk.
    desk: DeskSettings | None = None
    state_dir: Path | None = None
    demo: bool = False
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _anchor_state_dir(cls, value: object, info: ValidationInfo) -> object:
        # Anchored once, here: a relative folder resolved against whatever directory a command
        # happens to run from would let `trading-console halt` write a flag nobody reads.
        if not isinstance(value, str | Path):
            return value
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get(_CONFIG_DIR)
        return expand_path(value, base if isinstance(base, Path) else None)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [account.name for account in self.accounts]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"account name {duplicates[0]!r} is used more than once; names must be unique")
        defaults = [account.name for account in self.accounts if account.default]
        if len(defaults) > 1:
            raise ValueError(f"only one account may be default = true, not {', '.join(defaults)}")
        for index, rule in enumerate(self.routing):
            if rule.account not in names:
                raise ValueError(
                    f"routing[{index}].account {rule.account!r} is not a configured account; "
                    f"accounts: {', '.join(names) or 'none'}"
                )
        return self

    @property
    def default_account(self) -> str | None:
        """The account marked ``default = true``; see ``brokers.accounts.default_account``."""
        marked = next((account.name for account in self.accounts if account.default), None)
        return default_account((account.name for account in self.accounts), marked)

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise ConfigError(f"no account named {name!r}; accounts: {', '.join(a.name for a in self.accounts)}")

    def resolved_state_dir(self) -> Path:
        return self.state_dir or state_dir()

    @property
    def journal_name(self) -> str:
        """The journal's file name in the state folder: the demo keeps its own."""
        return DEMO_JOURNAL_FILE if self.demo else JOURNAL_FILE

    @property
    def journal_path(self) -> Path:
        return self.resolved_state_dir() / self.journal_name

    @property
    def halt_record_paths(self) -> tuple[Path, ...]:
        root = self.resolved_state_dir()
        return tuple(root / name for name in halt_record_names(self.demo))


def _find_secret_keys(data: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if is_secret_key(str(key)):
                found.append(here)
            found.extend(_find_secret_keys(value, here))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(_find_secret_keys(value, f"{path}[{index}]"))
    return found


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """Turn pydantic's location into the key a person wrote: accounts[0].currency, or the
    account's name when it has one: accounts[alpaca-main].currency."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                name = node[part].get("name")
                if isinstance(name, str) and name:
                    label = f"{part}: {name}"
            parts[-1:] = [f"{parts[-1]}[{label}]"] if parts else [f"[{label}]"]
        else:
            parts.append(str(part))
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return ".".join(parts)


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


def _explain(exc: ValidationError, data: Any, where: str) -> ConfigError:
    lines = []
    for error in exc.errors():
        key = _key_path(tuple(p for p in error.get("loc", ()) if p != "__root__"), data)
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown key (check the spelling against config.example.toml)"
        elif (
            "input" in error
            and error.get("type") not in ("missing",)
            and not isinstance(error["input"], (dict, list))
        ):
            message = f"{message} (got {error['input']!r})"
        lines.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
    return ConfigError("\n".join(lines))


# No setting nests deeper than a few tables; a file nested far deeper is not a config file, and
# walking it recursively would exhaust the interpreter's stack.
MAX_NESTING = 32


def _too_deep(data: object, limit: int = MAX_NESTING) -> bool:
    """Whether lists and tables in ``data`` nest more than ``limit`` levels (walked without
    recursion)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: list[object] = list(node.values())
        elif isinstance(node, list | tuple):
            children = list(node)
        else:
            continue
        if depth >= limit and children:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_config(
    data: Mapping[str, object], where: str = "config", *, base_dir: Path | None = None
) -> Config:
    """Validate settings read from ``where``. A relative ``state_dir`` is anchored to
    ``base_dir`` (the config file's folder), else to the current directory now."""
    if _too_deep(data):
        raise ConfigError(
            f"{where}: tables or lists nest more than {MAX_NESTING} levels deep; not a config file"
        )
    secrets = _find_secret_keys(data)
    if secrets:
        raise ConfigError(
            f"{where}: {secrets[0]}: secrets must not be kept in the config file. Store them in the "
            "system keyring with `trading-console set-creds ACCOUNT`, or in environment variables "
            "(ALPACA_API_KEY, ALPACA_SECRET_KEY, KITE_API_KEY, KITE_ACCESS_TOKEN), and remove the key"
        )
    try:
        return Config.model_validate(data, context={_CONFIG_DIR: base_dir})
    except ValidationError as exc:
        raise _explain(exc, data, where) from None


def load_config(path: str | Path) -> Config:
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `trading-console init` to write one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.__class__.__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively.
        raise ConfigError(f"{path}: tables or lists nest too deeply to be read; not a config file") from None
    config = parse_config(data, where=str(path), base_dir=path.absolute().parent)
    config.source = path
    return config


def demo_config(*, seed: int | None = 7, tick_interval: float | None = 0.5) -> Config:
    """The no-config demo: three paper accounts in two currencies with moving prices."""
    us_prices = {
        "AAPL": "227.50",
        "MSFT": "415.20",
        "NVDA": "138.40",
        "SPY": "590.10",
        "TSLA": "342.00",
        "AMZN": "201.30",
    }
    in_prices = {"INFY": "1875.40", "RELIANCE": "1290.55", "TCS": "4120.00", "HDFCBANK": "1745.25"}
    feed = {"seed": seed, "tick_interval": tick_interval}
    data = {
        "base_currency": "USD",
        "demo": True,
        "accounts": [
            {
                "name": "paper-us",
                "type": "sim",
                "currency": "USD",
                "default": True,
                "weight": 2.0,
                "initial_cash": 100_000,
                "prices": us_prices,
                "account_type": "margin",
                "leverage": 2,
                "initial_positions": {
                    "AAPL": ["50", "210.00"],
                    "MSFT": ["20", "400.00"],
                    "NVDA": ["-30", "145.00"],
                },
                **feed,
            },
            {
                "name": "paper-us-cash",
                "type": "sim",
                "currency": "USD",
                "weight": 1.0,
                "initial_cash": 50_000,
                "prices": us_prices,
                "account_type": "cash",
                "allow_short": False,
                "initial_positions": {"AAPL": ["25", "190.00"], "SPY": ["10", "560.00"]},
                **{**feed, "seed": None if seed is None else seed + 1},
            },
            {
                "name": "paper-in",
                "type": "sim",
                "currency": "INR",
                "weight": 1.0,
                "initial_cash": 5_000_000,
                "prices": in_prices,
                "account_type": "cash",
                "allow_short": False,
                "initial_positions": {"INFY": ["100", "1790.00"], "RELIANCE": ["200", "1310.00"]},
                **{**feed, "seed": None if seed is None else seed + 2},
            },
        ],
        "routing": [
            {"account": "paper-in", "currency": "INR"},
            {"account": "paper-in", "exchange": "NSE"},
            {"account": "paper-in", "exchange": "BSE"},
        ],
        "risk": {
            "max_order_quantity": 10_000,
            "max_order_notional": 1_000_000,
            "price_band_percent": 10,
            "max_orders_per_second": 20,
            "burst": 40,
            "max_open_orders": 200,
            "duplicate_window_seconds": 2,
        },
        "fx": {"rates": {"USDINR": "84.10"}},
        "ui": {"watchlist": ["SPY", "AAPL", "TSLA", "AMZN", "INFY", "TCS"]},
    }
    return parse_config(data, where="demo")


def halt_record_names(demo: bool) -> tuple[str, ...]:
    """The journals (file names in the state folder) that record halts, reduce-only and
    resumes: the main journal always, because the flag they describe is shared by every process
    using the folder, and the demo's own journal too, so its history shows them. The main one
    comes first: it is the one read back."""
    return (JOURNAL_FILE, DEMO_JOURNAL_FILE) if demo else (JOURNAL_FILE,)
