"""Alpaca's documented payloads and error bodies, read by the adapter's translation code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError

from brokers.adapters.alpaca import LIVE_URL, PAPER_URL, AlpacaBroker, crypto_symbol, map_status, parse_time
from brokers.adapters.alpaca.broker import LIVE_STREAM_URL, PAPER_STREAM_URL
from brokers.adapters.alpaca.wire import (
    alpaca_refusal,
    api_error,
    order_fields,
    position_from_payload,
    request_from_payload,
)
from brokers.errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    ConfigError,
    InsufficientFundsError,
    InvalidSymbolError,
    MarketClosedError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.models import AssetClass, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from brokers.registry import BrokerFactory

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class _HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"{status} error")
        self.response = _Response(status)


def http_error(status: int, body) -> APIError:
    """What alpaca-py raises: the response text plus the requests HTTPError."""
    text = body if isinstance(body, str) else json.dumps(body)
    return APIError(text, _HTTPError(status))


# -- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpaca", "filled", "expected"),
    [
        ("accepted", "0", OrderStatus.SUBMITTED),
        ("pending_new", "0", OrderStatus.SUBMITTED),
        ("accepted_for_bidding", "0", OrderStatus.SUBMITTED),
        ("new", "0", OrderStatus.ACCEPTED),
        ("held", "0", OrderStatus.ACCEPTED),
        ("pending_cancel", "0", OrderStatus.ACCEPTED),
        ("pending_cancel", "4", OrderStatus.PARTIALLY_FILLED),
        ("partially_filled", "4", OrderStatus.PARTIALLY_FILLED),
        ("done_for_day", "4", OrderStatus.PARTIALLY_FILLED),
        ("calculated", "10", OrderStatus.FILLED),
        ("filled", "10", OrderStatus.FILLED),
        ("canceled", "4", OrderStatus.CANCELLED),
        ("expired", "0", OrderStatus.EXPIRED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("replaced", "0", OrderStatus.CANCELLED),
        ("something_new", "0", OrderStatus.UNKNOWN),
    ],
)
def test_every_alpaca_status_maps_to_ours(alpaca, filled, expected):
    assert map_status(alpaca, Decimal(filled), Decimal(10)) is expected


def test_nanosecond_timestamps_and_offsets_are_read_as_utc():
    assert parse_time("2022-04-19T13:45:04.981350886-04:00") == datetime(
        2022, 4, 19, 17, 45, 4, 981350, tzinfo=UTC
    )
    assert parse_time("2019-06-12T22:47:07.99658Z") == datetime(2019, 6, 12, 22, 47, 7, 996580, tzinfo=UTC)
    assert parse_time("2021-03-16T18:38:01Z") == datetime(2021, 3, 16, 18, 38, 1, tzinfo=UTC)
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("BTCUSD", "BTC/USD"),
        ("SOLUSD", "SOL/USD"),
        ("ETHBTC", "ETH/BTC"),
        ("ETH/USD", "ETH/USD"),
        ("USDTUSD", "USDT/USD"),
    ],
)
def test_crypto_symbols_are_written_with_a_slash(raw, ours):
    assert crypto_symbol(raw) == ours


# -- documented payloads ----------------------------------------------------------------------


def test_documented_positions_are_read():
    positions = [position_from_payload(p, "acct") for p in load("positions.json")]
    assert [p.symbol for p in positions] == ["AAPL", "NVDA", "TSLA"]  # "AAPL " in the docs, trimmed
    aapl = positions[0]
    assert aapl.quantity == Decimal(5) and aapl.avg_price == Decimal("100.0")
    assert aapl.last_price == Decimal("120.0") and aapl.market_value == Decimal("600.0")
    assert aapl.unrealized_pnl == Decimal("100.0")
    assert positions[2].avg_price == Decimal("201.3075")
    assert all(p.asset_class is AssetClass.STOCK and p.account == "acct" for p in positions)


def test_a_class_we_do_not_model_is_other_and_one_not_named_is_us_equity():
    position = {"symbol": "XYZW", "qty": "100", "side": "long", "avg_entry_price": "1.1"}
    assert (
        position_from_payload({**position, "asset_class": "us_warrant"}, "acct").asset_class
        is AssetClass.OTHER
    )
    assert position_from_payload(position, "acct").asset_class is AssetClass.STOCK
    order = {"id": "o-1", "symbol": "XYZW", "qty": "100", "side": "buy", "type": "market"}
    assert request_from_payload({**order, "asset_class": "us_warrant"}).asset_class is AssetClass.OTHER
    assert request_from_payload(order).asset_class is AssetClass.STOCK


def test_short_and_crypto_positions():
    short = position_from_payload(
        {
            "symbol": "TSLA",
            "qty": "-3",
            "side": "short",
            "asset_class": "us_equity",
            "avg_entry_price": "200",
            "current_price": "190",
        },
        "acct",
    )
    assert short.quantity == Decimal(-3) and short.unrealized_pnl == Decimal(30)
    crypto = position_from_payload(
        {
            "symbol": "BTCUSD",
            "qty": "0.0015",
            "side": "long",
            "asset_class": "crypto",
            "avg_entry_price": "60000",
        },
        "acct",
    )
    assert crypto.symbol == "BTC/USD" and crypto.asset_class is AssetClass.CRYPTO
    option = position_from_payload(
        {
            "symbol": "AAPL250321P00200000",
            "qty": "2",
            "side": "long",
            "asset_class": "us_option",
            "avg_entry_price": "1.6",
            "current_price": "2.0",
        },
        "acct",
    )
    assert option.multiplier == 100 and option.market_value == Decimal("400.0")


def test_documented_filled_order_becomes_a_request_of_ours():
    request = request_from_payload(load("order_limit_filled.json"))
    assert (request.symbol, request.side, request.quantity) == ("SPY", Side.BUY, Decimal(10))
    assert request.order_type is OrderType.LIMIT and request.limit_price == Decimal("362.4")
    assert request.client_order_id == "aad67d06-380d-4221-9eaa-168d6357ac42"


def test_documented_notional_order_becomes_a_notional_request():
    payload = load("order_notional_accepted.json")
    request = request_from_payload(payload)
    assert request.quantity is None and request.notional == Decimal(str(payload["notional"]))
    assert request.order_type is OrderType.MARKET


def test_a_notional_order_that_is_not_a_market_order_cannot_be_represented():
    payload = {**load("order_notional_accepted.json"), "type": "limit", "limit_price": "10"}
    with pytest.raises(ValueError, match="MARKET"):
        request_from_payload(payload)


def test_documented_crypto_fill_update_is_read():
    order = load("trade_update_crypto_fill.json")["data"]["order"]
    request = request_from_payload(order)
    assert request.symbol == "SOL/USD" and request.asset_class is AssetClass.CRYPTO
    assert request.quantity == Decimal("1790.86") and request.time_in_force is TimeInForce.GTC
    assert map_status(order["status"], Decimal(order["filled_qty"]), request.quantity) is OrderStatus.FILLED


def test_trailing_stop_payloads_keep_only_the_trail():
    payload = {
        "id": "0b7b9a3e-1f1c-4b57-9c6d-6a1f8d7e0c11",
        "client_order_id": "TC0123456789ABCDEF01",
        "symbol": "AAPL",
        "qty": "3",
        "side": "sell",
        "type": "trailing_stop",
        "time_in_force": "gtc",
        "trail_price": "2.5",
        "stop_price": "187.5",
        "hwm": "190",
        "asset_class": "us_equity",
    }
    request = request_from_payload(payload)
    assert request.trail_amount == Decimal("2.5") and request.stop_price is None
    assert request.client_order_id == "TC0123456789ABCDEF01"


def test_a_client_order_id_we_cannot_hold_falls_back_to_alpacas_id():
    payload = dict(load("order_limit_filled.json"), client_order_id="x" * 100)
    assert request_from_payload(payload).client_order_id == "596b186f-69b7-423d-afd5-1fe50a3e3182"


# -- orders out -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"order_type": "MARKET"}, {"type": "market"}),
        ({"order_type": "LIMIT", "limit_price": "189.55"}, {"type": "limit", "limit_price": "189.55"}),
        ({"order_type": "STOP", "stop_price": "180"}, {"type": "stop", "stop_price": "180"}),
        (
            {"order_type": "STOP_LIMIT", "stop_price": "180", "limit_price": "179.5"},
            {"type": "stop_limit", "stop_price": "180", "limit_price": "179.5"},
        ),
        (
            {"order_type": "TRAILING_STOP", "trail_percent": "1.5"},
            {"type": "trailing_stop", "trail_percent": "1.5"},
        ),
        (
            {"order_type": "TRAILING_STOP", "trail_amount": "0.35"},
            {"type": "trailing_stop", "trail_price": "0.35"},
        ),
    ],
)
def test_order_body_carries_exact_decimal_strings(fields, expected):
    request = OrderRequest(symbol="AAPL", side="BUY", quantity="0.12345678", time_in_force="DAY", **fields)
    body = order_fields(request)
    assert body["qty"] == "0.12345678"
    assert body["side"] == "buy" and body["time_in_force"] == "day" and body["symbol"] == "AAPL"
    assert body["client_order_id"] == request.client_order_id
    for key, value in expected.items():
        assert body[key] == value
    sent = json.loads(json.dumps(body))  # as it goes on the wire: enums as their plain values
    assert sent["side"] == "buy" and sent["time_in_force"] == "day" and sent["type"] == expected["type"]


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        (
            {
                "asset_class": "CRYPTO",
                "symbol": "BTC/USD",
                "order_type": "STOP",
                "stop_price": "1",
                "time_in_force": "GTC",
            },
            "crypto orders of type",
        ),
        ({"asset_class": "CRYPTO", "symbol": "BTC/USD", "time_in_force": "DAY"}, "GTC or IOC"),
        ({"quantity": "1.5", "time_in_force": "GTC"}, "fractional quantities with time in force DAY"),
        (
            {"quantity": "1.5", "order_type": "TRAILING_STOP", "trail_percent": "1"},
            "fractional quantities on",
        ),
        ({"order_type": "TRAILING_STOP", "trail_percent": "1", "time_in_force": "IOC"}, "DAY or GTC"),
        ({"asset_class": "CRYPTO", "symbol": "BTC/USD", "quantity": "0.001", "time_in_force": "IOC"}, None),
        ({"quantity": "1.5", "order_type": "STOP_LIMIT", "stop_price": "2", "limit_price": "2"}, None),
    ],
)
def test_alpaca_specific_refusals(fields, refused):
    request = OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": "1", **fields})
    reason = alpaca_refusal(request)
    if refused is None:
        assert reason is None
    else:
        assert refused in reason


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "op", "expected"),
    [
        ("insufficient_buying_power", "submit", InsufficientFundsError),
        ("covered_call_qty", "submit", OrderRejectedError),
        ("orders_rejected_by_user", "submit", OrderRejectedError),
        ("forbidden", "submit", AuthenticationError),
        ("forbidden", "read", AuthenticationError),
        ("asset_by_id_not_found", "submit", InvalidSymbolError),
        ("us_equity_not_allowed", "submit", OrderRejectedError),
        ("body_format_invalid", "submit", OrderRejectedError),
        ("body_format_invalid", "read", BrokerAPIError),
    ],
)
def test_documented_error_bodies_map_to_our_hierarchy(name, op, expected):
    case = load("errors.json")[name]
    error = api_error(http_error(case["status"], case["body"]), broker="acct", op=op, what="do it")
    assert type(error) is expected
    assert error.definite and not error.retryable
    assert case["body"]["message"] in str(error)
    if "code" in case["body"]:
        assert error.code == case["body"]["code"]


@pytest.mark.parametrize(
    ("status", "op", "expected", "retryable"),
    [
        (401, "read", AuthenticationError, False),
        (404, "read", OrderNotFoundError, False),
        (404, "cancel", OrderNotFoundError, False),
        (422, "cancel", OrderRejectedError, False),
        (429, "read", BrokerAPIError, True),
        (429, "submit", OrderRejectedError, False),
        (500, "read", BrokerAPIError, True),
        (503, "submit", BrokerConnectionError, True),
        (504, "submit", BrokerTimeoutError, True),
        (502, "cancel", BrokerConnectionError, True),
    ],
)
def test_status_codes_map_by_operation(status, op, expected, retryable):
    error = api_error(
        http_error(status, {"code": status * 100000, "message": "boom"}), broker="a", op=op, what="do it"
    )
    assert type(error) is expected and error.retryable is retryable


def test_lost_submit_answers_say_the_order_may_exist():
    error = api_error(http_error(503, "<html>bad gateway</html>"), broker="a", op="submit", what="place")
    assert "may or may not have been placed" in str(error)


def test_market_closed_message_maps_to_market_closed():
    body = {"code": 42210000, "message": "market orders are not accepted outside market hours"}
    assert type(api_error(http_error(422, body), broker="a", op="submit", what="x")) is MarketClosedError


# -- settings ---------------------------------------------------------------------------------


def test_paper_and_live_endpoints():
    paper = AlpacaBroker("p")
    assert (paper.base_url, paper.stream_url) == (PAPER_URL, PAPER_STREAM_URL)
    live = AlpacaBroker("l", live=True)
    assert (live.base_url, live.stream_url) == (LIVE_URL, LIVE_STREAM_URL)
    local = AlpacaBroker("t", base_url="http://127.0.0.1:9/")
    assert (local.base_url, local.stream_url) == ("http://127.0.0.1:9", "ws://127.0.0.1:9/stream")


def test_from_config_takes_own_keys_and_ignores_generic_ones():
    broker = BrokerFactory.create(
        {
            "type": "alpaca",
            "name": "main",
            "live": True,
            "currency": "USD",
            "default": True,
            "weight": 2.0,
            "risk": {"max_quantity": 5},
            "label": "Main",
            "timeout": 3,
            "crypto": False,
            "stream_url": "wss://example.invalid/stream",
            "key_env": "MY_KEY",
            "secret_env": "MY_SECRET",
        }
    )
    assert isinstance(broker, AlpacaBroker) and broker.live and broker.timeout == 3.0
    assert broker.base_url == LIVE_URL and broker.stream_url == "wss://example.invalid/stream"
    assert AssetClass.CRYPTO not in broker.capabilities.asset_classes


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"timeout": 0}, "'timeout' must be a number of seconds"),
        ({"timeout": "10"}, "'timeout' must be a number of seconds"),
        ({"live": "yes"}, "'live' must be true or false"),
        ({"currency": "EUR"}, "'currency' must be USD"),
        ({"base_url": "ftp://x"}, "'base_url' must be a URL"),
        ({"key_env": "not a name"}, "'key_env' must be an environment variable name"),
        ({"colour": "red"}, "unknown setting 'colour'"),
        ({"api_key": "PK123"}, "set-creds"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        AlpacaBroker.from_config({"name": "main", **settings})


def test_capabilities_are_honest():
    caps = AlpacaBroker("a").capabilities
    assert caps.order_types == frozenset(OrderType)
    assert caps.asset_classes == {AssetClass.STOCK, AssetClass.CRYPTO}
    assert caps.fractional_quantities and caps.bulk_cancel and caps.streaming_updates
    assert not caps.session_expiry and caps.currencies == {"USD"}
    option = OrderRequest(symbol="AAPL250321P00200000", side="BUY", quantity=1, asset_class="OPTION")
    assert "does not trade OPTION" in caps.supports(option)
