"""One consolidated view across every broker type: the same instrument held at brokers in two
currencies is one row, and a CFD beside the stock of its symbol is a row of its own. Each adapter
talks to its loopback peer through the real client library."""

from __future__ import annotations

from decimal import Decimal

from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    PeerPosition,
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)
from peers.tws_peer import ibkr_fixture, tws_peer_fixture  # noqa: F401  (fixtures)

from brokers.adapters.zerodha import ZerodhaBroker
from brokers.fx import FxRates, FxSettings
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, OrderRequest
from brokers.sim import SimBroker

D = Decimal


def kite_account(peer: KitePeer, monkeypatch) -> ZerodhaBroker:
    monkeypatch.setenv("KITE_API_KEY", peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", peer.access_token)
    return ZerodhaBroker.from_config({"name": "kite", "root": peer.root, "poll_interval": 0.2, "timeout": 2})


async def test_one_row_per_instrument_across_all_broker_types(
    peer,
    broker,
    ibkr,
    kite_peer,  # noqa: F811
    monkeypatch,
):
    # Alpaca (USD): 10 AAPL. IB (USD): 100 AAPL shares and 100 AAPL CFDs short.
    # A paper account in EUR: 4 AAPL. Kite (INR): its own holdings.
    peer.positions["AAPL"] = PeerPosition(qty=D(10), avg=D(150))
    peer.prices["AAPL"] = D(200)
    await ibkr.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=100))
    await ibkr.place_order(OrderRequest(symbol="AAPL", side="SELL", quantity=100, asset_class="CFD"))
    euro = SimBroker("eu", currency="EUR", prices={"AAPL": 160}, seed=1, initial_positions={"AAPL": (4, 140)})
    kite = kite_account(kite_peer, monkeypatch)
    await kite.connect()
    await euro.connect()
    fx = FxRates("USD", FxSettings(rates={"EURUSD": "1.25", "USDINR": "80"}))
    manager = MultiBrokerManager(fx=fx, heartbeat_interval=3600)
    for name, adapter in (("alpaca", broker), ("ib-paper", ibkr), ("eu", euro), ("kite", kite)):
        manager.add_broker(name, adapter)
    try:
        await manager.connect_all()
        await manager.refresh()
        rows = {row.label: row for row in manager.consolidated_positions()}
        shares = rows["AAPL"]
        assert shares.asset_class is AssetClass.STOCK
        assert shares.quantity == 10 + 100 + 4
        assert {leg.account: (leg.currency, leg.quantity) for leg in shares.legs} == {
            "alpaca": ("USD", 10),
            "ib-paper": ("USD", 100),
            "eu": ("EUR", 4),
        }
        assert shares.currency == "USD"  # legs in USD and EUR: summed in the base currency
        cfd = rows["AAPL CFD"]
        assert (cfd.asset_class, cfd.quantity, cfd.accounts) == (AssetClass.CFD, -100, ["ib-paper"])
        # Every leg valued in its own currency and summed in USD; where a leg has no price the
        # figure says so rather than leaving it out.
        marks = {
            leg.account: manager.last_price("AAPL", leg.account) or leg.last_price for leg in shares.legs
        }
        assert all(price is not None for price in marks.values()), marks
        euros = fx.convert(D(4) * marks["eu"], "EUR")  # a broker may report a fresher EURUSD
        assert euros.amount is not None and not euros.missing
        expected = D(10) * marks["alpaca"] + D(100) * marks["ib-paper"] + euros.amount
        assert shares.market_value_base.amount == expected
        assert not shares.market_value_base.missing
        kite_rows = [row for row in rows.values() if row.accounts == ["kite"]]
        assert kite_rows and all(row.currency == "INR" for row in kite_rows)
    finally:
        await kite.disconnect()
        await euro.disconnect()
