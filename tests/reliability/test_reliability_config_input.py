"""Bad config files, generated: malformed TOML, wrong types, unknown keys and secrets. Each file
either loads (and its brokers build) or is refused with a ConfigError naming the file and the
key; never another exception, never a secret echoed back."""

from __future__ import annotations

import copy
import math
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from brokers.config import Config, load_config
from brokers.errors import ConfigError
from brokers.runtime import build_brokers, build_runtime

CATEGORY = "bad input: config"
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
CANARY = "CANARY-config-secret-7f3a9c"
LINE_LIMIT = 600

# Every table and kind of value a config can hold.
BASE: dict[str, Any] = {
    "base_currency": "USD",
    "accounts": [
        {
            "name": "paper",
            "type": "sim",
            "currency": "USD",
            "default": True,
            "weight": 2.0,
            "label": "Paper",
            "initial_cash": 100000,
            "account_type": "margin",
            "leverage": 2,
            "allow_short": True,
            "seed": 7,
            "latency": 0.0,
            "slippage_bps": 1,
            "commission_per_share": 0.005,
            "session_close": "16:00",
            "session_timezone": "America/New_York",
            "prices": {"AAPL": 190.0, "MSFT": 410.0},
            "initial_positions": {"AAPL": [10, 180.0]},
            "risk": {"max_order_quantity": 1000},
            "faults": {"reject_next": 0, "timeout_methods": ["place_order"]},
        },
        {
            "name": "alpaca-paper",
            "type": "alpaca",
            "live": False,
            "currency": "USD",
            "crypto": True,
            "timeout": 10,
            "reconnect_delay": 1.0,
            "key_env": "ALPACA_API_KEY",
        },
        {
            "name": "ibkr",
            "type": "ibkr",
            "host": "127.0.0.1",
            "port": 7497,
            "client_id": 1,
            "account": "DU1234567",
            "timeout": 10,
            "readonly": False,
        },
        {
            "name": "kite",
            "type": "zerodha",
            "live": True,
            "currency": "INR",
            "exchange": "NSE",
            "product": "CNC",
            "variety": "regular",
            "poll_interval": 1.0,
            "timeout": 7,
            "token_issued_at": datetime(2024, 12, 10, 3, 0, tzinfo=UTC),
        },
    ],
    "risk": {
        "max_order_quantity": 10000,
        "max_order_notional": 1000000,
        "price_band_percent": 10,
        "max_orders_per_second": 20,
        "burst": 40,
        "max_open_orders": 200,
        "duplicate_window_seconds": 2,
        "daily_loss_limit": 5000,
        "allowed_symbols": ["AAPL", "*.NS"],
        "denied_symbols": ["GME"],
    },
    "routing": [{"account": "kite", "currency": "INR"}, {"account": "alpaca-paper", "asset_class": "CRYPTO"}],
    "halt": {"cancel_open_orders": True, "poll_interval_ms": 100},
    "fx": {"rates": {"USDINR": 84.1}, "stale_after_seconds": 86400},
    "ui": {
        "keymap": {"halt": "f12,ctrl+k"},
        "confirm_notional_above": 50000,
        "price_refresh_hz": 10,
        "refresh_interval_seconds": 2.0,
    },
}
# Tables whose keys are data (symbols, currency pairs), where any new key is a value, not a typo.
OPEN_TABLES = {"prices", "initial_positions", "rates"}


def leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in leaves(value, (*path, key))]
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [p for index, value in enumerate(node) for p in leaves(value, (*path, index))]
    return [path]


def tables(node: Any, path: tuple = ()) -> list[tuple]:
    found = []
    if isinstance(node, dict):
        found.append(path)
        for key, value in node.items():
            found.extend(tables(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict):
                found.extend(tables(value, (*path, index)))
    return found


LEAVES = leaves(BASE)
TABLES = [t for t in tables(BASE) if not (t and t[-1] in OPEN_TABLES)]


def at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def named_key(path: tuple) -> str:
    """The last key of a path that is a name (list positions are not)."""
    return next(str(part) for part in reversed(path) if isinstance(part, str))


toml_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 10**18, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["", " ", "abc", "1e999", "NaN", "-5", "USD", "sim", "CASH"]),
    st.lists(st.integers(-3, 3), max_size=3),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b", "AAPL"]), st.integers(-3, 3), max_size=2),
    st.just(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    st.just(date(2024, 1, 2)),
    st.just(time(9, 30)),
)


def write(tmp_path: Path, data: dict[str, Any] | str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else tomlkit.dumps(data), encoding="utf-8")
    return path


def outcome(path: Path) -> tuple[Config | None, ConfigError | None]:
    """Load it and build everything a start builds. ConfigError is the only refusal allowed;
    anything else fails the case."""
    try:
        config = load_config(path)
        runtime = build_runtime(config)
    except ConfigError as exc:
        message = str(exc)
        assert message and "Traceback" not in message and CANARY not in message
        for line in message.splitlines():
            assert len(line) <= LINE_LIMIT, line[:300]  # one line per problem, each readable
        return None, exc
    runtime.journal.close()
    return config, None


def generated(cases: int) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def test_the_base_config_and_the_example_load():
    config = Config.model_validate(BASE)
    assert {a.type for a in config.accounts} == {"sim", "alpaca", "ibkr", "zerodha"}
    assert len(build_brokers(config)) == 4
    assert load_config(EXAMPLE).accounts


# -- malformed TOML --------------------------------------------------------------------------------

EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
TOML_BITS = st.sampled_from(
    [
        "[",
        "]",
        "[[",
        "]]",
        "=",
        '"',
        "'",
        '"""',
        "\n",
        "#",
        "{",
        "}",
        ",",
        ".",
        "-",
        "0",
        "1e",
        "inf",
        "nan",
        "true",
        "x",
        " ",
        "\\",
        "\t",
        "[accounts]",
        "name = ",
        "\x00",
        "\u2028",
        "é",
    ]
)


@st.composite
def damaged_text(draw) -> str | bytes:
    text = EXAMPLE_TEXT
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "duplicate", "truncate", "swap"]))
        if how == "insert":
            text = text[:where] + draw(TOML_BITS) + text[where:]
        elif how == "delete":
            text = text[:where] + text[where + draw(st.integers(1, 40)) :]
        elif how == "duplicate":
            end = text.find("\n", where) + 1 or len(text)
            text = text[:end] + text[where:end] + text[end:]
        elif how == "truncate":
            text = text[:where]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    if draw(st.integers(0, 15)) == 0:
        raw = text.encode()
        where = draw(st.integers(0, len(raw)))
        return raw[:where] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[where:]
    return text


@generated(400)
@given(text=damaged_text())
def test_damaged_files_load_or_are_refused_naming_the_file(text, tmp_path, tally):
    with tally.case():
        path = write(tmp_path, text)
        config, error = outcome(path)
        if error is not None:
            assert str(path) in str(error)


# -- wrong types and values ------------------------------------------------------------------------


@generated(300)
@given(path=st.sampled_from(LEAVES), value=toml_values)
def test_wrong_types_load_or_are_refused_naming_the_key(path, value, tmp_path, tally):
    with tally.case():
        data = copy.deepcopy(BASE)
        parent = at(data, path[:-1])
        assume(parent[path[-1]] != value)
        parent[path[-1]] = value
        file = write(tmp_path, data)
        config, error = outcome(file)
        if error is not None:
            message = str(error)
            key = named_key(path)
            if key == "name" and path[0] == "accounts":
                # A renamed account can also break what refers to it by name.
                assert "name" in message or "routing" in message or "default" in message, message
            else:
                assert key in message, (path, message)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -0.0, 10**18])
@pytest.mark.parametrize(
    "path",
    [
        p
        for p in LEAVES
        if isinstance(at(BASE, p), int | float) and not isinstance(at(BASE, p), bool) and "faults" not in p
    ],  # a fault counter of inf means "every call"
    ids=lambda p: ".".join(map(str, p)),
)
def test_every_number_refuses_nan_infinity_and_absurd_sizes_by_name(path, value, tmp_path):
    data = copy.deepcopy(BASE)
    at(data, path[:-1])[path[-1]] = value
    config, error = outcome(write(tmp_path, data))
    if math.isfinite(value) and config is not None:
        return  # a large number can be allowed (cash, a seed); it must just not break anything
    assert error is not None, f"{path} took {value!r}"
    assert named_key(path) in str(error)


# -- unknown keys ----------------------------------------------------------------------------------

misspelt = st.one_of(
    st.sampled_from(
        ["colour", "max_order_qty", "defualt", "timeout_s", "Name", "prices2", "halt_on_start", "api_url"]
    ),
    st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True),
)


@generated(250)
@given(table=st.sampled_from(TABLES), key=misspelt, value=toml_values)
def test_unknown_keys_are_refused_by_name(table, key, value, tmp_path, tally):
    with tally.case():
        data = copy.deepcopy(BASE)
        target = at(data, table)
        assume(key not in target)
        target[key] = value
        config, error = outcome(write(tmp_path, data))
        assert error is not None, f"{key!r} in {table} was accepted"
        assert key in str(error)


# -- secrets in the file ---------------------------------------------------------------------------

SECRET_KEYS = [
    "api_key",
    "secret_key",
    "secret",
    "password",
    "access_token",
    "token",
    "api_secret",
    "API_KEY",
    "Secret",
    "private_key",
    "passphrase",
    "alpaca_secret_key",
    "totp",
    "pin",
]


@generated(150)
@given(table=st.sampled_from(TABLES), key=st.sampled_from(SECRET_KEYS))
def test_secrets_in_the_file_are_refused_and_never_echoed(table, key, tmp_path, tally):
    with tally.case():
        data = copy.deepcopy(BASE)
        at(data, table)[key] = CANARY
        config, error = outcome(write(tmp_path, data))
        assert error is not None, f"{key!r} in {table} was accepted"
        message = str(error)
        assert key in message and CANARY not in message
        assert "keyring" in message or "set-creds" in message or "environment" in message


# -- through the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "accounts = [",
        "[[accounts]]\nname = 'x'\ntype = 'sim'\ninitial_cash = 'lots'\n",
        "[[accounts]]\nname = 'x'\ntype = 'sim'\ncolour = 'blue'\n",
        f"[[accounts]]\nname = 'x'\ntype = 'alpaca'\nsecret_key = '{CANARY}'\n",
        "base_currency = 12\n",
        "[risk]\nmax_order_quantity = nan\n",
    ],
    ids=["malformed", "wrong-type", "unknown-key", "secret", "base-currency", "nan"],
)
def test_the_command_line_reports_a_bad_config_without_a_traceback(text, tmp_path):
    from console.cli.main import app

    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["--config", str(path), "status"])
    output = result.output + (str(result.exception) if result.exception else "")
    assert result.exit_code == 3, output
    assert "Traceback" not in output and CANARY not in output
    assert re.search(r"config", output, re.IGNORECASE)
