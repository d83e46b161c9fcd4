"""P&L on screen: realised today and the day's against the previous close in the positions pane,
the account pane with its total row, and every total the sum of the rows shown."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from console_support import console, settled, submit, wait_for
from textual.app import App, ComposeResult

from brokers.consolidation import Snapshot, consolidate_positions, consolidate_totals
from brokers.fx import FxRates, FxSettings
from brokers.instruments import Instrument
from brokers.models import AccountStatus, Balance, OrderStatus, Position
from brokers.pnl import DayActivity, DayBook
from console.tui.widgets.account_pane import TOTAL_KEY, AccountPane
from console.tui.widgets.positions import MONEY_COLUMNS, PositionsPane

SIZE = (160, 48)
NOW = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)


def figure(text: str) -> Decimal:
    """A money cell as shown: ``1,234.56`` with a trailing mark or space."""
    return Decimal(text.strip().rstrip("~?").replace(",", ""))


def column_sum(table, keys, column: str) -> Decimal:
    return sum((figure(table.shown(key, column).plain) for key in keys), Decimal(0))


async def sell_msft_higher(app, pilot) -> None:
    """MSFT up from its previous close of 415.20 to 420 at paper-us; 10 of its 20 sold there."""
    await settled(app, pilot)
    app.runtime.manager.get("paper-us").set_price("MSFT", "420.00")
    await submit(app, pilot, symbol="MSFT", side="SELL", quantity="10", account="paper-us")
    await wait_for(lambda: any(o.status is OrderStatus.FILLED for o in app.blotter.orders.values()), pilot)
    await wait_for(lambda: app.positions.rows["MSFT"].quantity == 10, pilot)
    await app.show_snapshot()
    await pilot.pause()


async def test_a_sale_shows_realised_today_and_the_days_pnl():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await sell_msft_higher(app, pilot)
        table = app.positions.table
        # 10 sold at 420 that cost 400: 200 realised. The day: 20 held from 415.20, 10 sold and
        # 10 still held at 420: 96.
        assert table.shown("MSFT", "realized").plain.strip() == "200.00"
        assert table.shown("MSFT", "day").plain.strip() == "96.00"
        # Nothing traded or moved elsewhere: the day is flat, not unknown.
        assert table.shown("AAPL", "day").plain.strip() == "0.00"
        accounts = app.accounts
        assert accounts.shown("paper-us", "day").plain.strip() == "96.00"


async def test_a_fill_at_an_unchanged_price_still_repaints_the_pnl():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="MSFT", side="SELL", quantity="10", account="paper-us")
        await wait_for(
            lambda: any(o.status is OrderStatus.FILLED for o in app.blotter.orders.values()), pilot
        )
        await wait_for(lambda: app.positions.rows["MSFT"].quantity == 10, pilot)
        await app.show_snapshot()
        await pilot.pause()
        # Sold at 415.20, the previous close, against an average of 400: realised, no day P&L.
        assert app.positions.table.shown("MSFT", "realized").plain.strip() == "152.00"
        assert app.positions.table.shown("MSFT", "day").plain.strip() == "0.00"


async def test_a_position_closed_today_keeps_its_row_and_its_pnl():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        app.runtime.manager.get("paper-us").set_price("MSFT", "420.00")
        await submit(app, pilot, symbol="MSFT", side="SELL", quantity="20", account="paper-us")
        await wait_for(
            lambda: any(o.status is OrderStatus.FILLED for o in app.blotter.orders.values()), pilot
        )
        await wait_for(lambda: app.positions.rows["MSFT"].quantity == 0, pilot)
        await app.show_snapshot()
        await pilot.pause()
        table = app.positions.table
        # 20 sold at 420 that cost 400 and closed yesterday at 415.20.
        assert table.shown("MSFT", "realized").plain.strip() == "400.00"
        assert table.shown("MSFT", "day").plain.strip() == "96.00"
        assert table.shown("MSFT", "value").plain.strip() == "0.00"
        assert app.accounts.shown("paper-us", "day").plain.strip() == "96.00"
        totals = app.positions.totals()
        assert totals["realized"].amount == column_sum(table, table.row_keys, "realized") == 400


async def test_every_total_is_the_sum_of_the_rows_shown():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await sell_msft_higher(app, pilot)
        # Prices move after the snapshot: rows are repriced, and their totals with them.
        app.runtime.manager.get("paper-us").set_price("NVDA", "141.37")
        app.runtime.manager.get("paper-in").set_price("INFY", "1901.13")
        app.account_data.tick_prices()
        await pilot.pause()
        pane = app.positions
        keys = pane.table.row_keys
        totals = pane.totals()
        for column in MONEY_COLUMNS:
            assert totals[column].amount == column_sum(pane.table, keys, column), column
        subtitle = str(pane.border_subtitle)
        assert f"value {totals['value'].amount:,}" in subtitle and f"day {totals['day'].amount:,}" in subtitle

        accounts = app.accounts
        names = [key for key in accounts.row_keys if key != TOTAL_KEY]
        assert names == ["paper-us", "paper-us-cash", "paper-in"]
        for column in ("equity", "day", "buying_power", "cash", "settled", "pending", "margin"):
            shown = figure(accounts.shown(TOTAL_KEY, column).plain)
            assert shown == column_sum(accounts, names, column), column


class Panes(App[None]):
    CSS = """
    PositionsPane, AccountPane { border: round white; height: auto; max-height: 10; }
    #positions-table { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield PositionsPane(id="positions")
        yield AccountPane(id="accounts")


