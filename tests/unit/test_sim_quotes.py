"""The paper broker's quotes: streamed on every price move for the instruments asked for, a bid
and an ask around the last, sizes, the previous close, and snapshots."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import until

from brokers.errors import BrokerConnectionError
from brokers.instruments import Instrument
from brokers.quotes import Quote, QuoteState
from brokers.sim import SimBroker

D = Decimal
AAPL, MSFT = Instrument.stock("AAPL"), Instrument.stock("MSFT")


async def streaming(*instruments: Instrument, **kwargs: object) -> tuple[SimBroker, list[Quote]]:
    broker = SimBroker("paper", prices={"AAPL": 200, "MSFT": 400, "PENNY": "0.5"}, seed=3, **kwargs)
    received: list[Quote] = []
    broker.set_quote_sink(received.append)
    await broker.connect()
    await broker.stream_quotes(frozenset(instruments))
    return broker, received


async def test_a_new_subscription_starts_with_the_current_quote():
    broker, received = await streaming(AAPL)
    assert [quote.instrument for quote in received] == [AAPL]
    quote = received[0]
    assert quote.source == "paper"
    assert quote.state is QuoteState.LIVE
    assert quote.last == D(200)
    assert quote.bid == D("199.99") and quote.ask == D("200.01")
    assert quote.bid_size and quote.bid_size > 0 and quote.bid_size % 100 == 0
    assert quote.ask_size and quote.ask_size > 0
    assert quote.previous_close == D(200)


async def test_every_step_quotes_exactly_the_streamed_instruments():
    broker, received = await streaming(AAPL)
    received.clear()
    moved = broker.step()
    assert [quote.instrument for quote in received] == [AAPL]
    assert received[0].last == moved["AAPL"]
    assert received[0].bid < received[0].last < received[0].ask
    assert received[0].previous_close == D(200)
    assert received[0].change == moved["AAPL"] - D(200)

    await broker.stream_quotes(frozenset({MSFT}))
    received.clear()
    broker.step()
    assert [quote.instrument for quote in received] == [MSFT]

    await broker.stream_quotes(frozenset())
    received.clear()
    broker.step()
    broker.set_price("AAPL", 210)
    assert received == []


async def test_set_price_quotes_at_once_and_the_day_close_becomes_the_previous_close():
    broker, received = await streaming(AAPL)
    broker.set_price("AAPL", 205)
    assert received[-1].last == D(205)
    broker.end_of_day()
    broker.set_price("AAPL", 206)
    assert received[-1].previous_close == D(205)


async def test_quoting_never_changes_the_seeded_price_path():
    plain = SimBroker("paper", prices={"AAPL": 200, "MSFT": 400, "PENNY": "0.5"}, seed=3)
    quoted, _ = await streaming(AAPL, MSFT)
    assert [plain.step() for _ in range(20)] == [quoted.step() for _ in range(20)]


async def test_no_quotes_while_disconnected():
    broker, received = await streaming(AAPL)
    await broker.disconnect()
    received.clear()
    broker.step()
    assert received == []


async def test_limits_trading_and_snapshots():
    broker, _ = await streaming()
    assert broker.quote_limits.streamed is None
    assert broker.trades(AAPL)
    assert not broker.trades(Instrument.stock("ZZZZ"))
    assert not broker.trades(Instrument.stock("AAPL", currency="INR"))
    snapshot = await broker.get_quote(MSFT)
    assert snapshot is not None
    assert snapshot.state is QuoteState.SNAPSHOT and snapshot.last == D(400)
    assert await broker.get_quote(Instrument.stock("ZZZZ")) is None
    await broker.disconnect()
    with pytest.raises(BrokerConnectionError):
        await broker.get_quote(MSFT)


async def test_a_penny_stock_never_quotes_a_bid_of_zero_or_less():
    broker, received = await streaming(Instrument.stock("PENNY"), tick_size="0.5")
    assert received[0].bid is None
    assert received[0].ask == D("1.0")


async def test_the_running_feed_moves_quotes():
    broker, received = await streaming(AAPL, tick_interval=0.01)
    try:
        await until(lambda: len(received) >= 3)
        assert all(quote.instrument == AAPL for quote in received)
    finally:
        await broker.disconnect()
