"""Widgets on their own: the keyed table's diffing and its cached row order, formatting, the
banner's text."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from textual.app import App, ComposeResult

from brokers.fanout import CancelAllResult
from brokers.fx import Money
from brokers.killswitch import HaltInfo
from brokers.models import TradingState
from console import formatting as fmt
from console.tui.widgets.halt_banner import HaltBanner, compact_outcome, outcome_text
from console.tui.widgets.keyed_table import KeyedTable


class Table(KeyedTable):
    COLUMNS = (("name", "Name", 8), ("value", "Value", 8))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Table()


async def test_upsert_touches_only_changed_cells_and_row_order_follows_removals():
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(Table)
        for name in "abcdef":
            table.upsert(name, {"name": name, "value": "1"})
        updates: list[tuple[str, str]] = []
        original = table.update_cell

        def counting(row, column, value, **kwargs):
            updates.append((str(getattr(row, "value", row)), str(getattr(column, "value", column))))
            return original(row, column, value, **kwargs)

        table.update_cell = counting  # type: ignore[method-assign]
        assert table.upsert("c", {"name": "c", "value": "1"}) is False
        assert table.upsert("c", {"name": "c", "value": "2"}) is True
        assert updates == [("c", "value")]
        table.keep_only(["a", "c", "f"])
        table.upsert("g", {"name": "g", "value": "3"})
        await pilot.pause()
        # The cached row order and line offsets must follow every add and remove.
        assert [row.key.value for row in table.ordered_rows] == ["a", "c", "f", "g"]
        assert [key.value for key, _line in table._y_offsets] == ["a", "c", "f", "g"]
        assert table.get_row_at(1) == ["c", "2"]
        table.move_cursor(row=3)
        assert table.selected_key() == "g"
        table.drop("a")
        table.drop("a")  # already gone: nothing happens
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows] == ["c", "f", "g"]
        assert table.get_row_at(0) == ["c", "2"]


def test_money_cells_never_pass_a_guess_off_as_a_figure():
    assert fmt.money_cell(Money(Decimal("1234.5"), "USD")).plain == "1,234.50 "
    assert fmt.money_cell(Money(Decimal("1234.5"), "USD", stale=True)).plain == "1,234.50~"
    assert fmt.money_cell(Money(Decimal("10"), "USD", missing=True)).plain == "10.00?"
    assert fmt.money_cell(Money(None, "USD", missing=True)).plain == "n/a "
    assert fmt.marks_legend([Money(Decimal(1), "USD", stale=True), Money(None, "USD", missing=True)]) == (
        "~ stale FX rate · ? incomplete"
    )
    assert fmt.marks_legend([Money(Decimal(1), "USD")]) == ""


def test_number_and_time_formats():
    assert fmt.quantity(Decimal("1500")) == "1,500"
    assert fmt.quantity(Decimal("0.125")) == "0.125"
    assert fmt.price(Decimal("227.5")) == "227.50"
    assert fmt.price(Decimal("1.23456")) == "1.2346"
    assert fmt.average(Decimal("203.333333")) == "203.33"
    assert fmt.duration(3 * 3600 + 5 * 60) == "3h 05m"
    assert fmt.duration(-1) == "expired"
    assert fmt.latency(0.2) == "<1 ms" and fmt.latency(12.4) == "12 ms" and fmt.latency(1500) == "1.5 s"
    assert fmt.one_line("a\nb   c") == "a b c"
    assert fmt.without_prefix("paper-in", "paper-in: refused") == "refused"


def outcome(account: str, ok: bool, cancelled: int = 0, error: str | None = None) -> CancelAllResult:
    return CancelAllResult(account, ok, tuple(f"{account}-{n}" for n in range(cancelled)), error)


def test_cancel_all_outcome_names_each_broker_and_its_failure():
    outcomes = {"b": outcome("b", False, error="timed out"), "a": outcome("a", True, 3)}
    assert outcome_text(outcomes).plain == "cancel-all: a: 3 cancelled · b: FAILED (timed out)"
    assert compact_outcome(outcomes).plain == "cancel-all: FAILED at b; 3 cancelled"
    assert compact_outcome({"a": outcome("a", True, 2)}).plain == "cancel-all: 1 brokers ok, 2 cancelled"
    assert outcome_text(None).plain.startswith("cancel-all: cancelling")


class BannerApp(App[None]):
    def compose(self) -> ComposeResult:
        yield HaltBanner()


async def test_banner_shows_who_when_and_why_and_hides_when_active():
    app = BannerApp()
    async with app.run_test(size=(160, 10)) as pilot:
        banner = app.query_one(HaltBanner)
        assert not banner.display
        banner.show_state(TradingState.HALTED, HaltInfo(datetime(2025, 1, 2, 9, 5, tzinfo=UTC), "gap", "cli"))
        await pilot.pause()
        text = str(banner.render())
        assert banner.display and "SYSTEM HALTED" in text
        assert "09:05:00 UTC" in text and "source: cli" in text and "reason: gap" in text
        banner.show_outcomes({"a": outcome("a", True, 1)})
        assert "a: 1 cancelled" in str(banner.render())
        banner.show_state(TradingState.ACTIVE, None)
        assert not banner.display and banner.outcomes is None
