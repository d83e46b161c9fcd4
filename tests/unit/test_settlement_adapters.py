"""Settled and unsettled cash as each broker reports it, read through the real client libraries
from the loopback peers serving the brokers' own payloads: IB's SettledCash, Alpaca's cash and
non-marginable buying power, Kite's margins."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

from adapters.broker_payloads import payload
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    REQ_ACCOUNT_SUMMARY,
    ibkr_fixture,
    tws_peer_fixture,
)

from brokers.account_state import SettledCashSource
from brokers.adapters.zerodha import ZerodhaBroker

D = Decimal
IB_WIRE = json.loads(
    (Path(__file__).parents[1] / "adapters" / "fixtures" / "ibkr" / "wire_messages.json").read_text()
)


def summary_with(*extra: list[str]) -> list[list[str]]:
    """The documented account summary, with ``extra`` rows before its end message."""
    rows = IB_WIRE["account_summary"]
    return [*rows[:-1], *extra, rows[-1]]


async def test_ib_settled_cash_from_the_account_summary(tws_peer, ibkr):
    tws_peer.replies[REQ_ACCOUNT_SUMMARY] = summary_with(
        ["63", "1", "$REQ_ID", "DU1234567", "SettledCash", "80230.10", "USD"],
        ["63", "1", "$REQ_ID", "DU1234567", "SettledCash", "80230.10", "BASE"],
    )
    balance = await ibkr.get_balance()
    assert balance.cash == D("85230.10")
    assert (balance.settled_cash, balance.unsettled_cash) == (D("80230.10"), D("5000.00"))
    assert balance.settled_source is SettledCashSource.BROKER


async def test_ib_without_settled_cash_leaves_the_split_to_be_computed(tws_peer, ibkr):
    tws_peer.replies[REQ_ACCOUNT_SUMMARY] = IB_WIRE["account_summary"]
    balance = await ibkr.get_balance()
    assert balance.settled_cash is None and balance.unsettled_cash is None
    assert balance.settled_source is SettledCashSource.UNKNOWN and not balance.cash_account


async def test_alpaca_margin_account_reports_no_settled_cash(broker, peer):
    body = payload("alpaca", "account.json")  # multiplier 4: a margin account
    peer.answer_next("GET", "/v2/account", body)
    peer.answer_next("GET", "/v2/positions", [])
    balance = await broker.get_balance()
    assert not balance.cash_account
    assert balance.settled_cash is None and balance.settled_source is SettledCashSource.UNKNOWN


async def test_alpaca_margin_account_set_to_no_leverage_is_still_a_margin_account(broker, peer):
    body = copy.deepcopy(payload("alpaca", "account.json"))
    body["multiplier"] = "1"  # its shorting_enabled stays true: a cash account cannot short
    peer.answer_next("GET", "/v2/account", body)
    peer.answer_next("GET", "/v2/positions", [])
    balance = await broker.get_balance()
    assert not balance.cash_account and balance.settled_source is SettledCashSource.UNKNOWN


async def test_alpaca_cash_account_settled_cash_is_its_non_marginable_buying_power(broker, peer):
    body = copy.deepcopy(payload("alpaca", "account.json"))
    body.update({"multiplier": "1", "shorting_enabled": False, "cash": "100000", "buying_power": "98945.02"})
    peer.answer_next("GET", "/v2/account", body)
    peer.answer_next("GET", "/v2/positions", [])
    balance = await broker.get_balance()
    assert balance.cash_account and balance.settled_source is SettledCashSource.BROKER
    assert (balance.cash, balance.settled_cash, balance.unsettled_cash) == (
        D("100000"),
        D("98945.02"),
        D("1054.98"),
    )


async def kite_balance(peer: KitePeer, monkeypatch, margins: dict):
    monkeypatch.setenv("KITE_API_KEY", peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", peer.access_token)
    adapter = ZerodhaBroker.from_config({"name": "kite", "root": peer.root, "timeout": 2})
    await adapter.connect()
    try:
        peer.serve_fixture("GET", "/user/margins", margins)
        peer.serve_fixture("GET", "/portfolio/holdings", payload("kite", "holdings.json"))
        peer.serve_fixture("GET", "/portfolio/positions", payload("kite", "positions.json"))
        return await adapter.get_balance()
    finally:
        await adapter.disconnect()


async def test_kite_margins_give_settled_cash(kite_peer, monkeypatch):  # noqa: F811
    balance = await kite_balance(kite_peer, monkeypatch, payload("kite", "margins.json"))
    assert (balance.settled_cash, balance.unsettled_cash) == (D("245431.6"), 0)
    assert balance.settled_source is SettledCashSource.BROKER and balance.currency == "INR"


async def test_kite_holds_the_days_sale_proceeds_apart_until_they_settle(kite_peer, monkeypatch):  # noqa: F811
    margins = copy.deepcopy(payload("kite", "margins.json"))
    margins["data"]["equity"]["utilised"]["holding_sales"] = 12000.5
    balance = await kite_balance(kite_peer, monkeypatch, margins)
    assert (balance.settled_cash, balance.unsettled_cash) == (D("245431.6"), D("12000.5"))
