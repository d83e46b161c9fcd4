from decimal import Decimal

import pytest

from brokers.config import demo_config, is_secret_key, load_config, parse_config
from brokers.errors import ConfigError
from brokers.models import OrderRequest
from brokers.runtime import build_runtime


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_full_config_loads(tmp_path):
    path = write(
        tmp_path,
        """
base_currency = "usd"
[[accounts]]
name = "alpaca-main"
type = "alpaca"
currency = "USD"
default = true
timeout = 5
[accounts.risk]
max_order_quantity = 500
[[accounts]]
name = "kite"
type = "zerodha"
currency = "INR"
product = "MIS"
[risk]
max_order_notional = 250000
[[routing]]
account = "kite"
currency = "INR"
[halt]
cancel_open_orders = false
[fx.rates]
USDINR = 84.1
[ui.keymap]
halt = "f12,ctrl+k,ctrl+h"
""",
    )
    config = load_config(path)
    assert config.base_currency == "USD"
    assert config.default_account == "alpaca-main"
    assert config.accounts[0].risk.max_order_quantity == Decimal(500)
    assert config.accounts[1].settings == {"product": "MIS"}
    assert config.accounts[1].broker_config()["type"] == "zerodha"
    assert config.risk.max_order_notional == Decimal(250000)
    assert config.halt.cancel_open_orders is False
    assert config.fx.rates["USDINR"] == Decimal("84.1")
    assert config.ui.keys_for("halt") == "f12,ctrl+k,ctrl+h"
    assert config.ui.keys_for("resume") == "ctrl+r"
    assert config.source == path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("base_currency = 'US'", ["base_currency", "3-letter code", "'US'"]),
        (
            "[[accounts]]\nname='a'\ntype='etrade'",
            ["accounts[0: a].type", "unknown broker type 'etrade'", "alpaca"],
        ),
        ("[risk]\nmax_order_quantity = -5", ["risk.max_order_quantity", "greater than 0", "-5"]),
        ("[risk]\nmax_qty = 5", ["risk.max_qty", "unknown key"]),
        ("colour = 'red'", ["colour", "unknown key"]),
        ("[halt]\ncancel_open_orders = 'maybe'", ["halt.cancel_open_orders", "'maybe'"]),
        (
            "[[accounts]]\nname='a'\ntype='sim'\n[[accounts]]\nname='a'\ntype='sim'",
            ["'a' is used more than once"],
        ),
        (
            "[[accounts]]\nname='a'\ntype='sim'\n[[routing]]\naccount='b'",
            ["routing[0].account 'b' is not a configured account"],
        ),
        ("[ui.keymap]\nexplode = 'x'", ["ui.keymap", "unknown action 'explode'", "halt"]),
        ("[[accounts]]\nname='bad name!'\ntype='sim'", ["accounts[0: bad name!].name", "letters, digits"]),
    ],
)
def test_bad_values_name_file_key_value_and_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_malformed_toml_is_a_config_error(tmp_path):
    path = write(tmp_path, "[accounts\nname = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="trading-console init"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("key", ["api_secret", "secret_key", "access_token", "password", "api_key", "token"])
def test_secret_looking_keys_are_refused_without_echoing_the_value(tmp_path, key):
    path = write(tmp_path, f"[[accounts]]\nname='a'\ntype='alpaca'\n{key} = 'hunter2-canary'")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"accounts[0].{key}" in message
    assert "set-creds" in message
    assert "hunter2-canary" not in message


@pytest.mark.parametrize("key", ["key_env", "secret_env", "token_issued_at", "client_id", "timeout"])
def test_ordinary_keys_are_not_mistaken_for_secrets(key):
    assert not is_secret_key(key)


def test_demo_has_two_currencies_and_a_default():
    config = demo_config()
    assert {a.currency for a in config.accounts} >= {"USD", "INR"}
    assert config.default_account == "paper-us"
    assert all(a.type == "sim" and not a.live for a in config.accounts)


def test_routing_rule_to_unknown_account_is_refused():
    with pytest.raises(ConfigError):
        parse_config({"routing": [{"account": "ghost"}]})


def test_a_configs_routing_is_what_the_preview_names(tmp_path):
    config = parse_config(
        {
            "accounts": [
                {"name": "us", "type": "sim", "currency": "USD", "default": True, "weight": 2},
                {"name": "idle", "type": "sim", "currency": "USD", "weight": 0},
                {"name": "in", "type": "sim", "currency": "INR"},
            ],
            "routing": [{"account": "in", "currency": "INR"}],
        }
    )
    runtime = build_runtime(config, state_dir=tmp_path)

    def targets(distributed=False, **fields):
        request = OrderRequest(symbol="X", side="BUY", quantity=3, **fields)
        return runtime.execution.preview(request, distributed=distributed).accounts

    try:
        assert targets(distributed=True) == ["us", "in"]  # no zero-weight account
        assert targets() == ["us"]  # the default
        assert targets(currency="INR") == ["in"]  # a routing rule
        assert targets(account="idle") == ["idle"]  # the trader's choice
    finally:
        runtime.journal.close()


def test_default_account_is_the_one_marked_or_a_lone_one_never_the_first_of_several():
    def config(*accounts):
        return parse_config({"accounts": [{"type": "sim", **account} for account in accounts]})

    assert config({"name": "only"}).default_account == "only"
    assert config({"name": "a"}, {"name": "b"}).default_account is None
    assert config({"name": "a"}, {"name": "b", "default": True}).default_account == "b"
    assert config().default_account is None
