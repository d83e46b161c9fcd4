"""The account pane at the width it is given: on an 80-column terminal the account, its equity,
the day's P&L and buying power, whole; cash, margin used, settled and pending as the width
allows; the total row in every set, each total the sum of its rows; a figure that would not fit
takes a column away rather than being cut."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from console_support import console, settled, wait_for
from rich.cells import cell_len
from snapshot_text import screen_rows
from test_console_pnl import sell_msft_higher
from textual.app import App, ComposeResult

from brokers.consolidation import Snapshot, consolidate_totals
from brokers.fx import FxRates, FxSettings
from brokers.models import AccountStatus, Balance, Position
from console.tui.widgets.account_pane import (
    ALL_COLUMNS,
    COLUMN_SETS,
    FIRST_COLUMNS,
    LABELS,
    TOTAL_KEY,
    AccountPane,
)

D = Decimal
NOW = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)
DEMO_ACCOUNTS = ["paper-us", "paper-us-cash", "paper-in"]


def figure(text: str) -> Decimal:
    return Decimal(text.strip().rstrip("~?≠").replace(",", ""))


def screen_lines(pane: AccountPane) -> list[str]:
    """The pane's lines as drawn: the header, then one per row on screen."""
    return [pane.render_line(y).text for y in range(pane.scrollable_content_region.height)]


def assert_whole(pane: AccountPane) -> None:
    """Every column is inside the pane, every cell inside its column, and every drawn line holds
    each of its row's cells as they are, right-aligned figures included."""
    columns = list(pane.columns.values())
    assert sum(c.get_render_width(pane) for c in columns) <= pane.scrollable_content_region.width
    for key in pane.row_keys:
        for column in columns:
            cell = str(pane.shown(key, str(column.key.value)))
            assert cell_len(cell) <= column.width, (key, column.key.value, cell)
    lines = screen_lines(pane)
    for label in (str(c.label) for c in columns):
        assert label in lines[0]
    for index, key in enumerate(pane.row_keys[: len(lines) - 1]):
        line = lines[index + 1]
        cells = [str(pane.shown(key, str(c.key.value))).rstrip() for c in columns]
        position = 0
        for cell in cells:
            found = line.find(cell, position)
            assert found >= 0, (key, cell, line)
            position = found + len(cell)


def assert_totals_are_sums(pane: AccountPane, names: list[str]) -> None:
    for key in pane.column_set[1:]:
        total = figure(pane.shown(TOTAL_KEY, key).plain)
        assert total == sum((figure(pane.shown(name, key).plain) for name in names), D(0)), key


def right_aligned(pane: AccountPane) -> bool:
    return all(
        pane.shown(key, column).justify == "right" for key in pane.row_keys for column in pane.column_set[1:]
    )


async def test_an_80_column_terminal_shows_account_equity_day_and_buying_power_whole():
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(app, pilot)
        pane = app.accounts
        assert pane.column_set == FIRST_COLUMNS
        assert [str(c.label) for c in pane.columns.values()] == ["Account", "Equity", "Day P&L", "Buying pwr"]
        assert pane.row_keys == [TOTAL_KEY, *DEMO_ACCOUNTS]
        assert_whole(pane)
        assert right_aligned(pane)
        assert_totals_are_sums(pane, DEMO_ACCOUNTS)
        assert pane.shown("paper-us", "buying_power").plain.strip() == "207,223.00"
        assert pane.shown(TOTAL_KEY, "buying_power").plain.strip() == "316,676.03"
        assert "207,223.00" in screen_lines(pane)[2]  # under the header and the total


async def test_a_100_column_terminal_adds_cash():
    app = console()
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(app, pilot)
        pane = app.accounts
        assert pane.column_set == (*FIRST_COLUMNS, "cash")
        assert_whole(pane)
        assert_totals_are_sums(pane, DEMO_ACCOUNTS)
        assert pane.shown(TOTAL_KEY, "cash").plain.strip() == "209,453.03"


