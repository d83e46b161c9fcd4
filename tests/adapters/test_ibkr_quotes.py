"""Quotes from TWS through the real client library: market data lines opened and cancelled,
ticks turned into Quotes, delayed data where the account has no subscription, snapshots."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from peers.tws_market_data import CANCEL_MKT_DATA, REQ_CONTRACT_DATA, REQ_MARKET_DATA_TYPE, REQ_MKT_DATA
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    ibkr_fixture,
    tws_peer_fixture,
)
from support import until

from brokers.adapters.ibkr import IBKRBroker
from brokers.adapters.ibkr.quotes import price, size
from brokers.errors import ConfigError
from brokers.instruments import Instrument
from brokers.models import AssetClass
from brokers.quotes import Quote, QuoteLimits, QuoteState

AAPL = Instrument.stock("AAPL")
MSFT = Instrument.stock("MSFT")


def sink(broker: IBKRBroker) -> list[Quote]:
    quotes: list[Quote] = []
    broker.set_quote_sink(quotes.append)
    return quotes


def latest(quotes: list[Quote], instrument: Instrument) -> Quote | None:
    return next((q for q in reversed(quotes) if q.instrument == instrument), None)


def whole(quotes: list[Quote], instrument: Instrument) -> bool:
    """A line's first ticks have all arrived (the previous close comes after bid, ask and last)."""
    quote = latest(quotes, instrument)
    return quote is not None and quote.previous_close is not None


def open_lines(tws_peer) -> dict[str, int]:
    return {line.instrument.symbol: line.req_id for line in tws_peer.market_data.lines}


async def test_streams_exactly_the_instruments_asked_for_and_cancels_the_rest(ibkr, tws_peer):
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({AAPL, MSFT}))
    await until(lambda: set(open_lines(tws_peer)) == {"AAPL", "MSFT"})
    await until(lambda: whole(quotes, AAPL) and whole(quotes, MSFT))

    first = latest(quotes, AAPL)
    assert first is not None
    assert (first.bid, first.ask, first.last, first.previous_close) == (
        Decimal("149.99"),
        Decimal("150.01"),
        Decimal("150"),
        Decimal("147"),
    )
    assert (first.bid_size, first.ask_size) == (Decimal(100), Decimal(200))
    assert all(isinstance(v, Decimal) for v in (first.bid_size, first.ask_size))
    assert first.state is QuoteState.LIVE and first.source == "ib-paper"

    msft_line = open_lines(tws_peer)["MSFT"]
    await ibkr.stream_quotes(frozenset({AAPL}))
    await until(lambda: [int(f[2]) for f in tws_peer.requests(CANCEL_MKT_DATA)] == [msft_line])
    assert set(open_lines(tws_peer)) == {"AAPL"}
    # Asking again for what is streamed opens nothing new.
    requested = len(tws_peer.requests(REQ_MKT_DATA))
    await ibkr.stream_quotes(frozenset({AAPL}))
    assert len(tws_peer.requests(REQ_MKT_DATA)) == requested

    await ibkr.stream_quotes(frozenset())
    await until(lambda: not tws_peer.market_data.lines)


async def test_ticks_become_quotes_with_the_trade_time_tws_gives(ibkr, tws_peer):
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({AAPL}))
    await until(lambda: whole(quotes, AAPL))

    traded = datetime(2026, 12, 4, 15, 30, 7, tzinfo=UTC)
    tws_peer.market_data.tick("AAPL", bid="151.25", ask="151.30", bid_size=300, ask_size=400)
    await until(lambda: (q := latest(quotes, AAPL)) is not None and q.ask == Decimal("151.3"))
    quote = latest(quotes, AAPL)
    assert quote is not None and (quote.bid, quote.bid_size, quote.ask_size) == (
        Decimal("151.25"),
        Decimal(300),
        Decimal(400),
    )

    tws_peer.market_data.tick("AAPL", last="151.27", last_size=10, at=traded)
    await until(lambda: (q := latest(quotes, AAPL)) is not None and q.last == Decimal("151.27"))
    quote = latest(quotes, AAPL)
    assert quote is not None and quote.time == traded
    assert quote.spread == Decimal("0.05")


async def test_no_price_from_tws_is_none_never_a_number(ibkr, tws_peer):
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({AAPL}))
    await until(lambda: whole(quotes, AAPL))

    # TWS sends -1 with size 0 for a side with nothing on it.
    tws_peer.market_data.tick("AAPL", bid=-1)
    await until(lambda: (q := latest(quotes, AAPL)) is not None and q.bid is None)
    quote = latest(quotes, AAPL)
    assert quote is not None and quote.bid is None and quote.spread is None
    assert quote.ask == Decimal("150.01")


async def test_no_subscription_asks_for_delayed_data_and_marks_it_delayed(ibkr, tws_peer):
    tws_peer.market_data.unsubscribed.add("MSFT")
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({AAPL, MSFT}))

    await until(lambda: whole(quotes, MSFT))
    assert [f[2] for f in tws_peer.requests(REQ_MARKET_DATA_TYPE)] == ["3"]
    delayed = latest(quotes, MSFT)
    assert delayed is not None and delayed.state is QuoteState.DELAYED
    assert (delayed.bid, delayed.ask, delayed.last) == (Decimal("299.99"), Decimal("300.01"), Decimal(300))
    # Delayed data was asked for the connection; the subscribed instrument stays live.
    tws_peer.market_data.tick("AAPL", last="150.5")
    await until(lambda: (q := latest(quotes, AAPL)) is not None and q.last == Decimal("150.5"))
    live = latest(quotes, AAPL)
    assert live is not None and live.state is QuoteState.LIVE

    tws_peer.market_data.tick("MSFT", last="301")
    await until(lambda: (q := latest(quotes, MSFT)) is not None and q.last == Decimal(301))
    moved = latest(quotes, MSFT)
    assert moved is not None and moved.state is QuoteState.DELAYED


