"""Read-only accounts from position exports: Fidelity's and Vanguard's layouts with their quirks,
a generic file with a column map; malformed rows reported by line and the rest kept; the file read
again when it changes; every order refused; positions join consolidation."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.errors import ConfigError, OrderRejectedError
from brokers.fx import FxRates, FxSettings
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest
from brokers.registry import BrokerFactory
from brokers.sim import SimBroker

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "csv"


def account(tmp_path: Path, name: str, **settings):
    target = tmp_path / name
    shutil.copy(FIXTURES / name, target)
    return BrokerFactory.create({"type": "csv", "name": "held", "path": str(target), **settings}), target


async def test_fidelity_positions_cash_pending_activity_footer_and_a_bad_row(tmp_path):
    broker, path = account(tmp_path, "fidelity_positions.csv", format="fidelity")
    await broker.connect()
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert set(positions) == {"AAPL", "MSFT", "VTI"}
    assert (positions["MSFT"].quantity, positions["MSFT"].last_price, positions["MSFT"].avg_price) == (
        D(1000),
        D("415.20"),
        D(400),
    )
    assert positions["VTI"].quantity == D("10.5")
    balance = await broker.get_balance()
    assert balance.cash == D("12345.67") - D(1000)  # the core position less pending activity
    assert balance.equity == balance.cash + D(100) * D("227.50") + D(1000) * D("415.20") + D("10.5") * 280
    assert balance.buying_power == 0
    assert broker.last_error is not None and "line 5" in broker.last_error and "'abc'" in broker.last_error
    # "As of" the export's own time, not the time it was read.
    assert broker.as_of.timestamp() == pytest.approx(os.stat(path).st_mtime, abs=0.01)
    assert balance.timestamp == broker.as_of


async def test_vanguard_positions_stop_at_the_transactions(tmp_path):
    broker, _ = account(tmp_path, "vanguard_positions.csv", format="vanguard")
    await broker.connect()
    positions = {p.symbol: p.quantity for p in await broker.get_positions()}
    assert positions == {"VTI": D(20), "VFIAX": D("12.345")}
    assert (await broker.get_balance()).cash == D("5000.25")
    assert broker.last_error is None


async def test_a_generic_file_with_a_column_map(tmp_path):
    broker, _ = account(
        tmp_path,
        "generic_positions.csv",
        columns={"symbol": "Ticker", "quantity": "Units", "price": "Mark", "average_cost": "Cost"},
        cash_symbols=["CASH"],
    )
    await broker.connect()
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert positions["AAPL"].avg_price == D(180)
    assert positions["NOPRICE"].last_price is None  # shown without a price, never dropped
    assert (await broker.get_balance()).cash == D(1)


async def test_the_file_is_read_again_when_it_changes(tmp_path):
    broker, path = account(tmp_path, "vanguard_positions.csv", format="vanguard")
    await broker.connect()
    assert {p.symbol for p in await broker.get_positions()} == {"VTI", "VFIAX"}
    path.write_text(
        "Account Number,Investment Name,Symbol,Shares,Share Price,Total Value,\n1,X,BND,7,72.00,504.00,\n"
    )
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert {p.symbol: p.quantity for p in await broker.get_positions()} == {"BND": D(7)}


async def test_every_order_is_refused_with_a_clear_code(tmp_path):
    broker, _ = account(tmp_path, "vanguard_positions.csv", format="vanguard")
    await broker.connect()
    request = OrderRequest(symbol="VTI", side="SELL", quantity=1)
    assert "read-only" in broker.capabilities.supports(request)
    with pytest.raises(OrderRejectedError) as refused:
        await broker.place_order(request)
    assert refused.value.code == "READ_ONLY"
    assert await broker.get_open_orders() == [] and await broker.cancel_all_orders() == []


async def test_a_csv_account_joins_the_consolidated_view(tmp_path):
    broker, _ = account(tmp_path, "vanguard_positions.csv", format="vanguard")
    paper = SimBroker("paper", prices={"VTI": 280}, seed=1, initial_positions={"VTI": (5, 250)})
    manager = MultiBrokerManager(fx=FxRates("USD", FxSettings()), heartbeat_interval=3600)
    manager.add_broker("held", broker)
    manager.add_broker("paper", paper)
    try:
        await manager.connect_all()
        await manager.refresh()
        rows = {row.label: row for row in manager.consolidated_positions()}
        assert rows["VTI"].quantity == 25
        assert sorted(rows["VTI"].accounts) == ["held", "paper"]
    finally:
        await manager.disconnect_all()


def test_settings_name_the_key_and_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match="'path' is required"):
        BrokerFactory.create({"type": "csv", "name": "c"})
    with pytest.raises(ConfigError, match="'format' must be one of fidelity, vanguard, generic"):
        BrokerFactory.create({"type": "csv", "name": "c", "path": "x.csv", "format": "schwab"})
    with pytest.raises(ConfigError, match="needs 'columns'"):
        BrokerFactory.create({"type": "csv", "name": "c", "path": "x.csv"})
    with pytest.raises(ConfigError, match="'live' must be false"):
        BrokerFactory.create(
            {"type": "csv", "name": "c", "path": "x.csv", "format": "vanguard", "live": True}
        )


async def test_a_missing_file_fails_the_connection_with_its_path(tmp_path):
    broker = BrokerFactory.create(
        {"type": "csv", "name": "c", "path": str(tmp_path / "gone.csv"), "format": "vanguard"}
    )
    with pytest.raises(Exception, match="gone.csv"):
        await broker.connect()
    assert broker.connection_state.value == "FAILED"