async def test_a_120_column_terminal_adds_margin_used():
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(app, pilot)
        pane = app.accounts
        assert pane.column_set == (*FIRST_COLUMNS, "cash", "margin")
        assert_whole(pane)
        assert pane.shown("paper-us", "margin").plain.strip() == "11,915.50"


async def test_a_160_column_terminal_shows_every_column_whole():
    app = console()
    async with app.run_test(size=(160, 45)) as pilot:
        await settled(app, pilot)
        pane = app.accounts
        assert pane.column_set == ALL_COLUMNS
        assert [str(c.label) for c in pane.columns.values()] == list(LABELS.values())
        assert_whole(pane)
        assert right_aligned(pane)
        assert_totals_are_sums(pane, DEMO_ACCOUNTS)


async def test_a_resize_keeps_the_rows_their_figures_and_the_selection():
    app = console()
    async with app.run_test(size=(160, 45)) as pilot:
        await sell_msft_higher(app, pilot)
        pane = app.accounts
        pane.move_cursor(row=pane.get_row_index("paper-us-cash"), animate=False)
        wide = {key: {c: pane.shown(key, c) for c in pane.column_set} for key in pane.row_keys}
        assert wide["paper-us"]["day"].plain.strip() == "96.00"

        await pilot.resize_terminal(80, 24)
        await wait_for(lambda: pane.column_set == FIRST_COLUMNS, pilot)
        await pilot.pause()
        assert pane.row_keys == list(wide) and pane.selected_key() == "paper-us-cash"
        assert_whole(pane)
        for key in pane.row_keys:
            assert {c: pane.shown(key, c) for c in pane.column_set} == {
                c: wide[key][c] for c in FIRST_COLUMNS
            }

        await pilot.resize_terminal(160, 45)
        await wait_for(lambda: pane.column_set == ALL_COLUMNS, pilot)
        await pilot.pause()
        assert {key: {c: pane.shown(key, c) for c in pane.column_set} for key in pane.row_keys} == wide
        assert pane.selected_key() == "paper-us-cash"


class AccountsOnly(App[None]):
    """The pane as wide as it is on an 80-column terminal, and as tall."""

    CSS = "AccountPane { width: 54; height: auto; max-height: 8; }"

    def compose(self) -> ComposeResult:
        yield AccountPane(id="accounts")


def balances(*accounts: tuple[str, str, str], positions: tuple[Position, ...] = ()) -> Snapshot:
    """(name, equity, cash) per account, buying power its equity, and what each holds."""
    rows = {
        name: Balance(account=name, currency="USD", cash=D(cash), equity=D(equity), buying_power=D(equity))
        for name, equity, cash in accounts
    }
    return Snapshot(
        taken_at=NOW,
        balances=rows,
        positions={name: [p for p in positions if p.account == name] for name in rows},
        statuses={name: AccountStatus(name=name, currency="USD") for name in rows},
        as_of={name: NOW for name in rows},
    )


def msft(account: str, quantity: str, last: str, previous: str) -> Position:
    """A holding bought at the previous close: the day's P&L is its move since."""
    return Position(
        symbol="MSFT",
        quantity=D(quantity),
        avg_price=D(previous),
        last_price=D(last),
        previous_close=D(previous),
        account=account,
    )


def totals_of(snapshot: Snapshot):
    fx = FxRates("USD", FxSettings())
    currencies = {name: "USD" for name in snapshot.balances}
    return consolidate_totals(currencies, snapshot, fx, lambda p: p.last_price, "USD")


