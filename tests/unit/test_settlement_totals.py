"""Settled and pending cash consolidated in the base currency, and the account pane showing them."""

from __future__ import annotations

from decimal import Decimal

from textual.app import App, ComposeResult

from brokers.account_state import Balance, SettledCashSource
from brokers.consolidation import Snapshot, consolidate_buying_power, consolidate_totals
from brokers.fx import FxRates
from brokers.models import AccountStatus, utcnow
from console.tui.widgets.account_pane import TOTAL_KEY, AccountPane

D = Decimal
CURRENCIES = {"us": "USD", "in": "INR", "ib": "USD"}


def snapshot(*balances: Balance) -> Snapshot:
    statuses = {name: AccountStatus(name=name, currency=currency) for name, currency in CURRENCIES.items()}
    return Snapshot(
        taken_at=utcnow(),
        balances={b.account: b for b in balances},
        positions={},
        statuses=statuses,
        as_of={b.account: utcnow() for b in balances},
    )


def fx() -> FxRates:
    rates = FxRates("USD")
    rates.set_rate("USDINR", D(80), source="config")
    return rates


def balance(account: str, currency: str, cash: str, settled: str | None, **extra) -> Balance:
    return Balance(
        account=account,
        currency=currency,
        cash=D(cash),
        equity=D(cash),
        buying_power=D(cash),
        settled_cash=None if settled is None else D(settled),
        unsettled_cash=None if settled is None else D(cash) - D(settled),
        settled_source=SettledCashSource.BROKER if settled is not None else SettledCashSource.UNKNOWN,
        **extra,
    )


def test_totals_split_settled_and_pending_in_the_base_currency():
    snap = snapshot(
        balance("us", "USD", "11000", "1000", cash_account=True),
        balance("in", "INR", "80000", "40000"),
        balance("ib", "USD", "500", "500", computed_settled_cash=D(700)),
    )
    totals = consolidate_totals(CURRENCIES, snap, fx(), lambda position: None, "USD")
    split = totals.settlement
    assert split is not None and split.currency == "USD"
    assert (split.settled.amount, split.pending.amount) == (D(1000) + D(500) + D(500), D(10000) + D(500))
    assert split.settled.is_exact and split.pending.is_exact
    us = split.per_account["us"]
    assert us.cash_account and (us.settled.amount, us.pending.amount) == (D(1000), D(10000))
    assert split.per_account["in"].settled.currency == "INR"
    assert split.per_account["in"].settled_base.amount == D(500)
    # The broker's 500 wins; the 700 worked out from fills is kept as the difference.
    assert split.per_account["ib"].disagreement == D(-200)
    assert consolidate_buying_power(totals).settlement is split


def test_an_account_whose_split_is_unknown_marks_the_totals_incomplete():
    snap = snapshot(balance("us", "USD", "11000", "1000"), balance("ib", "USD", "500", None))
    split = consolidate_totals(CURRENCIES, snap, fx(), lambda position: None, "USD").settlement
    assert split is not None
    assert split.per_account["ib"].settled.amount is None and split.per_account["ib"].source == "UNKNOWN"
    # Neither the unknown account's cash counted as settled nor the total presented as whole.
    assert split.settled.amount == D(1000) and split.settled.missing
    assert split.per_account["in"].settled.amount is None  # never read at all


class Pane(App[None]):
    def compose(self) -> ComposeResult:
        yield AccountPane(id="accounts")


async def test_the_account_pane_shows_settled_and_pending_cash():
    snap = snapshot(
        balance("us", "USD", "11000", "1000"),
        balance("in", "INR", "80000", "80000"),
        balance("ib", "USD", "500", "500", computed_settled_cash=D(700)),
    )
    totals = consolidate_totals(CURRENCIES, snap, fx(), lambda position: None, "USD")
    app = Pane()
    async with app.run_test(size=(140, 20)):
        table = app.query_one(AccountPane)
        table.show_accounts(totals)
        assert table.row_keys == [TOTAL_KEY, "us", "in", "ib"]
        assert table.shown("us", "settled").plain.strip() == "1,000.00"
        assert table.shown("us", "pending").plain.strip() == "10,000.00"
        assert table.shown("ib", "settled").plain.strip() == "500.00≠"
        # The total is the sum of the rows: 1,000 + 80,000 INR (1,000 USD) + 500.
        assert table.shown(TOTAL_KEY, "settled").plain.strip() == "2,500.00"
        assert table.shown(TOTAL_KEY, "pending").plain.strip() == "10,000.00"
        assert "settled cash differs from fills: ib 500.00 USD (fills 700.00)" in str(table.border_subtitle)
