"""The paper broker's settings, validated once for the constructor and for config files.

Every message starts with the key it is about, so a config error names what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

from ..identifiers import AccountName, CurrencyCode
from ..models import MAX_PRICE, MAX_QUANTITY, to_decimal
from .account import CASH, MARGIN
from .faults import SimFaults
from .feed import DEFAULT_VOLATILITY

_ZERO = Decimal(0)
MAX_CASH = Decimal("1e15")
MAX_LATENCY = 60.0
MIN_TICK_INTERVAL = 0.001

DEFAULT_PRICES: dict[str, Decimal] = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "GOOGL": Decimal("150.00"),
    "AMZN": Decimal("180.00"),
    "NVDA": Decimal("880.00"),
    "TSLA": Decimal("175.00"),
    "SPY": Decimal("520.00"),
    "QQQ": Decimal("440.00"),
}
"""The symbols a paper account trades when it is given no prices at all."""


def _number(
    value: Any,
    key: str,
    *,
    minimum: Decimal = _ZERO,
    strict_minimum: bool = False,
    ceiling: Decimal = MAX_PRICE,
) -> Decimal:
    amount = to_decimal(value, key)
    if strict_minimum and amount <= minimum:
        raise ValueError(f"{key} must be greater than {minimum}, not {amount}")
    if amount < minimum:
        raise ValueError(f"{key} must be at least {minimum}, not {amount}")
    if amount > ceiling:
        raise ValueError(f"{key} must be at most {ceiling:,}, not {amount:,}")
    return amount


def _seconds(value: Any, key: str, *, positive: bool, ceiling: float) -> float:
    seconds = float(to_decimal(value, key))
    if positive and seconds <= 0:
        raise ValueError(f"{key} must be greater than 0 seconds, not {seconds}")
    if seconds < 0:
        raise ValueError(f"{key} must be at least 0 seconds, not {seconds}")
    if seconds > ceiling:
        raise ValueError(f"{key} must be at most {ceiling} seconds, not {seconds}")
    return seconds


def normalize_symbol(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: a symbol must be non-empty text such as AAPL, not {value!r}")
    return value.strip().upper()


class SimSettings(BaseModel):
    """Options of a paper account, in code (``SimBroker(...)``) and in config (``[[accounts]]``).

    - ``initial_cash``: starting and ``reset_account()`` cash, in ``currency``.
    - ``prices``: symbol -> starting price; unset trades ``DEFAULT_PRICES``, ``{}`` nothing.
    - ``latency``: seconds every call waits; 0 means no call ever suspends.
    - ``seed``, ``volatility``, ``tick_size``: the random walk (``volatility`` is the standard
      deviation of one step's log return; ``tick_size`` unset means 0.01, or 0.0001 below 1).
    - ``tick_interval``: seconds between feed steps while connected; unset means no feed.
    - ``slippage_bps``: market and marketable fills move this far against the trader.
    - ``commission_per_share`` + ``commission_percent`` (of notional), at least
      ``commission_min`` per order.
    - ``liquidity_per_tick``: most one order can fill per price update; unset means all of it.
    - ``account_type``: ``"margin"`` (buying power = leverage * equity - gross exposure) or
      ``"cash"`` (buying power = cash; no short selling).
    - ``allow_short``, ``leverage``: margin accounts only.
    - ``initial_positions``: symbol -> (quantity, avg_price), held from the start at no cost.
    - ``session_close`` (``"16:00"``) in ``session_timezone``: when DAY orders expire by the clock.
    - ``clock``: a callable returning aware datetimes; ``faults``: a ``SimFaults`` or a table of
      its fields; ``history_limit``: finished orders remembered for look-ups.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    name: AccountName = "sim"
    currency: CurrencyCode = "USD"
    initial_cash: Decimal = Decimal(100_000)
    prices: dict[str, Decimal] | None = None
    latency: float = 0.0
    seed: int | None = None
    live: bool = False
    slippage_bps: Decimal = _ZERO
    commission_per_share: Decimal = _ZERO
    commission_min: Decimal = _ZERO
    commission_percent: Decimal = _ZERO
    liquidity_per_tick: Decimal | None = None
    allow_short: bool = True
    account_type: str = MARGIN
    leverage: Decimal = Decimal(2)
    clock: Any = None  # a Clock: any callable returning an aware datetime
    faults: Any = None  # a SimFaults; Any so pydantic keeps the caller's object, not a copy
    tick_interval: float | None = None
    volatility: float = DEFAULT_VOLATILITY
    initial_positions: dict[str, tuple[Decimal, Decimal]] | None = None
    session_close: time | None = None
    session_timezone: str = "UTC"
    tick_size: Decimal | None = None
    history_limit: int = 100_000

    @field_validator("initial_cash", mode="before")
    @classmethod
    def _cash(cls, value: Any) -> Decimal:
        return _number(value, "initial_cash", ceiling=MAX_CASH)

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> dict[str, Decimal] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"prices must be a table of symbol = price, not {type(value).__name__}")
        prices: dict[str, Decimal] = {}
        for symbol, price in value.items():
            key = normalize_symbol(symbol, "prices")
            prices[key] = _number(price, f"prices.{key}", strict_minimum=True)
        return prices

    @field_validator("initial_positions", mode="before")
    @classmethod
    def _positions(cls, value: Any) -> dict[str, tuple[Decimal, Decimal]] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError("initial_positions must be a table of symbol = [quantity, avg_price]")
        positions: dict[str, tuple[Decimal, Decimal]] = {}
        for symbol, entry in value.items():
            key = normalize_symbol(symbol, "initial_positions")
            where = f"initial_positions.{key}"
            if isinstance(entry, Mapping):
                entry = (entry.get("quantity"), entry.get("avg_price"))
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise ValueError(f"{where} must be [quantity, avg_price], not {entry!r}")
            quantity = to_decimal(entry[0], f"{where} quantity")
            if quantity == 0 or abs(quantity) > MAX_QUANTITY:
                raise ValueError(f"{where} quantity must be non-zero and at most {MAX_QUANTITY:,} either way")
            price = _number(entry[1], f"{where} avg_price", strict_minimum=True)
            positions[key] = (quantity, price)
        return positions

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> float:
        return _seconds(value, "latency", positive=False, ceiling=MAX_LATENCY)

    @field_validator("tick_interval", mode="before")
    @classmethod
    def _tick_interval(cls, value: Any) -> float | None:
        if value is None:
            return None
        seconds = _seconds(value, "tick_interval", positive=True, ceiling=3600.0)
        if seconds < MIN_TICK_INTERVAL:
            raise ValueError(f"tick_interval must be at least {MIN_TICK_INTERVAL} seconds, not {seconds}")
        return seconds

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"seed must be a whole number, not {value!r}")
        return value

    @field_validator("slippage_bps", mode="before")
    @classmethod
    def _slippage(cls, value: Any) -> Decimal:
        return _number(value, "slippage_bps", ceiling=Decimal(1000))

    @field_validator("commission_per_share", "commission_min", mode="before")
    @classmethod
    def _commission(cls, value: Any, info: Any) -> Decimal:
        return _number(value, info.field_name, ceiling=Decimal(1_000_000))

    @field_validator("commission_percent", mode="before")
    @classmethod
    def _commission_percent(cls, value: Any) -> Decimal:
        return _number(value, "commission_percent", ceiling=Decimal(10))

    @field_validator("liquidity_per_tick", mode="before")
    @classmethod
    def _liquidity(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        return _number(value, "liquidity_per_tick", strict_minimum=True, ceiling=MAX_QUANTITY)

    @field_validator("leverage", mode="before")
    @classmethod
    def _leverage(cls, value: Any) -> Decimal:
        return _number(value, "leverage", minimum=Decimal(1), ceiling=Decimal(100))

    @field_validator("tick_size", mode="before")
    @classmethod
    def _tick_size(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        return _number(value, "tick_size", strict_minimum=True, ceiling=Decimal(1000))

    @field_validator("account_type", mode="before")
    @classmethod
    def _account_type(cls, value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in (CASH, MARGIN):
            raise ValueError(f"account_type must be {CASH!r} or {MARGIN!r}, not {value!r}")
        return text

    @field_validator("volatility", mode="before")
    @classmethod
    def _volatility(cls, value: Any) -> float:
        volatility = float(to_decimal(value, "volatility"))
        if not 0 <= volatility < 0.5:
            raise ValueError(
                f"volatility must be at least 0 and below 0.5 (0.001 is 0.1 % a step), not {volatility}"
            )
        return volatility

    @field_validator("clock", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise ValueError("clock must be a callable returning an aware datetime")
        return value

    @field_validator("faults", mode="before")
    @classmethod
    def _faults(cls, value: Any) -> SimFaults | None:
        if value is None or isinstance(value, SimFaults):
            return value
        if isinstance(value, Mapping):
            try:
                return SimFaults.from_mapping(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"faults: {exc}") from None
        raise ValueError(f"faults must be a SimFaults or a table of faults, not {type(value).__name__}")

    @field_validator("session_close", mode="before")
    @classmethod
    def _session_close(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return time.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(
                    f"session_close must be a time of day such as '16:00', not {value!r}"
                ) from None
        if value is not None and not isinstance(value, time):
            raise ValueError(f"session_close must be a time of day such as '16:00', not {value!r}")
        return value

    @field_validator("session_timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"session_timezone must be a zone name such as 'America/New_York', not {value!r}"
            )
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"session_timezone {value!r} is not a known time zone") from None
        return value.strip()

    @field_validator("history_limit", mode="before")
    @classmethod
    def _history_limit(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"history_limit must be a whole number of at least 1, not {value!r}")
        return value

    def resolved_prices(self) -> dict[str, Decimal]:
        return dict(DEFAULT_PRICES) if self.prices is None else dict(self.prices)