async def test_a_figure_too_wide_for_the_pane_takes_a_column_away_rather_than_being_cut():
    app = AccountsOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(AccountPane)
        pane.show_accounts(totals_of(balances(("us", "100000", "100000"))))
        await pilot.pause()
        assert pane.column_set == FIRST_COLUMNS
        assert_whole(pane)

        # Eight-figure equity and buying power, and a loss of six figures on the day.
        name = "interactive-margin"
        snap = balances((name, "12345678.90", "100000"), positions=(msft(name, "-1000", "620.55", "415.20"),))
        pane.show_accounts(totals_of(snap))
        await pilot.pause()
        assert pane.column_set == COLUMN_SETS[-1]
        assert pane.shown("interactive-margin", "day").plain.strip() == "-205,350.00"
        assert_whole(pane)
        assert_totals_are_sums(pane, ["interactive-margin"])

        # Back to small figures: buying power comes back.
        pane.show_accounts(totals_of(balances(("us", "100000", "100000"))))
        await pilot.pause()
        assert pane.column_set == FIRST_COLUMNS and pane.row_keys == [TOTAL_KEY, "us"]
        assert_whole(pane)


async def test_an_account_added_later_goes_below_the_others_and_the_rows_keep_their_order():
    app = AccountsOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(AccountPane)
        pane.show_accounts(totals_of(balances(("us", "100", "100"))))
        await pilot.pause()
        pane.move_cursor(row=pane.get_row_index("us"), animate=False)
        # A new account whose figures widen every column: the columns are laid out again.
        pane.show_accounts(totals_of(balances(("us", "100", "100"), ("in", "1234567.89", "0"))))
        await pilot.pause()
        assert pane.row_keys == [TOTAL_KEY, "us", "in"] and pane.selected_key() == "us"
        assert pane.column_set == FIRST_COLUMNS
        assert_whole(pane)
        assert_totals_are_sums(pane, ["us", "in"])


async def test_more_accounts_than_rows_leave_room_for_the_scrollbar():
    app = AccountsOnly()
    names = [f"margin-acct{n:02}" for n in range(12)]
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(AccountPane)

        # Without the scrollbar the first four columns fit the pane; beside it they do not. The
        # accounts past the sixth hold nothing, so the totals keep their width.
        def accounts(names: list[str]) -> Snapshot:
            return balances(*((name, "1000000" if n < 6 else "0", "0") for n, name in enumerate(names)))

        # As many rows as the pane is tall: no scrollbar.
        pane.show_accounts(totals_of(accounts(names[:6])))
        await pilot.pause()
        assert not pane.show_vertical_scrollbar and pane.column_set == FIRST_COLUMNS
        assert_whole(pane)
        # More, in a pane already as tall as it gets: the scrollbar comes, and the pane is no wider.
        pane.show_accounts(totals_of(accounts(names)))
        await wait_for(lambda: pane.show_vertical_scrollbar, pilot)
        await pilot.pause()
        assert pane.row_keys == [TOTAL_KEY, *names]
        await wait_for(lambda: pane.column_set == COLUMN_SETS[-1], pilot)
        assert_whole(pane)
        assert_totals_are_sums(pane, names)


async def test_the_total_stays_in_view_wherever_the_accounts_are_scrolled():
    app = AccountsOnly()
    names = [f"margin-acct{n:02}" for n in range(12)]
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(AccountPane)
        pane.show_accounts(totals_of(balances(*((name, "1000", "0") for name in names))))
        await wait_for(lambda: pane.show_vertical_scrollbar, pilot)

        def on_screen() -> str:
            return "\n".join(screen_rows(app.export_screenshot()))

        # At the top, then scrolled to the last account: the total is there both times, first.
        for name, hidden in ((names[0], names[-1]), (names[-1], names[0])):
            pane.move_cursor(row=pane.get_row_index(name), animate=False)
            await pilot.pause()
            text = on_screen()
            assert name in text and hidden not in text
            assert "TOTAL" in text and text.index("TOTAL") < text.index(name)
        assert pane.shown(TOTAL_KEY, "equity").plain.strip() == "12,000.00"


def test_the_account_pane_at_80x24(snap_compare):
    """A sale today at paper-us: its day P&L, whole, beside equity and buying power."""

    async def run_before(pilot) -> None:
        await sell_msft_higher(pilot.app, pilot)

    assert snap_compare(console(), terminal_size=(80, 24), run_before=run_before)
