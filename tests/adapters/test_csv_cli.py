"""The command line with the new broker types: `broker-types` lists each crypto venue and the
read-only type with what they can do, `add` asks for their settings, and `test` reads a CSV
account."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from brokers.config import load_config
from brokers.paths import default_config_path
from console.cli.main import app

FIXTURES = Path(__file__).parent / "fixtures" / "csv"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def test_broker_types_lists_each_venue_and_the_read_only_type():
    result = invoke("broker-types", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    venues = {row["venue"]: row for row in rows if row["type"] == "ccxt"}
    assert set(venues) == {"kraken", "binanceus", "coinbase"}
    assert "DAY" not in venues["kraken"]["capabilities"]["time_in_force"]
    assert "STOP" in venues["kraken"]["capabilities"]["order_types"]
    assert "STOP" not in venues["binanceus"]["capabilities"]["order_types"]
    assert venues["coinbase"]["paper"] is True and venues["kraken"]["paper"] is False
    assert venues["kraken"]["secrets"] == ["api_key", "secret_key"]
    csv_row = next(row for row in rows if row["type"] == "csv")
    assert csv_row["read_only"] is True and csv_row["capabilities"]["order_types"] == []
    table = invoke("broker-types").stdout
    assert "ccxt (kraken)" in table and "read-only" in table


def test_add_asks_for_a_csv_accounts_settings(tmp_path):
    export = tmp_path / "positions.csv"
    shutil.copy(FIXTURES / "generic_positions.csv", export)
    answers = (
        "\n".join(
            [
                "csv",
                "held",
                "USD",
                "n",  # default account?
                "1",
                "schwab",  # not a format
                "generic",
                str(tmp_path / "missing.csv"),  # no such file
                str(export),
                "ticker=Ticker",  # not a column key
                "symbol=Ticker, quantity=Units, price=Mark",
            ]
        )
        + "\n"
    )
    result = invoke("add", input=answers)
    assert result.exit_code == 0, result.output
    assert "Live account" not in result.output  # a file never trades real money
    assert "format must be one of fidelity, vanguard, generic" in result.output
    assert "path: no file at" in result.output
    assert "columns must be KEY=HEADER pairs" in result.output
    account = load_config(default_config_path()).account("held")
    assert account.type == "csv" and account.live is False
    assert account.settings["columns"] == {"symbol": "Ticker", "quantity": "Units", "price": "Mark"}
    checked = invoke("test", "held", "--json")
    assert checked.exit_code == 0, checked.output
    steps = {step["step"]: step for step in json.loads(checked.stdout)["steps"]}
    assert steps["positions"]["detail"] == "3 position(s)"


def test_add_asks_for_a_crypto_accounts_settings():
    answers = (
        "\n".join(["ccxt", "crypto", "USD", "y", "n", "1", "bitstamp", "kraken", "2", "5", "30", "n"]) + "\n"
    )
    result = invoke("add", input=answers)
    assert result.exit_code == 0, result.output
    assert "exchange must be one of kraken, binanceus, coinbase" in result.output
    assert "cancel_after_seconds must be 0 (off) or from 10 to 86400" in result.output
    account = load_config(default_config_path()).account("crypto")
    assert (account.type, account.live) == ("ccxt", True)
    assert account.settings == {"exchange": "kraken", "poll_interval": 2, "cancel_after_seconds": 30}


def test_a_paper_account_at_a_venue_without_a_sandbox_is_not_added():
    result = invoke(
        "add", "--type", "ccxt", "--name", "k", "--paper", "--no-input", "--set", "exchange=kraken"
    )
    assert result.exit_code == 3
    assert "Kraken has no paper-trading sandbox" in " ".join(result.output.split())


def test_test_says_how_old_the_export_is_and_which_rows_were_left_out(tmp_path):
    export = tmp_path / "Portfolio_Positions.csv"
    shutil.copy(FIXTURES / "fidelity_positions.csv", export)
    config = tmp_path / "config.toml"
    config.write_text(f'[[accounts]]\nname = "fid"\ntype = "csv"\nformat = "fidelity"\npath = "{export}"\n')
    checked = invoke("--config", str(config), "test", "fid", "--json")
    assert checked.exit_code == 0, checked.output
    steps = {step["step"]: step for step in json.loads(checked.stdout)["steps"]}
    assert steps["positions"]["detail"] == "3 position(s)"
    assert steps["export"]["detail"].startswith("as of ")
    assert "line 5" in steps["export"]["detail"]
    order = invoke("--config", str(config), "order", "sell", "MSFT", "1", "--account", "fid", "--yes")
    assert order.exit_code != 0
    assert "read-only" in " ".join(order.output.split())
