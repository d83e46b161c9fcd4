"""Profit and loss of one holding at one account: unrealised, realised today, and the day's.

- Unrealised: (mark - average price) x quantity x multiplier.
- Realised today: what today's fills closed out, against the average price of what they closed,
  less today's commissions.
- Day P&L: what the holding made since the previous close, realised part included:
  ``mark x Q_now - previous close x Q_open - net cash paid for today's trades``, with ``Q_open``
  the quantity held at the open (``Q_now`` less what today's fills added). A holding opened
  today needs no previous close; one carried in without a known previous close has no day P&L
  (unknown, shown as such, never 0).

Where a broker reports its own figure (``Position.day_pnl``, ``Position.realized_today``) it
wins, as the broker's settled cash does, and the figure worked out from the fills is kept beside
it. Every figure is linear in the mark (a constant plus ``mark x units``), so a screen can
re-price it on each tick without asking anything again.

Sums are made of cents: each holding's figure is converted into the base currency once and
rounded to the cent (``cents``) before anything adds it up, so every total is the sum of the
rows it totals, exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from .enums import CaseInsensitiveEnum
from .fx import Conversion, FxRates, Money
from .instruments import Instrument
from .models import Position

__all__ = [
    "CENT",
    "Converter",
    "DayActivity",
    "DayBook",
    "DayTrades",
    "LegFigures",
    "LegPnl",
    "LegSums",
    "MoneySum",
    "PnlSource",
    "PreviousClose",
    "cents",
    "leg_pnl",
    "previous_close",
]

_ZERO = Decimal(0)
CENT = Decimal("0.01")


class PnlSource(CaseInsensitiveEnum):
    """Where a figure came from."""

    BROKER = "BROKER"  # the broker reported it
    FILLS = "FILLS"  # worked out here from the day's fills and the previous close
    UNKNOWN = "UNKNOWN"  # neither could give it


@dataclass(frozen=True, slots=True)
class DayActivity:
    """Today's fills in one holding, as the book counted them.

    ``quantity`` is signed (bought less sold), ``cash`` what they cost (bought less sold, in
    money: price x quantity x multiplier), ``commission`` today's commissions, ``realized``
    today's profit or loss closed against the average price (commissions taken off; None when
    not known: fills read back after a restart closed a holding whose cost at the open is not
    known any more).
    ``previous_close`` is the one the book learnt for the holding, for a holding no longer held."""

    quantity: Decimal = _ZERO
    cash: Decimal = _ZERO
    commission: Decimal = _ZERO
    realized: Decimal | None = _ZERO
    previous_close: Decimal | None = None


class DayTrades(Protocol):
    """Today's fills per holding (``brokers.book.Book`` keeps them)."""

    def day_activity(self, account: str, instrument: Instrument) -> DayActivity | None:
        """Today's fills in ``instrument`` at ``account``; None: none today."""
        ...

    def closed_today(self, account: str) -> dict[Instrument, DayActivity]:
        """Holdings at ``account`` traded today and no longer held."""
        ...


Converter = Callable[[Decimal, str], Money]
"""(amount, currency) -> the amount in the base currency (``FxRates.convert``)."""


@dataclass(frozen=True, slots=True)
class DayBook:
    """Today's fills per holding, copied out of the book at one moment (``Book.day_trades``):
    safe to read from another thread while the book goes on taking fills."""

    activity: dict[tuple[str, Instrument], DayActivity]
    closed: dict[str, dict[Instrument, DayActivity]]

    def day_activity(self, account: str, instrument: Instrument) -> DayActivity | None:
        return self.activity.get((account, instrument))

    def closed_today(self, account: str) -> dict[Instrument, DayActivity]:
        return self.closed.get(account, {})


class MoneySum:
    """``Money.total`` of parts added one at a time, without a ``Money`` for each part."""

    __slots__ = ("amount", "currency", "missing", "stale")

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.amount: Decimal | None = None
        self.stale = self.missing = False

    def add(self, amount: Decimal | None, *, stale: bool = False, missing: bool = False) -> None:
        self.stale |= stale
        if amount is None:
            self.missing = True
            return
        self.missing |= missing
        self.amount = amount if self.amount is None else self.amount + amount

    def money(self) -> Money:
        amount = _ZERO if self.amount is None and not self.missing else self.amount
        return Money(amount, self.currency, self.stale, self.missing)


class LegSums:
    """A leg's four figures (value, unrealised, realised today, day) added up into ``currency``,
    each leg's converted once and, for the base currency, rounded to the cent: the same cents
    ``LegPnl.figures`` gives, for thousands of legs at a time."""

    __slots__ = ("currency", "day", "found", "fx", "in_cents", "market_value", "realized", "unrealized")

    def __init__(self, fx: FxRates, currency: str, *, in_cents: bool) -> None:
        self.fx, self.currency, self.in_cents = fx, currency, in_cents
        self.found: dict[str, Conversion | None] = {}
        self.market_value = MoneySum(currency)
        self.unrealized = MoneySum(currency)
        self.realized = MoneySum(currency)
        self.day = MoneySum(currency)

    def _conversion(self, currency: str) -> Conversion | None:
        if currency in self.found:
            return self.found[currency]
        try:
            conversion = self.fx.conversion(currency, self.currency)
        except ValueError:
            conversion = None  # not a currency code: no rate applies
        self.found[currency] = conversion
        return conversion

    def add(self, pnl: LegPnl, mark: Decimal | None, *, stale: bool = False) -> None:
        conversion = self._conversion(pnl.currency)
        for total, amount in (
            (self.market_value, pnl.market_value(mark)),
            (self.unrealized, pnl.unrealized(mark)),
            (self.realized, pnl.realized_today),
            (self.day, pnl.day_pnl(mark)),
        ):
            if amount is None or conversion is None:
                total.add(None, stale=stale)
                continue
            value = conversion.apply(amount)
            if self.in_cents:
                value = value.quantize(CENT, rounding=ROUND_HALF_EVEN)
            total.add(value, stale=stale or conversion.stale)

    def totals(self) -> tuple[Money, Money, Money, Money]:
        return (self.market_value.money(), self.unrealized.money(), self.realized.money(), self.day.money())


