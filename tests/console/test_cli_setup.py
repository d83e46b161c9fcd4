"""Set-up commands: init, accounts, broker-types, add, set-creds, and config resolution."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import keyring.backends.fail
from typer.testing import CliRunner

from brokers.config import load_config
from brokers.credentials import SERVICE
from brokers.paths import default_config_path
from console.cli.config_file import example_path
from console.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    """Error panels wrap and box their text; compare words only."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- config.example.toml ------------------------------------------------------------------------


def test_example_config_loads_and_documents_every_setting():
    config = load_config(EXAMPLE)
    assert [a.name for a in config.accounts] == ["paper"]
    assert config.accounts[0].type == "sim"
    text = EXAMPLE.read_text(encoding="utf-8")
    commented = {line.lstrip("# ").split("=")[0].strip() for line in text.splitlines() if "=" in line}
    commented |= set(re.findall(r"^#?\s*\[+[\w.]*?(\w+)\]+", text, re.MULTILINE))
    for section in (config.risk, config.halt, config.fx, config.ui):
        for field in type(section).model_fields:
            assert field in commented, f"{field} is not described in config.example.toml"
    for key in (
        "base_currency",
        "state_dir",
        "live",
        "default",
        "weight",
        "label",
        "routing",
        "host",
        "port",
        "client_id",
        "product",
        "key_env",
        "secret_env",
    ):
        assert key in text, key


def test_example_config_builds_its_brokers():
    from brokers.registry import BrokerFactory

    config = load_config(EXAMPLE)
    broker = BrokerFactory.create(config.accounts[0].broker_config())
    assert broker.name == "paper"


def commented_account_examples() -> list[str]:
    """Each commented-out [[accounts]] block of the example, uncommented."""
    blocks, current = [], None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() == "# [[accounts]]":
            current = ["[[accounts]]"]
            blocks.append(current)
        elif current is not None and line.startswith("# ") and "=" in line:
            current.append(line[2:])
        else:
            current = None
    return ["\n".join(block) for block in blocks]


def test_commented_broker_examples_are_valid_settings():
    from brokers.config import parse_config
    from brokers.registry import BrokerFactory

    examples = commented_account_examples()
    built = set()
    for text in examples:
        account = parse_config(tomllib.loads(text)).accounts[0]
        broker = BrokerFactory.create(account.broker_config())
        built.add(broker.broker_type)
    assert built == {"alpaca", "ibkr", "zerodha", "ccxt", "csv", "schwab"}


def test_example_config_holds_no_secret_values():
    from brokers.config import is_secret_key

    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert not any(is_secret_key(key) for account in data["accounts"] for key in account)


def test_example_is_found_from_the_package():
    assert example_path() == EXAMPLE


# -- init ---------------------------------------------------------------------------------------


def test_init_writes_the_example_and_refuses_to_overwrite():
    target = default_config_path()
    result = invoke("init")
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
    assert target.stat().st_mode & 0o077 == 0
    target.write_text("# mine\n", encoding="utf-8")
    again = invoke("init")
    assert again.exit_code == 1
    assert "--force" in again.output
    assert target.read_text(encoding="utf-8") == "# mine\n"
    forced = invoke("init", "--force")
    assert forced.exit_code == 0
    assert target.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


def test_init_honours_config_option(tmp_path):
    target = tmp_path / "elsewhere" / "tc.toml"
    result = invoke("--config", str(target), "init")
    assert result.exit_code == 0, result.output
    assert load_config(target).accounts[0].name == "paper"
    assert not default_config_path().exists()


# -- config resolution --------------------------------------------------------------------------


