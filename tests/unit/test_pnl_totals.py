"""Every total is the sum of the rows it totals, to the cent, with FX applied once: for any
accounts, currencies, rates and holdings (property tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.consolidation import Snapshot, consolidate_positions, consolidate_totals
from brokers.fx import FxRates, FxSettings, Money
from brokers.models import AccountStatus, Balance, Position
from brokers.pnl import CENT, DayActivity, DayBook
from console.tui.widgets.positions import _Total

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
CURRENCIES = ("USD", "INR", "EUR", "JPY")
SYMBOLS = ("AAPL", "MSFT", "INFY", "SAP", "SONY", "ES")

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=4)
amounts = st.decimals(min_value=Decimal(-10_000_000), max_value=Decimal(10_000_000), places=4)
quantities = st.decimals(min_value=Decimal(-5_000), max_value=Decimal(5_000), places=3).filter(bool)
rates = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1_000), places=6).filter(bool)


@st.composite
def worlds(draw):
    fx = FxRates(
        "USD",
        FxSettings(rates={"USDINR": draw(rates), "EURUSD": draw(rates), "USDJPY": draw(rates)}),
        clock=lambda: NOW,
    )
    marks = {symbol: draw(st.none() | prices) for symbol in SYMBOLS}
    names = draw(st.lists(st.sampled_from(("a1", "a2", "a3", "a4")), min_size=1, max_size=4, unique=True))
    balances: dict[str, Balance] = {}
    positions: dict[str, list[Position]] = {}
    activity: dict = {}
    closed: dict = {}
    for name in names:
        currency = draw(st.sampled_from(CURRENCIES))
        balances[name] = Balance(
            account=name,
            currency=currency,
            cash=draw(amounts),
            equity=draw(amounts),
            buying_power=draw(amounts),
            margin_used=draw(st.none() | amounts),
        )
        held = []
        for symbol in draw(st.lists(st.sampled_from(SYMBOLS), max_size=5, unique=True)):
            position = Position(
                symbol=symbol,
                quantity=draw(quantities),
                avg_price=draw(prices),
                account=name,
                # A listing in a currency of its own (a EUR share at a USD account) or the account's.
                currency=draw(st.sampled_from((currency, *CURRENCIES))),
                last_price=marks[symbol],
                multiplier=draw(st.sampled_from((Decimal(1), Decimal(100)))),
                previous_close=draw(st.none() | prices),
                day_pnl=draw(st.none() | amounts),
                realized_today=draw(st.none() | amounts),
            )
            held.append(position)
            if draw(st.booleans()):
                activity[(name, position.instrument)] = DayActivity(
                    quantity=draw(quantities), cash=draw(amounts), realized=draw(amounts)
                )
        positions[name] = held
        # Holdings closed today: no quantity left, their day still counts.
        held_symbols = {p.symbol for p in held}
        for symbol in draw(st.lists(st.sampled_from(SYMBOLS), max_size=2, unique=True)):
            if symbol in held_symbols:
                continue
            instrument = Position(
                symbol=symbol, quantity=Decimal(0), account=name, currency=currency
            ).instrument
            day = DayActivity(
                quantity=draw(quantities),
                cash=draw(amounts),
                realized=draw(amounts),
                previous_close=draw(st.none() | prices),
            )
            activity[(name, instrument)] = day
            closed.setdefault(name, {})[instrument] = day
    snapshot = Snapshot(
        taken_at=NOW,
        balances=balances,
        positions=positions,
        statuses={name: AccountStatus(name=name, currency=balances[name].currency) for name in names},
        as_of={name: NOW for name in names},
        stale=frozenset(draw(st.sets(st.sampled_from(names)))),
    )
    return snapshot, fx, DayBook(activity, closed), {name: b.currency for name, b in balances.items()}


def mark_of(position: Position) -> Decimal | None:
    # One price per instrument, whichever account holds it: the two views can then agree.
    return position.last_price


def in_cents(money: Money) -> bool:
    return money.amount is None or money.amount == money.amount.quantize(CENT)


def total_of(moneys) -> Money:
    return Money.total(moneys, "USD")


FIGURES = ("cash", "equity", "buying_power", "market_value", "unrealized_pnl", "realized_today", "day_pnl")


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_account_totals_are_the_sums_of_the_account_rows(world):
    snapshot, fx, trades, currencies = world
    totals = consolidate_totals(currencies, snapshot, fx, mark_of, "USD", trades)
    for figure in (*FIGURES, "margin_used"):
        rows = [getattr(account.base, figure) for account in totals.per_account.values()]
        assert all(in_cents(row) for row in rows), figure
        assert getattr(totals.total, figure) == total_of(rows), figure


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_position_rows_are_the_sums_of_their_legs_and_both_views_agree(world):
    snapshot, fx, trades, currencies = world
    rows = consolidate_positions(snapshot, fx, mark_of, trades)
    totals = consolidate_totals(currencies, snapshot, fx, mark_of, "USD", trades)
    for row in rows:
        legs = [
            pnl.figures(price, fx.convert, "USD", stale=row.stale)
            for pnl, price in zip(row.pnl, row.marks, strict=True)
        ]
        assert row.market_value_base == total_of(leg.market_value for leg in legs)
        assert row.unrealized_pnl_base == total_of(leg.unrealized for leg in legs)
        assert row.realized_today_base == total_of(leg.realized_today for leg in legs)
        assert row.day_pnl_base == total_of(leg.day_pnl for leg in legs)
    # The same legs, the same cents: the positions' totals are the accounts' totals.
    for row_figure, account_figure in (
        ("market_value_base", "market_value"),
        ("unrealized_pnl_base", "unrealized_pnl"),
        ("realized_today_base", "realized_today"),
        ("day_pnl_base", "day_pnl"),
    ):
        by_rows = total_of(getattr(row, row_figure) for row in rows)
        by_accounts = getattr(totals.total, account_figure)
        # An account with nothing unpriced adds a known 0 where the rows have no known part.
        assert (by_rows.amount or 0, by_rows.missing) == (by_accounts.amount or 0, by_accounts.missing)


def test_fx_is_applied_once_from_the_legs_own_currency():
    # A EUR listing held at an INR account: converted EUR -> USD directly, not through INR.
    fx = FxRates("USD", FxSettings(rates={"USDINR": "83", "EURUSD": "1.1"}))
    position = Position(
        symbol="SAP", quantity=Decimal(3), avg_price=Decimal(100), account="in", currency="EUR"
    )
    snapshot = Snapshot(
        taken_at=NOW,
        balances={
            "in": Balance(account="in", currency="INR", cash=Decimal(0), equity=Decimal(0), buying_power=0)
        },
        positions={"in": [position]},
        statuses={"in": AccountStatus(name="in", currency="INR")},
        as_of={"in": NOW},
    )
    totals = consolidate_totals({"in": "INR"}, snapshot, fx, lambda p: Decimal("101.01"), "USD")
    assert totals.per_account["in"].base.market_value == Money(Decimal("333.33"), "USD")  # 303.03 x 1.1
    assert totals.total.market_value == Money(Decimal("333.33"), "USD")


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.none() | st.decimals(min_value=-(10**9), max_value=10**9, places=2),
            st.booleans(),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.data(),
)
def test_a_running_column_total_is_the_sum_of_the_rows_it_holds(changes, data):
    total, rows = _Total(), []
    for add, amount, stale, missing in changes:
        if add or not rows:
            money = Money(amount, "USD", stale, missing or amount is None)
            rows.append(money)
            total.add(money)
        else:
            gone = rows.pop(data.draw(st.integers(0, len(rows) - 1)))
            total.add(gone, -1)
        assert total.money("USD") == total_of(rows)
