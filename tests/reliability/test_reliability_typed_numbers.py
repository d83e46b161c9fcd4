"""Typed numbers with commas, generated: a comma is read only as a thousands separator in its
place; anywhere else the number is refused by its field, never read as another number."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from console.cli.trading import build_request as cli_request
from console.tui.widgets.order_entry import build_request as form_request
from console.typed_input import ungrouped

CATEGORY = "bad input: orders"
CASES = settings(max_examples=400, deadline=None)

amounts = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("999999999"), places=4)


@CASES
@given(amounts)
def test_a_number_grouped_by_thousands_reads_as_itself(value: Decimal) -> None:
    typed = f"{value.normalize():,f}"
    assert Decimal(ungrouped(typed, "quantity")) == value


@CASES
@given(st.text(alphabet="0123456789", min_size=1, max_size=12), st.data())
def test_a_comma_anywhere_a_thousands_separator_cannot_be_is_refused(
    digits: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(digits)))
    typed = digits[:at] + "," + digits[at:]
    # One group of three after the comma, one to three digits before it, not starting with 0
    # (0,125 is a decimal comma, not a hundred and twenty-five).
    well_placed = 1 <= at <= 3 and len(digits) - at == 3 and digits[0] != "0"
    try:
        read = ungrouped(typed, "quantity")
    except ValueError as exc:
        assert str(exc).startswith("quantity may use a comma only to separate thousands")
        assert not well_placed
        return
    assert well_placed, typed
    assert int(read) == int(digits)


@CASES
@given(
    st.sampled_from(
        [
            "1,5",
            "0,5",
            "1,00",
            "12,5",
            "1.000,5",
            "1,0000",
            ",5",
            "5,",
            "1,,000",
            "1,000,00",
            "0,125",
            "00,125",
        ]
    )
)
def test_the_order_command_and_the_order_pane_refuse_the_same_typed_quantities(typed: str) -> None:
    import typer

    try:
        cli_request("BUY", "AAPL", typed)
    except typer.BadParameter as exc:
        assert "comma" in str(exc)
    else:
        raise AssertionError(f"{typed!r} was read as a number")
    request, errors = form_request(
        {"symbol": "AAPL", "side": "BUY", "quantity": typed, "type": "MARKET", "tif": "DAY"}
    )
    assert request is None and "comma" in errors["quantity"]
