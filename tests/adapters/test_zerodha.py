"""The Zerodha adapter driving the real kiteconnect client against a Kite Connect v3 peer."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)

from brokers.adapters.zerodha import ZerodhaBroker, tag_for
from brokers.errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    CredentialsError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.instruments import Instrument
from brokers.models import (
    AssetClass,
    ConnectionState,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)


def make_broker(peer: KitePeer, **settings) -> ZerodhaBroker:
    return ZerodhaBroker.from_config(
        {"name": "kite", "root": peer.root, "poll_interval": 0.2, "timeout": 2, **settings}
    )


@pytest.fixture
def kite_env(kite_peer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)


@pytest.fixture
async def broker(kite_peer, kite_env):  # noqa: F811
    adapter = make_broker(kite_peer)
    await adapter.connect()
    yield adapter
    await adapter.disconnect()


async def next_event(queue: asyncio.Queue, predicate, wait: float = 3.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        event = await asyncio.wait_for(queue.get(), max(0.01, deadline - loop.time()))
        if predicate(event):
            return event


def drain(queue: asyncio.Queue) -> list:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def buy(symbol: str = "INFY", quantity: int = 10, **fields) -> OrderRequest:
    return OrderRequest(symbol=symbol, side=Side.BUY, quantity=quantity, **fields)


def is_order(order_id: str, status: OrderStatus):
    return lambda e: isinstance(e, Order) and e.broker_order_id == order_id and e.status is status


# -- connection, credentials, session ----------------------------------------------------------


async def test_connect_proves_the_token_and_reports_the_session_expiry(broker, kite_peer):  # noqa: F811
    assert broker.is_connected()
    assert broker.connection_state is ConnectionState.CONNECTED
    assert kite_peer.count("GET", "/user/profile") == 1
    expiry = broker.session_expires_at
    assert expiry is not None and expiry.utcoffset().total_seconds() == 0
    # Next 06:00 in India is 00:30 UTC.
    assert (expiry.hour, expiry.minute) == (0, 30)
    status = broker.status()
    assert status.session_time_left is not None and 0 < status.session_time_left <= 24 * 3600
    assert status.broker_type == "zerodha" and status.currency == "INR"
    assert status.latency_ms is not None and not broker.needs_new_token


async def test_credentials_come_from_the_keyring_first(kite_peer, memory_keyring, monkeypatch):  # noqa: F811
    memory_keyring.set_password("trading-console", "kite:api_key", kite_peer.api_key)
    memory_keyring.set_password("trading-console", "kite:access_token", kite_peer.access_token)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "a-stale-token-from-the-environment")
    adapter = make_broker(kite_peer)
    await adapter.connect()
    try:
        assert adapter.is_connected()
    finally:
        await adapter.disconnect()
    assert not adapter.is_connected()
    assert adapter.connection_state is ConnectionState.DISCONNECTED


async def test_missing_credentials_say_how_to_provide_them(kite_peer):  # noqa: F811
    adapter = make_broker(kite_peer)
    with pytest.raises(CredentialsError) as caught:
        await adapter.connect()
    assert "trading-console set-creds kite" in str(caught.value)
    assert "KITE_API_KEY" in str(caught.value)
    assert adapter.connection_state is ConnectionState.FAILED
    assert kite_peer.requests == []


async def test_refused_token_is_an_authentication_error_and_asks_for_a_new_login(kite_peer, kite_env, caplog):  # noqa: F811
    token = kite_peer.access_token
    kite_peer.expire_token()
    adapter = make_broker(kite_peer)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as caught:
        await adapter.connect()
    assert "set-creds kite" in str(caught.value)
    assert token not in str(caught.value) and token not in caplog.text
    assert not adapter.is_connected()
    assert adapter.needs_new_token
    assert adapter.connection_state is ConnectionState.FAILED
    assert adapter.status().session_time_left <= 0


async def test_token_expiring_mid_session_stops_the_stream_and_marks_the_account(broker, kite_peer):  # noqa: F811
    kite_peer.expire_token()
    for _ in range(40):
        if broker.needs_new_token:
            break
        await asyncio.sleep(0.05)
    assert broker.needs_new_token
    assert not broker.is_connected()
    assert "set-creds kite" in (broker.last_error or "")
    with pytest.raises(BrokerConnectionError):
        await broker.place_order(buy())
    polls = kite_peer.count("GET", "/orders")
    await asyncio.sleep(0.5)
    assert kite_peer.count("GET", "/orders") == polls  # no hammering with a dead token
    await broker.disconnect()
    assert broker.connection_state is ConnectionState.FAILED


# -- order types, full life cycle -------------------------------------------------------------


async def test_market_order_fills_and_streams_the_fill(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    request = buy(quantity=3)
    order = await broker.place_order(request)
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == 3 and order.avg_fill_price == Decimal(1500)
    assert order.client_order_id == request.client_order_id
    form = kite_peer.form_posts[-1]
    assert form == {
        "variety": "regular",
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "transaction_type": "BUY",
        "quantity": "3",
        "product": "CNC",
        "order_type": "MARKET",
        "validity": "DAY",
        "tag": request.client_order_id,
        "market_protection": "-1",
    }
    fill = await next_event(events, lambda e: isinstance(e, Fill))
    assert (fill.quantity, fill.price, fill.currency) == (Decimal(3), Decimal(1500), "INR")
    assert fill.client_order_id == request.client_order_id and fill.broker_order_id == order.broker_order_id
    assert fill.timestamp.utcoffset().total_seconds() == 0


async def test_limit_order_rests_then_fills_when_the_price_comes(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=5, order_type=OrderType.LIMIT, limit_price="1490.05"))
    assert order.status is OrderStatus.ACCEPTED
    assert kite_peer.form_posts[-1]["price"] == "1490.05"
    assert "market_protection" not in kite_peer.form_posts[-1]
    assert [o.broker_order_id for o in await broker.get_open_orders()] == [order.broker_order_id]
    kite_peer.set_price("NSE:INFY", "1489")
    fill = await next_event(events, lambda e: isinstance(e, Fill))
    filled = await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    assert fill.price == Decimal(1489) and filled.avg_fill_price == Decimal(1489)
    assert (await broker.get_order(order.broker_order_id)).status is OrderStatus.FILLED


async def test_stop_order_waits_for_its_trigger(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    request = OrderRequest(
        symbol="SBIN", side=Side.SELL, quantity=4, order_type=OrderType.STOP, stop_price="790"
    )
    order = await broker.place_order(request)
    form = kite_peer.form_posts[-1]
    assert (form["order_type"], form["trigger_price"], "price" in form) == ("SL-M", "790", False)
    assert order.status is OrderStatus.ACCEPTED
    assert kite_peer.orders[order.broker_order_id].status == "TRIGGER PENDING"
    kite_peer.set_price("NSE:SBIN", "789.5")
    filled = await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    assert filled.avg_fill_price == Decimal("789.5")


async def test_stop_limit_order_sends_price_and_trigger(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    request = buy("RELIANCE", 2, order_type=OrderType.STOP_LIMIT, stop_price="2510", limit_price="2515")
    order = await broker.place_order(request)
    form = kite_peer.form_posts[-1]
    assert (form["order_type"], form["price"], form["trigger_price"]) == ("SL", "2515", "2510")
    assert order.status is OrderStatus.ACCEPTED
    kite_peer.set_price("NSE:RELIANCE", "2512")
    filled = await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    assert filled.filled_quantity == 2


async def test_ioc_limit_that_cannot_trade_is_cancelled(broker, kite_peer):  # noqa: F811
    order = await broker.place_order(
        buy(quantity=1, order_type="LIMIT", limit_price="1400", time_in_force=TimeInForce.IOC)
    )
    assert kite_peer.form_posts[-1]["validity"] == "IOC"
    assert order.status is OrderStatus.CANCELLED and order.filled_quantity == 0


@pytest.mark.parametrize(
    ("request_fields", "needle"),
    [
        ({"order_type": "TRAILING_STOP", "trail_percent": "1"}, "TRAILING_STOP"),
        ({"time_in_force": "GTC"}, "GTC"),
        ({"time_in_force": "FOK"}, "FOK"),
        ({"quantity": "1.5"}, "whole quantities"),
        ({"asset_class": "CRYPTO"}, "CRYPTO"),
        ({"asset_class": "FUTURE"}, "not NSE"),
        ({"symbol": "NASDAQ:AAPL"}, "no exchange NASDAQ"),
        ({"symbol": "BSE:INFY", "exchange": "NSE"}, "names exchange BSE"),
        (
            {"symbol": "MCX:GOLDM24DECFUT", "asset_class": "FUTURE", "time_in_force": "IOC"},
            "MCX takes no IOC",
        ),
    ],
)
async def test_unsupported_orders_are_refused_before_any_network_call(
    broker,
    kite_peer,  # noqa: F811
    request_fields,
    needle,
):
    fields = {"symbol": "INFY", "side": "BUY", "quantity": 1, **request_fields}
    with pytest.raises(OrderRejectedError) as caught:
        await broker.place_order(OrderRequest(**fields))
    assert needle in str(caught.value)
    assert kite_peer.count("POST", "/orders") == 0


async def test_capabilities_are_honest(broker):
    caps = broker.capabilities
    assert OrderType.TRAILING_STOP not in caps.order_types
    assert caps.order_types == {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}
    assert caps.time_in_force == {TimeInForce.DAY, TimeInForce.IOC}
    assert caps.asset_classes == {AssetClass.STOCK, AssetClass.FUTURE, AssetClass.OPTION}
    assert not caps.bulk_cancel and caps.session_expiry and not caps.fractional_quantities
    assert not caps.short_selling  # CNC is delivery: no shares, no sale
    assert caps.currencies == {"INR"}


async def test_symbol_forms_and_derivative_products(broker, kite_peer):  # noqa: F811
    await broker.place_order(buy("NSE:SBIN", 1))
    assert (kite_peer.form_posts[-1]["exchange"], kite_peer.form_posts[-1]["tradingsymbol"]) == (
        "NSE",
        "SBIN",
    )
    await broker.place_order(buy("INFY", 1, exchange="BSE"))
    assert kite_peer.form_posts[-1]["exchange"] == "BSE"
    order = await broker.place_order(buy("NIFTY24DECFUT", 75, exchange="NFO", asset_class="FUTURE"))
    form = kite_peer.form_posts[-1]
    assert (form["exchange"], form["product"]) == ("NFO", "NRML")
    assert order.status is OrderStatus.FILLED


# -- partial fills, rejections, errors ---------------------------------------------------------


async def test_partial_fill_then_the_rest(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    kite_peer.plan("partial", quantity=4, price=Decimal("1499"))
    order = await broker.place_order(buy(quantity=10, order_type="LIMIT", limit_price="1500"))
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == 4 and order.remaining_quantity == 6
    first = await next_event(events, lambda e: isinstance(e, Fill))
    assert first.quantity == 4
    kite_peer.fill(order.broker_order_id, 6, Decimal("1501"))
    second = await next_event(events, lambda e: isinstance(e, Fill))
    done = await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    assert second.quantity == 6 and second.fill_id != first.fill_id
    assert done.filled_quantity == 10 and done.avg_fill_price == Decimal("1500.2")


async def test_partial_fill_then_cancel_keeps_the_filled_part(broker, kite_peer):  # noqa: F811
    kite_peer.plan("partial", quantity=3)
    order = await broker.place_order(buy(quantity=8, order_type="LIMIT", limit_price="1450"))
    cancelled = await broker.cancel_order(order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_quantity == 3 and kite_peer.orders[order.broker_order_id].cancelled_quantity == 5


async def test_rms_rejection_comes_back_as_a_rejected_order(broker, kite_peer):  # noqa: F811
    order = await broker.place_order(buy("RELIANCE", 1000))
    assert order.status is OrderStatus.REJECTED
    assert order.reject_code == "INSUFFICIENT_FUNDS"
    assert "Insufficient funds" in order.reject_reason
    kite_peer.plan("reject", message="Order price is outside the circuit limits.")
    order = await broker.place_order(buy(quantity=1))
    assert (order.status, order.reject_code) == (OrderStatus.REJECTED, "BROKER_REJECTED")
    assert "circuit" in order.reject_reason


@pytest.mark.parametrize(
    ("error_type", "http_status", "message", "expected"),
    [
        (
            "MarginException",
            400,
            "Insufficient funds. Required margin is 95417.84 but available margin is 1.2.",
            InsufficientFundsError,
        ),
        ("InputException", 400, "Invalid `tradingsymbol`.", InvalidSymbolError),
        (
            "OrderException",
            400,
            "Your order could not be placed due to a price band violation.",
            OrderRejectedError,
        ),
        (
            "HoldingException",
            400,
            "Insufficient stock holding or there are pending sell orders.",
            OrderRejectedError,
        ),
        ("GeneralException", 429, "Too many requests", OrderRejectedError),
        ("TokenException", 403, "Token is invalid or has expired.", AuthenticationError),
        ("NetworkException", 503, "Unable to reach the OMS.", BrokerConnectionError),
        ("DataException", 502, "Couldn't parse the JSON response from the OMS.", BrokerConnectionError),
        ("GeneralException", 500, "Something went wrong.", BrokerConnectionError),
    ],
)
async def test_place_errors_map_to_our_hierarchy(
    broker,
    kite_peer,  # noqa: F811
    error_type,
    http_status,
    message,
    expected,
):
    kite_peer.plan("error", error_type=error_type, http_status=http_status, message=message)
    with pytest.raises(expected) as caught:
        await broker.place_order(buy(quantity=1))
    assert type(caught.value) is expected
    assert caught.value.definite is issubclass(expected, OrderRejectedError | AuthenticationError)
    assert kite_peer.count("POST", "/orders") == 1  # a write is never retried


async def test_unknown_symbol_and_bad_tick_are_definite_refusals(broker, kite_peer):  # noqa: F811
    with pytest.raises(InvalidSymbolError):
        await broker.place_order(buy("NOSUCHCO", 1))
    with pytest.raises(OrderRejectedError) as caught:
        await broker.place_order(buy(quantity=1, order_type="LIMIT", limit_price="1500.03"))
    assert "tick size" in str(caught.value).lower() and type(caught.value) is OrderRejectedError
    assert caught.value.definite


async def test_lost_answer_is_not_retried_and_resolves_by_client_order_id(broker, kite_peer):  # noqa: F811
    request = buy(quantity=2, order_type="LIMIT", limit_price="1450")
    kite_peer.plan("accept_then_drop")
    with pytest.raises(BrokerConnectionError) as caught:
        await broker.place_order(request)
    assert caught.value.retryable
    assert kite_peer.count("POST", "/orders") == 1 and len(kite_peer.orders) == 1
    found = await broker.get_order_by_client_id(request.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert found.broker_order_id == kite_peer.order_by_tag(request.client_order_id).order_id
    assert await broker.get_order_by_client_id("TCNEVERSENT000000000") is None


async def test_timeout_on_place_is_unknown_and_never_sent_twice(kite_peer, kite_env):  # noqa: F811
    adapter = make_broker(kite_peer, timeout=0.4)
    await adapter.connect()
    try:
        request = buy(quantity=1, order_type="LIMIT", limit_price="1400")
        kite_peer.plan("delay", seconds=1.0)
        with pytest.raises(BrokerTimeoutError):
            await adapter.place_order(request)
        assert kite_peer.count("POST", "/orders") == 1
        await asyncio.sleep(0.7)  # the peer finishes the order after the client gave up
        found = await adapter.get_order_by_client_id(request.client_order_id)
        assert found is not None and found.broker_order_id in kite_peer.orders
    finally:
        await adapter.disconnect()


async def test_long_client_order_ids_fit_kites_tag_and_still_resolve(broker, kite_peer):  # noqa: F811
    request = buy(quantity=1, client_order_id="desk-7_strategy-alpha-0001")
    await broker.place_order(request)
    tag = kite_peer.form_posts[-1]["tag"]
    assert tag == tag_for(request.client_order_id) and len(tag) == 20 and tag.isalnum()
    found = await broker.get_order_by_client_id(request.client_order_id)
    assert found is not None and found.client_order_id == request.client_order_id


async def test_reads_retry_transient_errors_but_not_definite_ones(broker, kite_peer):  # noqa: F811
    kite_peer.fail("GET", "/user/margins", error_type="NetworkException", http_status=503, message="OMS down")
    margin = await broker.get_margin()
    assert margin.available_funds > 0
    assert kite_peer.count("GET", "/user/margins") == 2
    kite_peer.fail(
        "GET", "/user/margins", error_type="InputException", http_status=400, message="Bad segment"
    )
    with pytest.raises(BrokerAPIError) as caught:
        await broker.get_margin()
    assert caught.value.definite
    assert kite_peer.count("GET", "/user/margins") == 3
    kite_peer.fail("GET", "/orders/", kind="html")
    with pytest.raises(OrderNotFoundError):  # the retry after the garbled answer gets Kite's 404
        await broker.get_order("999")
    kite_peer.fail("GET", "/portfolio/positions", kind="drop", times=3)
    with pytest.raises(BrokerConnectionError):
        await broker.get_positions()


# -- cancel and cancel-all ---------------------------------------------------------------------


async def test_cancel_order(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=3, order_type="LIMIT", limit_price="1300"))
    cancelled = await broker.cancel_order(order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert kite_peer.requests.count(("DELETE", f"/orders/regular/{order.broker_order_id}")) == 1
    await next_event(events, is_order(order.broker_order_id, OrderStatus.CANCELLED))
    with pytest.raises(OrderNotFoundError):
        await broker.cancel_order("241299999999999")


async def test_cancelling_an_order_that_already_filled_returns_it_filled(broker, kite_peer):  # noqa: F811
    order = await broker.place_order(buy(quantity=3, order_type="LIMIT", limit_price="1300"))
    kite_peer.fill(order.broker_order_id)  # fills at the exchange before our cancel lands
    result = await broker.cancel_order(order.broker_order_id)
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 3


async def test_cancel_all_cancels_every_working_order_one_by_one(broker, kite_peer):  # noqa: F811
    resting = [
        await broker.place_order(buy(quantity=1, order_type="LIMIT", limit_price=str(1300 + i)))
        for i in range(3)
    ]
    filled = await broker.place_order(buy(quantity=1))
    assert filled.status is OrderStatus.FILLED
    kite_peer.plan("rest")
    # an order placed outside the console (no tag) is working too, and a halt must cancel it
    outside = await broker.place_order(buy("SBIN", 1, order_type="LIMIT", limit_price="700"))
    asked = await broker.cancel_all_orders()
    expected = {o.broker_order_id for o in [*resting, outside]}
    assert set(asked) == expected
    deletes = [path for method, path in kite_peer.requests if method == "DELETE"]
    assert sorted(deletes) == sorted(f"/orders/regular/{oid}" for oid in expected)
    assert await broker.get_open_orders() == []
    assert await broker.cancel_all_orders() == []


async def test_cancel_all_reports_the_orders_it_could_not_cancel(broker, kite_peer):  # noqa: F811
    first = await broker.place_order(buy(quantity=1, order_type="LIMIT", limit_price="1300"))
    second = await broker.place_order(buy(quantity=1, order_type="LIMIT", limit_price="1301"))
    kite_peer.fail(
        "DELETE",
        f"/orders/regular/{second.broker_order_id}",
        error_type="NetworkException",
        http_status=503,
        message="OMS unreachable",
        times=5,
    )
    with pytest.raises(BrokerAPIError) as caught:
        await broker.cancel_all_orders()
    assert second.broker_order_id in str(caught.value) and first.broker_order_id not in str(caught.value)
    assert caught.value.retryable
    assert kite_peer.orders[first.broker_order_id].status == "CANCELLED"


# -- the update stream, disconnects and resync -------------------------------------------------


async def test_disconnect_ends_the_poll_even_when_a_cancel_is_lost(broker):
    """asyncio.wait_for (before 3.12) can lose a cancel when its call finishes in that instant,
    and the poll loop goes on: disconnect must still end it."""

    async def loses_one_cancel() -> None:
        lost = False
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost = True

    broker._poller.cancel()
    broker._poller = poller = asyncio.create_task(loses_one_cancel())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await asyncio.wait_for(broker.disconnect(), 5)
    assert time.monotonic() - started < 3  # ended by asking again, not by the outer time limit
    assert poller.cancelled()


async def test_each_fill_is_streamed_once(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=6, order_type="LIMIT", limit_price="1400"))
    kite_peer.fill(order.broker_order_id, 2)
    await next_event(events, is_order(order.broker_order_id, OrderStatus.PARTIALLY_FILLED))
    kite_peer.fill(order.broker_order_id, 4)
    await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    await asyncio.sleep(0.6)  # a few more polls: nothing new may appear
    seen = [e for e in drain(events) if isinstance(e, Fill)]
    assert seen == []
    fills = await broker.get_fills()
    assert sorted(f.quantity for f in fills) == [2, 4] and len({f.fill_id for f in fills}) == 2
    assert (await broker.get_order(order.broker_order_id)).filled_quantity == 6


async def test_stream_reports_fills_before_the_order_they_complete(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=2, order_type="LIMIT", limit_price="1400"))
    drain(events)
    kite_peer.fill(order.broker_order_id)
    first = await next_event(events, lambda e: True)
    second = await next_event(events, lambda e: True)
    assert isinstance(first, Fill) and first.quantity == 2
    assert is_order(order.broker_order_id, OrderStatus.FILLED)(second)


async def test_reconnect_resyncs_without_losing_or_repeating_fills(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=5, order_type="LIMIT", limit_price="1400"))
    kite_peer.fill(order.broker_order_id, 2)
    first = await next_event(events, lambda e: isinstance(e, Fill))
    await broker.disconnect()
    assert not broker.is_connected()
    kite_peer.fill(order.broker_order_id, 3)  # happens while we are away
    drain(events)
    posts = kite_peer.count("POST", "/orders")
    await broker.connect()
    got = drain(events)
    fills = [e for e in got if isinstance(e, Fill)]
    assert [f.quantity for f in fills] == [3] and fills[0].fill_id != first.fill_id
    assert any(is_order(order.broker_order_id, OrderStatus.FILLED)(e) for e in got)
    await asyncio.sleep(0.5)
    assert not [e for e in drain(events) if isinstance(e, Fill)]
    assert kite_peer.count("POST", "/orders") == posts  # nothing was sent again
    assert (
        await broker.get_order_by_client_id(order.client_order_id)
    ).broker_order_id == order.broker_order_id


async def test_dropped_link_degrades_then_recovers_with_the_missed_fill(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    order = await broker.place_order(buy(quantity=4, order_type="LIMIT", limit_price="1400"))
    await kite_peer.stop_listening()
    for _ in range(60):
        if not broker.is_connected():
            break
        await asyncio.sleep(0.05)
    assert broker.connection_state is ConnectionState.DEGRADED and not broker.is_connected()
    assert broker.last_error and "connection" in broker.last_error.lower()
    with pytest.raises(BrokerConnectionError):
        await broker.place_order(buy(quantity=1))
    kite_peer.fill(order.broker_order_id)
    await kite_peer.start_listening()
    fill = await next_event(events, lambda e: isinstance(e, Fill), wait=5)
    assert fill.quantity == 4
    await next_event(events, is_order(order.broker_order_id, OrderStatus.FILLED))
    for _ in range(40):
        if broker.is_connected():
            break
        await asyncio.sleep(0.05)
    assert broker.connection_state is ConnectionState.CONNECTED
    await asyncio.sleep(0.5)
    assert not [e for e in drain(events) if isinstance(e, Fill)]


async def test_first_connect_does_not_replay_the_days_history(kite_peer, kite_env):  # noqa: F811
    earlier = make_broker(kite_peer)
    await earlier.connect()
    await earlier.place_order(buy(quantity=1))
    await earlier.disconnect()
    fresh = make_broker(kite_peer)
    events = fresh.subscribe()
    await fresh.connect()
    try:
        await asyncio.sleep(0.5)
        assert drain(events) == []
        assert len(await fresh.get_fills()) == 1
    finally:
        await fresh.disconnect()


# -- account -----------------------------------------------------------------------------------


async def test_balance_positions_margin_and_prices(broker, kite_peer):  # noqa: F811
    await broker.place_order(buy(quantity=10))  # 10 INFY at 1500 through CNC
    kite_peer.set_price("NSE:INFY", "1510")
    balance = await broker.get_balance()
    assert balance.currency == "INR" and balance.cash == Decimal(500000)
    assert balance.buying_power == Decimal(485000)
    # cash + TCS holding (5 at 3500) + today's P&L on INFY (10 x 10)
    assert balance.equity == Decimal(500000 + 17500 + 100)
    assert balance.unrealized_pnl == Decimal(100 + 1000)
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert positions["INFY"].quantity == 10 and positions["INFY"].avg_price == Decimal(1500)
    assert positions["INFY"].last_price == Decimal(1510) and positions["INFY"].exchange == "NSE"
    assert positions["TCS"].quantity == 5 and positions["TCS"].avg_price == Decimal(3300)
    assert all(p.currency == "INR" and p.account == "kite" for p in positions.values())
    margin = await broker.get_margin()
    assert margin.available_funds == Decimal(485000) and margin.currency == "INR"
    assert await broker.get_last_price(Instrument.stock("NSE:RELIANCE")) == Decimal(2500)
    assert broker.last_price_nowait(Instrument.stock("RELIANCE")) == Decimal(2500)
    assert broker.last_price_nowait(Instrument.stock("INFY")) == Decimal(1510)
    assert await broker.get_last_price(Instrument.stock("NOSUCHCO")) is None
    assert kite_peer.count("GET", "/quote/ltp") == 2


async def test_selling_held_shares_nets_against_the_holding(broker, kite_peer):  # noqa: F811
    kite_peer.prices["NSE:TCS"] = Decimal(3500)
    order = await broker.place_order(OrderRequest(symbol="TCS", side="SELL", quantity=2))
    assert order.status is OrderStatus.FILLED
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert positions["TCS"].quantity == 3 and positions["TCS"].avg_price == Decimal(3300)


async def test_health_check_measures_latency_and_notices_a_dead_link(broker, kite_peer):  # noqa: F811
    kite_peer.delay = 0.15
    assert await broker.health_check() >= 150
    kite_peer.delay = 0
    kite_peer.down = True  # the server takes connections but never answers them
    with pytest.raises(BrokerConnectionError):
        await broker.health_check()


async def test_orders_in_another_currency_are_refused(broker, kite_peer):  # noqa: F811
    with pytest.raises(OrderRejectedError) as caught:
        await broker.place_order(buy(quantity=1, currency="USD"))
    assert "INR" in str(caught.value) and kite_peer.count("POST", "/orders") == 0


async def test_secrets_never_reach_logs_errors_or_reprs(kite_peer, kite_env, caplog):  # noqa: F811
    adapter = make_broker(kite_peer)
    with caplog.at_level(logging.DEBUG):
        await adapter.connect()
        kite_peer.plan(
            "error", error_type="InputException", http_status=400, message=f"echoed {kite_peer.access_token}"
        )
        with pytest.raises(OrderRejectedError) as caught:
            await adapter.place_order(buy(quantity=1))
        await adapter.disconnect()
    for text in (caplog.text, str(caught.value), repr(adapter), repr(adapter.status())):
        assert kite_peer.access_token not in text and kite_peer.api_key not in text
    assert "***" in str(caught.value)


async def test_the_manager_shows_the_session_and_a_refused_token(kite_peer, kite_env):  # noqa: F811
    from brokers.manager import MultiBrokerManager

    manager = MultiBrokerManager(timeout=3, base_currency="INR")
    manager.add_broker("kite", make_broker(kite_peer), default=True)
    try:
        statuses = await manager.connect_all()
        assert statuses["kite"].state is ConnectionState.CONNECTED
        assert statuses["kite"].session_expires_at is not None
        await manager.refresh()
        assert manager.unavailable_reason("kite") is None
        kite_peer.expire_token()
        await manager.refresh()
        status = manager.status("kite")
        assert status.state is ConnectionState.FAILED
        assert status.session_time_left <= 0
        assert "expired" in manager.unavailable_reason("kite")
    finally:
        await manager.disconnect_all()
