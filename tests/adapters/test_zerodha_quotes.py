"""Quotes from Kite through the real KiteTicker (its Twisted thread, its binary packets, its own
reconnecting) against a loopback ticker peer, and snapshots through ``kite.quote()``."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteTicker
from peers.kite_peer import instrument_token, kite_peer  # noqa: F401  (kite_peer is a fixture)
from peers.kite_ticker_peer import encode, message, running_ticker_peer
from support import until

from brokers.adapters.zerodha import ZerodhaBroker
from brokers.adapters.zerodha.quotes import STREAM_LIMIT, price, size
from brokers.errors import ConfigError
from brokers.instruments import Instrument
from brokers.models import AssetClass
from brokers.quotes import Quote, QuoteLimits, QuoteState

FIXTURES = Path("/work/wt/shared/fixtures/broker-payloads/kite")
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "broker-payloads" / "kite"
INFY = Instrument.stock("INFY")
SBIN = Instrument.stock("SBIN")
INFY_TOKEN = instrument_token("NSE", "INFY")
SBIN_TOKEN = instrument_token("NSE", "SBIN")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def sample(name: str, token: int) -> dict[str, Any]:
    return {**fixture(name), "instrument_token": token}


def decoded(data: bytes) -> list[dict[str, Any]]:
    return KiteTicker("key", "token")._parse_binary(data)


@pytest.fixture
async def ticker_peer(kite_peer) -> Any:  # noqa: F811
    async with running_ticker_peer(api_key=kite_peer.api_key, access_token=kite_peer.access_token) as peer:
        yield peer


@pytest.fixture
async def kite(kite_peer, ticker_peer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    broker = ZerodhaBroker.from_config(
        {"name": "kite", "root": kite_peer.root, "ticker_root": ticker_peer.root, "timeout": 2}
    )
    await broker.connect()
    yield broker
    await broker.disconnect()


def sink(broker: ZerodhaBroker) -> list[Quote]:
    quotes: list[Quote] = []
    loop_thread = threading.get_ident()

    def receive(quote: Quote) -> None:
        assert threading.get_ident() == loop_thread, "a quote arrived off the event loop thread"
        quotes.append(quote)

    broker.set_quote_sink(receive)
    return quotes


def latest(quotes: list[Quote], instrument: Instrument) -> Quote | None:
    return next((q for q in reversed(quotes) if q.instrument == instrument), None)


# -- the peer's packets are Kite's ------------------------------------------------------------
@pytest.mark.parametrize("name", ["ticker_ltp.json", "ticker_quote.json", "ticker_full.json"])
def test_encoded_fixtures_decode_with_kiteconnect_to_themselves(name):
    tick = fixture(name)
    (back,) = decoded(message(encode(tick)))
    assert back["mode"] == tick["mode"] and back["instrument_token"] == tick["instrument_token"]
    assert back["last_price"] == tick["last_price"] and back["tradable"] is tick["tradable"]
    if tick["mode"] == "ltp":
        return
    assert back["ohlc"] == tick["ohlc"]
    assert back["last_traded_quantity"] == tick["last_quantity"]
    assert back["average_traded_price"] == tick["average_price"]
    assert (back["volume_traded"], back["total_buy_quantity"], back["total_sell_quantity"]) == (
        tick["volume"],
        tick["buy_quantity"],
        tick["sell_quantity"],
    )
    assert back["change"] == pytest.approx(
        (tick["last_price"] - tick["ohlc"]["close"]) * 100 / tick["ohlc"]["close"]
    )
    if tick["mode"] == "quote":
        return
    assert back["depth"] == tick["depth"]
    stamp = datetime.fromisoformat(tick["timestamp"])
    assert back["exchange_timestamp"].astimezone(UTC) == stamp.astimezone(UTC)
    assert back["last_trade_time"].astimezone(UTC) == datetime.fromisoformat(
        tick["last_trade_time"]
    ).astimezone(UTC)
    assert (back["oi"], back["oi_day_high"], back["oi_day_low"]) == (0, 0, 0)


def test_several_packets_in_one_message_decode_in_order():
    ticks = decoded(message(encode(fixture("ticker_ltp.json")), encode(sample("ticker_full.json", 738561))))
    assert [(t["mode"], t["instrument_token"]) for t in ticks] == [("ltp", 408065), ("full", 738561)]


# -- the adapter through the real KiteTicker --------------------------------------------------
async def test_streams_full_mode_quotes_with_bid_ask_and_the_exchange_time(kite, ticker_peer):
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY}))

    # Kite streams a new subscription in QUOTE mode (no depth) until the mode message arrives.
    await until(lambda: (q := latest(quotes, INFY)) is not None and q.bid is not None, within=10)
    assert ticker_peer.subscribed == {INFY_TOKEN: "full"}
    quote = latest(quotes, INFY)
    assert quote is not None
    assert (quote.bid, quote.ask, quote.last, quote.previous_close) == (
        Decimal("1573.4"),
        Decimal("1573.7"),
        Decimal("1573.7"),
        Decimal("1567.8"),
    )
    assert (quote.bid_size, quote.ask_size) == (Decimal(5), Decimal(172))
    assert quote.time == datetime.fromisoformat("2021-07-05T10:41:27+05:30")
    assert quote.state is QuoteState.LIVE and quote.source == "kite"


async def test_empty_depth_and_no_trade_are_none_never_zero(kite, ticker_peer):
    tick = sample("ticker_full.json", SBIN_TOKEN)
    tick["last_price"] = 0
    tick["depth"] = {"buy": [], "sell": tick["depth"]["sell"]}
    ticker_peer.ticks[SBIN_TOKEN] = tick
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({SBIN}))
    await until(lambda: (q := latest(quotes, SBIN)) is not None and q.ask is not None, within=10)
    quote = latest(quotes, SBIN)
    assert quote is not None
    assert (quote.bid, quote.bid_size, quote.last) == (None, None, None)
    assert quote.ask == Decimal("1573.7") and quote.spread is None


async def test_follows_the_set_asked_for_and_moves_with_new_ticks(kite, ticker_peer):
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    ticker_peer.ticks[SBIN_TOKEN] = sample("ticker_full.json", SBIN_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY, SBIN}))
    await until(lambda: latest(quotes, INFY) is not None and latest(quotes, SBIN) is not None, within=10)

    await kite.stream_quotes(frozenset({SBIN}))
    await until(lambda: ticker_peer.subscribed == {SBIN_TOKEN: "full"})
    assert {"a": "unsubscribe", "v": [INFY_TOKEN]} in ticker_peer.received

    ticker_peer.ticks[SBIN_TOKEN] = {**ticker_peer.ticks[SBIN_TOKEN], "last_price": 801.25}
    await ticker_peer.push()
    await until(lambda: (q := latest(quotes, SBIN)) is not None and q.last == Decimal("801.25"))


async def test_reconnects_and_resubscribes_by_itself(kite, ticker_peer):
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY}))
    await until(lambda: latest(quotes, INFY) is not None, within=10)
    assert ticker_peer.connections == 1

    ticker_peer.drop_connections()
    # KiteTicker's own reconnecting (Twisted's ReconnectingClientFactory) brings it back and
    # its resubscribe() asks for the same tokens in the same mode.
    await until(
        lambda: ticker_peer.connections == 2 and ticker_peer.subscribed == {INFY_TOKEN: "full"}, within=15
    )
    ticker_peer.ticks[INFY_TOKEN] = {**ticker_peer.ticks[INFY_TOKEN], "last_price": 1580.05}
    await ticker_peer.push()
    await until(lambda: (q := latest(quotes, INFY)) is not None and q.last == Decimal("1580.05"))


async def test_a_new_days_token_gets_a_new_ticker_connection(kite, kite_peer, ticker_peer, monkeypatch):  # noqa: F811
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY}))
    await until(lambda: latest(quotes, INFY) is not None, within=10)

    await kite.disconnect()
    kite_peer.access_token = ticker_peer.access_token = "tomorrows-token-0123456789"
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    await kite.connect()
    # What was streamed streams again, over a connection made with the new token.
    await until(
        lambda: ticker_peer.connections == 2 and ticker_peer.subscribed == {INFY_TOKEN: "full"}, within=10
    )
    ticker_peer.ticks[INFY_TOKEN] = {**ticker_peer.ticks[INFY_TOKEN], "last_price": 1590.1}
    await ticker_peer.push()
    await until(lambda: (q := latest(quotes, INFY)) is not None and q.last == Decimal("1590.1"))
    assert ticker_peer.refused == 0


async def test_a_refused_token_is_reported_without_the_token(kite, kite_peer, ticker_peer, caplog):  # noqa: F811
    ticker_peer.access_token = "another-token"
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY}))
    await until(lambda: ticker_peer.refused >= 1, within=10)
    await until(lambda: kite._quotes.last_error is not None)
    assert not quotes and not kite._quotes.connected
    assert kite_peer.access_token not in caplog.text and kite_peer.api_key not in caplog.text
    assert kite_peer.access_token not in (kite._quotes.last_error or "")


async def test_a_ticker_that_gave_up_is_started_again_on_the_next_stream(kite, kite_peer, ticker_peer):  # noqa: F811
    kite._quotes.reconnect_attempts = 1
    ticker_peer.access_token = "not-yet"
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY}))
    await until(lambda: kite._quotes.gave_up, within=20)
    assert ticker_peer.connections == 0 and ticker_peer.refused >= 2

    ticker_peer.access_token = kite_peer.access_token
    await kite.stream_quotes(frozenset({INFY}))
    await until(lambda: (q := latest(quotes, INFY)) is not None and q.bid is not None, within=10)
    assert not kite._quotes.gave_up and kite._quotes.connected


async def test_unknown_instrument_is_not_streamed(kite, ticker_peer):
    ticker_peer.ticks[INFY_TOKEN] = sample("ticker_full.json", INFY_TOKEN)
    quotes = sink(kite)
    await kite.stream_quotes(frozenset({INFY, Instrument.stock("ZZZZ")}))
    await until(lambda: latest(quotes, INFY) is not None, within=10)
    assert set(ticker_peer.subscribed) == {INFY_TOKEN}


async def test_snapshot_through_kite_quote(kite, kite_peer):  # noqa: F811
    quote = await kite.get_quote(INFY)
    assert quote is not None and quote.state is QuoteState.SNAPSHOT
    assert (quote.bid, quote.ask, quote.last, quote.previous_close) == (
        Decimal("1499.95"),
        Decimal("1500.05"),
        Decimal(1500),
        Decimal(1490),
    )
    assert (quote.bid_size, quote.ask_size) == (Decimal(10), Decimal(10))
    assert ("GET", "/quote") in kite_peer.requests
    assert await kite.get_quote(Instrument.stock("ZZZZ")) is None


def test_limits_and_what_it_trades(kite_peer):  # noqa: F811
    streaming = ZerodhaBroker.from_config({"name": "kite", "live": True})
    assert streaming.quote_limits == QuoteLimits(streamed=STREAM_LIMIT) == QuoteLimits(streamed=3000)
    # A test server without a ticker beside it never streams from Kite's own.
    assert ZerodhaBroker.from_config({"name": "kite", "root": kite_peer.root}).quote_limits == QuoteLimits(
        streamed=0
    )
    assert streaming.trades(INFY) and streaming.trades(Instrument.stock("INFY", currency="INR"))
    assert not streaming.trades(Instrument.stock("AAPL", currency="USD"))
    assert not streaming.trades(Instrument.stock("AAPL", exchange="NASDAQ"))
    assert not streaming.trades(Instrument("EUR/USD", AssetClass.FOREX))
    with pytest.raises(ConfigError, match="ticker_root"):
        ZerodhaBroker.from_config({"name": "kite", "live": True, "ticker_root": "https://example.com"})


@pytest.mark.parametrize("value", [0, 0.0, -1, -1.0, float("nan"), float("inf"), None, "", "x", True])
def test_no_price_values_are_none(value):
    assert price(value) is None


def test_prices_and_sizes_are_decimals_without_float_noise():
    assert price(1573.7) == Decimal("1573.7") and str(price(1573.0)) == "1573"
    assert price(157370 / 100.0) == Decimal("1573.7")
    assert size(172) == Decimal(172) and size(0) == Decimal(0)
    assert size(-1) is None and size(float("nan")) is None
