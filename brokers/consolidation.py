"""One view of many accounts, computed without I/O from a snapshot of what they last reported.

Positions are grouped by instrument (``brokers.instruments`` says when two rows are one
instrument): a CFD beside a stock of the same symbol is two rows, one share held at a USD and at a
EUR account is one. Each leg is valued in its own currency and multiplier; money is carried as
``Money`` so a figure built on stale data or a missing rate stays marked as such through every sum. Prices
come from a ``mark`` callable, so the caller decides whether a live feed beats the snapshot.

Base-currency figures are sums of cents: each leg (and each account's cash, equity, buying
power, margin) is converted into the base currency once, straight from its own currency, and
rounded to the cent (``brokers.pnl.cents``) before it is added to anything. A row's figure is
the sum of its legs', an account's the sum of its holdings', a total the sum of the rows it
totals, to the cent. P&L per leg (unrealised, realised today, the day's) is ``brokers.pnl``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .account_state import SettledCashSource
from .events import PositionDiff
from .fx import FxRates, Money
from .instruments import Instrument
from .models import AccountStatus, AssetClass, Balance, Position, utcnow
from .pnl import (
    DayTrades,
    LegPnl,
    LegSums,
    PreviousClose,
    cents,
    leg_pnl,
    previous_close,
)

__all__ = [
    "AccountTotals",
    "BuyingPower",
    "CashSettlement",
    "ConsolidatedPosition",
    "Figures",
    "MarkPrice",
    "SettlementTotals",
    "Snapshot",
    "Totals",
    "account_totals",
    "average_price",
    "cash_settlement",
    "compare_positions",
    "consolidate_buying_power",
    "consolidate_positions",
    "consolidate_settlement",
    "consolidate_totals",
    "empty_snapshot",
]

MarkPrice = Callable[[Position], Decimal | None]
"""The price to value a position at, or None when none is known."""


@dataclass(frozen=True)
class Snapshot:
    """What the accounts last reported. ``stale`` names accounts whose data is older than the
    refresh that produced this snapshot (the broker failed or was skipped)."""

    taken_at: datetime
    balances: dict[str, Balance]
    positions: dict[str, list[Position]]
    statuses: dict[str, AccountStatus]
    as_of: dict[str, datetime]
    stale: frozenset[str] = frozenset()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def accounts(self) -> list[str]:
        return list(self.statuses)


def empty_snapshot() -> Snapshot:
    return Snapshot(taken_at=utcnow(), balances={}, positions={}, statuses={}, as_of={})


@dataclass(frozen=True)
class ConsolidatedPosition:
    """One instrument across accounts. ``quantity`` is the net (contracts, for derivatives);
    ``legs`` keep each account's own holding (a long here and a short there both stay visible).

    Legs in one currency: ``currency`` is theirs, and ``avg_price`` and ``last_price`` are in
    it. Legs in several: ``currency`` is the base currency, ``market_value`` is the base-currency
    sum, and there is no one average or last price (each leg keeps its own)."""

    symbol: str
    asset_class: AssetClass
    currency: str
    quantity: Decimal
    avg_price: Decimal | None
    last_price: Decimal | None
    market_value: Money
    unrealized_pnl: Money
    market_value_base: Money
    unrealized_pnl_base: Money
    legs: list[Position]
    # In the base currency, sums of the legs' cents; ``pnl`` is each leg's P&L (same order as
    # ``legs``), and ``marks`` the price each leg was valued at.
    realized_today_base: Money = Money(None, "", missing=True)
    day_pnl_base: Money = Money(None, "", missing=True)
    pnl: tuple[LegPnl, ...] = ()
    marks: tuple[Decimal | None, ...] = ()

    @property
    def accounts(self) -> list[str]:
        return [leg.account for leg in self.legs]

    @property
    def instrument(self) -> Instrument:
        return self.legs[0].instrument

    @property
    def label(self) -> str:
        """One per row: the instrument's label (``Instrument.label``)."""
        return self.instrument.label

    @property
    def stale(self) -> bool:
        return self.market_value_base.stale


@dataclass(frozen=True)
class Figures:
    """One account's money, or the sum of several. In the base currency each is a sum of cents.
    ``realized_today`` and ``day_pnl`` count holdings closed today too; ``margin_used`` is what
    the broker reports (missing where it does not)."""

    cash: Money
    equity: Money
    buying_power: Money
    market_value: Money
    unrealized_pnl: Money
    realized_today: Money
    day_pnl: Money
    margin_used: Money


@dataclass(frozen=True)
class AccountTotals:
    account: str
    currency: str
    native: Figures
    base: Figures
    stale: bool


