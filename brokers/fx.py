"""Currency conversion for consolidation.

A converted figure says how far it can be trusted: ``Money.stale`` when a rate it used is older
than ``stale_after_seconds``, ``Money.missing`` when some part of it could not be converted at
all. Totals carry the marks of their parts, so an unconverted or outdated amount is never
silently mixed into a sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .identifiers import currency_code
from .models import to_decimal, utcnow

Clock = Callable[[], datetime]


def split_pair(pair: str) -> tuple[str, str]:
    """ "USDINR" or "USD/INR" -> ("USD", "INR"), or ValueError naming what is allowed."""
    if not isinstance(pair, str):
        raise ValueError(f"currency pair must be text such as USDINR, not {pair!r}")
    text = pair.strip().upper().replace("/", "").replace("-", "").replace("_", "")
    if len(text) != 6 or not text.isalpha():
        raise ValueError(f"currency pair must be two 3-letter codes such as USDINR, not {pair!r}")
    base, quote = text[:3], text[3:]
    if base == quote:
        raise ValueError(f"currency pair {pair!r} names the same currency twice")
    return base, quote


def _positive_rate(value: Any, field: str) -> Decimal:
    rate = to_decimal(value, field)
    if rate <= 0:
        raise ValueError(f"{field} must be greater than 0, not {rate}")
    return rate


class FxSettings(BaseModel):
    """Rates as "USDINR" = 83.25, meaning 1 USD buys 83.25 INR.

    ``as_of`` dates every configured rate; without it a configured rate is taken as a fixed rate
    the trader chose and never turns stale.
    """

    model_config = ConfigDict(extra="forbid")

    rates: dict[str, Decimal] = Field(default_factory=dict)
    as_of: datetime | None = None
    stale_after_seconds: int = Field(default=86_400, gt=0)

    @field_validator("rates", mode="before")
    @classmethod
    def _rates(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        cleaned: dict[str, Decimal] = {}
        for pair, rate in value.items():
            base, quote = split_pair(pair)
            cleaned[base + quote] = _positive_rate(rate, f"rates.{pair}")
        return cleaned

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("as_of needs a time zone, e.g. 2024-05-01T09:00:00Z")
        return value


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency, with how much it can be trusted.

    ``missing`` with an amount is a partial figure (some part could not be obtained or converted);
    ``missing`` with ``amount=None`` is no figure at all.
    """

    amount: Decimal | None
    currency: str
    stale: bool = False
    missing: bool = False

    @property
    def is_exact(self) -> bool:
        """Complete and built on current data only."""
        return self.amount is not None and not self.stale and not self.missing

    def marked(self, *, stale: bool = False, missing: bool = False) -> Money:
        return Money(self.amount, self.currency, self.stale or stale, self.missing or missing)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str) -> Money:
        """Sum of amounts in ``currency``; any stale or missing part marks the result."""
        amount: Decimal | None = None
        stale = missing = False
        for item in items:
            if item.currency != currency:
                raise ValueError(f"cannot add {item.currency} to a {currency} total; convert it first")
            stale |= item.stale
            if item.amount is None:
                missing = True
                continue
            missing |= item.missing
            amount = item.amount if amount is None else amount + item.amount
        if amount is None and not missing:
            amount = Decimal(0)
        return cls(amount, currency, stale, missing)

    def __str__(self) -> str:
        if self.amount is None:
            return f"n/a {self.currency}"
        marks = [mark for mark, on in (("stale", self.stale), ("partial", self.missing)) if on]
        suffix = f" ({', '.join(marks)})" if marks else ""
        return f"{self.amount:,.2f} {self.currency}{suffix}"


@dataclass(frozen=True, slots=True)
class Rate:
    """1 ``base`` buys ``rate`` ``quote``."""

    base: str
    quote: str
    rate: Decimal
    as_of: datetime | None
    source: str

    @property
    def pair(self) -> str:
        return self.base + self.quote


@dataclass(frozen=True, slots=True)
class Conversion:
    """How to turn one currency into another, possibly through a third.

    ``steps`` multiply by a quoted rate or divide by it (a pair quoted the other way round), so
    10 INR at USDINR 83 is 10 / 83 exactly as Decimal division gives it, not 10 * (1 / 83).
    """

    source: str
    target: str
    stale: bool
    path: tuple[Rate, ...]
    steps: tuple[tuple[Decimal, bool], ...] = ()

    @property
    def rate(self) -> Decimal:
        """How many ``target`` one ``source`` buys."""
        return self.apply(Decimal(1))

    def apply(self, amount: Decimal) -> Decimal:
        for rate, divide in self.steps:
            amount = amount / rate if divide else amount * rate
        return amount


