"""Whether each real adapter's broker lists a symbol, asked through the broker's own client
library against its loopback peer: Alpaca's asset (``TradingClient.get_asset``: 404, tradable
false), IB's contract details (``reqContractDetails``: error 200), Kite's ``ltp`` (a key left out
of ``data``). Answers are kept per instrument; a failed or unanswered lookup is "cannot tell"."""

from __future__ import annotations

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from peers.kite_peer import kite_peer  # noqa: F401  (a fixture)
from peers.tws_market_data import REQ_CONTRACT_DATA
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    ibkr_fixture,
    tws_peer_fixture,
)

from brokers.adapters.alpaca import AlpacaBroker
from brokers.adapters.zerodha import ZerodhaBroker
from brokers.instruments import Instrument
from brokers.models import AssetClass
from brokers.quotes import Listing

AAPL = Instrument.stock("AAPL")
ZZZZ = Instrument.stock("ZZZZ")
BTC = Instrument("BTC/USD", AssetClass.CRYPTO)


# -- Alpaca ---------------------------------------------------------------------------------------
async def test_alpaca_asks_for_the_asset_and_keeps_the_answer(broker, peer):
    assert isinstance(broker, AlpacaBroker)
    assert broker.listing_nowait(AAPL) is None  # nothing asked yet
    assert await broker.listing(AAPL) is Listing.LISTED
    assert await broker.listing(ZZZZ) is Listing.NOT_LISTED
    assert peer.count("GET", "/v2/assets/AAPL") == 1
    assert peer.count("GET", "/v2/assets/ZZZZ") == 1
    # Kept: asking again costs no request, and the screen reads it without waiting.
    assert await broker.listing(ZZZZ) is Listing.NOT_LISTED
    assert broker.listing_nowait(ZZZZ) is Listing.NOT_LISTED
    assert broker.listing_nowait(AAPL) is Listing.LISTED
    assert peer.count("GET", "/v2/assets/ZZZZ") == 1


async def test_alpaca_says_when_an_asset_is_listed_but_not_tradable(broker, peer):
    peer.assets["OLDCO"] = {"class": "us_equity", "exchange": "OTC", "fractionable": False, "tradable": False}
    peer.assets["GONE"] = {
        "class": "us_equity",
        "exchange": "NYSE",
        "fractionable": False,
        "status": "inactive",
        "tradable": False,
    }
    assert await broker.listing(Instrument.stock("OLDCO")) is Listing.NOT_TRADABLE
    assert await broker.listing(Instrument.stock("GONE")) is Listing.NOT_TRADABLE


async def test_alpaca_finds_a_crypto_pair(broker, peer):
    assert await broker.listing(BTC) is Listing.LISTED
    assert peer.count("GET", "/v2/assets/BTCUSD") == 1
    assert await broker.listing(Instrument("ZZZ/USD", AssetClass.CRYPTO)) is Listing.NOT_LISTED


async def test_alpaca_failing_is_cannot_tell_and_is_asked_again(broker, peer):
    peer.fail_next("GET", "/v2/assets/AAPL", 500, {"code": 50010000, "message": "internal server error"})
    assert await broker.listing(AAPL) is None
    assert broker.listing_nowait(AAPL) is None
    assert await broker.listing(AAPL) is Listing.LISTED
    assert peer.count("GET", "/v2/assets/AAPL") == 2


async def test_alpaca_not_connected_is_cannot_tell(peer, keys):
    from brokers.registry import BrokerFactory

    broker = BrokerFactory.create(peer.settings())
    assert await broker.listing(AAPL) is None


# -- Interactive Brokers ----------------------------------------------------------------------------
async def test_ib_asks_for_contract_details_and_reads_error_200_as_not_listed(ibkr, tws_peer):
    assert await ibkr.listing(AAPL) is Listing.LISTED
    assert await ibkr.listing(ZZZZ) is Listing.NOT_LISTED
    asked = [fields for fields in tws_peer.requests(REQ_CONTRACT_DATA) if "ZZZZ" in fields]
    assert len(asked) == 1
    assert await ibkr.listing(ZZZZ) is Listing.NOT_LISTED
    assert len([f for f in tws_peer.requests(REQ_CONTRACT_DATA) if "ZZZZ" in f]) == 1  # kept


async def test_ib_a_symbol_that_cannot_be_a_contract_is_not_listed(ibkr, tws_peer):
    before = len(tws_peer.requests(REQ_CONTRACT_DATA))
    assert await ibkr.listing(Instrument("NOT A PAIR", AssetClass.FOREX)) is Listing.NOT_LISTED
    assert len(tws_peer.requests(REQ_CONTRACT_DATA)) == before  # nothing to ask TWS


async def test_ib_disconnected_is_cannot_tell(ibkr):
    await ibkr.disconnect()
    assert await ibkr.listing(AAPL) is None


# -- Kite ---------------------------------------------------------------------------------------
@pytest.fixture
async def kite(kite_peer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    broker = ZerodhaBroker.from_config({"name": "kite", "root": kite_peer.root, "timeout": 2})
    await broker.connect()
    yield broker
    await broker.disconnect()


async def test_kite_an_instrument_left_out_of_ltp_is_not_listed(kite, kite_peer):  # noqa: F811
    infy = Instrument.stock("INFY", currency="INR")
    assert await kite.listing(infy) is Listing.LISTED
    assert await kite.listing(Instrument.stock("ZZZZ", currency="INR")) is Listing.NOT_LISTED
    assert kite_peer.count("GET", "/quote/ltp") == 2
    assert await kite.listing(infy) is Listing.LISTED
    assert kite_peer.count("GET", "/quote/ltp") == 2  # kept


async def test_kite_a_failing_read_is_cannot_tell(kite, kite_peer):  # noqa: F811
    await kite.disconnect()
    assert await kite.listing(Instrument.stock("SBIN", currency="INR")) is None
