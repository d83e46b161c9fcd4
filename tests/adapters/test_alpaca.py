"""AlpacaBroker driving the real alpaca-py against the loopback Alpaca peer."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    API_KEY,
    KEYRING_SERVICE,
    SECRET_KEY,
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
    next_event,
)

from brokers.adapters.alpaca import AlpacaBroker
from brokers.errors import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerTimeoutError,
    CredentialsError,
    InsufficientFundsError,
    InvalidSymbolError,
    MarketClosedError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.models import AssetClass, ConnectionState, Fill, Order, OrderRequest, OrderStatus

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


async def reach_state(broker, state: ConnectionState, within: float = 3.0) -> None:
    for _ in range(int(within / 0.01)):
        if broker.connection_state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still {broker.connection_state.value} after {within} s, not {state.value}")


async def order_status(broker, broker_order_id: str, status: OrderStatus) -> Order:
    return await next_event(
        broker, lambda e: isinstance(e, Order) and e.broker_order_id == broker_order_id and e.status is status
    )


async def fill_of(broker, broker_order_id: str, within: float = 3.0) -> Fill:
    return await next_event(
        broker, lambda e: isinstance(e, Fill) and e.broker_order_id == broker_order_id, within
    )


def drain(broker) -> list:
    events = []
    while not broker.events.empty():
        events.append(broker.events.get_nowait())
    return events


async def settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)


def limit(symbol="AAPL", qty="10", price="189.5", side="BUY", **extra) -> OrderRequest:
    return OrderRequest(
        symbol=symbol, side=side, quantity=qty, order_type="LIMIT", limit_price=price, **extra
    )


# -- connection -------------------------------------------------------------------------------


async def test_connect_reports_health_and_runs_the_stream_off_the_event_loop(broker, peer):
    assert broker.is_connected() and broker.connection_state is ConnectionState.CONNECTED
    status = broker.status()
    assert status.state is ConnectionState.CONNECTED and status.broker_type == "alpaca"
    assert status.latency_ms is not None and status.last_error is None and not status.live
    streams = [t for t in threading.enumerate() if t.name == "alpaca-stream-alpaca-test"]
    assert len(streams) == 1 and streams[0] is not threading.current_thread()
    assert len(peer.listening) == 1 and peer.stream_auth_attempts == 1
    assert peer.count("GET", "/v2/account") == 1


async def test_balance_and_positions_read_together_send_one_positions_request(broker, peer):
    before = peer.count("GET", "/v2/positions")
    balance, positions = await asyncio.gather(broker.get_balance(), broker.get_positions())
    assert peer.count("GET", "/v2/positions") == before + 1
    assert balance.account == broker.name and isinstance(positions, list)
    await broker.get_positions()  # a later read is a new request
    assert peer.count("GET", "/v2/positions") == before + 2


async def test_trading_stream_run_is_never_called(peer, keys, monkeypatch):
    from alpaca.trading.stream import TradingStream

    def forbidden(self):
        raise AssertionError("TradingStream.run() would block the caller's event loop")

    monkeypatch.setattr(TradingStream, "run", forbidden)
    broker = AlpacaBroker.from_config(peer.settings())
    await broker.connect()
    try:
        assert broker.connection_state is ConnectionState.CONNECTED
    finally:
        await broker.disconnect()


async def test_disconnect_stops_the_stream_and_refuses_orders(broker, peer):
    await broker.disconnect()
    assert not broker.is_connected() and broker.connection_state is ConnectionState.DISCONNECTED
    assert not [t for t in threading.enumerate() if t.name == "alpaca-stream-alpaca-test"]
    with pytest.raises(BrokerConnectionError):
        await broker.place_order(limit())
    assert peer.count("POST", "/v2/orders") == 0


async def test_wrong_keys_fail_the_connection(peer, memory_keyring):
    memory_keyring.set_password(KEYRING_SERVICE, "alpaca-test:api_key", "PKWRONGWRONGWRONG")
    memory_keyring.set_password(KEYRING_SERVICE, "alpaca-test:secret_key", "wrong-secret-value")
    broker = AlpacaBroker.from_config(peer.settings())
    with pytest.raises(AuthenticationError) as caught:
        await broker.connect()
    assert caught.value.definite and "request is not authorized" in str(caught.value)
    assert broker.connection_state is ConnectionState.FAILED and not broker.is_connected()
    assert peer.count("GET", "/v2/account") == 1  # refused credentials are not retried


async def test_missing_credentials_say_what_to_do(peer):
    broker = AlpacaBroker.from_config(peer.settings())
    with pytest.raises(CredentialsError) as caught:
        await broker.connect()
    assert "set-creds alpaca-test" in str(caught.value) and "ALPACA_API_KEY" in str(caught.value)
    assert peer.requests == []


async def test_credentials_from_the_environment(peer, monkeypatch):
    monkeypatch.setenv("DESK_KEY", API_KEY)
    monkeypatch.setenv("DESK_SECRET", SECRET_KEY)
    broker = AlpacaBroker.from_config(peer.settings(key_env="DESK_KEY", secret_env="DESK_SECRET"))
    await broker.connect()
    try:
        assert broker.connection_state is ConnectionState.CONNECTED
    finally:
        await broker.disconnect()


async def test_secrets_never_reach_logs_errors_or_reprs(peer, keys, caplog):
    caplog.set_level(logging.DEBUG)
    broker = AlpacaBroker.from_config(peer.settings())
    await broker.connect()
    try:
        peer.fail_next("POST", "/v2/orders", 500, f"upstream echoed {SECRET_KEY}")
        with pytest.raises(BrokerConnectionError) as caught:
            await broker.place_order(limit())
        texts = [
            str(caught.value),
            repr(caught.value),
            repr(broker),
            str(broker.status()),
            caplog.text,
        ]
    finally:
        await broker.disconnect()
    assert any("authenticate" in r.getMessage() for r in caplog.records), "the auth frame was not logged"
    for text in texts:
        # the websocket library logs frames cut short, so even a tail of a secret must not show
        assert SECRET_KEY[-10:] not in text and SECRET_KEY[:10] not in text
        assert API_KEY[-8:] not in text
    assert "***" in str(caught.value)


# -- the order life cycle, each order type ----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "wire"),
    [
        ({"order_type": "MARKET"}, {"type": "market"}),
        ({"order_type": "LIMIT", "limit_price": "189.55"}, {"type": "limit", "limit_price": "189.55"}),
        ({"order_type": "STOP", "stop_price": "185"}, {"type": "stop", "stop_price": "185"}),
        (
            {"order_type": "STOP_LIMIT", "stop_price": "185", "limit_price": "184.5"},
            {"type": "stop_limit", "stop_price": "185", "limit_price": "184.5"},
        ),
        (
            {"order_type": "TRAILING_STOP", "trail_percent": "2.5", "time_in_force": "GTC"},
            {"type": "trailing_stop", "trail_percent": "2.5", "time_in_force": "gtc"},
        ),
        (
            {"order_type": "TRAILING_STOP", "trail_amount": "1.25"},
            {"type": "trailing_stop", "trail_price": "1.25"},
        ),
    ],
    ids=["market", "limit", "stop", "stop_limit", "trailing_percent", "trailing_amount"],
)
async def test_life_cycle_with_partial_fills(broker, peer, fields, wire):
    request = OrderRequest(symbol="AAPL", side="BUY", quantity="10", **fields)
    placed = await broker.place_order(request)
    assert placed.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED)
    assert placed.client_order_id == request.client_order_id and placed.account == "alpaca-test"
    body = peer.bodies[-1]
    assert (
        body["qty"] == "10" and body["side"] == "buy" and body["client_order_id"] == request.client_order_id
    )
    assert {key: body[key] for key in {"time_in_force", *wire}} == {"time_in_force": "day", **wire}

    await order_status(broker, placed.broker_order_id, OrderStatus.ACCEPTED)
    await peer.fill(placed.broker_order_id, "4", "188.10")
    first = await fill_of(broker, placed.broker_order_id)
    partial = await order_status(broker, placed.broker_order_id, OrderStatus.PARTIALLY_FILLED)
    assert (first.quantity, first.price) == (Decimal(4), Decimal("188.10"))
    assert partial.filled_quantity == 4 and partial.remaining_quantity == 6

    await peer.fill(placed.broker_order_id, "6", "188.20")
    second = await fill_of(broker, placed.broker_order_id)
    done = await order_status(broker, placed.broker_order_id, OrderStatus.FILLED)
    assert second.quantity == 6 and first.fill_id != second.fill_id
    assert done.avg_fill_price == Decimal("188.16") and done.filled_quantity == 10
    assert [f.fill_id for f in done.fills] == [first.fill_id, second.fill_id]
    assert first.client_order_id == request.client_order_id and first.side.value == "BUY"

    fetched = await broker.get_order(placed.broker_order_id)
    assert fetched.status is OrderStatus.FILLED and fetched.request == request
    await settle(0.05)
    assert not [e for e in drain(broker) if isinstance(e, Fill)]  # reading it again reports nothing new


async def test_fractional_crypto_order_fills_and_shows_as_a_pair(broker, peer):
    peer.auto_fill = True
    request = OrderRequest(
        symbol="BTC/USD", side="BUY", quantity="0.0015", time_in_force="GTC", asset_class="CRYPTO"
    )
    placed = await broker.place_order(request)
    fill = await fill_of(broker, placed.broker_order_id)
    assert fill.quantity == Decimal("0.0015") and fill.price == Decimal(60000)
    await order_status(broker, placed.broker_order_id, OrderStatus.FILLED)
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert positions["BTC/USD"].quantity == Decimal("0.0015")
    assert positions["BTC/USD"].asset_class is AssetClass.CRYPTO


async def test_fractional_stock_order(broker, peer):
    peer.auto_fill = True
    placed = await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity="0.25"))
    assert peer.bodies[-1]["qty"] == "0.25"
    fill = await fill_of(broker, placed.broker_order_id)
    assert fill.quantity == Decimal("0.25")


async def test_account_balance_margin_and_positions(broker, peer):
    peer.auto_fill = True
    placed = await broker.place_order(OrderRequest(symbol="MSFT", side="BUY", quantity="10"))
    await order_status(broker, placed.broker_order_id, OrderStatus.FILLED)
    peer.prices["MSFT"] = Decimal("420")
    balance = await broker.get_balance()
    assert balance.cash == Decimal(95900) and balance.equity == Decimal(100100)
    assert balance.buying_power == Decimal(95900) and balance.unrealized_pnl == Decimal(100)
    assert balance.currency == "USD" and balance.account == "alpaca-test"
    margin = await broker.get_margin()
    assert margin.initial_margin == Decimal(2100) and margin.maintenance_margin == Decimal(1260)
    assert margin.available_funds == Decimal(98000) and margin.excess_liquidity == Decimal(98840)
    [position] = await broker.get_positions()
    assert (position.symbol, position.quantity, position.avg_price) == ("MSFT", 10, Decimal(410))
    assert position.last_price == Decimal(420) and position.exchange == "NASDAQ"


# -- refusals and errors ----------------------------------------------------------------------


async def test_venue_rejection_and_expiry_arrive_on_the_stream(broker, peer):
    rejected = await broker.place_order(limit())
    await peer.reject(rejected.broker_order_id)
    order = await order_status(broker, rejected.broker_order_id, OrderStatus.REJECTED)
    assert order.reject_code == "BROKER_REJECTED" and order.reject_reason
    expired = await broker.place_order(limit(qty="1"))
    await peer.expire(expired.broker_order_id)
    await order_status(broker, expired.broker_order_id, OrderStatus.EXPIRED)


@pytest.mark.parametrize(
    ("request_fields", "expected", "fragment"),
    [
        (
            {"symbol": "SPY", "quantity": "1000", "order_type": "MARKET"},
            InsufficientFundsError,
            "insufficient buying power",
        ),
        (
            {"symbol": "ZZZZ", "quantity": "1", "order_type": "MARKET"},
            InvalidSymbolError,
            "could not find asset",
        ),
        (
            {"symbol": "AAPL", "quantity": "1", "order_type": "LIMIT", "limit_price": "190.001"},
            OrderRejectedError,
            "sub-penny",
        ),
        (
            {"symbol": "GME", "quantity": "0.5", "order_type": "MARKET"},
            OrderRejectedError,
            "not fractionable",
        ),
    ],
    ids=["buying_power_403", "unknown_symbol_422", "sub_penny_422", "not_fractionable_422"],
)
async def test_definite_refusals_map_to_the_right_error(broker, peer, request_fields, expected, fragment):
    request = OrderRequest(side="BUY", **request_fields)
    with pytest.raises(expected) as caught:
        await broker.place_order(request)
    assert type(caught.value) is expected and caught.value.definite and fragment in str(caught.value)
    assert peer.count("POST", "/v2/orders") == 1
    assert await broker.get_order_by_client_id(request.client_order_id) is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"code": 40310000, "message": "new orders are rejected by user request"}, OrderRejectedError),
        (
            422,
            {"code": 42210000, "message": "market orders are not accepted outside market hours"},
            MarketClosedError,
        ),
        (429, {"code": 42910000, "message": "rate limit exceeded"}, OrderRejectedError),
        (400, {"code": 40010000, "message": "request body format is invalid"}, OrderRejectedError),
    ],
)
async def test_injected_refusals(broker, peer, status, body, expected):
    peer.fail_next("POST", "/v2/orders", status, body)
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        await broker.place_order(limit())
    # alpaca-py's own retry would sleep 3 s on a 429 and send the order again
    assert time.monotonic() - started < 2.5
    assert type(caught.value) is expected and body["message"] in str(caught.value)
    assert peer.count("POST", "/v2/orders") == 1


@pytest.mark.parametrize(
    ("request_fields", "fragment"),
    [
        (
            {
                "symbol": "BTC/USD",
                "asset_class": "CRYPTO",
                "order_type": "TRAILING_STOP",
                "trail_percent": "1",
                "time_in_force": "GTC",
            },
            "crypto orders of type",
        ),
        ({"symbol": "BTC/USD", "asset_class": "CRYPTO", "time_in_force": "FOK"}, "GTC or IOC"),
        ({"symbol": "AAPL250321P00200000", "asset_class": "OPTION"}, "does not trade OPTION"),
        ({"symbol": "AAPL", "quantity": "0.5", "time_in_force": "GTC"}, "fractional quantities"),
        ({"symbol": "EURUSD", "asset_class": "FOREX"}, "does not trade FOREX"),
    ],
)
async def test_unsupported_orders_are_refused_before_any_network_call(broker, peer, request_fields, fragment):
    request = OrderRequest(**{"side": "BUY", "quantity": "1", **request_fields})
    with pytest.raises(OrderRejectedError, match=fragment) as caught:
        await broker.place_order(request)
    assert caught.value.code == "UNSUPPORTED"
    assert peer.count("POST", "/v2/orders") == 0


async def test_lost_answer_raises_timeout_is_not_retried_and_resolves_by_client_id(peer, keys):
    broker = AlpacaBroker.from_config(peer.settings(timeout=0.5))
    broker.events = broker.subscribe()  # type: ignore[attr-defined]
    await broker.connect()
    try:
        peer.delay_next("POST", "/v2/orders", 1.5)
        request = limit(account="alpaca-test")
        with pytest.raises(BrokerTimeoutError) as caught:
            await broker.place_order(request)
        assert caught.value.retryable and "may or may not have been placed" in str(caught.value)
        assert peer.count("POST", "/v2/orders") == 1
        found = await broker.get_order_by_client_id(request.client_order_id)
        assert found is not None and found.request == request and found.is_working
        await peer.fill(found.broker_order_id)
        fill = await fill_of(broker, found.broker_order_id)
        assert fill.client_order_id == request.client_order_id and fill.quantity == 10
    finally:
        await broker.disconnect()


async def test_dropped_connection_mid_submit_raises_connection_error_once(broker, peer):
    peer.drop_next("POST", "/v2/orders")
    request = limit()
    with pytest.raises(BrokerConnectionError) as caught:
        await broker.place_order(request)
    assert "may or may not have been placed" in str(caught.value)
    assert peer.count("POST", "/v2/orders") == 1
    found = await broker.get_order_by_client_id(request.client_order_id)
    assert found is not None and found.request == request
    assert len([o for o in peer.orders.values() if o["client_order_id"] == request.client_order_id]) == 1


@pytest.mark.parametrize(("status", "expected"), [(504, BrokerTimeoutError), (503, BrokerConnectionError)])
async def test_gateway_errors_on_submit_are_unknown_outcomes(broker, peer, status, expected):
    peer.fail_next("POST", "/v2/orders", status, {"code": status * 100000, "message": "upstream trouble"})
    started = time.monotonic()
    with pytest.raises(expected):
        await broker.place_order(limit())
    assert time.monotonic() - started < 2.5 and peer.count("POST", "/v2/orders") == 1


async def test_reads_retry_transient_failures_only(broker, peer):
    peer.fail_next("GET", "/v2/account", 503, {"code": 50300000, "message": "service unavailable"})
    peer.fail_next("GET", "/v2/positions", 429, {"code": 42910000, "message": "rate limit exceeded"})
    balance = await broker.get_balance()
    assert balance.cash == Decimal(100000)
    assert peer.count("GET", "/v2/account") == 3 and peer.count("GET", "/v2/positions") == 2
    peer.fail_next("GET", "/v2/account", 403, {"message": "forbidden."})
    with pytest.raises(AuthenticationError):
        await broker.get_margin()
    assert peer.count("GET", "/v2/account") == 4


async def test_a_read_that_times_out_is_retried(peer, keys):
    broker = AlpacaBroker.from_config(peer.settings(timeout=0.5))
    await broker.connect()
    try:
        peer.delay_next("GET", "/v2/account", 1.0)
        assert (await broker.get_margin()).account == "alpaca-test"
        assert peer.count("GET", "/v2/account") == 3  # connect, the slow one, the retry
    finally:
        await broker.disconnect()


async def test_unknown_orders_are_not_found(broker, peer):
    with pytest.raises(OrderNotFoundError):
        await broker.get_order("5d2c2e1a-0d0b-4a5e-9b7c-2b7a1c0d9e8f")
    with pytest.raises(OrderNotFoundError):
        await broker.cancel_order("5d2c2e1a-0d0b-4a5e-9b7c-2b7a1c0d9e8f")
    with pytest.raises(OrderNotFoundError):
        await broker.get_order("not-an-alpaca-id")
    assert peer.count("GET", "/v2/orders/not-an-alpaca-id") == 0
    assert await broker.get_order_by_client_id("TCNOSUCHORDER0000000") is None


# -- cancelling -------------------------------------------------------------------------------


async def test_cancel_a_partly_filled_order_then_cancel_again(broker, peer):
    placed = await broker.place_order(limit())
    await peer.fill(placed.broker_order_id, "3")
    await order_status(broker, placed.broker_order_id, OrderStatus.PARTIALLY_FILLED)
    cancelled = await broker.cancel_order(placed.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 3
    again = await broker.cancel_order(placed.broker_order_id)  # Alpaca answers 422: already cancelled
    assert again.status is OrderStatus.CANCELLED
    assert peer.count("DELETE", f"/v2/orders/{placed.broker_order_id}") == 2


async def test_cancel_all_uses_the_bulk_call(broker, peer):
    working = [await broker.place_order(limit(qty=str(n))) for n in (1, 2, 3)]
    peer.auto_fill = True
    filled = await broker.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity="1"))
    await order_status(broker, filled.broker_order_id, OrderStatus.FILLED)
    asked = await broker.cancel_all_orders()
    assert sorted(asked) == sorted(o.broker_order_id for o in working)
    assert peer.count("DELETE", "/v2/orders") == 1
    assert not [p for m, p in peer.requests if m == "DELETE" and p != "/v2/orders"]
    for order in working:
        await order_status(broker, order.broker_order_id, OrderStatus.CANCELLED)
    assert await broker.get_open_orders() == []


async def test_open_orders_include_orders_placed_elsewhere(broker, peer):
    ours = await broker.place_order(limit())
    theirs = await peer.place_external(symbol="MSFT", qty="2", side="sell", type="limit", limit_price="450")
    listed = {o.broker_order_id: o for o in await broker.get_open_orders()}
    assert set(listed) == {ours.broker_order_id, theirs["id"]}
    foreign = listed[theirs["id"]]
    assert foreign.symbol == "MSFT" and foreign.side.value == "SELL" and foreign.limit_price == 450
    assert foreign.client_order_id == theirs["client_order_id"] and foreign.account == "alpaca-test"


async def test_a_security_type_we_do_not_model_shows_as_other_never_as_a_stock(broker, peer):
    peer.assets["XYZW"] = {"class": "us_warrant", "exchange": "NYSE", "fractionable": False}
    peer.prices["XYZW"] = Decimal("1.25")
    bought = await peer.place_external(symbol="XYZW", qty="100", side="buy", type="limit", limit_price="1.10")
    await peer.fill(bought["id"], "100", "1.10")
    fill = await fill_of(broker, bought["id"])
    assert (fill.symbol, fill.quantity, fill.price) == ("XYZW", 100, Decimal("1.10"))
    order = await broker.get_order(bought["id"])
    assert order.status is OrderStatus.FILLED and order.request.asset_class is AssetClass.OTHER
    working = await peer.place_external(symbol="XYZW", qty="40", side="sell", type="limit", limit_price="2")
    [listed] = await broker.get_open_orders()
    assert listed.broker_order_id == working["id"] and listed.request.asset_class is AssetClass.OTHER
    [position] = await broker.get_positions()
    assert (position.symbol, position.quantity, position.avg_price) == ("XYZW", 100, Decimal("1.10"))
    assert position.asset_class is AssetClass.OTHER and position.last_price == Decimal("1.25")


# -- reconnect and resync ---------------------------------------------------------------------


async def test_reconnect_resyncs_without_losing_or_duplicating_fills(broker, peer):
    working = await broker.place_order(limit(qty="10"))
    await peer.fill(working.broker_order_id, "3", "189.00")
    await fill_of(broker, working.broker_order_id)
    early_update = peer.sent_updates[-1]

    peer.stream_online = False
    await peer.drop_streams()
    await reach_state(broker, ConnectionState.DEGRADED, within=3)
    assert broker.is_connected() and "dropped" in broker.status().last_error

    # While the stream is down: fills on a known order, a new order of ours filled outright, and an
    # order placed elsewhere and filled. Alpaca never replays these on the stream.
    await peer.fill(working.broker_order_id, "4", "189.30")
    during = await broker.place_order(OrderRequest(symbol="SPY", side="BUY", quantity="2"))
    await peer.fill(during.broker_order_id)
    elsewhere = await peer.place_external(symbol="MSFT", qty="1", side="buy")
    await peer.fill(elsewhere["id"])
    drain(broker)

    peer.stream_online = True
    await reach_state(broker, ConnectionState.CONNECTED, within=5)
    await peer.wait_listening()
    await settle()
    resynced = drain(broker)
    fills = {f.broker_order_id: f for f in resynced if isinstance(f, Fill)}
    assert set(fills) == {working.broker_order_id, during.broker_order_id, elsewhere["id"]}
    assert (fills[working.broker_order_id].quantity, fills[working.broker_order_id].price) == (
        4,
        Decimal("189.30"),
    )
    assert fills[during.broker_order_id].quantity == 2 and fills[elsewhere["id"]].quantity == 1
    assert len([f for f in resynced if isinstance(f, Fill)]) == 3

    # A replayed old update and the live stream afterwards: nothing twice, nothing lost.
    await peer.replay(early_update)
    await peer.fill(working.broker_order_id, "3", "189.50")
    last = await fill_of(broker, working.broker_order_id)
    done = await order_status(broker, working.broker_order_id, OrderStatus.FILLED)
    assert last.quantity == 3
    assert [f.quantity for f in done.fills] == [3, 4, 3]
    assert len({f.fill_id for f in done.fills}) == 3
    assert done.avg_fill_price == Decimal("189.27")
    await broker.get_open_orders()
    await broker.get_order(working.broker_order_id)
    await settle(0.05)
    assert not [e for e in drain(broker) if isinstance(e, Fill)]
    assert [o["id"] for o in peer.orders.values()].count(during.broker_order_id) == 1


async def test_orders_cancelled_during_a_gap_are_resynced(broker, peer):
    placed = await broker.place_order(limit())
    await order_status(broker, placed.broker_order_id, OrderStatus.ACCEPTED)
    peer.stream_online = False
    await peer.drop_streams()
    await reach_state(broker, ConnectionState.DEGRADED, within=3)
    await peer.fill(placed.broker_order_id, "5", "189.40")
    peer.orders[placed.broker_order_id]["status"] = "canceled"  # cancelled from the dashboard
    peer.stream_online = True
    done = await order_status(broker, placed.broker_order_id, OrderStatus.CANCELLED)
    assert done.filled_quantity == 5 and done.avg_fill_price == Decimal("189.40")
    assert [f.quantity for f in done.fills] == [5]


async def test_connect_takes_existing_orders_without_reporting_old_fills(peer, keys):
    old = await peer.place_external(symbol="AAPL", qty="10", side="buy", type="limit", limit_price="189")
    await peer.fill(old["id"], "4", "189")
    broker = AlpacaBroker.from_config(peer.settings())
    broker.events = broker.subscribe()  # type: ignore[attr-defined]
    await broker.connect()
    try:
        seen = drain(broker)
        assert not [e for e in seen if isinstance(e, Fill)]
        [snapshot] = [e for e in seen if isinstance(e, Order)]
        assert snapshot.status is OrderStatus.PARTIALLY_FILLED and snapshot.filled_quantity == 4
        await peer.fill(old["id"], "6", "188")
        fill = await fill_of(broker, old["id"])
        assert fill.quantity == 6 and fill.price == 188
    finally:
        await broker.disconnect()


async def test_stream_refusing_our_keys_leaves_the_account_degraded_until_it_recovers(peer, keys):
    peer.stream_refuses_auth = True
    broker = AlpacaBroker.from_config(peer.settings(timeout=0.5))
    broker.events = broker.subscribe()  # type: ignore[attr-defined]
    await broker.connect()
    try:
        assert broker.connection_state is ConnectionState.DEGRADED and broker.is_connected()
        assert "failed to authenticate" in broker.status().last_error
        placed = await broker.place_order(limit())  # REST still works
        await peer.fill(placed.broker_order_id, "2", "189")  # nobody is listening
        peer.stream_refuses_auth = False
        fill = await fill_of(broker, placed.broker_order_id, within=8)
        assert fill.quantity == 2
        await reach_state(broker, ConnectionState.CONNECTED, within=3)
        assert broker.status().last_error is None
    finally:
        await broker.disconnect()


async def test_documented_stream_examples_over_the_wire(broker, peer):
    await peer.replay(load("trade_update_mleg_fill.json"))  # a multi-leg order we cannot represent
    await peer.replay(load("trade_update_crypto_fill.json"))
    fill = await fill_of(broker, "a5be8f5e-fdfa-41f5-a644-7a74fe947a8f")
    assert (fill.symbol, fill.side.value, fill.quantity, fill.price) == (
        "SOL/USD",
        "SELL",
        Decimal("1790.86"),
        Decimal("105.8988475"),
    )
    assert fill.timestamp.isoformat() == "2022-04-19T17:45:05.024916+00:00"
    order = await order_status(broker, "a5be8f5e-fdfa-41f5-a644-7a74fe947a8f", OrderStatus.FILLED)
    assert order.request.asset_class is AssetClass.CRYPTO
    assert order.client_order_id == "4642fd68-d59a-47d7-a9ac-e22f536828d1"
    assert broker.connection_state is ConnectionState.CONNECTED
    assert not any(
        isinstance(e, Order) and e.broker_order_id == "31cd620f-3bd5-41b7-8bb2-6834524679d0"
        for e in drain(broker)
    )


async def test_documented_account_and_positions_over_the_wire(broker, peer):
    peer.answer_next("GET", "/v2/account", load("account.json"), times=2)
    peer.answer_next("GET", "/v2/positions", load("positions.json"), times=2)
    balance = await broker.get_balance()
    assert (balance.cash, balance.equity, balance.buying_power) == (
        Decimal("-23140.2"),
        Decimal("103820.56"),
        Decimal("262113.632"),
    )
    assert balance.unrealized_pnl == Decimal("100.0") + Decimal("399.48") - Decimal("223.275")
    margin = await broker.get_margin()
    assert margin.initial_margin == Decimal("63480.38") and margin.maintenance_margin == Decimal("38088.228")
    assert margin.available_funds == Decimal("40340.18") and margin.excess_liquidity == Decimal("65732.332")
    assert margin.leverage == 4
    positions = await broker.get_positions()
    assert [(p.symbol, p.quantity) for p in positions] == [("AAPL", 5), ("NVDA", 4), ("TSLA", 10)]


async def test_a_blocked_account_is_reported_on_connect(peer, keys):
    peer.answer_next("GET", "/v2/account", dict(load("account.json"), trading_blocked=True))
    broker = AlpacaBroker.from_config(peer.settings())
    await broker.connect()
    try:
        assert "trading_blocked" in broker.status().last_error
    finally:
        await broker.disconnect()


async def test_a_read_whose_connection_drops_is_retried(broker, peer):
    peer.drop_next("GET", "/v2/positions")
    assert await broker.get_positions() == []
    assert peer.count("GET", "/v2/positions") == 2


async def test_fills_during_a_deliberate_disconnect_are_reported_after_connecting_again(broker, peer):
    placed = await broker.place_order(limit())
    await order_status(broker, placed.broker_order_id, OrderStatus.ACCEPTED)
    await broker.disconnect()
    await peer.fill(placed.broker_order_id, "10", "189.45")
    await broker.connect()
    fill = await fill_of(broker, placed.broker_order_id)
    assert fill.quantity == 10 and fill.price == Decimal("189.45")
    await order_status(broker, placed.broker_order_id, OrderStatus.FILLED)


async def test_a_resync_that_fails_is_tried_again(broker, peer):
    placed = await broker.place_order(limit())
    await order_status(broker, placed.broker_order_id, OrderStatus.ACCEPTED)
    peer.stream_online = False
    await peer.drop_streams()
    await reach_state(broker, ConnectionState.DEGRADED)
    await peer.fill(placed.broker_order_id, "10", "189.45")
    # more failures than one resync's retries of its first read
    peer.fail_next("GET", "/v2/orders", 503, {"code": 50300000, "message": "service unavailable"}, times=4)
    peer.stream_online = True
    fill = await fill_of(broker, placed.broker_order_id, within=6)
    assert fill.quantity == 10 and not [f for f in peer.faults if f.path == "/v2/orders"]
    await reach_state(broker, ConnectionState.CONNECTED)