def test_no_config_means_the_demo():
    result = invoke("accounts", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["demo"] is True
    assert {a["name"] for a in data["accounts"]} == {"paper-us", "paper-us-cash", "paper-in"}
    assert {a["currency"] for a in data["accounts"]} == {"USD", "INR"}


def test_user_config_is_used_when_present_and_demo_forces_the_demo():
    invoke("init")
    mine = json.loads(invoke("accounts", "--json").stdout)
    assert mine["demo"] is False
    assert [a["name"] for a in mine["accounts"]] == ["paper"]
    demo = json.loads(invoke("--demo", "accounts", "--json").stdout)
    assert demo["demo"] is True


def test_missing_config_file_is_a_usage_error_naming_the_option(tmp_path):
    result = invoke("--config", str(tmp_path / "nope.toml"), "accounts")
    assert result.exit_code == 2
    assert "Invalid value for '--config'" in plain(result.output)


def test_broken_config_exits_3_with_the_key_named(tmp_path):
    path = write_config(tmp_path, 'base_currency = "US"\n')
    result = invoke("--config", str(path), "accounts")
    assert result.exit_code == 3
    assert "base_currency" in result.output


# -- accounts and broker-types ------------------------------------------------------------------


def test_accounts_shows_credential_state(tmp_path, memory_keyring):
    path = write_config(tmp_path, '[[accounts]]\nname = "alp"\ntype = "alpaca"\nlive = true\n')
    data = json.loads(invoke("--config", str(path), "accounts", "--json").stdout)
    assert data["accounts"][0]["credentials"] == {"api_key": "missing", "secret_key": "missing"}
    assert data["accounts"][0]["live"] is True
    memory_keyring.set_password(SERVICE, "alp:api_key", "k-123456")
    memory_keyring.set_password(SERVICE, "alp:secret_key", "s-123456")
    data = json.loads(invoke("--config", str(path), "accounts", "--json").stdout)
    assert data["accounts"][0]["credentials"] == {"api_key": "set", "secret_key": "set"}
    table = invoke("--config", str(path), "accounts")
    assert "LIVE" in table.stdout
    assert "k-123456" not in table.stdout + json.dumps(data)


def test_accounts_checks_each_brokers_own_settings(tmp_path):
    path = write_config(tmp_path, '[[accounts]]\nname = "p"\ntype = "sim"\nleverage = -3\n')
    result = invoke("--config", str(path), "accounts")
    assert result.exit_code == 3
    assert "leverage must be at least 1" in plain(result.stdout)
    good = write_config(tmp_path, '[[accounts]]\nname = "p"\ntype = "sim"\nleverage = 3\n')
    data = json.loads(invoke("--config", str(good), "accounts", "--json").stdout)
    assert data["accounts"][0]["settings_error"] is None


def test_broker_types_lists_each_type_with_capabilities():
    result = invoke("broker-types", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["type"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"sim", "alpaca", "ibkr", "zerodha"}
    assert rows["alpaca"]["secrets"] == ["api_key", "secret_key"]
    assert rows["zerodha"]["secrets"] == ["api_key", "access_token"]
    assert rows["sim"]["secrets"] == []
    assert "LIMIT" in rows["sim"]["capabilities"]["order_types"]
    assert rows["alpaca"]["capabilities"]["bulk_cancel"] is True


# -- add ----------------------------------------------------------------------------------------


def test_add_asks_again_after_each_bad_answer():
    answers = (
        "\n".join(
            [
                "robinhood",
                "sim",  # unknown type, then a real one
                "bad name!",
                "desk",  # invalid name, then a good one
                "dollars",
                "usd",  # not a code, then lower-case USD
                "n",  # default account?
                "-1",
                "2",  # negative weight, then 2
                "0",
                "25000",  # zero cash, then 25,000
                "futures",
                "cash",  # account type
                "0.25",  # tick interval
            ]
        )
        + "\n"
    )
    result = invoke("add", input=answers)
    assert result.exit_code == 0, result.output
    assert "type must be one of" in result.output
    assert "name must be 1-64 letters" in result.output
    assert "currency must be a 3-letter code" in result.output
    assert "weight must be a number from 0" in result.output
    assert "initial_cash must be greater than 0" in result.output
    assert "account_type must be one of" in result.output
    config = load_config(default_config_path())
    desk = config.account("desk")
    assert (desk.type, desk.currency, desk.weight, desk.default) == ("sim", "USD", 2.0, False)
    assert desk.settings == {"initial_cash": 25000, "account_type": "cash", "tick_interval": 0.25}


def test_add_refuses_a_decimal_comma_and_reads_thousands_separators():
    answers = "\n".join(["sim", "desk", "USD", "n", "1", "25000,5", "25,000", "cash", "0,25", "0.25"]) + "\n"
    result = invoke("add", input=answers)
    assert result.exit_code == 0, result.output
    assert "initial_cash may use a comma only to separate thousands" in result.output
    assert "tick_interval may use a comma only to separate thousands" in result.output
    desk = load_config(default_config_path()).account("desk")
    assert desk.settings == {"initial_cash": 25000, "account_type": "cash", "tick_interval": 0.25}


def test_add_appends_to_an_existing_config_keeping_its_comments():
    invoke("init")
    result = invoke(
        "add", "--type", "ibkr", "--name", "ib", "--paper", "--default", "--no-input", "--set", "client_id=42"
    )
    assert result.exit_code == 0, result.output
    text = default_config_path().read_text(encoding="utf-8")
    assert text.startswith(EXAMPLE.read_text(encoding="utf-8").splitlines()[0])
    assert "# Pre-trade risk limits for every account" in text
    assert "Added by `trading-console add`" in text
    config = load_config(default_config_path())
    assert [a.name for a in config.accounts] == ["paper", "ib"]
    assert config.default_account == "ib"
    ib = config.account("ib")
    assert ib.settings == {"host": "127.0.0.1", "port": 7497, "client_id": 42}
    # The example's section comments still precede the sections they describe.
    assert text.index("# Pre-trade risk limits") < text.index("\n[risk]")
    assert text.index('name = "ib"') < text.index("# Pre-trade risk limits")


def test_add_refuses_a_duplicate_name_and_bad_options():
    invoke("init")
    duplicate = invoke("add", "--type", "sim", "--name", "paper", "--no-input")
    assert duplicate.exit_code == 2
    assert "Invalid value for '--name'" in plain(duplicate.output)
    assert "already exists" in plain(duplicate.output)
    bad_type = invoke("add", "--type", "robinhood", "--name", "x", "--no-input")
    assert bad_type.exit_code == 2
    assert "Invalid value for '--type'" in plain(bad_type.output)
    bad_set = invoke("add", "--type", "ibkr", "--name", "x", "--no-input", "--set", "port=99999")
    assert bad_set.exit_code == 2
    assert "port must be from 1 to 65535" in plain(bad_set.output)
    assert [a.name for a in load_config(default_config_path()).accounts] == ["paper"]


def test_add_refuses_settings_the_broker_would_not_accept():
    result = invoke("add", "--type", "sim", "--name", "x", "--no-input", "--set", "leverage=500")
    assert result.exit_code == 3
    assert "leverage" in result.output
    assert not default_config_path().exists()


def test_add_refuses_secrets_in_the_config():
    result = invoke("add", "--type", "alpaca", "--name", "a", "--no-input", "--set", "secret_key=abc")
    assert result.exit_code == 3
    assert "keyring" in result.output
    assert not default_config_path().exists()


def test_add_offers_to_store_secrets(memory_keyring):
    result = invoke("add", "--type", "alpaca", "--name", "alp", "--paper", "--not-default", "--no-input")
    assert result.exit_code == 0, result.output
    assert "set-creds alp" in result.output
    interactive = invoke(
        "add",
        "--type",
        "zerodha",
        "--name",
        "kite",
        "--live",
        "--default",
        input="\n\n\n\n\ny\nKEY-abcdef\nTOKEN-abcdef\n",
    )
    assert interactive.exit_code == 0, interactive.output
    assert memory_keyring.secrets[(SERVICE, "kite:api_key")] == "KEY-abcdef"
    assert memory_keyring.secrets[(SERVICE, "kite:access_token")] == "TOKEN-abcdef"
    assert "TOKEN-abcdef" not in interactive.output
    kite = load_config(default_config_path()).account("kite")
    assert (kite.live, kite.currency) == (True, "INR")
    assert "live = true # REAL MONEY" in default_config_path().read_text(encoding="utf-8")


# -- set-creds ----------------------------------------------------------------------------------


def test_set_creds_prompts_without_echo_and_stores_in_the_keyring(tmp_path, memory_keyring):
    path = write_config(tmp_path, '[[accounts]]\nname = "alp"\ntype = "alpaca"\n')
    result = invoke("--config", str(path), "set-creds", "alp", input="AKID-123456\nSECRET-987654\n")
    assert result.exit_code == 0, result.output
    assert memory_keyring.secrets[(SERVICE, "alp:api_key")] == "AKID-123456"
    assert memory_keyring.secrets[(SERVICE, "alp:secret_key")] == "SECRET-987654"
    assert "AKID-123456" not in result.output and "SECRET-987654" not in result.output
    assert "API key for alp (input hidden)" in result.output


def test_set_creds_one_key(tmp_path, memory_keyring):
    path = write_config(
        tmp_path, '[[accounts]]\nname = "kite"\ntype = "zerodha"\nlive = true\ncurrency = "INR"\n'
    )
    result = invoke("--config", str(path), "set-creds", "kite", "--key", "access_token", input="TOKEN-2468\n")
    assert result.exit_code == 0, result.output
    assert memory_keyring.secrets == {(SERVICE, "kite:access_token"): "TOKEN-2468"}
    wrong = invoke("--config", str(path), "set-creds", "kite", "--key", "password")
    assert wrong.exit_code == 2
    assert "Invalid value for '--key'" in plain(wrong.output)


def test_set_creds_for_a_type_without_secrets():
    result = invoke("set-creds", "paper-us")
    assert result.exit_code == 0
    assert "needs no secrets" in result.output


def test_set_creds_unknown_account_is_a_usage_error():
    result = invoke("set-creds", "nobody")
    assert result.exit_code == 2
    assert "Invalid value for 'NAME'" in plain(result.output)
    assert "paper-us" in plain(result.output)


def test_set_creds_without_a_keyring_says_what_to_do(tmp_path):
    keyring.set_keyring(keyring.backends.fail.Keyring())
    path = write_config(tmp_path, '[[accounts]]\nname = "alp"\ntype = "alpaca"\n')
    result = invoke("--config", str(path), "set-creds", "alp", input="x\ny\n")
    assert result.exit_code == 4
    text = plain(result.output)
    assert "no system keyring is available" in text
    assert "ALPACA_API_KEY and ALPACA_SECRET_KEY" in text
    assert "keyrings.alt" in text


def test_set_creds_asks_again_for_an_empty_secret(tmp_path, memory_keyring):
    path = write_config(
        tmp_path, '[[accounts]]\nname = "kite"\ntype = "zerodha"\nlive = true\ncurrency = "INR"\n'
    )
    result = invoke("--config", str(path), "set-creds", "kite", "--key", "api_key", input="\nVALUE-1234\n")
    assert result.exit_code == 0, result.output
    assert memory_keyring.secrets[(SERVICE, "kite:api_key")] == "VALUE-1234"