async def test_snapshot_is_a_one_off_request(ibkr, tws_peer):
    quote = await ibkr.get_quote(MSFT)
    assert quote is not None and quote.state is QuoteState.SNAPSHOT
    assert (quote.bid, quote.ask, quote.last, quote.previous_close) == (
        Decimal("299.99"),
        Decimal("300.01"),
        Decimal(300),
        Decimal("294"),
    )
    (request,) = tws_peer.requests(REQ_MKT_DATA)
    assert request[-3] == "1"  # snapshot
    assert not tws_peer.market_data.lines


async def test_snapshot_without_subscription_falls_back_to_delayed(ibkr, tws_peer):
    tws_peer.market_data.unsubscribed.add("AAPL")
    quote = await ibkr.get_quote(AAPL)
    assert quote is not None and quote.last == Decimal(150)
    assert [f[2] for f in tws_peer.requests(REQ_MARKET_DATA_TYPE)] == ["3"]


async def test_unknown_contract_is_not_streamed_and_has_no_snapshot(ibkr, tws_peer):
    unknown = Instrument.stock("ZZZZ")
    await ibkr.stream_quotes(frozenset({unknown, AAPL}))
    await until(lambda: set(open_lines(tws_peer)) == {"AAPL"})
    assert await ibkr.get_quote(unknown) is None
    await ibkr.stream_quotes(frozenset({unknown}))
    # TWS said it has no such contract: it is not asked again on this connection.
    asked = [f for f in tws_peer.requests(REQ_CONTRACT_DATA) if f[4] == "ZZZZ"]
    assert len(asked) == 1


async def test_option_and_future_lines_resolve_their_contracts(ibkr, tws_peer):
    option = Instrument("AAPL", AssetClass.OPTION, expiry=date(2024, 1, 19), strike=Decimal(150), right="C")
    future = Instrument("ES 202503", AssetClass.FUTURE, exchange="CME")
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({option, future}))
    await until(lambda: whole(quotes, option) and whole(quotes, future))
    assert latest(quotes, future).last == Decimal("5000.25")  # type: ignore[union-attr]
    assert latest(quotes, option).last == Decimal(5)  # type: ignore[union-attr]


async def test_lines_are_opened_again_after_tws_comes_back(tws_peer):
    broker = IBKRBroker("ib-paper", port=tws_peer.port, timeout=2.0)
    await broker.connect()
    try:
        quotes = sink(broker)
        await broker.stream_quotes(frozenset({AAPL}))
        await until(lambda: whole(quotes, AAPL))

        tws_peer.drop_connections()
        await until(lambda: not broker.is_connected())
        await broker.connect()
        await until(lambda: set(open_lines(tws_peer)) == {"AAPL"})
        tws_peer.market_data.tick("AAPL", last="152")
        await until(lambda: (q := latest(quotes, AAPL)) is not None and q.last == Decimal(152))
    finally:
        await broker.disconnect()


async def test_lines_are_asked_for_again_when_tws_lost_the_data(ibkr, tws_peer):
    quotes = sink(ibkr)
    await ibkr.stream_quotes(frozenset({AAPL}))
    await until(lambda: whole(quotes, AAPL))
    first = open_lines(tws_peer)["AAPL"]

    tws_peer.send_error(1101, "Connectivity between IB and TWS has been restored - data lost.")
    await until(lambda: open_lines(tws_peer).get("AAPL", first) != first)
    assert [int(f[2]) for f in tws_peer.requests(CANCEL_MKT_DATA)] == [first]
    tws_peer.market_data.tick("AAPL", last="153")
    await until(lambda: (q := latest(quotes, AAPL)) is not None and q.last == Decimal(153))


def test_limits_default_to_ibs_hundred_lines_and_follow_the_setting():
    assert IBKRBroker("ib").quote_limits == QuoteLimits(streamed=100)
    configured = IBKRBroker.from_config({"name": "ib", "market_data_lines": 300})
    assert configured.quote_limits == QuoteLimits(streamed=300)
    with pytest.raises(ConfigError, match="market_data_lines"):
        IBKRBroker.from_config({"name": "ib", "market_data_lines": -1})


def test_trades_what_ib_can_quote_in_the_accounts_currency():
    broker = IBKRBroker("ib")
    assert broker.trades(AAPL)
    assert broker.trades(Instrument.stock("AAPL", currency="USD"))
    assert not broker.trades(Instrument.stock("INFY", currency="INR"))
    assert not broker.trades(Instrument("BTC/USD", AssetClass.CRYPTO))


@pytest.mark.parametrize(
    "value", [-1, -1.0, float("nan"), float("inf"), 1.7976931348623157e308, None, "1.5", True]
)
def test_no_price_values_are_none(value):
    assert price(value) is None


def test_prices_and_sizes_are_decimals_without_float_noise():
    assert price(150.25) == Decimal("150.25") and str(price(150.0)) == "150"
    assert price(0.0) == Decimal(0)  # a real price of zero (an option bid), unlike -1
    assert size(100.0) == Decimal(100) and str(size(100.0)) == "100"
    assert size(0.5) == Decimal("0.5")
    assert size(float("nan")) is None and size(-1.0) is None
