"""Bad input is refused at the edge with a message naming the field."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from brokers.models import (
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    describe_validation_error,
    field_errors,
)

BASE = {"symbol": "AAPL", "side": "BUY", "quantity": "10"}


def refused(**changes) -> str:
    with pytest.raises(ValidationError) as caught:
        OrderRequest(**{**BASE, **changes})
    return describe_validation_error(caught.value)


def test_text_input_is_normalised():
    request = OrderRequest(
        symbol=" aapl ",
        side="buy",
        quantity="1,000",
        order_type="stop limit",
        limit_price="10.50",
        stop_price="10.4",
        time_in_force="gtc",
    )
    assert request.symbol == "AAPL"
    assert request.side is Side.BUY
    assert request.quantity == Decimal(1000) and str(request.quantity) == "1000"
    assert request.order_type is OrderType.STOP_LIMIT
    assert str(request.limit_price) == "10.5"
    assert request.time_in_force is TimeInForce.GTC


def test_client_order_ids_are_unique_and_fit_every_broker():
    ids = {OrderRequest(**BASE).client_order_id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 20 and i.isalnum() for i in ids)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"quantity": "0"}, "quantity", "greater than 0"),
        ({"quantity": "-5"}, "quantity", "greater than 0"),
        ({"quantity": "nan"}, "quantity", "finite"),
        ({"quantity": float("inf")}, "quantity", "finite"),
        ({"quantity": "1e12"}, "quantity", "at most"),
        ({"quantity": "0.0000000001"}, "quantity", "decimal places"),
        ({"quantity": "ten"}, "quantity", "must be a number"),
        ({"quantity": True}, "quantity", "must be a number"),
        ({"symbol": ""}, "symbol", "empty"),
        ({"symbol": "AA PL;DROP"}, "symbol", "may hold"),
        ({"symbol": "X" * 41}, "symbol", "longer"),
        ({"side": "hold"}, "side", "BUY, SELL"),
        ({"order_type": "iceberg"}, "order_type", "MARKET"),
        ({"time_in_force": "forever"}, "time_in_force", "GTC"),
        ({"currency": "DOLLARS"}, "currency", "3-letter"),
        ({"order_type": "LIMIT", "limit_price": "-1"}, "limit_price", "greater than 0"),
        ({"order_type": "LIMIT", "limit_price": "1e10"}, "limit_price", "at most"),
        ({"order_type": "TRAILING_STOP", "trail_percent": "150"}, "trail_percent", "at most"),
        ({"client_order_id": "a b"}, "client_order_id", "may hold"),
    ],
)
def test_field_errors_name_the_field(changes, field, words):
    message = refused(**changes)
    assert field in message
    assert words in message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"order_type": "LIMIT"}, "limit_price is required"),
        ({"order_type": "STOP"}, "stop_price is required"),
        ({"order_type": "STOP_LIMIT", "stop_price": "5"}, "limit_price is required"),
        ({"limit_price": "5"}, "limit_price is only allowed"),
        ({"order_type": "TRAILING_STOP"}, "exactly one of trail_percent or trail_amount"),
        ({"order_type": "TRAILING_STOP", "trail_percent": "1", "trail_amount": "1"}, "exactly one"),
        ({"trail_amount": "1"}, "only allowed for TRAILING_STOP"),
    ],
)
def test_prices_must_fit_the_order_type(changes, words):
    assert words in refused(**changes)


def test_unknown_fields_are_refused():
    assert "colour" in refused(colour="red")


def test_field_errors_map_for_forms():
    with pytest.raises(ValidationError) as caught:
        OrderRequest(symbol="", side="BUY", quantity="-1")
    errors = field_errors(caught.value)
    assert set(errors) == {"symbol", "quantity"}


def test_request_is_frozen():
    request = OrderRequest(**BASE)
    with pytest.raises(ValidationError):
        request.quantity = Decimal(5)


def test_only_what_came_out_of_the_validators_counts_as_validated():
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=1)
    assert request.validated
    assert not request.model_copy().validated  # same values, but never checked
    assert not request.model_copy(update={"quantity": Decimal("5e9")}).validated
    assert not OrderRequest.model_construct(**request.__dict__).validated
    assert OrderRequest.model_validate(request.__dict__).validated