class FxRates:
    """Known rates and conversion into the base currency.

    Rates come from the config (``FxSettings``) or from brokers that report them (``set_rate``);
    the most recently set value of a pair wins, whichever way round it was quoted. A currency with
    no direct rate is converted through one intermediate currency when both legs are known.
    """

    def __init__(
        self, base: str = "USD", settings: FxSettings | None = None, *, clock: Clock | None = None
    ) -> None:
        self.base = currency_code(base, "base currency")
        self.settings = settings or FxSettings()
        self._clock: Clock = clock or utcnow
        self._rates: dict[frozenset[str], Rate] = {}
        for pair, rate in self.settings.rates.items():
            self.set_rate(pair, rate, as_of=self.settings.as_of, source="config")

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.settings.stale_after_seconds)

    def now(self) -> datetime:
        return self._clock()

    def set_rate(
        self,
        pair: str,
        rate: Decimal | str | float | int,
        as_of: datetime | None = None,
        source: str = "broker",
    ) -> Rate:
        """Record that 1 of the pair's first currency buys ``rate`` of its second.

        ``as_of`` defaults to now; a rate set with ``as_of=None`` by the config stays undated.
        """
        base, quote = split_pair(pair)
        value = _positive_rate(rate, f"rate for {base}{quote}")
        if as_of is None and source != "config":
            as_of = self.now()
        if as_of is not None and as_of.tzinfo is None:
            raise ValueError("as_of needs a time zone")
        entry = Rate(base, quote, value, as_of.astimezone(UTC) if as_of else None, source)
        self._rates[frozenset((base, quote))] = entry
        return entry

    def rates(self) -> list[Rate]:
        return sorted(self._rates.values(), key=lambda r: r.pair)

    def get(self, pair: str) -> Rate | None:
        base, quote = split_pair(pair)
        return self._rates.get(frozenset((base, quote)))

    def is_stale(self, rate: Rate) -> bool:
        if rate.as_of is None:
            return False
        return self.now() - rate.as_of > self.stale_after

    def _direct(self, source: str, target: str) -> tuple[tuple[Decimal, bool], Rate] | None:
        entry = self._rates.get(frozenset((source, target)))
        if entry is None:
            return None
        return (entry.rate, entry.base != source), entry

    def conversion(self, source: str, target: str | None = None) -> Conversion | None:
        """How many ``target`` one ``source`` buys, or None when no known rate links them."""
        source = currency_code(source)
        target = self.base if target is None else currency_code(target)
        if source == target:
            return Conversion(source, target, False, ())
        direct = self._direct(source, target)
        if direct is not None:
            step, entry = direct
            return Conversion(source, target, self.is_stale(entry), (entry,), (step,))
        # One hop through a shared currency; prefer a path built on fresh rates.
        best: Conversion | None = None
        middles = {c for key in self._rates for c in key} - {source, target}
        for middle in sorted(middles):
            first = self._direct(source, middle)
            second = self._direct(middle, target)
            if first is None or second is None:
                continue
            stale = self.is_stale(first[1]) or self.is_stale(second[1])
            candidate = Conversion(source, target, stale, (first[1], second[1]), (first[0], second[0]))
            if best is None or (best.stale and not stale):
                best = candidate
        return best

    def convert(self, amount: Decimal | None, currency: str, to: str | None = None) -> Money:
        """``amount`` of ``currency`` in the base currency (or ``to``), marked stale or missing."""
        target = self.base if to is None else currency_code(to)
        if amount is None:
            return Money(None, target, missing=True)
        if not isinstance(amount, Decimal):
            amount = to_decimal(amount, "amount")
        try:
            found = self.conversion(currency, target)
        except ValueError:
            # Not a currency code at all (a broker's garbled payload): no rate can apply, so the
            # figure is missing, and the consolidated view goes on without it.
            found = None
        if found is None:
            return Money(None, target, missing=True)
        return Money(found.apply(amount), target, stale=found.stale)

    def convert_money(self, money: Money, to: str | None = None) -> Money:
        """Convert, keeping the marks the amount already carried."""
        converted = self.convert(money.amount, money.currency, to)
        return converted.marked(stale=money.stale, missing=money.missing)

    def __repr__(self) -> str:
        return f"<FxRates base={self.base} pairs={[r.pair for r in self.rates()]}>"
