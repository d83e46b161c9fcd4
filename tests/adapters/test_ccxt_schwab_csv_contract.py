"""What every broker type must do for the rest of the console, checked for the new ones against
their loopback peers through the manager and the execution service: connect and be shown
connected, have their positions join the consolidated view, take (or, read-only, refuse with a
code) an order submitted through the one order path, and have their working orders cancelled by a
halt."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers.ccxt_peer import API_KEY, SECRET, CryptoPeer
from peers.coinbase_peer import KEY_NAME, CoinbasePeer
from peers.coinbase_peer import SECRET as COINBASE_SECRET
from peers.schwab_peer import APP_KEY, APP_SECRET, SchwabPeer
from support import running, until

from brokers.base import Broker
from brokers.credentials import SERVICE
from brokers.execution import ExecutionService
from brokers.fx import FxRates, FxSettings
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory

FIXTURES = Path(__file__).parent / "fixtures" / "csv"


@dataclass
class Subject:
    broker: Broker
    order: OrderRequest
    held: str  # the label of a row the account holds in the consolidated view
    working: object  # () -> number of orders working at the venue, or None for a read-only account


@contextlib.asynccontextmanager
async def subject(kind: str, tmp_path: Path, keyring) -> AsyncIterator[Subject]:
    if kind == "ccxt-coinbase":
        coinbase = CoinbasePeer()
        await coinbase.start()
        keyring.set_password(SERVICE, "acct:api_key", KEY_NAME)
        keyring.set_password(SERVICE, "acct:secret_key", COINBASE_SECRET)
        order = OrderRequest(
            symbol="BTC/USD",
            side="BUY",
            quantity="0.01",
            order_type="LIMIT",
            limit_price="59000",
            time_in_force="GTC",
            asset_class="CRYPTO",
        )
        try:
            yield Subject(
                BrokerFactory.create(coinbase.settings("acct")),
                order,
                "BTC/USD CRYPTO",
                lambda: sum(o.status == "OPEN" for o in coinbase.orders.values()),
            )
        finally:
            await coinbase.stop()
    elif kind.startswith("ccxt-"):
        peer = CryptoPeer(kind.removeprefix("ccxt-"))
        await peer.start()
        keyring.set_password(SERVICE, "acct:api_key", API_KEY)
        keyring.set_password(SERVICE, "acct:secret_key", SECRET)
        order = OrderRequest(
            symbol="BTC/USD",
            side="BUY",
            quantity="0.01",
            order_type="LIMIT",
            limit_price="59000",
            time_in_force="GTC",
            asset_class="CRYPTO",
        )
        try:
            yield Subject(
                BrokerFactory.create(peer.settings("acct", live=True)),
                order,
                "BTC/USD CRYPTO",
                lambda: sum(o.status == "open" for o in peer.orders.values()),
            )
        finally:
            await peer.stop()
    elif kind == "schwab":
        peer = SchwabPeer()
        await peer.start()
        keyring.set_password(SERVICE, "acct:api_key", APP_KEY)
        keyring.set_password(SERVICE, "acct:secret_key", APP_SECRET)
        keyring.set_password(SERVICE, "acct:token", peer.stored_token())
        order = OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price="226")
        try:
            yield Subject(
                BrokerFactory.create(peer.settings("acct")),
                order,
                "AAPL",
                lambda: sum(o.status == "WORKING" for o in peer.orders.values()),
            )
        finally:
            await peer.stop()
    else:
        path = tmp_path / "export.csv"
        shutil.copy(FIXTURES / "vanguard_positions.csv", path)
        broker = BrokerFactory.create(
            {"type": "csv", "name": "acct", "path": str(path), "format": "vanguard"}
        )
        yield Subject(broker, OrderRequest(symbol="VTI", side="SELL", quantity=1), "VTI", None)


@pytest.mark.parametrize("kind", ["ccxt-kraken", "ccxt-binanceus", "ccxt-coinbase", "schwab", "csv"])
async def test_the_broker_contract(kind, tmp_path, memory_keyring):
    async with subject(kind, tmp_path, memory_keyring) as it:
        # The first connect of a ccxt account imports ccxt (seconds on a loaded machine).
        manager = MultiBrokerManager(
            fx=FxRates("USD", FxSettings()), heartbeat_interval=3600, connect_timeout=30
        )
        manager.add_broker("acct", it.broker)
        service = ExecutionService(
            manager, KillSwitch(tmp_path / "state", env={}), journal=Journal(tmp_path / "j.sqlite")
        )
        async with running(manager, service):
            assert manager.statuses()["acct"].state is ConnectionState.CONNECTED
            await manager.refresh()
            rows = {row.label: row for row in manager.consolidated_positions()}
            assert it.held in rows and rows[it.held].accounts == ["acct"]
            assert "acct" in manager.buying_power().per_account

            order = await service.submit(it.order.model_copy(update={"account": "acct"}))
            if it.working is None:
                assert order.status is OrderStatus.REJECTED
                assert order.reject_code == "UNSUPPORTED" and "read-only" in order.reject_reason
                return
            assert order.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED), order.reject_reason
            await until(lambda: it.working() == 1)
            outcomes = await service.halt("contract check", "test")
            assert outcomes["acct"].ok, outcomes
            await until(lambda: it.working() == 0)
            assert (await it.broker.get_open_orders()) == []
            # The order as the service tracks it ends cancelled, from the broker's own word.
            await until(
                lambda: (
                    service.tracker.get(order.client_order_id) is not None
                    and service.tracker.get(order.client_order_id).status is OrderStatus.CANCELLED
                ),
                within=10,
            )