def snapshot_of(*positions: Position) -> Snapshot:
    balances = {
        "us": Balance(
            account="us", currency="USD", cash=Decimal(1000), equity=Decimal(3000), buying_power=2000
        ),
        "in": Balance(account="in", currency="INR", cash=Decimal(0), equity=Decimal(0), buying_power=0),
    }
    return Snapshot(
        taken_at=NOW,
        balances=balances,
        positions={
            "us": [p for p in positions if p.account == "us"],
            "in": [p for p in positions if p.account == "in"],
        },
        statuses={name: AccountStatus(name=name, currency=b.currency) for name, b in balances.items()},
        as_of={name: NOW for name in balances},
    )


async def test_a_day_without_a_previous_close_reads_as_unknown_never_zero():
    fx = FxRates("USD", FxSettings(rates={"USDINR": "84"}))
    snap = snapshot_of(
        Position(
            symbol="AAPL", quantity=Decimal(10), avg_price=Decimal(200), last_price=Decimal(210), account="us"
        ),
        Position(
            symbol="INFY",
            quantity=Decimal(100),
            avg_price=Decimal(1800),
            last_price=Decimal(1900),
            account="in",
            currency="INR",
            previous_close=Decimal(1890),
        ),
    )

    def mark(position: Position) -> Decimal | None:
        return position.last_price

    app = Panes()
    async with app.run_test(size=SIZE):
        pane = app.query_one(PositionsPane)
        await pane.show_positions(consolidate_positions(snap, fx, mark))
        assert pane.table.shown("AAPL", "day").plain.strip() == "n/a"
        assert pane.table.shown("INFY", "day").plain.strip() == "11.90"  # 100 x 10 INR at 84
        assert pane.table.shown("AAPL", "pnl").plain.strip() == "100.00"
        # The total says a part is missing instead of counting it as 0.
        assert pane.totals()["day"].missing and "day 11.90?" in str(pane.border_subtitle)

        accounts = app.query_one(AccountPane)
        accounts.show_accounts(consolidate_totals({"us": "USD", "in": "INR"}, snap, fx, mark, "USD"))
        assert accounts.shown("us", "day").plain.strip() == "n/a"
        assert accounts.shown(TOTAL_KEY, "day").plain.strip() == "11.90?"
        assert accounts.shown("in", "margin").plain.strip() == "n/a"  # not reported
        assert "incomplete" in str(accounts.border_subtitle)


def test_pnl_columns_and_account_pane_snapshot(snap_compare):
    """Frozen figures: a sale today at one account (realised and the day's P&L from the fills),
    the broker's own day figure at another, a holding with no previous close, and an INR
    account, each total the sum of its rows."""
    fx = FxRates("USD", FxSettings(rates={"USDINR": "84"}))
    msft = Instrument.stock("MSFT", currency="USD")
    snap = snapshot_of(
        Position(
            symbol="AAPL", quantity=Decimal(10), avg_price=Decimal(200), last_price=Decimal(210), account="us"
        ),
        Position(
            symbol="MSFT",
            quantity=Decimal(10),
            avg_price=Decimal(400),
            last_price=Decimal(420),
            account="us",
            previous_close=Decimal("415.20"),
        ),
        Position(
            symbol="INFY",
            quantity=Decimal(100),
            avg_price=Decimal(1800),
            last_price=Decimal("1900.55"),
            account="in",
            currency="INR",
            previous_close=Decimal(1890),
            day_pnl=Decimal("1100.00"),
            realized_today=Decimal("250.00"),
        ),
    )
    trades = DayBook(
        {("us", msft): DayActivity(quantity=Decimal(-10), cash=Decimal(-4200), realized=Decimal(200))}, {}
    )
    currencies = {"us": "USD", "in": "INR"}

    def mark(position: Position) -> Decimal | None:
        return position.last_price

    async def run_before(pilot) -> None:
        app = pilot.app
        await app.query_one(PositionsPane).show_positions(consolidate_positions(snap, fx, mark, trades))
        app.query_one(AccountPane).show_accounts(
            consolidate_totals(currencies, snap, fx, mark, "USD", trades)
        )
        app.query_one(PositionsPane).table.move_cursor(row=1)
        await pilot.pause()

    assert snap_compare(Panes(), terminal_size=(120, 20), run_before=run_before)
