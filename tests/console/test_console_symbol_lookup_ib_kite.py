"""The order ticket on a real Interactive Brokers account and a real Kite account (each adapter
against its loopback peer): a symbol the broker does not list (IB's contract details answer error
200; Kite's ``ltp`` leaves it out) is "unknown symbol" and nothing is sent; a listed one is not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keyring
from console_support import console, settled, wait_for
from peers.kite_peer import kite_peer  # noqa: F401  (a fixture)
from peers.tws_market_data import REQ_CONTRACT_DATA
from peers.tws_peer import tws_peer_fixture  # noqa: F401  (a fixture)
from test_console_symbol_lookup import WIDE, symbol_message, ticket_text

from brokers.config import parse_config
from brokers.credentials import SERVICE


def one_account(settings: dict[str, Any]):
    config = parse_config(
        {"accounts": [{**settings, "default": True}], "ui": {"watchlist": []}}, where="test"
    )
    return console(config)


async def unknown_then_listed(app, pilot, unknown: str, listed: str, sent: Callable[[], int]) -> None:
    await settled(app, pilot)
    app.order_entry.set_values(symbol=unknown, quantity="1")
    await pilot.pause()
    await wait_for(lambda: symbol_message(app)[0] == "unknown symbol", pilot, within=10)
    assert "unknown symbol" in ticket_text(app)
    app.order_entry.action_submit()
    await pilot.pause()
    assert app.runtime.execution.orders() == [] and sent() == 0

    app.order_entry.set_values(symbol=listed)
    await pilot.pause()
    await wait_for(lambda: not app.order_entry.looking_up, pilot, within=10)
    await pilot.pause()
    assert symbol_message(app)[0] == ""
    assert "unknown symbol" not in ticket_text(app)


async def test_a_symbol_ib_has_no_contract_for_is_unknown_and_is_not_sent(tws_peer):
    app = one_account({"type": "ibkr", "name": "ib-paper", "port": tws_peer.port, "timeout": 2})
    async with app.run_test(size=WIDE) as pilot:
        await unknown_then_listed(app, pilot, "ZZZZ", "AAPL", lambda: len(tws_peer.orders))
        asked = [fields for fields in tws_peer.requests(REQ_CONTRACT_DATA) if "ZZZZ" in fields]
        assert len(asked) == 1


async def test_a_symbol_kite_leaves_out_of_ltp_is_unknown_and_is_not_sent(kite_peer):  # noqa: F811
    keyring.set_password(SERVICE, "kite:api_key", kite_peer.api_key)
    keyring.set_password(SERVICE, "kite:access_token", kite_peer.access_token)
    app = one_account({"type": "zerodha", "name": "kite", "root": kite_peer.root, "timeout": 2})
    async with app.run_test(size=WIDE) as pilot:
        await unknown_then_listed(app, pilot, "ZZZZ", "INFY", lambda: kite_peer.count("POST", "/orders"))
        assert kite_peer.count("GET", "/quote/ltp") >= 2
