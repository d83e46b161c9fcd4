"""An order's limit and stop prices appear, as typed, wherever the order is summed up: the order
pane's summary, the confirmation, every event-log line about it, and the command line's
preview and orders table."""

from __future__ import annotations

from decimal import Decimal

import pytest
from console_support import console, demo, settled, wait_for
from rich.console import Console
from textual.widgets import Static

from brokers.models import Order, OrderRequest, OrderStatus
from console import formatting as fmt
from console.cli.tables import order_price_cell, orders_table
from console.cli.trading import _show_preview, order_json
from console.tui.event_lines import order_line
from console.tui.screens.order_confirm import OrderConfirmScreen, order_price_text

STOP_LIMIT = {"order_type": "STOP_LIMIT", "limit_price": "226.255", "stop_price": "226.5"}


def request(**fields) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 10, **fields})


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"order_type": "LIMIT", "limit_price": "415.125"}, ["@ 415.125", "limit 415.125"]),
        ({"order_type": "STOP", "stop_price": "410"}, ["stop 410"]),
        (STOP_LIMIT, ["@ 226.255", "stop 226.5", "limit 226.255"]),
        ({"order_type": "TRAILING_STOP", "trail_percent": "2.5"}, ["trail 2.5%"]),
    ],
)
def test_every_summary_line_carries_the_order_prices(fields, words):
    order = Order(request=request(**fields), account="paper-us")
    lines = [fmt.describe_request(order.request), fmt.order_prices(order.request)]
    for status in (OrderStatus.SUBMITTED, OrderStatus.CANCELLED):
        order.status = status
        line = order_line(order, None)
        assert line is not None
        lines.append(line[0])
    order.status, order.reject_code, order.reject_reason = OrderStatus.REJECTED, "PRICE_BAND", "too far"
    line = order_line(order, None)
    assert line is not None
    lines.append(line[0])
    for word in words:
        assert any(word in text for text in lines), (word, lines)
    # Every event-log line names the order with its prices.
    for text in lines[2:]:
        assert fmt.describe_request(order.request) in text


def test_a_fill_line_says_the_price_it_filled_at():
    order = Order(request=request(order_type="LIMIT", limit_price="227"), account="paper-us")
    order.status, order.filled_quantity, order.avg_fill_price = (
        OrderStatus.FILLED,
        Decimal(10),
        Decimal("226.98"),
    )
    line = order_line(order, None)
    assert line is not None
    assert "@ 227" in line[0] and "filled 10 @ 226.98" in line[0]


def test_the_confirmation_shows_every_price_as_typed():
    assert order_price_text(request(**STOP_LIMIT)) == "limit 226.255 · stop 226.5"
    assert order_price_text(request()) == "market"


def test_the_command_line_shows_both_prices_of_a_stop_limit_order(capsys):
    row = order_json(Order(request=request(**STOP_LIMIT), account="paper-us"))
    assert order_price_cell(row) == "226.255 (stop 226.5)"
    assert (
        order_price_cell(order_json(Order(request=request(order_type="STOP", stop_price="410"))))
        == "stop 410"
    )
    assert order_price_cell(order_json(Order(request=request()))) == "—"
    out = Console(width=200, record=True)
    out.print(orders_table([row]))
    assert "226.255 (stop 226.5)" in out.export_text()


async def test_the_order_pane_summary_and_the_confirmation_carry_the_prices():
    app = console(demo(paper_us={"live": True}))
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        app.order_entry.set_values(symbol="AAPL", quantity="10", type="STOP_LIMIT")
        await pilot.pause()
        app.order_entry.set_values(stop="226.5", limit="226.255")
        await pilot.pause()
        summary = str(app.query_one("#order-status", Static).render())
        assert "@ 226.255" in summary and "stop 226.5" in summary
        app.order_entry.action_submit()
        await wait_for(lambda: isinstance(app.screen, OrderConfirmScreen), pilot)
        details = str(app.screen.query_one("#confirm-details", Static).render())
        heading = str(app.screen.query_one("#confirm-order", Static).render())
        assert "limit 226.255 · stop 226.5" in details
        assert "@ 226.255" in heading and "stop 226.5" in heading
        await pilot.press("n")
        await pilot.pause()
        assert any("not sent:" in text and "stop 226.5" in text for _level, text in app.event_log.entries)


def test_the_command_line_preview_names_the_prices(capsys):
    from brokers.preview import OrderPreview

    preview = OrderPreview(
        request=request(**STOP_LIMIT),
        distributed=False,
        targets={"paper-us": Decimal(10)},
        live_accounts=(),
        base_currency="USD",
        notional=Decimal("2262.55"),
        notional_note=None,
        reasons=(),
    )
    _show_preview(preview)
    out = capsys.readouterr().out
    assert "@ 226.255" in out and "stop 226.5" in out and "to paper-us" in out


async def test_the_blotter_detail_line_carries_the_prices():
    app = console()
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        order = Order(request=request(**STOP_LIMIT), account="paper-us")
        app.blotter.show_order(order)
        await pilot.press("ctrl+b")
        await pilot.pause()
        detail = str(app.query_one("#order-detail", Static).render())
        assert "@ 226.255" in detail and "stop 226.5" in detail
