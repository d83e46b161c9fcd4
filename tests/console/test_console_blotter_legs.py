"""The blotter nests a bracket's legs directly under their parent, take-profit then stop-loss,
with tree marks, in the parent's place: whatever order the updates come in, and with a stand-in
row when the parent is not among the orders shown. At 80 and at 160 columns."""

from __future__ import annotations

from decimal import Decimal

from console_support import FROZEN, console, settled, wait_for
from textual.widgets import Static

from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from brokers.models import Fill, Order, OrderRequest, OrderStatus

TP, SL = TAKE_PROFIT_SUFFIX, STOP_LOSS_SUFFIX


def fixed(coid: str, **fields: object) -> Order:
    return Order.for_request(OrderRequest(client_order_id=coid, **fields), "paper-us", at=FROZEN)


def filled(order: Order, price: str) -> Order:
    order.broker_order_id = f"SIM-{order.client_order_id[-6:]}"
    order.transition(OrderStatus.ACCEPTED, at=FROZEN)
    order.apply_fill(
        Fill(
            fill_id=f"{order.broker_order_id}-1",
            account="paper-us",
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity or Decimal(0),
            price=Decimal(price),
            commission=Decimal("1"),
            currency="USD",
            broker_order_id=order.broker_order_id,
            client_order_id=order.client_order_id,
            timestamp=FROZEN,
        )
    )
    return order


def working(order: Order) -> Order:
    order.broker_order_id = f"SIM-{order.client_order_id[-6:]}"
    order.transition(OrderStatus.ACCEPTED, at=FROZEN)
    return order


def scenario() -> list[Order]:
    """The updates in the order they arrive: a bracket's stop-loss before its entry, a plain
    order between them, its take-profit last; then the legs of an entry not shown at all."""
    bracket = "TCSNAPBRACKET0001"
    gone = "TCSNAPYESTERDAY01"
    plain = filled(fixed("TCSNAPPLAINORDER0001", symbol="MSFT", side="BUY", quantity=2), "415.1")
    entry = filled(
        fixed(bracket, symbol="AAPL", side="BUY", quantity=5, take_profit=240, stop_loss=215), "227.5"
    )
    return [
        plain,
        working(
            fixed(bracket + SL, symbol="AAPL", side="SELL", quantity=5, order_type="STOP", stop_price=215)
        ),
        working(
            fixed(
                "TCSNAPRESTING0000001",
                symbol="MSFT",
                side="BUY",
                quantity=1,
                order_type="LIMIT",
                limit_price=400,
            )
        ),
        entry,
        working(
            fixed(bracket + TP, symbol="AAPL", side="SELL", quantity=5, order_type="LIMIT", limit_price=240)
        ),
        working(
            fixed(gone + TP, symbol="AAPL", side="SELL", quantity=3, order_type="LIMIT", limit_price=250)
        ),
        working(fixed(gone + SL, symbol="AAPL", side="SELL", quantity=3, order_type="STOP", stop_price=200)),
    ]


EXPECTED_ROWS = [
    "TCSNAPPLAINORDER0001",
    "TCSNAPBRACKET0001",
    "TCSNAPBRACKET0001" + TP,
    "TCSNAPBRACKET0001" + SL,
    "TCSNAPRESTING0000001",
    "TCSNAPYESTERDAY01",
    "TCSNAPYESTERDAY01" + TP,
    "TCSNAPYESTERDAY01" + SL,
]


def shown_rows(app) -> list[str]:
    return [str(row.key.value) for row in app.blotter.table.ordered_rows]


async def test_legs_sit_under_their_parent_whatever_order_their_updates_come_in():
    app = console()
    async with app.run_test(size=(200, 50)) as pilot:
        await settled(app, pilot)
        for order in scenario():  # one at a time, as the stream delivers them
            app.blotter.show_order(order)
            await pilot.pause()
        assert shown_rows(app) == EXPECTED_ROWS
        table = app.blotter.table
        assert not table.compact
        assert table.shown("TCSNAPBRACKET0001" + TP, "symbol").plain == "├ AAPL"
        assert table.shown("TCSNAPBRACKET0001" + SL, "symbol").plain == "└ AAPL"
        assert table.shown("TCSNAPBRACKET0001", "symbol").plain == "AAPL"
        assert (
            table.shown("TCSNAPYESTERDAY01", "result").plain == "entry not in this list · TCSNAPYESTERDAY01"
        )
        # The stand-in is no order: it is not counted, and its detail line says what it is.
        assert "TCSNAPYESTERDAY01" not in app.blotter.orders
        assert app.blotter.border_subtitle.startswith("5 working · 7 total")
        table.focus()
        table.move_cursor(row=EXPECTED_ROWS.index("TCSNAPYESTERDAY01"), animate=False)
        await pilot.pause()
        detail = str(app.blotter.query_one("#order-detail", Static).render())
        assert "entry TCSNAPYESTERDAY01 of the exits below is not among the orders shown" in detail
        # Narrower, then 80 columns: the compact columns keep the same rows in the same order,
        # the marks in the order column, the cursor where it was.
        for size in ((160, 48), (80, 24)):
            await pilot.resize_terminal(*size)
            await wait_for(lambda: table.compact, pilot)
            assert shown_rows(app) == EXPECTED_ROWS
            assert table.shown("TCSNAPBRACKET0001" + TP, "ticket").plain.startswith("├ SELL 5 AAPL LMT 240")
            assert table.shown("TCSNAPBRACKET0001" + SL, "ticket").plain.startswith("└ SELL 5 AAPL STP 215")
            assert table.selected_key() == "TCSNAPYESTERDAY01"


