"""Commands that talk to brokers: status, test, positions, balances, order, cancel."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import brokers.runtime
from brokers.errors import BrokerAPIError
from brokers.journal import Journal
from brokers.models import OrderRequest, OrderStatus
from brokers.paths import state_dir
from brokers.registry import BrokerFactory
from brokers.sim import SimBroker
from console.cli.main import app


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def journal_events() -> list:
    # With no config the command line runs the demo, which keeps its own journal.
    path = state_dir() / "demo-journal.sqlite"
    if not path.exists():
        return []
    with Journal(path) as journal:
        return journal.events()


class SuspendedBroker(SimBroker):
    """Connects, then refuses to say anything about the account."""

    async def get_balance(self):
        raise BrokerAPIError("account suspended", broker=self.name)


@pytest.fixture
def suspended_type(monkeypatch):
    monkeypatch.setitem(BrokerFactory._types, "suspended", SuspendedBroker)


# -- status -------------------------------------------------------------------------------------


def test_status_json_shape_for_the_demo():
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["trading_state"] == "ACTIVE"
    assert data["base_currency"] == "USD"
    rows = {row["name"]: row for row in data["accounts"]}
    assert set(rows) == {"paper-us", "paper-us-cash", "paper-in"}
    for row in rows.values():
        assert row["state"] == "CONNECTED"
        assert row["error"] is None
        assert isinstance(row["latency_ms"], float)
        assert set(row["equity"]) == {"amount", "currency", "stale", "missing"}
        assert isinstance(row["equity"]["amount"], str)  # Decimals travel as strings
    assert rows["paper-in"]["equity"]["currency"] == "INR"
    assert rows["paper-in"]["equity_base"]["currency"] == "USD"
    total = sum(Decimal(row["equity_base"]["amount"]) for row in rows.values())
    assert Decimal(data["total"]["equity"]["amount"]) == total


def test_status_exits_1_and_shows_the_error_when_an_account_is_down(tmp_path):
    path = write_config(
        tmp_path,
        """
[[accounts]]
name = "good"
type = "sim"
[[accounts]]
name = "flaky"
type = "sim"
[accounts.faults]
fail_connects = 1000
""",
    )
    result = invoke("--config", str(path), "status", "--json")
    assert result.exit_code == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)["accounts"]}
    assert rows["good"]["state"] == "CONNECTED"
    assert rows["flaky"]["state"] in ("FAILED", "DISCONNECTED")
    assert "connection refused" in rows["flaky"]["error"]
    table = invoke("--config", str(path), "status")
    assert table.exit_code == 1
    assert "FAILED" in table.stdout or "DISCONNECTED" in table.stdout


def test_status_shows_a_halt():
    invoke("halt", "--reason", "lunch")
    data = json.loads(invoke("status", "--json").stdout)
    assert data["trading_state"] == "HALTED"
    assert data["halt"]["reason"] == "lunch"


# -- test NAME ----------------------------------------------------------------------------------


CHECK_CONFIG = """
[[accounts]]
name = "good"
type = "sim"
[[accounts]]
name = "badcash"
type = "sim"
initial_cash = -5
[[accounts]]
name = "flaky"
type = "sim"
[accounts.faults]
fail_connects = 1000
[[accounts]]
name = "alp"
type = "alpaca"
[[accounts]]
name = "frozen"
type = "suspended"
"""


@pytest.mark.parametrize(
    ("account", "code", "failure", "failed_step"),
    [
        ("good", 0, None, None),
        ("badcash", 3, "config", "config"),
        ("alp", 4, "credentials", "connect"),
        ("flaky", 5, "network", "connect"),
        ("frozen", 6, "broker", "balance"),
    ],
)
def test_test_command_exit_code_per_failure_class(
    tmp_path, suspended_type, account, code, failure, failed_step
):
    path = write_config(tmp_path, CHECK_CONFIG)
    result = invoke("--config", str(path), "test", account, "--json")
    assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is (code == 0)
    assert data["exit_code"] == code
    assert data["failure"] == failure
    steps = {step["step"]: step for step in data["steps"]}
    if code == 0:
        assert list(steps) == ["config", "connect", "balance", "positions", "open orders"]
        assert all(step["ok"] for step in steps.values())
    else:
        assert steps[failed_step]["ok"] is False
        assert data["error"]


def test_test_command_times_out_as_a_network_failure(tmp_path):
    path = write_config(
        tmp_path,
        """
