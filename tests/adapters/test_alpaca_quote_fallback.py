"""An Alpaca data stream that Alpaca refuses after the board chose it (its login refused, its
subscription refused with 409, a reconnect refused after a cut): the instruments it streamed
are asked for as SNAPSHOT quotes, the reason is said once, and streaming resumes when Alpaca
accepts again. Through the real alpaca-py streams against the loopback data peer."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from peers.alpaca_data_peer import STOCKS_IEX, AlpacaDataPeer, fresh_snapshot, quote
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    API_KEY,
    SECRET_KEY,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from support import until

from brokers.adapters.alpaca import AlpacaBroker
from brokers.errors import ConfigError
from brokers.instruments import Instrument
from brokers.manager import MultiBrokerManager
from brokers.quotes import QuoteState, StreamOutage
from brokers.registry import BrokerFactory

D = Decimal
AAPL, AMD = Instrument.stock("AAPL"), Instrument.stock("AMD")
ACCOUNT = "alpaca-test"


@pytest.fixture(name="data")
async def data_peer_fixture():
    peer = await AlpacaDataPeer().start()
    peer.snapshots["AAPL"] = fresh_snapshot(190.10, 190.20, 190.15)
    peer.snapshots["AMD"] = fresh_snapshot(87.60, 87.70, 87.65)
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(name="board")
async def board_fixture(peer, keys, data):
    manager = MultiBrokerManager(timeout=2)
    broker = BrokerFactory.create(
        peer.settings(data_url=data.url, data_stream_url=data.stream_url, quote_stream_retry_seconds=0.2)
    )
    assert isinstance(broker, AlpacaBroker)
    manager.add_broker(ACCOUNT, broker, default=True)
    manager.quotes.set_timing(stale_after=15, snapshot_interval=0.5)
    await manager.start()
    outages: list[StreamOutage] = []
    manager.quotes.add_outage_listener(lambda account, outage: outages.append(outage))
    manager.outages = outages  # type: ignore[attr-defined]
    try:
        await manager.connect_all()
        yield manager
    finally:
        await manager.stop()
        await manager.disconnect_all()


def state_of(manager: MultiBrokerManager, instrument: Instrument) -> QuoteState | None:
    found = manager.quotes.quote(instrument)
    return None if found is None else found.state


async def resumes_streaming(manager: MultiBrokerManager, data: AlpacaDataPeer) -> None:
    """Alpaca accepts again: the stream comes back by itself and its quotes are LIVE."""
    async with asyncio.timeout(10):
        await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL", "AMD"})
    await until(lambda: manager.quotes.outage(ACCOUNT) is None, within=5)
    assert manager.outages[-1] == StreamOutage(frozenset())  # type: ignore[attr-defined]
    assert not manager.quotes.snapshotted(ACCOUNT)
    await data.send(STOCKS_IEX, quote("AAPL", 191.00, 191.05))
    await until(lambda: manager.quotes.quote(AAPL).bid == D("191.0"), within=5)
    assert state_of(manager, AAPL) is QuoteState.LIVE


async def test_a_refused_login_falls_back_to_snapshots_says_why_once_and_resumes(board, data, caplog):
    caplog.set_level(logging.DEBUG)
    data.refuse_auth = True
    board.quotes.want("watchlist", [AAPL, AMD])

    await until(lambda: board.quotes.outage(ACCOUNT) is not None, within=10)
    outage = board.quotes.outage(ACCOUNT)
    assert outage.instruments == {AAPL, AMD}
    assert "refused the login: auth failed" in outage.reason
    # Asked for as snapshots, marked as such, exactly as past a limit.
    assert board.quotes.snapshotted(ACCOUNT) == {AAPL, AMD}
    await until(lambda: state_of(board, AAPL) is QuoteState.SNAPSHOT, within=5)
    assert board.quotes.quote(AAPL).bid == D("190.1")
    assert state_of(board, AMD) is QuoteState.SNAPSHOT

    # The stream is tried again, backing off, and the reason is said once, not per try.
    await until(lambda: data.logins[STOCKS_IEX] >= 3, within=10)
    assert len([o for o in board.outages if o.instruments]) == 1
    said = [r for r in caplog.records if "quotes not streaming" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "auth failed" in said[0].getMessage()
    assert SECRET_KEY not in caplog.text and SECRET_KEY not in outage.reason

    data.refuse_auth = False
    await resumes_streaming(board, data)


async def test_a_subscription_refused_with_409_falls_back_to_snapshots_and_resumes(board, data):
    data.refuse_subscribe = (409, "insufficient subscription")
    board.quotes.want("watchlist", [AAPL, AMD])

    await until(lambda: board.quotes.outage(ACCOUNT) is not None, within=10)
    outage = board.quotes.outage(ACCOUNT)
    assert "insufficient subscription (409)" in outage.reason
    assert {"T": "error", "code": 409, "msg": "insufficient subscription"} in data.errors_sent
    await until(lambda: state_of(board, AMD) is QuoteState.SNAPSHOT, within=5)
    assert board.quotes.quote(AMD).last == D("87.65")
    # The refused connection is closed, not left open holding the plan's one connection.
    async with asyncio.timeout(5):
        await data.wait_for(lambda: data.connections[STOCKS_IEX] == 0)

    data.refuse_subscribe = None
    await resumes_streaming(board, data)


async def test_a_stream_refused_on_reconnecting_after_a_cut_falls_back_and_resumes(board, data):
    board.quotes.want("watchlist", [AAPL, AMD])
    async with asyncio.timeout(10):
        await data.wait_for(lambda: data.subscriptions(STOCKS_IEX) == {"AAPL", "AMD"})
    await data.send(STOCKS_IEX, quote("AMD", 88.00, 88.10))
    await until(lambda: state_of(board, AMD) is QuoteState.LIVE and board.quotes.quote(AMD).bid == D(88))
    assert board.quotes.outage(ACCOUNT) is None

    # The connection is cut and Alpaca turns the reconnect's login away (the keys revoked).
    data.refuse_auth = True
    await data.drop_streams()
    await until(lambda: board.quotes.outage(ACCOUNT) is not None, within=10)
    assert "refused the login: auth failed" in board.quotes.outage(ACCOUNT).reason
    await until(lambda: state_of(board, AMD) is QuoteState.SNAPSHOT, within=5)

    data.refuse_auth = False
    await resumes_streaming(board, data)


async def test_an_instrument_added_while_the_stream_is_refused_is_a_snapshot_too(board, data):
    data.refuse_auth = True
    board.quotes.want("watchlist", [AAPL])
    await until(lambda: board.quotes.outage(ACCOUNT) is not None, within=10)
    board.quotes.want("ticket", [AMD])
    await until(lambda: board.quotes.outage(ACCOUNT).instruments == {AAPL, AMD}, within=5)
    await until(lambda: state_of(board, AMD) is QuoteState.SNAPSHOT, within=5)
    assert API_KEY not in board.quotes.outage(ACCOUNT).reason


@pytest.mark.parametrize("value", [0, -1, "5", 301, float("nan"), True])
def test_a_bad_retry_setting_names_the_key(peer, value):
    with pytest.raises(ConfigError) as caught:
        BrokerFactory.create(peer.settings(quote_stream_retry_seconds=value))
    assert "quote_stream_retry_seconds" in str(caught.value)