@dataclass(frozen=True)
class CashSettlement:
    """One account's cash split into settled and pending (still to settle: sale proceeds in,
    less purchases out), in its own currency and in the base currency. ``source`` says where
    the split came from; ``disagreement`` is the broker's settled cash less the figure worked
    out from the fills, when both are known and differ."""

    account: str
    currency: str
    settled: Money
    pending: Money
    settled_base: Money
    pending_base: Money
    source: SettledCashSource
    cash_account: bool = False
    disagreement: Decimal | None = None


@dataclass(frozen=True)
class SettlementTotals:
    """Settled and pending cash of every account, and their sums in ``currency`` (the base)."""

    currency: str
    settled: Money
    pending: Money
    per_account: dict[str, CashSettlement]


@dataclass(frozen=True)
class Totals:
    currency: str
    total: Figures
    per_account: dict[str, AccountTotals]
    settlement: SettlementTotals | None = None


@dataclass(frozen=True)
class BuyingPower:
    """``per_account`` in each account's own currency; ``total`` (and ``per_account_base``) in
    the base currency. ``settlement``: cash split into settled and pending."""

    per_account: dict[str, Money]
    total: Money
    per_account_base: dict[str, Money] = field(default_factory=dict)
    settlement: SettlementTotals | None = None


# ---------------------------------------------------------------------------------------------
# Positions


def consolidate_positions(
    snapshot: Snapshot,
    fx: FxRates,
    mark: MarkPrice,
    trades: DayTrades | None = None,
    close: PreviousClose = previous_close,
) -> list[ConsolidatedPosition]:
    """Positions grouped by instrument. ``trades`` gives today's fills per holding (the book),
    ``close`` the previous close of a position (see ``brokers.pnl``). A holding closed today is
    a leg of no quantity: what it made today still shows."""
    groups: dict[Instrument, list[Position]] = {}
    for account, positions in snapshot.positions.items():
        for position in positions:
            if position.quantity != 0:
                groups.setdefault(position.instrument, []).append(position)
        for position in _closed_legs(snapshot, trades, account):
            groups.setdefault(position.instrument, []).append(position)
    rows = [
        _consolidate(instrument, legs, snapshot, fx, mark, trades, close)
        for instrument, legs in groups.items()
    ]
    rows.sort(key=lambda row: (row.symbol, row.asset_class.value, row.label))
    return rows


def _closed_legs(snapshot: Snapshot, trades: DayTrades | None, account: str) -> list[Position]:
    """Holdings ``account`` closed today by the book's count, as legs of no quantity; not those
    its broker still reports open (its word wins)."""
    if trades is None:
        return []
    closed = trades.closed_today(account)
    if not closed:
        return []
    held = {p.instrument for p in snapshot.positions.get(account, ()) if p.quantity}
    balance = snapshot.balances.get(account)
    currency = balance.currency if balance is not None else "USD"
    return [
        Position(
            symbol=instrument.symbol,
            quantity=Decimal(0),
            account=account,
            asset_class=instrument.asset_class,
            currency=instrument.currency or currency,
            multiplier=instrument.multiplier,
            exchange=instrument.exchange,
            expiry=instrument.expiry,
            strike=instrument.strike,
            right=instrument.right,
            previous_close=activity.previous_close,
        )
        for instrument, activity in closed.items()
        if instrument not in held
    ]


def _leg_pnl(position: Position, trades: DayTrades | None, close: PreviousClose) -> LegPnl:
    activity = trades.day_activity(position.account, position.instrument) if trades is not None else None
    return leg_pnl(position, activity, close)


