"""Order entry: bad input gets a message under the field that caused it and never reaches the
library; good input becomes exactly the OrderRequest the trader typed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from console_support import console, settled, submit
from textual.widgets import Input, Static

from brokers.models import OrderType, Side, TimeInForce
from console.tui.widgets.order_entry import AUTO_ROUTE, FieldBox, build_request, parse_trail

BASE = {
    "account": AUTO_ROUTE,
    "symbol": "AAPL",
    "side": "BUY",
    "quantity": "10",
    "type": "MARKET",
    "limit": "",
    "stop": "",
    "trail": "",
    "tif": "DAY",
}


def form(**changes: str) -> dict[str, str]:
    return {**BASE, **changes}


def test_a_valid_form_builds_the_request_it_shows():
    request, errors = build_request(
        form(
            symbol=" msft ",
            quantity="1,500",
            type="LIMIT",
            limit="415.25",
            side="SELL",
            tif="GTC",
            account="paper-us",
        )
    )
    assert errors == {}
    assert request is not None
    assert (request.symbol, request.quantity, request.side) == ("MSFT", Decimal(1500), Side.SELL)
    assert (request.order_type, request.limit_price, request.time_in_force) == (
        OrderType.LIMIT,
        Decimal("415.25"),
        TimeInForce.GTC,
    )
    assert request.account == "paper-us"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quantity": "1,5"}, "quantity"),
        ({"quantity": "0,5"}, "quantity"),
        ({"quantity": "1,00"}, "quantity"),
        ({"quantity": "1.000,5"}, "quantity"),
        ({"type": "LIMIT", "limit": "190,5"}, "limit"),
        ({"type": "STOP", "stop": "1,5"}, "stop"),
        ({"type": "TRAILING_STOP", "trail": "2,5%"}, "trail"),
        ({"type": "TRAILING_STOP", "trail": "1,20"}, "trail"),
    ],
)
def test_a_comma_that_is_not_a_thousands_separator_is_refused_under_its_field(changes, field):
    request, errors = build_request(form(**changes))
    assert request is None
    assert set(errors) == {field}
    assert "comma" in errors[field]


def test_a_comma_error_does_not_hide_the_other_fields_errors():
    request, errors = build_request(form(symbol="", quantity="1,5"))
    assert request is None
    assert set(errors) == {"symbol", "quantity"}


def test_thousands_separators_in_prices_are_read_as_one():
    request, errors = build_request(form(quantity="12,345.5", type="LIMIT", limit="1,234.25"))
    assert errors == {}
    assert request is not None
    assert (request.quantity, request.limit_price) == (Decimal("12345.5"), Decimal("1234.25"))


def test_auto_route_leaves_the_account_to_the_router():
    request, _ = build_request(form())
    assert request is not None and request.account is None


def test_fields_the_order_type_does_not_use_are_ignored():
    request, errors = build_request(form(type="MARKET", limit="12", stop="11", trail="2%"))
    assert errors == {} and request is not None
    assert (request.limit_price, request.stop_price, request.trail_percent) == (None, None, None)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"quantity": "abc"}, "quantity", "must be a number"),
        ({"quantity": "-5"}, "quantity", "greater than 0"),
        ({"quantity": "0"}, "quantity", "greater than 0"),
        ({"quantity": "nan"}, "quantity", "finite"),
        ({"quantity": "inf"}, "quantity", "finite"),
        ({"quantity": "1e12"}, "quantity", "at most"),
        ({"quantity": "0.1234567891"}, "quantity", "decimal places"),
        ({"quantity": ""}, "quantity", "empty"),
        ({"symbol": ""}, "symbol", "empty"),
        ({"symbol": "$$$"}, "symbol", "letters, digits"),
        ({"symbol": "A" * 41}, "symbol", "longer than"),
        ({"type": "LIMIT"}, "limit", "limit price is required"),
        ({"type": "LIMIT", "limit": "-1"}, "limit", "greater than 0"),
        ({"type": "STOP"}, "stop", "stop price is required"),
        ({"type": "STOP_LIMIT", "limit": "10"}, "stop", "stop price is required"),
        ({"type": "TRAILING_STOP"}, "trail", "trail amount (1.50) or percent (2%)"),
        ({"type": "TRAILING_STOP", "trail": "150%"}, "trail", "at most 100"),
        ({"type": "TRAILING_STOP", "trail": "x%"}, "trail", "must be a number"),
        ({"account": "bad name!"}, "account", "letters, digits"),
    ],
)
def test_bad_input_names_the_field(changes, field, words):
    request, errors = build_request(form(**changes))
    assert request is None
    assert field in errors, errors
    assert words in errors[field]
    # Model names stay out of what the trader reads.
    assert "limit_price" not in errors[field] and "stop_price" not in errors[field]


def test_trail_text_picks_percent_or_amount():
    assert parse_trail("2.5%") == {"trail_percent": "2.5"}
    assert parse_trail(" 1.20 ") == {"trail_amount": "1.20"}
    assert parse_trail("") == {}


def shown_error(app, field: str) -> str:
    box = app.query_one(f"#field-{field}", FieldBox)
    error = box.query_one(".field-error", Static)
    return str(error.render()) if error.has_class("-shown") else ""


async def test_messages_appear_under_the_field_as_you_type_and_nothing_is_sent():
    app = console()
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+o", "a", "$")
        assert "letters, digits" in shown_error(app, "symbol")
        assert app.query_one("#field-symbol", FieldBox).has_class("-invalid")
        await pilot.press("backspace")
        # "A" is a symbol, but no account lists it: said by the symbol, not by a risk check.
        assert shown_error(app, "symbol") == "unknown symbol"
        await pilot.press("a", "p", "l")
        assert shown_error(app, "symbol") == ""
        # Untouched fields stay quiet until the trader tries to send.
        assert shown_error(app, "quantity") == ""
        app.query_one("#order-quantity", Input).focus()
        await pilot.press("-", "5")
        assert "greater than 0" in shown_error(app, "quantity")
        await pilot.press("enter")
        await pilot.pause()
        assert app.blotter.orders == {}
        assert app.runtime.execution.orders() == []
        await submit(app, pilot, quantity="5", type="LIMIT")
        await pilot.pause()
        assert "limit price is required" in shown_error(app, "limit")
        assert app.focused is app.query_one("#order-limit", Input)
        assert app.blotter.orders == {}


async def test_narrow_terminal_lists_errors_under_the_form():
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(app, pilot)
        app.order_entry.set_values(symbol="AAPL", quantity="0")
        await pilot.pause()
        line = app.query_one("#order-errors", Static)
        assert line.region.height == 1
        assert "Qty: quantity must be greater than 0" in str(line.render())


async def test_a_decimal_comma_typed_in_the_order_pane_is_refused_and_nothing_is_sent():
    app = console()
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+o", "A", "A", "P", "L")
        app.query_one("#order-quantity", Input).focus()
        await pilot.press("1", ",", "5")
        assert "comma" in shown_error(app, "quantity")
        await pilot.press("enter")
        await pilot.pause()
        assert app.blotter.orders == {}
        assert app.runtime.execution.orders() == []
