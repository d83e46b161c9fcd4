"""The ccxt adapter at Coinbase Advanced Trade, with the real ccxt client against the loopback
venue: markets loaded from the Advanced Trade endpoints, every private request signed with a CDP
key (ES256 JWT) and checked as Coinbase checks it, an order placed, filled with its fee and
cancelled."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from peers.coinbase_peer import KEY_NAME, SECRET, CoinbasePeer
from support import until

from brokers.credentials import set_secret
from brokers.errors import AuthenticationError, InsufficientFundsError, OrderRejectedError
from brokers.models import ConnectionState, Fill, Order, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory

D = Decimal


def order(**fields) -> OrderRequest:
    values = {
        "symbol": "BTC/USD",
        "side": "BUY",
        "quantity": "0.01",
        "asset_class": "CRYPTO",
        "time_in_force": "GTC",
        "order_type": "LIMIT",
        "limit_price": "59000",
    }
    values.update(fields)
    return OrderRequest(**values)


@pytest.fixture(name="peer")
async def peer_fixture():
    peer = CoinbasePeer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(name="coinbase")
async def coinbase_fixture(peer, memory_keyring):
    set_secret("coin", "api_key", KEY_NAME)
    set_secret("coin", "secret_key", SECRET)
    broker = BrokerFactory.create(peer.settings())
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.disconnect()


async def test_markets_load_and_the_account_reads(coinbase, peer):
    paths = {path for _, path, _, _ in peer.calls}
    assert {"/api/v3/brokerage/market/products", "/api/v3/brokerage/accounts"} <= paths
    assert peer.refused == 0  # every private request carried a JWT Coinbase would take
    balance = await coinbase.get_balance()
    assert (balance.currency, balance.cash, balance.buying_power) == ("USD", D(20000), D(20000))
    assert balance.equity == D(20000) + D("0.25") * 60000
    positions = {p.symbol: p for p in await coinbase.get_positions()}
    assert set(positions) == {"BTC/USD"}
    assert (positions["BTC/USD"].quantity, positions["BTC/USD"].last_price) == (D("0.25"), D(60000))
    assert coinbase.connection_state is ConnectionState.CONNECTED


async def test_an_order_is_placed_filled_with_its_fee_and_another_cancelled(coinbase, peer):
    events = coinbase.subscribe()
    placed = await coinbase.place_order(order())
    at_venue = peer.orders[placed.broker_order_id]
    # Our client id reaches Coinbase (ccxt would send one of its own otherwise).
    assert at_venue.client_id == placed.client_order_id
    assert at_venue.configuration == {
        "limit_limit_gtc": {"base_size": "0.01", "limit_price": "59000", "post_only": False}
    }
    assert (await coinbase.get_balance()).buying_power == D(20000) - D("0.01") * 59000
    trade_id = peer.fill(placed.broker_order_id, D("0.01"), D(59000), fee=D("3.54"))
    fill: Fill | None = None
    final: Order | None = None
    async with asyncio.timeout(5):
        while fill is None or final is None:
            event = await events.get()
            if isinstance(event, Fill):
                fill = event
            elif event.broker_order_id == placed.broker_order_id and event.status is OrderStatus.FILLED:
                final = event
    assert (fill.fill_id, fill.quantity, fill.price, fill.commission, fill.currency) == (
        f"{placed.broker_order_id}:{trade_id}",
        D("0.01"),
        D(59000),
        D("3.54"),
        "USD",
    )
    assert final.filled_quantity == D("0.01")

    working = await coinbase.place_order(order(limit_price="50000"))
    found = await coinbase.get_order_by_client_id(working.client_order_id)
    assert found is not None and found.broker_order_id == working.broker_order_id
    cancelled = await coinbase.cancel_order(working.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert peer.orders[working.broker_order_id].status == "CANCELLED"
    assert await coinbase.get_open_orders() == []
    assert peer.refused == 0


async def test_stop_limit_orders_and_what_coinbase_refuses(coinbase, peer):
    placed = await coinbase.place_order(
        order(side="SELL", order_type="STOP_LIMIT", stop_price="55000", limit_price="54900")
    )
    assert peer.orders[placed.broker_order_id].configuration == {
        "stop_limit_stop_limit_gtc": {
            "base_size": "0.01",
            "limit_price": "54900",
            "stop_price": "55000",
            "stop_direction": "STOP_DIRECTION_STOP_UP",
        }
    }
    before = len(peer.calls)
    with pytest.raises(OrderRejectedError, match="sizes a market buy in the money to spend"):
        await coinbase.place_order(order(order_type="MARKET", limit_price=None))
    with pytest.raises(OrderRejectedError, match="steps of 0.01"):
        await coinbase.place_order(order(limit_price="59000.001"))
    assert not [c for c in peer.calls[before:] if c[0] == "POST"]
    with pytest.raises(InsufficientFundsError):
        await coinbase.place_order(order(quantity="1"))


async def test_a_key_coinbase_would_not_take_is_refused(peer, memory_keyring):
    set_secret("coin", "api_key", KEY_NAME.replace("peer-0001", "peer-9999"))
    set_secret("coin", "secret_key", SECRET)
    broker = BrokerFactory.create(peer.settings())
    with pytest.raises(AuthenticationError) as refused:
        await broker.connect()
    assert peer.refused >= 1
    assert "BEGIN" not in str(refused.value) and "BEGIN" not in (broker.last_error or "")
    await until(lambda: broker.connection_state is ConnectionState.FAILED)


async def test_order_updates_arrive_on_the_user_channel_and_bring_the_fills(peer, memory_keyring):
    set_secret("coin", "api_key", KEY_NAME)
    set_secret("coin", "secret_key", SECRET)
    # Polls every 5 minutes: within this test only the websocket can say that anything changed.
    broker = BrokerFactory.create(peer.settings(poll_interval=300))
    await broker.connect()
    try:
        assert broker.capabilities.streaming_updates
        await until(lambda: peer.ws_subscribes == 1)
        await until(
            lambda: broker.connection_state is ConnectionState.CONNECTED and broker.last_error is None
        )
        events = broker.subscribe()
        placed = await broker.place_order(order())
        working = await broker.place_order(order(limit_price="50000"))
        trade_id = peer.fill(placed.broker_order_id, D("0.01"), D(59000), fee=D("3.54"))
        peer.venue_cancel(working.broker_order_id)
        fill: Fill | None = None
        done: set[str] = set()
        async with asyncio.timeout(5):
            while fill is None or len(done) < 2:
                event = await events.get()
                if isinstance(event, Fill):
                    fill = event
                elif event.status in (OrderStatus.FILLED, OrderStatus.CANCELLED):
                    done.add(f"{event.broker_order_id}:{event.status.value}")
        assert (fill.fill_id, fill.commission) == (f"{placed.broker_order_id}:{trade_id}", D("3.54"))
        assert done == {f"{placed.broker_order_id}:FILLED", f"{working.broker_order_id}:CANCELLED"}
        sent = [
            o
            for m in peer.ws_messages
            if m.get("channel") == "user"
            for e in m["events"]
            for o in e["orders"]
        ]
        assert any(
            o["order_id"] == placed.broker_order_id and o["cumulative_quantity"] == "0.01" for o in sent
        )
    finally:
        await broker.disconnect()


async def test_without_the_websocket_coinbase_orders_are_polled_and_it_says_so(peer, memory_keyring):
    set_secret("coin", "api_key", KEY_NAME)
    set_secret("coin", "secret_key", SECRET)
    peer.ws_refuse = True
    broker = BrokerFactory.create(peer.settings())
    await broker.connect()
    try:
        await until(lambda: broker.connection_state is ConnectionState.DEGRADED)
        assert "order stream down" in (broker.last_error or "")
        events = broker.subscribe()
        placed = await broker.place_order(order())
        peer.fill(placed.broker_order_id, D("0.01"), D(59000), fee=D("3.54"))
        async with asyncio.timeout(5):
            while not isinstance(event := await events.get(), Fill):
                pass
        assert event.broker_order_id == placed.broker_order_id
    finally:
        await broker.disconnect()
