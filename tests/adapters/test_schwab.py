"""The Schwab adapter with schwab-py's asynchronous client against a loopback Trader API: the
account by its hash, balances and positions, equity orders and their executions by polling,
cancels, the OAuth token refreshed and kept in the keyring, and the seven-day login shown like
Kite's session expiry with the command that renews it."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
from peers.schwab_peer import (  # noqa: F401  (fixtures)
    ACCOUNT_HASH,
    APP_KEY,
    APP_SECRET,
    SchwabPeer,
    schwab_broker_fixture,
    schwab_keys_fixture,
    schwab_peer_fixture,
)

from brokers.credentials import SERVICE
from brokers.errors import (
    AuthenticationError,
    BrokerAPIError,
    ConfigError,
    CredentialsError,
    InsufficientFundsError,
    OrderRejectedError,
)
from brokers.models import Fill, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory

D = Decimal


async def test_balances_and_positions(schwab):
    balance = await schwab.get_balance()
    assert (balance.cash, balance.buying_power, balance.equity) == (
        D(25000),
        D(50000),
        D(25000) + 10 * D("227.50"),
    )
    (aapl,) = await schwab.get_positions()
    assert (aapl.symbol, aapl.quantity, aapl.avg_price, aapl.last_price) == (
        "AAPL",
        D(10),
        D(150),
        D("227.50"),
    )
    margin = await schwab.get_margin()
    assert margin.maintenance_margin == 10 * D("227.50") * D("0.25")


async def test_a_limit_order_is_placed_by_hash_and_its_executions_arrive_by_polling(schwab, schwab_peer):
    events = schwab.subscribe()
    placed = await schwab.place_order(
        OrderRequest(
            symbol="MSFT",
            side="BUY",
            quantity=10,
            order_type="LIMIT",
            limit_price="410.5",
            time_in_force="GTC",
        )
    )
    assert placed.status is OrderStatus.ACCEPTED
    spec = schwab_peer.orders[int(placed.broker_order_id)].spec
    assert (
        spec["orderType"] == "LIMIT" and spec["duration"] == "GOOD_TILL_CANCEL" and spec["price"] == "410.5"
    )
    assert spec["orderLegCollection"][0] == {
        "instruction": "BUY",
        "quantity": 10,
        "instrument": {"symbol": "MSFT", "assetType": "EQUITY"},
    }
    schwab_peer.fill(placed.broker_order_id, D(4), D("410.40"))
    schwab_peer.fill(placed.broker_order_id, D(6), D("410.50"))
    fills = []
    async with asyncio.timeout(5):
        while True:
            event = await events.get()
            if isinstance(event, Fill):
                fills.append(event)
            elif event.status is OrderStatus.FILLED:
                break
    assert sorted((f.quantity, f.price) for f in fills) == [(D(4), D("410.40")), (D(6), D("410.50"))]
    order = await schwab.get_order(placed.broker_order_id)
    assert order.filled_quantity == 10 and len(order.fills) == 2  # the same executions, not again


async def test_cancel_and_cancel_all_one_by_one(schwab, schwab_peer):
    first = await schwab.place_order(
        OrderRequest(symbol="MSFT", side="BUY", quantity=1, order_type="LIMIT", limit_price=300)
    )
    second = await schwab.place_order(
        OrderRequest(symbol="AAPL", side="SELL", quantity=1, order_type="STOP", stop_price=200)
    )
    assert schwab_peer.orders[int(second.broker_order_id)].spec["stopPrice"] == "200"
    assert (await schwab.cancel_order(first.broker_order_id)).status is OrderStatus.CANCELLED
    assert await schwab.cancel_all_orders() == [second.broker_order_id]
    assert {o.status for o in schwab_peer.orders.values()} == {"CANCELED"}


async def test_refusals_are_definite(schwab):
    with pytest.raises(InsufficientFundsError):
        await schwab.place_order(
            OrderRequest(symbol="MSFT", side="BUY", quantity=1000, order_type="LIMIT", limit_price=400)
        )
    with pytest.raises(OrderRejectedError, match="Symbol NOPE is not valid"):
        await schwab.place_order(OrderRequest(symbol="NOPE", side="BUY", quantity=1))
    with pytest.raises(OrderRejectedError, match="whole quantities"):
        await schwab.place_order(OrderRequest(symbol="MSFT", side="BUY", quantity="0.5"))


async def test_a_lost_order_cannot_be_found_by_a_client_id_schwab_does_not_keep(schwab):
    placed = await schwab.place_order(
        OrderRequest(symbol="MSFT", side="BUY", quantity=1, order_type="LIMIT", limit_price=300)
    )
    assert (
        await schwab.get_order_by_client_id(placed.client_order_id)
    ).broker_order_id == placed.broker_order_id
    with pytest.raises(BrokerAPIError, match="keeps no client order id"):
        await schwab.get_order_by_client_id("TCNEVERSEEN00000001")


async def test_the_access_token_is_refreshed_and_kept_in_the_keyring(schwab_peer, schwab_keys):
    # A token whose access part has run out: schwab-py renews it before the first call.
    schwab_keys.set_password(SERVICE, "schwab:token", schwab_peer.stored_token(expires_in=-10))
    broker = BrokerFactory.create(schwab_peer.settings())
    await broker.connect()
    try:
        assert schwab_peer.refresh_count == 1
        stored = json.loads(schwab_keys.get_password(SERVICE, "schwab:token"))
        assert stored["token"]["access_token"] == schwab_peer.access_token
        await broker.get_balance()
    finally:
        await broker.disconnect()


async def test_the_seven_day_login_is_shown_and_an_expired_one_names_the_renewing_command(
    schwab_peer, schwab_keys
):
    created = time.time() - 6 * 86400
    schwab_keys.set_password(SERVICE, "schwab:token", schwab_peer.stored_token(created=created))
    broker = BrokerFactory.create(schwab_peer.settings())
    assert broker.capabilities.session_expiry
    assert broker.session_expires_at.timestamp() == pytest.approx(int(created) + 7 * 86400)
    assert broker.status().session_expires_at == broker.session_expires_at
    schwab_keys.set_password(
        SERVICE, "schwab:token", schwab_peer.stored_token(created=time.time() - 8 * 86400)
    )
    expired = BrokerFactory.create(schwab_peer.settings())
    with pytest.raises(AuthenticationError, match="trading-console set-creds schwab --key token"):
        await expired.connect()


async def test_a_refresh_token_schwab_refuses_names_the_renewing_command(schwab_peer, schwab_keys):
    schwab_keys.set_password(SERVICE, "schwab:token", schwab_peer.stored_token(expires_in=-10))
    schwab_peer.refuse_refresh = True
    broker = BrokerFactory.create(schwab_peer.settings())
    with pytest.raises(AuthenticationError, match="set-creds schwab --key token") as refused:
        await broker.connect()
    assert schwab_peer.refresh_token not in str(refused.value)


async def test_no_login_yet_says_what_to_run(schwab_peer, memory_keyring):
    memory_keyring.set_password(SERVICE, "schwab:api_key", APP_KEY)
    memory_keyring.set_password(SERVICE, "schwab:secret_key", APP_SECRET)
    broker = BrokerFactory.create(schwab_peer.settings())
    with pytest.raises(CredentialsError, match="set-creds schwab --key token"):
        await broker.connect()


def test_settings():
    with pytest.raises(ConfigError, match="Schwab has no paper-trading service"):
        BrokerFactory.create({"type": "schwab", "name": "s", "live": False})
    with pytest.raises(ConfigError, match="secrets belong in the keyring"):
        BrokerFactory.create({"type": "schwab", "name": "s", "refresh_token": "x"})
    with pytest.raises(ConfigError, match="'account_number' must be the account's digits"):
        BrokerFactory.create({"type": "schwab", "name": "s", "account_number": 1234})
    assert ACCOUNT_HASH  # the account is reached by its hash, never its number


async def test_logging_in_again_keeps_a_new_seven_day_token(schwab_peer, schwab_keys):
    old = time.time() - 6 * 86400
    schwab_keys.set_password(SERVICE, "schwab:token", schwab_peer.stored_token(created=old))
    broker = BrokerFactory.create(schwab_peer.settings())
    url, state = broker.login_url()
    assert url.startswith("https://api.schwabapi.com/v1/oauth/authorize?") and APP_KEY in url
    with pytest.raises(AuthenticationError, match="did not accept the login"):
        await broker.complete_login(f"https://127.0.0.1:8182/?code=wrong&state={state}", state)
    expires = await broker.complete_login(
        f"https://127.0.0.1:8182/?code={schwab_peer.login_code}&state={state}", state
    )
    assert expires.timestamp() == pytest.approx(time.time() + 7 * 86400, abs=5)
    stored = json.loads(schwab_keys.get_password(SERVICE, "schwab:token"))
    assert stored["token"]["refresh_token"] == schwab_peer.refresh_token
    await broker.connect()
    try:
        assert (await broker.get_positions())[0].symbol == "AAPL"
    finally:
        await broker.disconnect()


def test_add_asks_for_a_schwab_accounts_settings():
    from typer.testing import CliRunner

    from brokers.config import load_config
    from brokers.paths import default_config_path
    from console.cli.main import app

    answers = "\n".join(["schwab", "ira", "USD", "y", "n", "1", "12ab", "87654321", "3", "n"]) + "\n"
    result = CliRunner().invoke(app, ["add"], input=answers)
    assert result.exit_code == 0, result.output
    assert "account_number must be the account's digits" in result.output
    account = load_config(default_config_path()).account("ira")
    assert (account.type, account.live) == ("schwab", True)
    assert account.settings == {"account_number": "87654321", "poll_interval": 3}
    listed = CliRunner().invoke(app, ["accounts", "--json"])
    assert json.loads(listed.stdout)["accounts"][0]["credentials"] == {
        "api_key": "missing",
        "secret_key": "missing",
        "token": "missing",
    }
