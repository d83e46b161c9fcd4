"""The order lifecycle from both faces: modify, cancel-all and flatten from the command line and the
console."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import pytest
from console_support import console, demo, settled, wait_for
from textual.widgets import Input, Static
from typer.testing import CliRunner

import brokers.runtime
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.models import OrderStatus
from brokers.paths import state_dir
from brokers.registry import BrokerFactory
from brokers.sim import SimBroker
from console.cli.main import app
from console.tui.screens.order_list_confirm import OrderListConfirmScreen
from console.tui.screens.order_modify import OrderModifyScreen


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.fixture
def shared_paper_us(monkeypatch) -> SimBroker:
    """paper-us is the same paper broker in every runtime the commands build, so an order one
    command places is there for the next."""
    broker = SimBroker(
        "paper-us", prices={"AAPL": "227.50", "MSFT": "415"}, initial_positions={"MSFT": ("20", "400")}
    )
    real_build = brokers.runtime.build_runtime

    def with_shared(config, **kwargs):
        built = {a.name: BrokerFactory.create(a.broker_config()) for a in config.accounts}
        built["paper-us"] = broker
        return real_build(config, brokers=built, **kwargs)

    monkeypatch.setattr(brokers.runtime, "build_runtime", with_shared)
    return broker


def place_resting(quantity: str = "3", limit: str = "220", symbol: str = "AAPL") -> dict:
    result = invoke(
        "order", "buy", symbol, quantity, "--limit", limit, "--account", "paper-us", "-y", "--json"
    )
    assert result.exit_code == 0, result.output
    order = json.loads(result.stdout)
    assert order["status"] == "ACCEPTED"
    return order


def at_broker(broker: SimBroker, broker_order_id: str):
    async def read():
        await broker.connect()
        return await broker.get_order(broker_order_id)

    return asyncio.run(read())


def demo_journal_kinds(client_order_id: str) -> list[str]:
    with Journal(state_dir() / "demo-journal.sqlite") as journal:
        return [e.kind for e in journal.events(order=client_order_id)]


# -- modify -------------------------------------------------------------------------------------


def test_modify_changes_the_working_order(shared_paper_us):
    order = place_resting()
    result = invoke("modify", order["client_order_id"], "--qty", "5", "--limit", "221.5", "--json")
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    assert (changed["quantity"], changed["limit_price"], changed["status"]) == ("5", "221.5", "ACCEPTED")
    at = at_broker(shared_paper_us, order["broker_order_id"])
    assert (at.quantity, str(at.limit_price), at.status) == (5, "221.5", OrderStatus.ACCEPTED)
    assert demo_journal_kinds(order["client_order_id"])[-2:] == ["modify", "modified"]


def test_modify_by_broker_id_and_table_output(shared_paper_us):
    order = place_resting()
    result = invoke("modify", order["broker_order_id"], "--limit", "219")
    assert result.exit_code == 0, result.output
    assert "219" in plain(result.output) and order["client_order_id"] in plain(result.output)


def test_modify_while_halted_is_refused_and_sends_nothing(shared_paper_us):
    order = place_resting()
    assert invoke("halt").exit_code == 0
    result = invoke("modify", order["client_order_id"], "--qty", "4")
    assert result.exit_code == 7, result.output
    assert "SYSTEM_HALTED" in result.output
    assert demo_journal_kinds(order["client_order_id"])[-1] == "modify_reject"


def test_modify_refusal_by_risk_exits_7(shared_paper_us):
    order = place_resting()
    result = invoke("modify", order["client_order_id"], "--stop", "190")
    assert result.exit_code == 7
    assert "stop_price is only allowed for STOP and STOP_LIMIT orders" in plain(result.output)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["X1"], "--qty"),
        (["X1", "--qty", "1,2"], "--qty"),
        (["X1", "--limit", "abc"], "--limit"),
        (["X1", "--tif", "WEEK"], "--tif"),
    ],
)
def test_bad_modify_arguments_are_usage_errors(args, named):
    result = invoke("modify", *args)
    assert result.exit_code == 2
    assert f"Invalid value for '{named}'" in plain(result.output)


def test_modify_an_unknown_order():
    result = invoke("modify", "NOPE123", "--qty", "1")
    assert result.exit_code == 1
    assert "no order 'NOPE123'" in result.output


# -- cancel --all with filters -------------------------------------------------------------------


def test_cancel_all_by_symbol_at_one_account(shared_paper_us):
    order = place_resting()
    result = invoke("cancel", "--all", "--account", "paper-us", "--symbol", "MSFT", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"paper-us": {"ok": True, "cancelled": 0, "error": None}}
    assert at_broker(shared_paper_us, order["broker_order_id"]).status is OrderStatus.ACCEPTED
    result = invoke("cancel", "--all", "--symbol", "aapl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["paper-us"] == {"ok": True, "cancelled": 1, "error": None}
    assert at_broker(shared_paper_us, order["broker_order_id"]).status is OrderStatus.CANCELLED
    assert not (state_dir() / "SYSTEM_HALTED").exists()  # cancel-all never halts


def test_cancel_all_at_one_account_only(shared_paper_us):
    order = place_resting()
    result = invoke("cancel", "--all", "--account", "paper-us", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == ["paper-us"]
    assert at_broker(shared_paper_us, order["broker_order_id"]).status is OrderStatus.CANCELLED


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--symbol", "AAPL"], "--all"),
        (["--all", "--account", "nobody"], "--account"),
    ],
)
def test_bad_cancel_all_filters_are_usage_errors(args, named):
    result = invoke("cancel", *args)
    assert result.exit_code == 2
    assert f"Invalid value for '{named}'" in plain(result.output)


# -- flatten --------------------------------------------------------------------------------------


def test_flatten_lists_every_order_and_asks_first():
    result = invoke("flatten", "AAPL", input="n\n")
    assert result.exit_code == 1
    assert "send: SELL 50 AAPL MARKET DAY to paper-us" in plain(result.output)
    assert "send: SELL 25 AAPL MARKET DAY to paper-us-cash" in plain(result.output)
    assert "Not sent." in result.output


def test_flatten_one_symbol_at_one_account(shared_paper_us):
    order = place_resting(limit="400", symbol="MSFT")  # a working buy: cancelled before the close
    result = invoke("flatten", "MSFT", "--account", "paper-us", "-y", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cancelled"] == [order["client_order_id"]]
    assert [(o["account"], o["side"], o["quantity"], o["status"]) for o in data["orders"]] == [
        ("paper-us", "SELL", "20", "FILLED")
    ]
    assert at_broker(shared_paper_us, order["broker_order_id"]).status is OrderStatus.CANCELLED


def test_flatten_with_nothing_to_close():
    result = invoke("flatten", "GME", "-y")
    assert result.exit_code == 0, result.output
    assert "Nothing to flatten." in result.output


def test_flatten_is_refused_while_halted():
    assert invoke("halt").exit_code == 0
    result = invoke("flatten", "-y")
    assert result.exit_code == 7
    assert "SYSTEM_HALTED" in result.output and "nothing was cancelled or sent" in result.output


def test_flatten_while_reducing_sends_the_closing_orders(shared_paper_us):
    KillSwitch(state_dir(), env={}).reduce_only("test", "test")
    result = invoke("flatten", "MSFT", "-y", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["orders"][0]["status"] == "FILLED"


# -- the console ----------------------------------------------------------------------------------

SIZE = (160, 48)


async def resting_in_blotter(app, pilot, quantity: str = "3", limit: str = "220"):
    entry = app.order_entry
    entry.set_values(symbol="AAPL", quantity=quantity, type="LIMIT")
    await pilot.pause()
    entry.set_values(limit=limit)
    await pilot.pause()
    entry.action_submit()
    await wait_for(lambda: any(o.status is OrderStatus.ACCEPTED for o in app.blotter.orders.values()), pilot)
    return next(o for o in app.blotter.orders.values() if o.status is OrderStatus.ACCEPTED)


async def set_field(pilot, selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.value = text
    await pilot.pause()


async def test_m_on_a_blotter_row_modifies_the_order():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        order = await resting_in_blotter(app, pilot)
        await pilot.press("ctrl+b")
        await pilot.press("m")
        await wait_for(lambda: isinstance(app.screen, OrderModifyScreen), pilot)
        await set_field(pilot, "#modify-quantity", "6")
        await set_field(pilot, "#modify-limit", "221.25")
        await pilot.press("enter")
        await wait_for(lambda: order.quantity == 6 and order.limit_price == Decimal("221.25"), pilot)
        key = order.client_order_id
        await wait_for(lambda: app.blotter.table.shown(key, "quantity").plain.strip() == "6", pilot)
        assert "LMT 221.25" in str(app.blotter.table.shown(key, "order"))
        assert app.blotter.orders[key].status is OrderStatus.ACCEPTED
        assert any("modified: BUY 6 AAPL" in line for _level, line in app.event_log.entries)


async def test_modify_modal_names_bad_input_and_escape_keeps_the_order():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        order = await resting_in_blotter(app, pilot)
        await pilot.press("ctrl+b", "m")
        await wait_for(lambda: isinstance(app.screen, OrderModifyScreen), pilot)
        await set_field(pilot, "#modify-quantity", "1,5")
        await pilot.press("enter")
        problem = app.screen.query_one("#modify-problem", Static)
        assert "quantity" in str(problem.render())
        assert isinstance(app.screen, OrderModifyScreen)
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, OrderModifyScreen), pilot)
        assert order.quantity == 3


async def test_a_refused_modify_says_why_and_the_order_keeps_its_terms():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        order = await resting_in_blotter(app, pilot)
        app.runtime.kill_switch.reduce_only("test", "test")
        await pilot.press("ctrl+b", "m")
        await wait_for(lambda: isinstance(app.screen, OrderModifyScreen), pilot)
        await set_field(pilot, "#modify-quantity", "4")
        await pilot.press("enter")
        await wait_for(
            lambda: any("modify refused (REDUCE_ONLY)" in line for _level, line in app.event_log.entries),
            pilot,
        )
        assert order.quantity == 3


async def test_f_on_a_position_lists_the_closing_orders_then_flattens():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+p")
        table = app.positions.table
        table.move_cursor(row=table.get_row_index("MSFT"))
        await pilot.pause()
        await pilot.press("f")
        await wait_for(lambda: isinstance(app.screen, OrderListConfirmScreen), pilot)
        lines = str(app.screen.query_one("#order-list-lines", Static).render())
        assert "send   SELL 20 MSFT MARKET DAY to paper-us" in lines
        await pilot.press("y")
        await wait_for(
            lambda: any(
                o.symbol == "MSFT" and o.status is OrderStatus.FILLED for o in app.blotter.orders.values()
            ),
            pilot,
        )
        assert app.trading_state.value == "ACTIVE"


async def test_flatten_abandoned_sends_nothing():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+p", "f")
        await wait_for(lambda: isinstance(app.screen, OrderListConfirmScreen), pilot)
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, OrderListConfirmScreen), pilot)
        assert app.blotter.orders == {}


async def test_shift_x_in_the_blotter_lists_and_cancels_every_working_order_without_halting():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        order = await resting_in_blotter(app, pilot)
        await pilot.press("ctrl+b", "X")
        await wait_for(lambda: isinstance(app.screen, OrderListConfirmScreen), pilot)
        lines = str(app.screen.query_one("#order-list-lines", Static).render())
        assert f"cancel BUY 3 AAPL LIMIT @ 220 DAY at paper-us  {order.client_order_id}" in lines
        await pilot.press("y")
        await wait_for(lambda: order.status is OrderStatus.CANCELLED, pilot)
        assert app.trading_state.value == "ACTIVE"
        await wait_for(
            lambda: any("cancel all at paper-us: 1 cancelled" in t for _l, t in app.event_log.entries), pilot
        )


async def test_flatten_while_halted_is_refused_on_screen():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("f12")
        await pilot.press("ctrl+p", "f")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        assert app.blotter.orders == {}


async def test_the_palette_offers_the_lifecycle_actions():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {
            "Modify selected order",
            "Cancel all orders (no halt)",
            "Flatten selected position",
            "Flatten all positions",
        } <= titles


# -- order history ------------------------------------------------------------------------------


async def test_the_blotter_comes_back_after_a_restart():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        app.runtime.kill_switch.halt("test", "test")  # a refusal with a long reason
        await pilot.pause()
        app.order_entry.set_values(symbol="MSFT", quantity="2")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(
            lambda: any(o.status is OrderStatus.REJECTED for o in app.blotter.orders.values()), pilot
        )
        refused = next(iter(app.blotter.orders))
    again = console()
    async with again.run_test(size=SIZE) as pilot:
        await settled(again, pilot)
        await wait_for(lambda: refused in again.blotter.orders, pilot)
        order = again.blotter.orders[refused]
        assert order.status is OrderStatus.REJECTED and order.reject_code == "SYSTEM_HALTED"
        # Shown, not announced again.
        assert not any("REJECTED" in text for _level, text in again.event_log.entries)


@pytest.mark.parametrize("size", [(160, 48), (200, 50)])
async def test_the_result_column_takes_the_width_left_and_the_reason_is_whole_below(size):
    app = console()
    async with app.run_test(size=size) as pilot:
        await settled(app, pilot)
        app.runtime.kill_switch.halt("risk desk: market gapped", "test")
        await pilot.pause()
        app.order_entry.set_values(symbol="MSFT", quantity="2")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(lambda: bool(app.blotter.orders), pilot)
        table = app.blotter.table
        from textual.widgets.data_table import ColumnKey

        result = table.columns[ColumnKey("result")]
        # No empty space beside it: the columns fill the table.
        used = sum(column.get_render_width(table) for column in table.columns.values())
        assert used + table.styles.scrollbar_size_vertical == table.size.width
        assert result.width >= 24 if size[0] == 160 else result.width > 60
        detail = str(app.blotter.query_one("#order-detail", Static).render())
        assert "until trading is resumed" in detail


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_a_narrow_blotter_shows_fewer_wider_columns_and_the_reason_is_whole_below(size):
    from textual.widgets.data_table import ColumnKey

    app = console()
    async with app.run_test(size=size) as pilot:
        await settled(app, pilot)
        app.runtime.kill_switch.halt("risk desk: market gapped", "test")
        await pilot.pause()
        app.order_entry.set_values(symbol="MSFT", quantity="2")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(lambda: bool(app.blotter.orders), pilot)
        table = app.blotter.table
        assert table.compact
        assert [str(column.label) for column in table.columns.values()] == [
            "Account",
            "Order",
            "Status",
            "Result",
        ]
        # Nothing past the pane's edge, and the Result column holds the code and a good part of why.
        used = sum(column.get_render_width(table) for column in table.columns.values())
        assert used + table.styles.scrollbar_size_vertical == table.size.width
        result = table.columns[ColumnKey("result")]
        assert result.width >= 30
        (key,) = app.blotter.orders
        assert "BUY 2 MSFT MKT" in table.shown(key, "ticket").plain
        assert table.shown(key, "result").plain.startswith("SYSTEM_HALTED: trading is halted")
        detail = str(app.blotter.query_one("#order-detail", Static).render())
        assert "until trading is resumed" in detail
        # Wider again: every column is back, the order still shown.
        await pilot.resize_terminal(200, 50)
        await wait_for(lambda: not table.compact and table.row_count == 1, pilot)
        assert table.shown(key, "symbol").plain == "MSFT"


async def test_the_legs_of_a_bracket_are_marked_under_their_parent():
    from brokers.legs import STOP_LOSS_SUFFIX

    app = console()
    async with app.run_test(size=(200, 50)) as pilot:
        await settled(app, pilot)
        order = await app.runtime.execution.submit(
            {"symbol": "AAPL", "side": "BUY", "quantity": "1", "take_profit": "240", "stop_loss": "215"}
        )
        assert order.status.value == "FILLED", order.reject_reason
        leg_id = order.client_order_id + STOP_LOSS_SUFFIX
        await wait_for(lambda: leg_id in app.blotter.orders, pilot)
        table = app.blotter.table
        assert table.shown(leg_id, "symbol").plain == "└ AAPL"
        table.move_cursor(row=table.get_row_index(leg_id), animate=False)
        await pilot.pause()
        detail = str(app.blotter.query_one("#order-detail", Static).render())
        assert f"exit of BRACKET {order.client_order_id}" in detail


async def test_enter_on_a_blotter_row_shows_its_transitions():
    from textual.widgets import DataTable

    from console.tui.screens.order_history import OrderHistoryScreen

    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        order = await resting_in_blotter(app, pilot)
        await app.runtime.execution.modify(order.client_order_id, quantity=Decimal(4))
        await pilot.press("ctrl+b", "enter")
        await wait_for(lambda: isinstance(app.screen, OrderHistoryScreen), pilot)
        table = app.screen.query_one("#history-table", DataTable)
        kinds = [table.get_row_at(index)[1] for index in range(table.row_count)]
        assert kinds[0] == "intent" and "modify" in kinds and "modified" in kinds
        step = str(app.screen.query_one("#history-step", Static).render())
        assert "intent" in step and "BUY 3 AAPL LIMIT @ 220 DAY" in step
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, OrderHistoryScreen), pilot)


def test_blotter_with_a_long_reason(snap_compare):
    """Fixed orders (times, ids, reasons), so the picture depends on the layout alone."""
    from console_support import FROZEN

    from brokers.models import Fill, Order, OrderRequest

    def fixed(coid: str, **fields) -> Order:
        request = OrderRequest(client_order_id=coid, **fields)
        return Order.for_request(request, "paper-us", at=FROZEN)

    async def run_before(pilot) -> None:
        app = pilot.app
        await settled(app, pilot)
        refused = fixed("TCSNAPREFUSED0000001", symbol="MSFT", side="BUY", quantity=2)
        refused.reject(
            "SYSTEM_HALTED",
            "trading is halted (by cli at 14:29:05 UTC: risk desk: market gapped after the open); "
            "no new orders are accepted until trading is resumed",
        )
        filled = fixed("TCSNAPFILLED00000001", symbol="AAPL", side="SELL", quantity=5)
        filled.broker_order_id = "SIM-000001"
        filled.transition(OrderStatus.ACCEPTED, at=FROZEN)
        filled.apply_fill(
            Fill(
                fill_id="SIM-000001-1",
                account="paper-us",
                symbol="AAPL",
                side="SELL",
                quantity=5,
                price=Decimal("227.5"),
                commission=Decimal("1.25"),
                currency="USD",
                broker_order_id="SIM-000001",
                client_order_id="TCSNAPFILLED00000001",
                timestamp=FROZEN,
            )
        )
        for order in (filled, refused):
            app.blotter.show_order(order)
        # The day's commission is totalled from the blotter's orders every 2 seconds: at once here.
        app.order_control.show_commission()
        await pilot.press("ctrl+b")
        await pilot.pause()

    assert snap_compare(console(), terminal_size=(160, 48), run_before=run_before)


# -- trading-console orders -----------------------------------------------------------------------


def test_orders_lists_today_and_shows_a_history(shared_paper_us):
    order = place_resting()
    assert invoke("modify", order["client_order_id"], "--qty", "4").exit_code == 0
    result = invoke("orders", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(o["client_order_id"], o["quantity"], o["status"]) for o in listed] == [
        (order["client_order_id"], "4", "ACCEPTED")
    ]
    result = invoke("orders", "--history", order["broker_order_id"], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["order"]["client_order_id"] == order["client_order_id"]
    kinds = [step["kind"] for step in data["history"]]
    assert kinds[:2] == ["intent", "ack"] and kinds[-2:] == ["modify", "modified"]
    assert "quantity 3 -> 4" in data["history"][-2]["detail"]
    table = invoke("orders", "--history", order["client_order_id"])
    assert table.exit_code == 0 and "quantity 3 -> 4" in plain(table.output)


def test_orders_with_an_empty_journal_and_an_unknown_id():
    result = invoke("orders")
    assert result.exit_code == 0 and "No orders today." in result.output
    result = invoke("orders", "--history", "NOPE")
    assert result.exit_code == 1 and "no order 'NOPE'" in result.output


# -- execution monitoring -----------------------------------------------------------------------


async def test_alerts_reach_the_event_log_and_the_blotters_counter():
    from brokers.models import Order, OrderRequest

    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        monitor = app.order_control.monitor
        assert monitor is not None
        for _ in range(monitor.settings.reject_burst):
            refused = Order.for_request(OrderRequest(symbol="AAPL", side="BUY", quantity=1), "paper-us")
            refused.reject("BROKER_REJECTED", "the venue is closed")
            monitor.on_order(refused)
        await wait_for(lambda: "⚠ 1 alert" in str(app.blotter.border_subtitle), pilot)
        assert any(
            level == "warning" and "alert REJECT_BURST" in text and "the venue is closed" in text
            for level, text in app.event_log.entries
        )


async def test_monitoring_settings_from_the_config_reach_the_console_and_a_storm_reduces():
    from brokers.config import parse_config
    from brokers.models import Order, OrderRequest, TradingState

    data = demo().model_dump(mode="python", exclude_none=True)
    data["monitoring"] = {"reject_burst": 2, "reject_window_seconds": 30, "reduce_on_reject_storm": True}
    app = console(parse_config(data, where="test"))
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        monitor = app.order_control.monitor
        assert monitor is not None
        assert (monitor.settings.reject_burst, monitor.settings.reduce_on_reject_storm) == (2, True)
        for _ in range(2):
            refused = Order.for_request(OrderRequest(symbol="AAPL", side="BUY", quantity=1), "paper-us")
            refused.reject("BROKER_REJECTED", "the venue is closed")
            monitor.on_order(refused)
        await wait_for(lambda: app.runtime.kill_switch.state is TradingState.REDUCING, pilot)


async def test_the_days_commission_shows_beside_the_blotter():
    app = console(demo(paper_us={"commission_per_share": "0.01"}))
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        app.order_entry.set_values(symbol="MSFT", quantity="100", account="paper-us")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(
            lambda: any(o.status is OrderStatus.FILLED for o in app.blotter.orders.values()), pilot
        )
        app.order_control.show_commission()
        await wait_for(
            lambda: "commission today paper-us 1.00 USD" in str(app.blotter.border_subtitle), pilot
        )


def test_orders_totals_the_days_commission_per_account(monkeypatch):
    broker = SimBroker("paper-us", prices={"AAPL": "227.50"}, commission_per_share="0.01")
    real_build = brokers.runtime.build_runtime

    def with_commission(config, **kwargs):
        built = {a.name: BrokerFactory.create(a.broker_config()) for a in config.accounts}
        built["paper-us"] = broker
        return real_build(config, brokers=built, **kwargs)

    monkeypatch.setattr(brokers.runtime, "build_runtime", with_commission)
    result = invoke("order", "buy", "AAPL", "100", "--account", "paper-us", "-y")
    assert result.exit_code == 0, result.output
    result = invoke("orders")
    assert result.exit_code == 0, result.output
    assert "Commission today: paper-us 1.00 USD" in result.output


def test_modify_at_a_live_account_asks_first(tmp_path, monkeypatch):
    broker = SimBroker("real", prices={"AAPL": "227.50"}, live=True)
    real_build = brokers.runtime.build_runtime

    def shared(config, **kwargs):
        return real_build(config, brokers={"real": broker}, **kwargs)

    monkeypatch.setattr(brokers.runtime, "build_runtime", shared)
    path = tmp_path / "config.toml"
    path.write_text('[[accounts]]\nname = "real"\ntype = "sim"\nlive = true\n', encoding="utf-8")
    placed = invoke("--config", str(path), "order", "buy", "AAPL", "2", "--limit", "220", "-y", "--json")
    assert placed.exit_code == 0, placed.output
    order = json.loads(placed.stdout)
    declined = invoke("--config", str(path), "modify", order["client_order_id"], "--qty", "3", input="n\n")
    assert declined.exit_code == 1
    assert "LIVE account (real): this change uses real money." in declined.output
    assert "Not sent." in declined.output
    assert at_broker(broker, order["broker_order_id"]).quantity == 2
    sent = invoke("--config", str(path), "modify", order["client_order_id"], "--qty", "3", "-y")
    assert sent.exit_code == 0, sent.output
    assert at_broker(broker, order["broker_order_id"]).quantity == 3


async def test_the_modify_dialog_marks_a_live_account():
    app = console(demo(paper_us={"live": True}))
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        entry = app.order_entry
        entry.set_values(symbol="AAPL", quantity="3", type="LIMIT", account="paper-us")
        await pilot.pause()
        entry.set_values(limit="220")
        await pilot.pause()
        entry.action_submit()
        await pilot.pause()
        await pilot.press("y")  # the order confirmation a LIVE account asks for
        await wait_for(
            lambda: any(o.status is OrderStatus.ACCEPTED for o in app.blotter.orders.values()), pilot
        )
        await pilot.press("ctrl+b", "m")
        await wait_for(lambda: isinstance(app.screen, OrderModifyScreen), pilot)
        title = str(app.screen.query_one("#modify-dialog .dialog-title", Static).render())
        assert "LIVE ACCOUNT" in title
