"""A config file nested absurdly deep is refused with one line, never a RecursionError."""

from __future__ import annotations

import pytest

from brokers.config import MAX_NESTING, load_config, parse_config
from brokers.errors import ConfigError


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 3000 + "]" * 3000 + "\n",
        "[ui]\nkeymap = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
        "[" + ".".join(["a"] * 3000) + "]\nb = 1\n",
        "x = " + "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5) + "\n",
    ],
    ids=["arrays", "inline-tables", "dotted-table", "just-past-the-limit"],
)
def test_deep_nesting_is_a_config_error(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "nest" in message and "\n" not in message


def test_parse_config_refuses_deep_data_built_in_code():
    data: dict[str, object] = {}
    node = data
    for _ in range(5000):
        child: dict[str, object] = {}
        node["a"] = child
        node = child
    with pytest.raises(ConfigError, match="nest more than"):
        parse_config(data, where="settings")


def test_ordinary_nesting_still_validates_normally(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[ui.keymap]\nhalt = "f12"\n', encoding="utf-8")
    assert load_config(path).ui.keys_for("halt") == "f12"
