"""``trading-console order buy|sell ... --take-profit P --stop-loss P [--oco]``: brackets, OTO and
OCO from the command line, through the same checks as the console."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from console.cli.main import app


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    """The output's words, without the box a usage error is drawn in or its line breaks."""
    return " ".join(word for word in text.split() if word not in ("│", "╭", "╰"))


def test_a_bracket_from_the_command_line():
    result = invoke("order", "buy", "AAPL", "1", "--take-profit", "240", "--stop-loss", "215", "-y", "--json")
    assert result.exit_code == 0, result.output
    order = json.loads(result.stdout)
    assert (order["status"], order["take_profit"], order["stop_loss"]) == ("FILLED", "240", "215")


def test_an_oco_pair_from_the_command_line():
    result = invoke(
        "order", "sell", "AAPL", "10", "--oco", "--take-profit", "240", "--stop-loss", "210", "-y", "--json"
    )
    assert result.exit_code == 0, result.output
    order = json.loads(result.stdout)
    assert (order["order_type"], order["limit_price"], order["status"]) == ("LIMIT", "240", "ACCEPTED")


def test_a_take_profit_on_the_wrong_side_is_a_usage_error_naming_it():
    result = invoke("order", "buy", "AAPL", "1", "--limit", "200", "--take-profit", "190", "-y")
    assert result.exit_code == 2
    assert "--take-profit" in result.output
    assert "must be above the entry price 200" in plain(result.output)


def test_oco_needs_both_exits():
    result = invoke("order", "sell", "AAPL", "1", "--oco", "--stop-loss", "150", "-y")
    assert result.exit_code == 2
    assert "needs both take_profit" in plain(result.output) and "--take-profit" in result.output
