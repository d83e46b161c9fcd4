"""``trading-console settlements``: settled and pending cash per account, and what settles when."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal

from typer.testing import CliRunner

from brokers.instruments import Instrument
from brokers.settlement import settlement_of
from console.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def plain(text: str) -> str:
    return " ".join(re.sub(r"[│┃╭╮╰╯─━┏┓┗┛┡┩└┘┳┻╇┼]", " ", text).split())


def test_nothing_pending_on_a_fresh_demo():
    result = invoke("settlements", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pending"] == []
    names = {row["account"] for row in data["accounts"]}
    assert names == {"paper-us", "paper-us-cash", "paper-in"}
    for row in data["accounts"]:
        assert row["source"] == "BROKER" and row["by_date"] == []
        assert Decimal(row["settled_cash"]) == Decimal(row["cash"]) and Decimal(row["unsettled_cash"]) == 0
        assert row["disagreement"] is None
    cash_accounts = {row["account"] for row in data["accounts"] if row["cash_account"]}
    assert "paper-us-cash" in cash_accounts and "paper-us" not in cash_accounts
    assert data["total"]["settled"]["currency"] == "USD" and data["total"]["pending"]["amount"] == "0"


def test_a_sale_is_listed_until_it_settles_and_the_paper_brokers_forgetting_is_shown():
    sold = json.loads(invoke("order", "sell", "AAPL", "10", "--yes", "--json").stdout)
    assert sold["status"] == "FILLED"
    result = invoke("settlements", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)

    [fill] = data["pending"]
    executed = datetime.fromisoformat(fill["executed_at"])
    expected = settlement_of(Instrument("AAPL"), executed, "USD")
    assert (fill["account"], fill["symbol"], fill["side"], fill["cycle"]) == (
        "paper-us",
        "AAPL",
        "SELL",
        "T+1",
    )
    assert fill["trade_date"] == expected.trade_date.isoformat()
    assert fill["settlement_date"] == expected.settlement_date.isoformat()
    proceeds = Decimal(fill["amount"])
    assert proceeds == Decimal(sold["filled_quantity"]) * Decimal(sold["avg_fill_price"])

    us = next(row for row in data["accounts"] if row["account"] == "paper-us")
    assert us["by_date"] == [
        {
            "settlement_date": expected.settlement_date.isoformat(),
            "incoming": fill["amount"],
            "outgoing": "0",
            "net": fill["amount"],
            "fills": 1,
        }
    ]
    # This process's paper account starts afresh and knows no sale; the journal does. The
    # broker's figure is shown, and so is the difference.
    assert us["source"] == "BROKER" and Decimal(us["unsettled_cash"]) == 0
    assert Decimal(us["computed_settled_cash"]) == Decimal(us["cash"]) - proceeds
    assert Decimal(us["disagreement"]) == proceeds

    table = plain(invoke("settlements").stdout)
    assert "Settled cash" in table and "Pending settlements" in table
    assert f"paper-us {expected.settlement_date:%a %Y-%m-%d}" in table
    assert "paper-us-cash (cash account)" in table


def test_the_table_says_when_nothing_is_pending():
    result = invoke("settlements")
    assert result.exit_code == 0, result.output
    table = plain(result.stdout)
    assert "nothing pending: all cash has settled" in table
    assert "paper-in (cash account) INR 5,000,000.00 5,000,000.00 0.00 broker" in table