async def test_a_batch_from_the_journal_is_grouped_the_same_way():
    app = console()
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        app.blotter.show_orders([(order, None) for order in scenario()])
        await pilot.pause()
        assert shown_rows(app) == EXPECTED_ROWS
        # The parent arriving after a stand-in was shown for it takes the stand-in's row.
        late = scenario()
        app.blotter.show_orders([(order, None) for order in late[-1:]])
        assert shown_rows(app) == EXPECTED_ROWS


async def test_the_exits_of_an_entry_filled_later_are_nested_under_it():
    """Through the paper broker: the entry rests, another order goes in, then the entry fills
    and its exits come in under it, not at the bottom."""
    app = console()
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        execution = app.runtime.execution
        entry = await execution.submit(
            {
                "symbol": "AAPL",
                "side": "BUY",
                "quantity": "1",
                "order_type": "LIMIT",
                "limit_price": "220",
                "take_profit": "235",
                "stop_loss": "210",
                "account": "paper-us",
            }
        )
        assert entry.status is OrderStatus.ACCEPTED, entry.reject_reason
        later = await execution.submit(
            {"symbol": "MSFT", "side": "BUY", "quantity": "1", "account": "paper-us"}
        )
        assert later.status is OrderStatus.FILLED, later.reject_reason
        coid = entry.client_order_id
        await wait_for(lambda: later.client_order_id in app.blotter.orders, pilot)
        app.runtime.manager.get("paper-us").set_price("AAPL", 219)
        await wait_for(lambda: {coid + TP, coid + SL} <= set(app.blotter.orders), pilot)
        rows = shown_rows(app)
        at = rows.index(coid)
        assert rows[at : at + 3] == [coid, coid + TP, coid + SL]
        assert rows.index(later.client_order_id) > at + 2


async def show_scenario(pilot) -> None:
    """Every row in, the blotter focused, the cursor on the bracket's entry, settled."""
    app = pilot.app
    await settled(app, pilot)
    app.blotter.show_orders([(order, None) for order in scenario()])
    # The day's commission is totalled from the blotter's orders every 2 seconds: at once here.
    app.order_control.show_commission()
    await pilot.press("ctrl+b")
    table = app.blotter.table
    await wait_for(lambda: app.focused is table, pilot)
    table.move_cursor(row=EXPECTED_ROWS.index("TCSNAPBRACKET0001"), animate=False)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_the_legs_in_the_blotter_at_160_columns(snap_compare):
    assert snap_compare(console(), terminal_size=(160, 48), run_before=show_scenario)


def test_the_legs_in_the_blotter_at_80_columns(snap_compare):
    assert snap_compare(console(), terminal_size=(80, 40), run_before=show_scenario)


async def test_m_on_a_leg_changes_that_exit_and_it_stays_under_its_parent():
    from textual.widgets import Input

    from console.tui.screens.order_modify import OrderModifyScreen

    app = console()
    async with app.run_test(size=(200, 50)) as pilot:
        await settled(app, pilot)
        entry = await app.runtime.execution.submit(
            {"symbol": "AAPL", "side": "BUY", "quantity": "2", "take_profit": "240", "stop_loss": "215"}
        )
        assert entry.status is OrderStatus.FILLED, entry.reject_reason
        coid = entry.client_order_id
        await wait_for(lambda: {coid + TP, coid + SL} <= set(app.blotter.orders), pilot)
        table = app.blotter.table
        await pilot.press("ctrl+b")
        table.move_cursor(row=table.get_row_index(coid + SL), animate=False)
        await pilot.pause()
        await pilot.press("m")
        await wait_for(lambda: isinstance(app.screen, OrderModifyScreen), pilot)
        app.screen.query_one("#modify-stop", Input).value = "218.5"
        await pilot.pause()
        await pilot.press("enter")
        leg = app.blotter.orders[coid + SL]
        await wait_for(lambda: leg.stop_price == Decimal("218.5"), pilot)
        await wait_for(lambda: "STP 218.50" in str(table.shown(coid + SL, "order")), pilot)
        assert table.shown(coid + SL, "symbol").plain == "└ AAPL"
        rows = shown_rows(app)
        assert rows[rows.index(coid) : rows.index(coid) + 3] == [coid, coid + TP, coid + SL]
        assert leg.is_working
