"""Order and fill updates from Kraken's v2 private websocket, through the real ccxt.pro client,
against the loopback venue speaking the ``executions`` channel; polling as the fallback when the
socket fails, said in the link's state and the log."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from peers.ccxt_peer import API_KEY, SECRET, CryptoPeer
from support import until

from brokers.credentials import set_secret
from brokers.errors import ConfigError
from brokers.models import ConnectionState, Fill, Order, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory

D = Decimal


def limit_buy(price: str = "59000") -> OrderRequest:
    return OrderRequest(
        symbol="BTC/USD",
        side="BUY",
        quantity="0.01",
        asset_class="CRYPTO",
        time_in_force="GTC",
        order_type="LIMIT",
        limit_price=price,
    )


@pytest.fixture(name="kraken")
async def kraken_fixture():
    peer = CryptoPeer("kraken")
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


async def connected(peer: CryptoPeer, **extra):
    set_secret("crypto", "api_key", API_KEY)
    set_secret("crypto", "secret_key", SECRET)
    broker = BrokerFactory.create(peer.settings(live=True, **extra))
    await broker.connect()
    return broker


def trade_reads(peer: CryptoPeer) -> int:
    return sum(1 for _, path, _ in peer.calls if path.endswith("/TradesHistory"))


async def test_fills_and_cancels_arrive_on_the_websocket_not_by_polling(kraken, memory_keyring):
    # Polls every 5 minutes: within this test only the socket can deliver.
    broker = await connected(kraken, poll_interval=300)
    try:
        assert broker.capabilities.streaming_updates
        await until(lambda: kraken.ws_subscribes == 1)
        events = broker.subscribe()
        placed = await broker.place_order(limit_buy())
        await until(
            lambda: broker.connection_state is ConnectionState.CONNECTED and broker.last_error is None
        )
        reads_before = trade_reads(kraken)
        trade = kraken.fill(placed.broker_order_id, D("0.004"), D(59000), fee=D("0.61"))
        second = kraken.fill(placed.broker_order_id, D("0.006"), D(58990), fee=D("0.92"))
        fills: list[Fill] = []
        final: Order | None = None
        async with asyncio.timeout(5):
            while final is None:
                event = await events.get()
                if isinstance(event, Fill):
                    fills.append(event)
                elif event.broker_order_id == placed.broker_order_id and event.status is OrderStatus.FILLED:
                    final = event
        assert [(f.fill_id, f.quantity, f.price, f.commission, f.currency) for f in fills] == [
            (f"{placed.broker_order_id}:{trade.id}", D("0.004"), D(59000), D("0.61"), "USD"),
            (f"{placed.broker_order_id}:{second.id}", D("0.006"), D(58990), D("0.92"), "USD"),
        ]
        assert final.filled_quantity == D("0.01")
        assert trade_reads(kraken) == reads_before  # no trade list was read: the socket told us
        # The same trades read later by REST are the same fills, not new ones.
        again = await broker.get_order(placed.broker_order_id)
        assert [f.fill_id for f in again.fills] == [f.fill_id for f in fills]

        working = await broker.place_order(limit_buy("50000"))
        kraken.venue_cancel(working.broker_order_id)
        async with asyncio.timeout(5):
            while True:
                event = await events.get()
                if isinstance(event, Order) and event.broker_order_id == working.broker_order_id:
                    if event.status is OrderStatus.CANCELLED:
                        break
        sent = [
            item["exec_type"]
            for message in kraken.ws_messages
            if message.get("channel") == "executions"
            for item in message["data"]
        ]
        assert {"pending_new", "new", "trade", "filled", "canceled"} <= set(sent)
    finally:
        await broker.disconnect()


async def test_a_socket_that_fails_falls_back_to_polling_and_says_so(kraken, memory_keyring, caplog):
    caplog.set_level(logging.WARNING, logger="brokers.adapters.ccxt")
    kraken.ws_refuse = True
    broker = await connected(kraken, poll_interval=0.05)
    try:
        await until(lambda: broker.connection_state is ConnectionState.DEGRADED)
        assert "order stream down" in (broker.last_error or "")
        assert "polling every 0.05 s" in (broker.last_error or "")
        assert broker.status().state is ConnectionState.DEGRADED
        assert any("order stream down" in r.getMessage() for r in caplog.records)
        # Orders are still followed: by the polls.
        events = broker.subscribe()
        placed = await broker.place_order(limit_buy())
        kraken.fill(placed.broker_order_id, D("0.01"), D(59000), fee=D("1.5"))
        async with asyncio.timeout(5):
            while True:
                event = await events.get()
                if isinstance(event, Fill):
                    assert (event.quantity, event.commission) == (D("0.01"), D("1.5"))
                    break
        assert kraken.ws_subscribes == 0
        # The venue's socket comes back: the stream is taken up again and the link is whole.
        kraken.ws_refuse = False
        await until(lambda: kraken.ws_subscribes == 1, within=10)
        await until(lambda: broker.connection_state is ConnectionState.CONNECTED, within=10)
        assert broker.last_error is None
        # Dropped mid-way, it is said again, then taken up again.
        await kraken.ws_drop()
        await until(lambda: broker.connection_state is ConnectionState.DEGRADED)
        await until(lambda: kraken.ws_subscribes == 2, within=10)
        await until(lambda: broker.connection_state is ConnectionState.CONNECTED, within=10)
    finally:
        await broker.disconnect()


async def test_the_stream_can_be_turned_off_and_only_where_the_venue_has_one(kraken, memory_keyring):
    broker = await connected(kraken, order_stream=False)
    try:
        assert not broker.capabilities.streaming_updates
        await broker.place_order(limit_buy())
        await until(lambda: any(path.endswith("/OpenOrders") for _, path, _ in kraken.calls[-3:]))
        assert kraken.ws_subscribes == 0
        assert not any(path.endswith("/GetWebSocketsToken") for _, path, _ in kraken.calls)
    finally:
        await broker.disconnect()
    with pytest.raises(ConfigError, match="'order_stream' is not available at Binance.US"):
        BrokerFactory.create(
            {"type": "ccxt", "name": "c", "exchange": "binanceus", "live": True, "order_stream": True}
        )
    with pytest.raises(ConfigError, match="'order_stream' must be true or false"):
        BrokerFactory.create(
            {"type": "ccxt", "name": "c", "exchange": "kraken", "live": True, "order_stream": 1}
        )
