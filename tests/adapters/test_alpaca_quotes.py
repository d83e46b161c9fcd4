"""Alpaca's market data through the real alpaca-py StockDataStream, CryptoDataStream and
historical data clients, against the loopback data peer speaking Alpaca's protocol."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import pytest
from peers.alpaca_data_peer import (
    CRYPTO,
    SNAPSHOT,
    STOCK_QUOTE,
    STOCK_TRADE,
    STOCKS_IEX,
    STOCKS_SIP,
    AlpacaDataPeer,
    quote,
    trade,
)
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    SECRET_KEY,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from support import until

from brokers.adapters.alpaca import AlpacaBroker
from brokers.errors import BrokerConnectionError, ConfigError
from brokers.instruments import Instrument
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass
from brokers.quotes import Quote, QuoteState
from brokers.registry import BrokerFactory

D = Decimal
AAPL, MSFT, AMD = Instrument.stock("AAPL"), Instrument.stock("MSFT"), Instrument.stock("AMD")
BTC = Instrument("BTC/USD", AssetClass.CRYPTO)


@pytest.fixture(name="data")
async def data_peer_fixture():
    peer = await AlpacaDataPeer().start()
    try:
        yield peer
    finally:
        await peer.stop()


async def connected(peer, data, **extra) -> tuple[AlpacaBroker, list[Quote]]:
    broker = BrokerFactory.create(peer.settings(data_url=data.url, data_stream_url=data.stream_url, **extra))
    assert isinstance(broker, AlpacaBroker)
    received: list[Quote] = []
    broker.set_quote_sink(received.append)
    await broker.connect()
    return broker, received


def latest(received: list[Quote], instrument: Instrument) -> Quote | None:
    return next((q for q in reversed(received) if q.instrument == instrument), None)


async def test_stream_quotes_subscribes_through_alpaca_py_and_merges_quotes_and_trades(peer, keys, data):
    broker, received = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({AAPL, AMD}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL", "AMD"})
        assert data.subscriptions(STOCKS_IEX, "trades") == {"AAPL", "AMD"}

        # The first quotes come from the snapshot endpoint, with the previous day's close.
        first = latest(received, AAPL)
        assert first is not None
        assert (first.bid, first.ask, first.last) == (D("125.6"), D("125.68"), D("125.91"))
        assert first.previous_close == D("126.85")
        assert first.state is QuoteState.LIVE
        snapshot_calls = [q for path, q in data.requests if path == "/v2/stocks/snapshots"]
        assert snapshot_calls and snapshot_calls[0]["feed"] == "iex"
        assert set(snapshot_calls[0]["symbols"].split(",")) == {"AAPL", "AMD"}

        # Alpaca's documented quote message, and a trade, in one msgpack frame.
        received.clear()
        await data.send(STOCKS_IEX, dict(STOCK_QUOTE), dict(STOCK_TRADE))
        await until(lambda: latest(received, AMD) is not None and latest(received, AAPL) is not None)
        amd = latest(received, AMD)
        assert (amd.bid, amd.ask, amd.bid_size, amd.ask_size) == (D("87.66"), D("87.68"), D(1), D(4))
        assert amd.time.isoformat() == "2021-02-22T15:51:45.335689+00:00"
        assert amd.source == "alpaca-test"
        aapl = latest(received, AAPL)
        assert aapl.last == D("126.55") and aapl.bid is None  # the board keeps the bid it leaves out
        assert aapl.previous_close == D("126.85")
    finally:
        await broker.disconnect()


async def test_changing_the_set_subscribes_and_unsubscribes_on_the_running_stream(peer, keys, data):
    broker, received = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({AAPL, AMD}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL", "AMD"})
        await broker.stream_quotes(frozenset({AMD, MSFT}))
        # Quotes and trades are subscribed in messages of their own: wait for both.
        async with asyncio.timeout(5):
            await data.wait_for(
                lambda: (
                    data.subscriptions(STOCKS_IEX) == {"AMD", "MSFT"}
                    and data.subscriptions(STOCKS_IEX, "trades") == {"AMD", "MSFT"}
                )
            )
        assert data.connections[STOCKS_IEX] == 1  # the same connection, never a second one

        received.clear()
        await data.send(STOCKS_IEX, quote("MSFT", 410.1, 410.2))
        await until(lambda: latest(received, MSFT) is not None)
        assert latest(received, MSFT).bid == D("410.1")

        await broker.stream_quotes(frozenset())
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.connections[STOCKS_IEX] == 0)
    finally:
        await broker.disconnect()


async def test_crypto_pairs_stream_on_the_crypto_data_stream(peer, keys, data):
    broker, received = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({BTC, AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(
                lambda: (
                    data.subscriptions(CRYPTO) == {"BTC/USD"} and data.subscriptions(STOCKS_IEX) == {"AAPL"}
                )
            )
        assert any(path == "/v1beta3/crypto/us/snapshots" for path, _ in data.requests)
        received.clear()
        await data.send(
            CRYPTO, quote("BTC/USD", 71623.7, 71666.5, 0.80796, 0.80703), trade("BTC/USD", 71645.1)
        )
        await until(lambda: len([q for q in received if q.instrument == BTC]) == 2)
        bid_ask, last = [q for q in received if q.instrument == BTC]
        assert (bid_ask.bid, bid_ask.ask, bid_ask.bid_size) == (D("71623.7"), D("71666.5"), D("0.80796"))
        assert last.last == D("71645.1")
    finally:
        await broker.disconnect()


async def test_the_sip_feed_when_configured(peer, keys, data):
    broker, _ = await connected(peer, data, data_feed="sip")
    try:
        await broker.stream_quotes(frozenset({AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_SIP) == {"AAPL"})
        assert data.subscriptions(STOCKS_IEX) == set()
        assert any(q.get("feed") == "sip" for path, q in data.requests if path == "/v2/stocks/snapshots")
    finally:
        await broker.disconnect()


async def test_snapshots_come_from_the_latest_quote_endpoint(peer, keys, data):
    broker, _ = await connected(peer, data)
    try:
        first = await broker.get_quote(AAPL)  # the previous close is not known yet: the snapshot
        assert first is not None and first.state is QuoteState.SNAPSHOT
        assert first.previous_close == D("126.85")
        again = await broker.get_quote(AAPL)
        assert again is not None and again.state is QuoteState.SNAPSHOT
        assert (again.bid, again.ask, again.bid_size, again.ask_size) == (
            D("125.6"),
            D("125.68"),
            D(4),
            D(12),
        )
        assert again.previous_close == D("126.85")
        assert again.time.isoformat() == "2021-05-11T22:05:02.307304+00:00"
        latest_calls = [q for path, q in data.requests if path == "/v2/stocks/quotes/latest"]
        assert latest_calls == [{"symbols": "AAPL", "feed": "iex"}]
        crypto = await broker.get_quote(BTC)
        crypto = await broker.get_quote(BTC)
        assert crypto is not None and crypto.bid == D("125.6")
        assert any(path == "/v1beta3/crypto/us/latest/quotes" for path, _ in data.requests)
    finally:
        await broker.disconnect()


async def test_the_free_plan_limit_is_the_quote_limit_and_the_board_polls_the_rest(peer, keys, data):
    manager = MultiBrokerManager(timeout=2)
    broker = BrokerFactory.create(
        peer.settings(data_url=data.url, data_stream_url=data.stream_url, quote_symbol_limit=2)
    )
    assert broker.quote_limits.streamed == 2
    assert BrokerFactory.create(peer.settings()).quote_limits.streamed == 30  # the free plan
    manager.add_broker("alpaca-test", broker, default=True)
    await manager.start()
    try:
        await manager.connect_all()
        manager.quotes.want("watchlist", [AAPL, AMD, MSFT])
        await until(lambda: len(manager.quotes.streamed("alpaca-test")) == 2, within=10)
        async with asyncio.timeout(5):
            await data.wait_for(lambda: len(data.subscriptions(STOCKS_IEX)) == 2)
        (polled,) = manager.quotes.snapshotted("alpaca-test")
        await until(lambda: manager.quotes.quote(polled) is not None, within=10)
        # Alpaca's snapshot of 2021 is long past: shown STALE, never as live.
        assert manager.quotes.quote(polled).state is QuoteState.STALE
        assert not data.errors_sent  # the peer's symbol limit was never hit
    finally:
        await manager.stop()
        await manager.disconnect_all()


async def test_a_stream_reconnects_and_subscribes_again_after_a_cut(peer, keys, data):
    broker, received = await connected(peer, data, reconnect_delay=0.05)
    try:
        await broker.stream_quotes(frozenset({AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL"})
        await data.drop_streams()
        async with asyncio.timeout(10):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL"})
        received.clear()
        await data.send(STOCKS_IEX, trade("AAPL", 191.5))
        await until(lambda: latest(received, AAPL) is not None)
    finally:
        await broker.disconnect()


async def test_disconnect_stops_the_stream_threads_and_refuses_quotes(peer, keys, data):
    broker, _ = await connected(peer, data)
    await broker.stream_quotes(frozenset({AAPL, BTC}))
    async with asyncio.timeout(5):
        await data.wait_for(lambda: data.connections[STOCKS_IEX] == 1 and data.connections[CRYPTO] == 1)
    await broker.disconnect()
    async with asyncio.timeout(5):
        await data.wait_for(lambda: data.connections[STOCKS_IEX] == 0 and data.connections[CRYPTO] == 0)
    await until(
        lambda: (
            not [t for t in threading.enumerate() if t.name.startswith(("alpaca-stocks-", "alpaca-crypto-"))]
        ),
        within=10,
    )
    with pytest.raises(BrokerConnectionError):
        await broker.stream_quotes(frozenset({AAPL}))
    with pytest.raises(BrokerConnectionError):
        await broker.get_quote(AAPL)


async def test_the_event_loop_is_never_blocked_while_quotes_stream(peer, keys, data):
    broker, received = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL"})
        received.clear()
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def ticker() -> None:
            last = loop.time()
            while True:
                await asyncio.sleep(0.001)
                now = loop.time()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        for _ in range(20):
            await data.send(STOCKS_IEX, *(trade("AAPL", 190 + i / 100) for i in range(50)))
        await until(lambda: len(received) >= 1000, within=10)
        task.cancel()
        assert received[-1].last == D("190.49")
        assert max(gaps) < 0.25
        # The quotes were made on the stream's thread and delivered on ours.
        assert all(q.instrument == AAPL for q in received)
    finally:
        await broker.disconnect()


async def test_keys_never_reach_the_logs_of_the_data_stream(peer, keys, data, caplog):
    caplog.set_level(logging.DEBUG)
    broker, _ = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL"})
    finally:
        await broker.disconnect()
    assert SECRET_KEY not in caplog.text


async def test_a_wrong_key_leaves_the_board_polling_and_nothing_crashes(peer, keys, data):
    data.refuse_auth = True
    broker, received = await connected(peer, data)
    try:
        await broker.stream_quotes(frozenset({AAPL}))
        async with asyncio.timeout(5):
            await data.wait_for(lambda: any(e["code"] == 402 for e in data.errors_sent))
        assert broker.is_connected()
    finally:
        await broker.disconnect()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data_feed", "opra"),
        ("quote_symbol_limit", 0),
        ("quote_symbol_limit", "30"),
        ("data_url", "ftp://data"),
        ("data_stream_url", "http://stream"),
    ],
)
def test_bad_data_settings_name_the_key(peer, key, value):
    with pytest.raises(ConfigError) as caught:
        BrokerFactory.create(peer.settings(**{key: value}))
    assert key in str(caught.value)


def test_what_the_account_quotes(peer):
    broker = BrokerFactory.create(peer.settings(crypto=False))
    assert broker.trades(AAPL)
    assert not broker.trades(BTC)
    assert not broker.trades(Instrument.stock("INFY", currency="INR"))
    assert BrokerFactory.create(peer.settings()).trades(BTC)
    assert SNAPSHOT["prevDailyBar"]["c"] == 126.85  # the payload the tests above read
