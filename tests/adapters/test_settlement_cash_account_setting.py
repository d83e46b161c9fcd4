"""IB and Kite accounts are cash accounts when their config says so (``cash_account = true``):
neither broker's account data says which kind an account is. Read through the real client
libraries from the loopback peers; a bad value is refused naming the setting; ``trading-console
add`` asks for it."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from peers.kite_peer import kite_peer  # noqa: F401  (kite_peer is a fixture)
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    REQ_ACCOUNT_SUMMARY,
    tws_peer_fixture,
)
from support import running, until
from typer.testing import CliRunner

from adapters.broker_payloads import payload
from brokers.account_state import SettledCashSource
from brokers.adapters.ibkr import IBKRBroker
from brokers.adapters.zerodha import ZerodhaBroker
from brokers.config import load_config
from brokers.errors import ConfigError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode
from brokers.paths import default_config_path
from brokers.risk import RiskEngine
from brokers.settled_cash import CashLedger
from console.cli.main import app

D = Decimal
IB_WIRE = json.loads(Path(__file__).parent.joinpath("fixtures", "ibkr", "wire_messages.json").read_text())


def ib_summary_with_settled_cash() -> list[list[str]]:
    rows = IB_WIRE["account_summary"]
    return [
        *rows[:-1],
        ["63", "1", "$REQ_ID", "DU1234567", "SettledCash", "80230.10", "USD"],
        ["63", "1", "$REQ_ID", "DU1234567", "SettledCash", "80230.10", "BASE"],
        rows[-1],
    ]


def ib_account(peer, **settings) -> IBKRBroker:
    broker = IBKRBroker.from_config({"name": "ib", "port": peer.port, "timeout": 2, **settings})
    broker.commission_grace = 0.1
    return broker


# -- Interactive Brokers ----------------------------------------------------------------------


@pytest.mark.parametrize("setting", [True, False])
async def test_ib_account_is_a_cash_account_when_its_config_says_so(tws_peer, setting):
    tws_peer.replies[REQ_ACCOUNT_SUMMARY] = ib_summary_with_settled_cash()
    broker = ib_account(tws_peer, cash_account=setting)
    await broker.connect()
    try:
        balance = await broker.get_balance()
    finally:
        await broker.disconnect()
    assert balance.cash_account is setting
    assert (balance.settled_cash, balance.settled_source) == (D("80230.10"), SettledCashSource.BROKER)


async def test_ib_cash_account_cannot_buy_with_the_proceeds_of_its_sale(tws_peer, tmp_path):
    tws_peer.replies[REQ_ACCOUNT_SUMMARY] = ib_summary_with_settled_cash()
    broker = ib_account(tws_peer, cash_account=True)
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib", broker, default=True)
    ledger = CashLedger(lambda: manager.snapshot.balances)
    manager.add_listener(ledger.on_event)
    risk = RiskEngine()
    risk.guard_cash_accounts(ledger)
    journal = Journal(tmp_path / "journal.sqlite")
    service = ExecutionService(
        manager, KillSwitch(tmp_path, journal=journal, env={}), risk=risk, journal=journal
    )
    try:
        async with running(manager, service):
            await manager.refresh()
            assert ledger.is_cash_account("ib")
            sale = await service.submit(OrderRequest(symbol="AAPL", side="SELL", quantity=100, account="ib"))
            assert sale.status is not OrderStatus.REJECTED
            await until(lambda: ledger.pending("ib"))
            sent = len(tws_peer.orders)
            # 600 x 150 = 90,000 USD: more than the 80,230.10 settled, less than with the sale.
            refused = await service.submit(
                OrderRequest(
                    symbol="AAPL",
                    side="BUY",
                    quantity=600,
                    order_type="LIMIT",
                    limit_price="150",
                    account="ib",
                )
            )
            assert refused.reject_code == RejectCode.UNSETTLED_FUNDS
            assert "ib is a cash account" in refused.reject_reason
            assert "80,230.10 USD of settled cash" in refused.reject_reason
            assert len(tws_peer.orders) == sent  # never sent to IB
    finally:
        journal.close()


def test_ib_cash_account_setting_must_be_true_or_false():
    with pytest.raises(ConfigError, match="ibkr setting 'cash_account' must be true or false, not 'yes'"):
        IBKRBroker.from_config({"name": "ib", "cash_account": "yes"})


# -- Zerodha (Kite) ---------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [True, False])
async def test_kite_account_is_a_cash_account_when_its_config_says_so(kite_peer, monkeypatch, setting):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    adapter = ZerodhaBroker.from_config(
        {"name": "kite", "root": kite_peer.root, "timeout": 2, "cash_account": setting}
    )
    await adapter.connect()
    try:
        kite_peer.serve_fixture("GET", "/user/margins", payload("kite", "margins.json"))
        kite_peer.serve_fixture("GET", "/portfolio/holdings", payload("kite", "holdings.json"))
        kite_peer.serve_fixture("GET", "/portfolio/positions", payload("kite", "positions.json"))
        balance = await adapter.get_balance()
    finally:
        await adapter.disconnect()
    assert balance.cash_account is setting
    assert balance.settled_cash == D("245431.6") and balance.settled_source is SettledCashSource.BROKER


def test_kite_cash_account_setting_must_be_true_or_false():
    with pytest.raises(ConfigError, match="zerodha setting 'cash_account' must be true or false, not 1"):
        ZerodhaBroker.from_config({"name": "kite", "root": "http://127.0.0.1:1", "cash_account": 1})


# -- trading-console add ----------------------------------------------------------------------


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def test_add_asks_whether_an_ib_account_is_a_cash_account():
    # host, port, client id, then the cash account question: a bad answer is asked again.
    result = invoke(
        "add", "--type", "ibkr", "--name", "ib", "--paper", "--default", input="\n\n\n\n\nmaybe\nyes\n"
    )
    assert result.exit_code == 0, result.output
    assert "Cash account, buying with settled cash only" in result.output
    assert "cash_account must be yes or no, not 'maybe'" in result.output
    assert load_config(default_config_path()).account("ib").settings["cash_account"] is True


def test_add_writes_a_kite_cash_account_given_on_the_command_line():
    result = invoke(
        "add", "--type", "zerodha", "--name", "kite", "--live", "--no-input", "--set", "cash_account=true"
    )
    assert result.exit_code == 0, result.output
    assert load_config(default_config_path()).account("kite").settings["cash_account"] is True
    left_out = invoke("add", "--type", "ibkr", "--name", "ib", "--paper", "--no-input")
    assert left_out.exit_code == 0, left_out.output
    assert "cash_account" not in load_config(default_config_path()).account("ib").settings