PreviousClose = Callable[[Position], Decimal | None]
"""The price the day's P&L of a position is counted from, or None when it is not known."""


def previous_close(position: Position) -> Decimal | None:
    """The previous close of ``position``: the broker's, as the position carries it.

    Brokers whose positions carry none (IB) have it from their quotes:
    ``MultiBrokerManager.previous_close`` tries the position and then the quote board, and is
    what the console passes to the consolidation functions."""
    return position.previous_close


def cents(money: Money) -> Money:
    """``money`` rounded to the cent (half to even), marks kept."""
    if money.amount is None:
        return money
    return Money(
        money.amount.quantize(CENT, rounding=ROUND_HALF_EVEN), money.currency, money.stale, money.missing
    )


@dataclass(frozen=True, slots=True)
class LegFigures:
    """One holding's money at one mark, in the base currency, each rounded to the cent."""

    market_value: Money
    unrealized: Money
    realized_today: Money
    day_pnl: Money


@dataclass(frozen=True, slots=True)
class LegPnl:
    """One holding's P&L as a function of its mark, in its own ``currency``.

    ``units`` is quantity x multiplier; ``cost`` what the holding cost (average price x units).
    The day's P&L at a mark is ``mark x units - day_offset`` (None: not known).
    ``realized_today`` and the day's P&L are the broker's where it reports them (see
    ``realized_source``, ``day_source``); ``fills_realized_today`` and ``fills_day_offset``
    are the figures from the fills, kept beside them."""

    account: str
    currency: str
    units: Decimal
    cost: Decimal | None  # None: the broker does not know what the holding cost
    day_offset: Decimal | None
    realized_today: Decimal | None
    realized_source: PnlSource
    day_source: PnlSource
    fills_realized_today: Decimal | None = None
    fills_day_offset: Decimal | None = None

    def market_value(self, mark: Decimal | None) -> Decimal | None:
        return None if mark is None else mark * self.units

    def unrealized(self, mark: Decimal | None) -> Decimal | None:
        return None if mark is None or self.cost is None else mark * self.units - self.cost

    def day_pnl(self, mark: Decimal | None) -> Decimal | None:
        if mark is None or self.day_offset is None:
            return None
        return mark * self.units - self.day_offset

    def fills_day_pnl(self, mark: Decimal | None) -> Decimal | None:
        if mark is None or self.fills_day_offset is None:
            return None
        return mark * self.units - self.fills_day_offset

    def figures(
        self, mark: Decimal | None, convert: Converter, base: str, *, stale: bool = False
    ) -> LegFigures:
        """Money at ``mark`` in the ``base`` currency: converted once (``convert``, such as
        ``FxRates.convert``), rounded to the cent."""

        def to_base(amount: Decimal | None) -> Money:
            if amount is None:
                return Money(None, base, stale, missing=True)
            converted = convert(amount, self.currency)
            value = converted.amount
            return Money(
                None if value is None else value.quantize(CENT, rounding=ROUND_HALF_EVEN),
                base,
                converted.stale or stale,
                converted.missing,
            )

        return LegFigures(
            market_value=to_base(self.market_value(mark)),
            unrealized=to_base(self.unrealized(mark)),
            realized_today=to_base(self.realized_today),
            day_pnl=to_base(self.day_pnl(mark)),
        )


def _fills_offset(
    units: Decimal, multiplier: Decimal, activity: DayActivity, close: Decimal | None
) -> Decimal | None:
    """``day_offset`` from the fills: previous close x units held at the open, plus the cash
    paid for today's trades and their commissions."""
    opening = units - activity.quantity * multiplier
    if opening == 0:
        return activity.cash + activity.commission
    if close is None:
        return None
    return close * opening + activity.cash + activity.commission


def leg_pnl(
    position: Position,
    activity: DayActivity | None,
    close: PreviousClose = previous_close,
) -> LegPnl:
    """The P&L of one open position row: the broker's figures where it gives them, else the
    ones from ``activity`` (today's fills; None: none) and its previous close."""
    activity = activity or DayActivity()
    multiplier = position.multiplier
    units = position.quantity * multiplier
    fills_offset = _fills_offset(units, multiplier, activity, close(position))
    fills_realized = activity.realized
    day_offset, day_source = fills_offset, PnlSource.FILLS if fills_offset is not None else PnlSource.UNKNOWN
    if position.day_pnl is not None and position.last_price is not None:
        # The broker's figure is at its own mark; a newer mark moves it by units x the change.
        day_offset, day_source = position.last_price * units - position.day_pnl, PnlSource.BROKER
    realized = fills_realized
    realized_source = PnlSource.FILLS if fills_realized is not None else PnlSource.UNKNOWN
    if position.realized_today is not None:
        realized, realized_source = position.realized_today, PnlSource.BROKER
    return LegPnl(
        account=position.account,
        currency=position.currency,
        units=units,
        cost=None if position.avg_price is None else position.avg_price * units,
        day_offset=day_offset,
        realized_today=realized,
        realized_source=realized_source,
        day_source=day_source,
        fills_realized_today=fills_realized,
        fills_day_offset=fills_offset,
    )