def _consolidate(
    instrument: Instrument,
    legs: list[Position],
    snapshot: Snapshot,
    fx: FxRates,
    mark: MarkPrice,
    trades: DayTrades | None = None,
    close: PreviousClose = previous_close,
) -> ConsolidatedPosition:
    quantity = sum((leg.quantity for leg in legs), Decimal(0))
    stale = any(leg.account in snapshot.stale for leg in legs)
    currencies = {leg.currency for leg in legs}
    marks = [mark(leg) for leg in legs]
    if len(currencies) == 1:
        currency = legs[0].currency
        last = next((price for price in marks if price is not None), None)
        avg = average_price(legs)
        if last is None:
            market_value = Money(None, currency, stale, missing=True)
            unrealized = Money(None, currency, stale, missing=True)
        else:
            # One currency: every leg at the one known price, so an account whose own feed has
            # none is still valued.
            market_value = Money(
                sum((leg.quantity * leg.multiplier for leg in legs), Decimal(0)) * last, currency, stale
            )
            unrealized = Money.total(
                (Money(leg.pnl_at(last), currency, stale, missing=leg.avg_price is None) for leg in legs),
                currency,
            )
    else:
        # Prices in different currencies have no one average: the legs keep theirs.
        currency, last, avg = fx.base, None, None
        market_value = unrealized = Money(None, currency, missing=True)  # the base sums, below
    # In the base currency: each leg at the price the row shows (its own, across currencies),
    # converted once and rounded to the cent, then added up.
    ordered = sorted(zip(legs, marks, strict=True), key=lambda pair: pair[0].account)
    # A leg closed today holds nothing: any price values it the same.
    leg_marks = tuple(
        (price if len(currencies) > 1 else last) if leg.quantity else Decimal(0) for leg, price in ordered
    )
    pnls = tuple(_leg_pnl(leg, trades, close) for leg, _ in ordered)
    sums = LegSums(fx, fx.base, in_cents=True)
    for pnl, price in zip(pnls, leg_marks, strict=True):
        sums.add(pnl, price, stale=stale)
    market_value_base, unrealized_base, realized_base, day_base = sums.totals()
    if len(currencies) > 1:
        market_value, unrealized = market_value_base, unrealized_base
    return ConsolidatedPosition(
        symbol=instrument.symbol,
        asset_class=instrument.asset_class,
        currency=currency,
        quantity=quantity,
        avg_price=avg,
        last_price=last,
        market_value=market_value,
        unrealized_pnl=unrealized,
        market_value_base=market_value_base,
        unrealized_pnl_base=unrealized_base,
        legs=[leg for leg, _ in ordered],
        realized_today_base=realized_base,
        day_pnl_base=day_base,
        pnl=pnls,
        marks=leg_marks,
    )


def average_price(legs: Iterable[Position]) -> Decimal | None:
    """Quantity-weighted average price of the legs on the side of the net position.

    Legs all one way: the plain weighted average. A long in one account against a short in
    another: the average of the side that remains after netting (the per-account legs still
    show both). Flat: None, there is no position to price.
    """
    legs = [leg for leg in legs if leg.quantity != 0]
    net = sum((leg.quantity for leg in legs), Decimal(0))
    if net == 0:
        return None
    side = [leg for leg in legs if (leg.quantity > 0) == (net > 0)]
    weight = sum((abs(leg.quantity) for leg in side), Decimal(0))
    costs = [abs(leg.quantity) * leg.avg_price for leg in side if leg.avg_price is not None]
    return sum(costs, Decimal(0)) / weight if len(costs) == len(side) else None


def compare_positions(
    account: str, book: dict[tuple[str, str], Decimal], positions: Iterable[Position]
) -> tuple[PositionDiff, ...]:
    """Holdings where the journal's book and the broker's report for ``account`` disagree.

    ``book`` is keyed by (account, ``Instrument.label``), as ``Book.positions`` gives it; the
    broker's rows are added up per instrument the same way."""
    held: dict[str, Decimal] = {}
    for position in positions:
        label = position.instrument.label
        held[label] = held.get(label, Decimal(0)) + position.quantity
    expected: dict[str, Decimal] = {}
    for (name, symbol), quantity in book.items():
        if name == account:
            expected[symbol] = expected.get(symbol, Decimal(0)) + Decimal(quantity)
    diffs = [
        PositionDiff(account, symbol, expected.get(symbol, Decimal(0)), held.get(symbol, Decimal(0)))
        for symbol in sorted(set(held) | set(expected))
        if expected.get(symbol, Decimal(0)) != held.get(symbol, Decimal(0))
    ]
    return tuple(diffs)


# ---------------------------------------------------------------------------------------------
# Money


def account_totals(
    name: str,
    account_currency: str,
    snapshot: Snapshot,
    fx: FxRates,
    mark: MarkPrice,
    trades: DayTrades | None = None,
    close: PreviousClose = previous_close,
) -> AccountTotals:
    """One account's figures in its own currency and in the base currency.

    ``account_currency`` is used only while the account has not reported a balance yet.
    ``trades`` (today's fills, the book) adds holdings closed today to the day's P&L.
    """
    balance = snapshot.balances.get(name)
    currency = balance.currency if balance is not None else account_currency
    stale = name in snapshot.stale
    legs: list[tuple[LegPnl, Decimal | None]] = []
    if balance is None:
        none = Money(None, currency, missing=True)
        native = Figures(none, none, none, none, none, none, none, none)
    else:
        for position in snapshot.positions.get(name, ()):
            if position.quantity != 0:
                legs.append((_leg_pnl(position, trades, close), mark(position)))
        for position in _closed_legs(snapshot, trades, name):
            legs.append((_leg_pnl(position, trades, close), Decimal(0)))

        native_sums = LegSums(fx, currency, in_cents=False)
        for pnl, price in legs:
            native_sums.add(pnl, price)
        market_native, unrealized_native, realized_native, day_native = native_sums.totals()
        native = Figures(
            cash=Money(balance.cash, currency, stale),
            equity=Money(balance.equity, currency, stale),
            buying_power=Money(balance.buying_power, currency, stale),
            market_value=market_native.marked(stale=stale),
            unrealized_pnl=unrealized_native.marked(stale=stale),
            realized_today=realized_native.marked(stale=stale),
            day_pnl=day_native.marked(stale=stale),
            margin_used=Money(balance.margin_used, currency, stale, missing=balance.margin_used is None),
        )

    def convert(money: Money) -> Money:
        return cents(fx.convert_money(money))

    if balance is None:
        market_value = unrealized = realized = day = convert(native.market_value)
    else:
        base_sums = LegSums(fx, fx.base, in_cents=True)
        for pnl, price in legs:
            base_sums.add(pnl, price, stale=stale)
        market_value, unrealized, realized, day = base_sums.totals()
    base = Figures(
        cash=convert(native.cash),
        equity=convert(native.equity),
        buying_power=convert(native.buying_power),
        market_value=market_value,
        unrealized_pnl=unrealized,
        realized_today=realized,
        day_pnl=day,
        margin_used=convert(native.margin_used),
    )
    return AccountTotals(name, currency, native, base, stale)