[[accounts]]
name = "slow"
type = "sim"
[accounts.faults]
hang_next = 1
hang_seconds = 30
hang_methods = ["get_balance"]
""",
    )
    result = invoke("--config", str(path), "test", "slow", "--timeout", "0.2", "--json")
    assert result.exit_code == 5
    data = json.loads(result.stdout)
    assert "no answer within 0.2 s" in data["error"]


def test_test_command_help_documents_exit_codes():
    result = invoke("test", "--help")
    text = plain(result.output)
    for fragment in ("3 configuration", "4 credentials", "5 network", "6 broker"):
        assert fragment in text


def test_test_command_unknown_account_is_a_usage_error():
    result = invoke("test", "nobody")
    assert result.exit_code == 2
    assert "Invalid value for 'NAME'" in plain(result.output)


# -- positions and balances ---------------------------------------------------------------------


def test_positions_json_is_consolidated_in_the_base_currency():
    result = invoke("positions", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["base_currency"] == "USD"
    rows = {row["symbol"]: row for row in data["positions"]}
    # The demo holds AAPL in two accounts: 50 @ 210 and 25 @ 190.
    aapl = rows["AAPL"]
    assert aapl["quantity"] == "75"
    assert Decimal(aapl["avg_price"]).quantize(Decimal("0.01")) == Decimal("203.33")
    assert sorted(aapl["accounts"]) == ["paper-us", "paper-us-cash"]
    assert "legs" not in aapl
    assert rows["INFY"]["currency"] == "INR"
    assert rows["INFY"]["market_value_base"]["currency"] == "USD"
    assert rows["NVDA"]["quantity"] == "-30"


def test_positions_by_account_lists_the_legs():
    data = json.loads(invoke("positions", "--by-account", "--json").stdout)
    aapl = next(row for row in data["positions"] if row["symbol"] == "AAPL")
    legs = {leg["account"]: leg for leg in aapl["legs"]}
    assert legs["paper-us"]["quantity"] == "50"
    assert legs["paper-us-cash"]["quantity"] == "25"
    table = invoke("positions", "--by-account")
    assert table.exit_code == 0
    assert "paper-us-cash" in table.stdout


def test_balances_total_and_by_account():
    data = json.loads(invoke("balances", "--json").stdout)
    assert set(data["total"]) == {"cash", "equity", "buying_power", "market_value", "unrealized_pnl"}
    assert "accounts" not in data
    detailed = json.loads(invoke("balances", "--by-account", "--json").stdout)
    accounts = {row["account"]: row for row in detailed["accounts"]}
    assert accounts["paper-in"]["native"]["cash"]["currency"] == "INR"
    assert accounts["paper-in"]["base"]["cash"]["currency"] == "USD"
    total_cash = sum(Decimal(row["base"]["cash"]["amount"]) for row in accounts.values())
    assert Decimal(detailed["total"]["cash"]["amount"]) == total_cash


# -- order --------------------------------------------------------------------------------------


def test_market_order_fills_and_is_journaled():
    result = invoke("order", "buy", "AAPL", "10", "--yes", "--json")
    assert result.exit_code == 0, result.output
    order = json.loads(result.stdout)
    assert order["status"] == "FILLED"
    assert order["account"] == "paper-us"
    assert order["quantity"] == "10" and order["filled_quantity"] == "10"
    kinds = [event.kind for event in journal_events() if event.client_order_id == order["client_order_id"]]
    assert kinds[0] == "intent"


def test_order_asks_for_confirmation_and_sends_nothing_when_declined():
    result = invoke("order", "sell", "MSFT", "5", "--limit", "420", input="n\n")
    assert result.exit_code == 1
    assert "SELL 5 MSFT LIMIT @ 420 DAY to paper-us" in result.output
    assert "Send this order?" in result.output
    assert "Not sent." in result.output
    assert journal_events() == []


def test_order_to_a_live_account_says_so_before_asking(tmp_path):
    path = write_config(tmp_path, '[[accounts]]\nname = "real"\ntype = "sim"\nlive = true\n')
    result = invoke("--config", str(path), "order", "buy", "AAPL", "1", input="n\n")
    assert result.exit_code == 1
    assert "LIVE account (real): this order uses real money." in result.output


def test_rejected_order_exits_7_with_code_and_reason():
    result = invoke("order", "buy", "AAPL", "10", "--limit", "100", "--yes", "--json")
    assert result.exit_code == 7
    order = json.loads(result.stdout)
    assert order["status"] == "REJECTED"
    assert order["reject_code"] == "PRICE_BAND"
    assert "Rejected [PRICE_BAND]:" in result.stderr


def test_order_while_halted_is_rejected_system_halted():
    invoke("halt", "--reason", "risk review")
    result = invoke("order", "buy", "AAPL", "1", "-y", "--json")
    assert result.exit_code == 7
    order = json.loads(result.stdout)
    assert order["reject_code"] == "SYSTEM_HALTED"
    assert "risk review" in order["reject_reason"]


def test_distributed_order_returns_every_child():
    result = invoke("order", "buy", "AAPL", "8", "--distribute", "--yes", "--json", "--currency", "USD")
    orders = json.loads(result.stdout)
    assert isinstance(orders, list) and len(orders) >= 2
    assert sum(Decimal(o["quantity"]) for o in orders) == Decimal(8)
    filled = [o for o in orders if o["status"] == "FILLED"]
    assert filled
    assert result.exit_code == (7 if any(o["status"] == "REJECTED" for o in orders) else 0)


def test_order_types_follow_the_prices_given():
    from console.cli.trading import build_request

    def kind(**prices):
        return build_request("BUY", "AAPL", "1", tif="GTC", **prices).order_type.value

    assert kind() == "MARKET"
    assert kind(limit="10") == "LIMIT"
    assert kind(stop="10") == "STOP"
    assert kind(limit="10", stop="11") == "STOP_LIMIT"
    assert kind(trail="2.5") == "TRAILING_STOP"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["buy", "AAPL", "0"], "QTY"),
        (["buy", "AAPL", "abc"], "QTY"),
        (["buy", "AAPL", "nan"], "QTY"),
        (["buy", "AAPL", "1e20"], "QTY"),
        (["buy", "AAPL", "1.1234567891"], "QTY"),
        (["buy", "AA PL$", "1"], "SYMBOL"),
        (["buy", "AAPL", "1", "--limit", "-3"], "--limit"),
        (["buy", "AAPL", "1", "--limit", "inf"], "--limit"),
        (["buy", "AAPL", "1", "--stop", "zero"], "--stop"),
        (["buy", "AAPL", "1", "--trail", "150"], "--trail"),
        (["buy", "AAPL", "1", "--trail", "2", "--limit", "10"], "--trail"),
        (["buy", "AAPL", "1", "--tif", "forever"], "--tif"),
        (["buy", "AAPL", "1", "--account", "nobody"], "--account"),
        (["buy", "AAPL", "1", "--account", "paper-us", "--distribute"], "--distribute"),
        (["sell", "AAPL", "1", "--currency", "dollars"], "--currency"),
    ],
)
def test_bad_order_arguments_are_usage_errors_naming_the_argument(args, named):
    result = invoke("order", *args, "--yes")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{named}'" in plain(result.output)
    assert journal_events() == []


@pytest.mark.parametrize(
    ("args", "named", "typed"),
    [
        (["buy", "AAPL", "1,5"], "QTY", "1,5"),
        (["buy", "AAPL", "0,5"], "QTY", "0,5"),
        (["buy", "AAPL", "1,00"], "QTY", "1,00"),
        (["buy", "AAPL", "0,125"], "QTY", "0,125"),
        (["buy", "AAPL", "10,00,0"], "QTY", "10,00,0"),
        (["buy", "AAPL", "1.000,5"], "QTY", "1.000,5"),
        (["buy", "AAPL", ",5"], "QTY", ",5"),
        (["buy", "AAPL", "1", "--limit", "190,5"], "--limit", "190,5"),
        (["buy", "AAPL", "1", "--stop", "1,5"], "--stop", "1,5"),
        (["sell", "AAPL", "1", "--trail", "2,5"], "--trail", "2,5"),
    ],
)
def test_a_comma_that_is_not_a_thousands_separator_is_refused(args, named, typed):
    result = invoke("order", *args, "--yes", "--json")
    assert result.exit_code == 2, result.output
    text = plain(result.output)
    assert f"Invalid value for '{named}'" in text
    assert "comma" in text and typed in text
    assert journal_events() == []


@pytest.mark.parametrize(("typed", "quantity"), [("1,000", "1000"), ("12,345.5", "12345.5")])
def test_a_thousands_separator_in_the_right_place_is_read_as_one(typed, quantity):
    from console.cli.trading import build_request

    request = build_request("BUY", "AAPL", typed)
    assert request.quantity == Decimal(quantity)
    priced = build_request("BUY", "AAPL", "1", limit="1,234.5")
    assert priced.limit_price == Decimal("1234.5")


def test_order_needs_a_side():
    result = invoke("order", "hold", "AAPL", "1")
    assert result.exit_code == 2
    assert "hold" in plain(result.output)


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_all_reports_each_account():
    result = invoke("cancel", "--all", "--json")
    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.stdout)
    assert set(outcomes) == {"paper-us", "paper-us-cash", "paper-in"}
    assert all(o == {"ok": True, "cancelled": 0, "error": None} for o in outcomes.values())


def resting_order_at_paper_us(monkeypatch) -> tuple[SimBroker, str]:
    """paper-us, in every runtime the commands build, holds a resting limit order: (broker, its id)."""
    broker = SimBroker("paper-us", prices={"AAPL": "227.50"})
    real_build = brokers.runtime.build_runtime

    def with_a_resting_order(config, **kwargs):
        built = {a.name: BrokerFactory.create(a.broker_config()) for a in config.accounts}
        built["paper-us"] = broker
        return real_build(config, brokers=built, **kwargs)

    async def place() -> str:
        await broker.connect()
        order = await broker.place_order(
            OrderRequest(symbol="AAPL", side="BUY", quantity=3, order_type="LIMIT", limit_price="200")
        )
        return order.broker_order_id

    broker_order_id = asyncio.run(place())
    monkeypatch.setattr(brokers.runtime, "build_runtime", with_a_resting_order)
    return broker, broker_order_id


def test_cancel_all_works_while_halted(monkeypatch):
    broker, broker_order_id = resting_order_at_paper_us(monkeypatch)
    assert invoke("halt").exit_code == 0
    flag = state_dir() / "SYSTEM_HALTED"
    assert flag.exists()
    result = invoke("cancel", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["paper-us"] == {"ok": True, "cancelled": 1, "error": None}

    async def at_the_broker() -> OrderStatus:
        await broker.connect()  # the command's runtime disconnected it on the way out
        return (await broker.get_order(broker_order_id)).status

    assert asyncio.run(at_the_broker()) is OrderStatus.CANCELLED
    assert flag.exists()  # cancelling does not resume


def test_cancel_one_order(monkeypatch):
    _, broker_order_id = resting_order_at_paper_us(monkeypatch)
    result = invoke("cancel", "paper-us", broker_order_id, "--json")
    assert result.exit_code == 0, result.output
    order = json.loads(result.stdout)
    assert order["status"] == "CANCELLED"
    assert order["broker_order_id"] == broker_order_id


def test_cancel_an_order_the_broker_does_not_know_is_a_broker_error():
    result = invoke("cancel", "paper-us", "SIM-999999")
    assert result.exit_code == 6
    assert "SIM-999999" in result.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "ACCOUNT"),
        (["nobody", "X1"], "ACCOUNT"),
        (["paper-us"], "ORDER_ID"),
        (["paper-us", "X1", "--all"], "--all"),
    ],
)
def test_bad_cancel_arguments_are_usage_errors(args, named):
    result = invoke("cancel", *args)
    assert result.exit_code == 2
    assert f"Invalid value for '{named}'" in plain(result.output)


def test_order_question_shows_the_notional_and_why_it_asks():
    result = invoke("order", "buy", "MSFT", "200", input="n\n")
    assert result.exit_code == 1
    assert "BUY 200 MSFT MARKET DAY to paper-us" in result.output
    assert "notional ≈ 83,040.00 USD" in result.output
    assert "Asking because: notional above 50,000.00 USD" in result.output
    assert "Not sent." in result.output
    assert journal_events() == []


def test_split_order_question_names_only_the_accounts_that_get_a_part(tmp_path):
    path = write_config(
        tmp_path,
        '[[accounts]]\nname = "main"\ntype = "sim"\nweight = 2\n\n'
        '[[accounts]]\nname = "real"\ntype = "sim"\nlive = true\n',
    )
    one = invoke("--config", str(path), "order", "buy", "AAPL", "1", "--distribute", input="n\n")
    assert "split by weight across main 1" in one.output
    assert "LIVE" not in one.output
    three = invoke("--config", str(path), "order", "buy", "AAPL", "3", "--distribute", input="n\n")
    assert "split by weight across main 2, real 1" in three.output
    assert "LIVE account (real): this order uses real money." in three.output
    assert three.exit_code == 1


CURRENCY_DESK = """
[[accounts]]
name = "paper-usd"
type = "sim"
currency = "USD"
[accounts.prices]
AAPL = 190.00
[risk]
max_order_notional = 10000
[fx.rates]
USDINR = 84
"""


def test_an_order_in_a_currency_the_account_does_not_trade_is_refused_not_valued_in_it(tmp_path):
    path = write_config(tmp_path, CURRENCY_DESK)
    order_args = ("--config", str(path), "order", "buy", "AAPL", "500", "--limit", "190", "--yes", "--json")
    plain_order = invoke(*order_args)
    assert plain_order.exit_code == 7, plain_order.output
    assert json.loads(plain_order.stdout)["reject_code"] == "MAX_NOTIONAL"
    in_inr = invoke(*order_args, "--currency", "INR")
    assert in_inr.exit_code == 7, in_inr.output
    order = json.loads(in_inr.stdout)
    assert order["status"] == "REJECTED" and order["reject_code"] == "CURRENCY_MISMATCH"
    assert "INR" in order["reject_reason"] and "USD" in order["reject_reason"]
    assert order["filled_quantity"] in ("0", None) and order["broker_order_id"] is None
    asked = invoke(
        "--config", str(path), "order", "buy", "AAPL", "500", "--limit", "190", "--currency", "INR"
    )
    assert "INR" in asked.output and "USD" in asked.output
    assert "notional ≈" not in asked.output
