"""``trading-console order ... --distribute`` with exits: each child of the split is a bracket
of its own, whose exits are for the child's own quantity at the child's account; an OCO pair is
not split (it protects what one account holds); the exits are checked before the split."""

from __future__ import annotations

import json
from decimal import Decimal

from typer.testing import CliRunner

from console.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def plain(text: str) -> str:
    return " ".join(word for word in text.split() if word not in ("│", "╭", "╰"))


def journaled() -> dict[str, dict]:
    result = invoke("orders", "--json")
    assert result.exit_code == 0, result.output
    return {order["client_order_id"]: order for order in json.loads(result.stdout)}


def test_each_distributed_child_gets_its_own_exits_for_its_own_quantity():
    result = invoke(
        "order",
        "buy",
        "AAPL",
        "10",
        "--take-profit",
        "240",
        "--stop-loss",
        "215",
        "--distribute",
        "-y",
        "--json",
    )
    children = json.loads(result.stdout)
    assert isinstance(children, list) and len(children) > 1
    placed = [child for child in children if child["status"] == "FILLED"]
    # The demo's USD accounts take their share; paper-in has no price for AAPL and refuses its
    # own, with nothing sent for it and no exits.
    assert sorted((child["account"], child["quantity"]) for child in placed) == [
        ("paper-us", "5"),
        ("paper-us-cash", "3"),
    ]
    refused = [child for child in children if child["status"] == "REJECTED"]
    assert [child["account"] for child in refused] == ["paper-in"]
    assert result.exit_code != 0  # a refused child is reported as such
    assert sum(Decimal(child["quantity"]) for child in children) == 10
    for child in children:
        assert (child["take_profit"], child["stop_loss"]) == ("240", "215")
    orders = journaled()
    for child in placed:
        coid = child["client_order_id"]
        take_profit, stop_loss = orders[coid + "-TP"], orders[coid + "-SL"]
        assert (take_profit["account"], take_profit["side"], take_profit["quantity"]) == (
            child["account"],
            "SELL",
            child["quantity"],
        )
        assert (take_profit["order_type"], take_profit["limit_price"]) == ("LIMIT", "240")
        assert (stop_loss["account"], stop_loss["quantity"]) == (child["account"], child["quantity"])
        assert (stop_loss["order_type"], stop_loss["stop_price"]) == ("STOP", "215")
    for child in refused:
        assert child["client_order_id"] + "-TP" not in orders
        assert child["client_order_id"] + "-SL" not in orders


def test_an_oco_pair_is_not_distributed():
    result = invoke(
        "order",
        "sell",
        "AAPL",
        "10",
        "--oco",
        "--take-profit",
        "240",
        "--stop-loss",
        "215",
        "--distribute",
        "-y",
    )
    assert result.exit_code == 2
    assert "--oco" in result.output
    assert "place one OCO pair per account with --account" in plain(result.output)
    assert journaled() == {}


def test_exits_are_checked_before_the_split():
    result = invoke(
        "order",
        "buy",
        "AAPL",
        "10",
        "--take-profit",
        "240",
        "--stop-loss",
        "230",
        "--distribute",
        "-y",
        "--json",
    )
    assert result.exit_code != 0
    answered = json.loads(result.stdout)
    assert len(answered) == 1
    assert answered[0]["reject_code"] == "PRICE_BAND"
    assert "stop_loss 230 is at or above the last price 227.5 of AAPL" in answered[0]["reject_reason"]
    assert not any(order["status"] in ("FILLED", "ACCEPTED") for order in journaled().values())