def consolidate_totals(
    accounts: Mapping[str, str],
    snapshot: Snapshot,
    fx: FxRates,
    mark: MarkPrice,
    base: str,
    trades: DayTrades | None = None,
    close: PreviousClose = previous_close,
) -> Totals:
    """Figures for each of ``accounts`` (name -> the account's own currency) and their sum in
    ``base``: each total is the sum of the accounts' base-currency figures, to the cent."""
    per_account = {
        name: account_totals(name, currency, snapshot, fx, mark, trades, close)
        for name, currency in accounts.items()
    }

    def total(figure: Callable[[Figures], Money]) -> Money:
        return Money.total((figure(a.base) for a in per_account.values()), base)

    figures = Figures(
        cash=total(lambda f: f.cash),
        equity=total(lambda f: f.equity),
        buying_power=total(lambda f: f.buying_power),
        market_value=total(lambda f: f.market_value),
        unrealized_pnl=total(lambda f: f.unrealized_pnl),
        realized_today=total(lambda f: f.realized_today),
        day_pnl=total(lambda f: f.day_pnl),
        margin_used=total(lambda f: f.margin_used),
    )
    return Totals(base, figures, per_account, consolidate_settlement(accounts, snapshot, fx, base))


def consolidate_buying_power(totals: Totals) -> BuyingPower:
    return BuyingPower(
        per_account={name: t.native.buying_power for name, t in totals.per_account.items()},
        total=totals.total.buying_power,
        per_account_base={name: t.base.buying_power for name, t in totals.per_account.items()},
        settlement=totals.settlement,
    )


# ---------------------------------------------------------------------------------------------
# Settled and pending cash


def cash_settlement(name: str, account_currency: str, snapshot: Snapshot, fx: FxRates) -> CashSettlement:
    """One account's settled and pending cash as its balance gives them. A balance that does
    not split its cash, or no balance at all, gives no figure (never the whole cash as settled)."""
    balance = snapshot.balances.get(name)
    currency = balance.currency if balance is not None else account_currency
    stale = name in snapshot.stale
    if balance is None or balance.settled_cash is None:
        none = Money(None, currency, missing=True)
        settled = pending = none
        source = SettledCashSource.UNKNOWN if balance is None else balance.settled_source
    else:
        unsettled = balance.unsettled_cash
        if unsettled is None:
            unsettled = balance.cash - balance.settled_cash
        settled = Money(balance.settled_cash, currency, stale)
        pending = Money(unsettled, currency, stale)
        source = balance.settled_source
    return CashSettlement(
        account=name,
        currency=currency,
        settled=settled,
        pending=pending,
        settled_base=fx.convert_money(settled),
        pending_base=fx.convert_money(pending),
        source=source,
        cash_account=balance.cash_account if balance is not None else False,
        disagreement=balance.settlement_disagreement if balance is not None else None,
    )


def consolidate_settlement(
    accounts: Mapping[str, str], snapshot: Snapshot, fx: FxRates, base: str
) -> SettlementTotals:
    """Settled and pending cash of each of ``accounts`` (name -> its own currency), and their
    sums in ``base``; an account whose split is not known marks the sums incomplete."""
    per_account = {name: cash_settlement(name, currency, snapshot, fx) for name, currency in accounts.items()}
    return SettlementTotals(
        currency=base,
        settled=Money.total((a.settled_base for a in per_account.values()), base),
        pending=Money.total((a.pending_base for a in per_account.values()), base),
        per_account=per_account,
    )
