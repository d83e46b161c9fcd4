"""A config, journal or state folder that cannot be used: every command says what is wrong and
what to do in one line, with its documented exit code, and ``halt`` still halts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokers.paths import state_dir
from console.cli.main import app

# Every command a trader reaches for when something is wrong, and the one that opens the screen.
MAIN_COMMANDS = [
    ["status"],
    ["positions"],
    ["balances"],
    ["order", "buy", "AAPL", "1", "--yes"],
    ["cancel", "--all"],
    ["journal"],
    ["halt"],
    ["halt-status"],
    ["resume", "--reason", "checked"],
    [],
]


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def flag() -> Path:
    return state_dir() / "SYSTEM_HALTED"


def assert_no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Error" not in result.stdout  # messages go to stderr, output stays parseable


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def deep_config(tmp_path: Path) -> Path:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    return path


def unreadable_configs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path given with --config, words the message must hold)."""
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"state_dir = '\xff\xfe'\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("this is [not toml", encoding="utf-8")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {
        "nested": (deep_config(tmp_path), "too deeply"),
        "binary": (binary, "UTF-8"),
        "not toml": (broken, "not valid TOML"),
        "a folder": (folder, "no config file"),
        "missing": (tmp_path / "nowhere.toml", "no config file"),
    }


# -- halt with a config that cannot be read ---------------------------------------------------


def test_halt_with_a_3000_deep_config_halts_the_default_state_folder_and_exits_3(tmp_path):
    result = invoke("--config", str(deep_config(tmp_path)), "halt", "--reason", "runaway algo")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert json.loads(flag().read_text(encoding="utf-8"))["reason"] == "runaway algo"
    [line] = error_lines(result)
    assert "too deeply" in line
    assert str(flag()) in line and "default state directory" in line


@pytest.mark.parametrize("kind", ["nested", "binary", "not toml", "a folder", "missing"])
def test_halt_works_whatever_is_wrong_with_the_config(tmp_path, kind):
    path, words = unreadable_configs(tmp_path)[kind]
    result = invoke("--config", str(path), "halt", "--json")
    assert_no_traceback(result)
    assert result.exit_code == 3, result.output
    assert flag().exists()
    assert json.loads(result.stdout)["state"] == "HALTED"
    [line] = error_lines(result)
    assert words in line and str(flag()) in line


def test_halt_cancel_with_an_unreadable_config_still_halts_and_says_nothing_was_cancelled(tmp_path):
    result = invoke("--config", str(deep_config(tmp_path)), "halt", "--cancel")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert flag().exists()
    assert "nothing was cancelled" in error_lines(result)[0]


def test_the_user_config_nested_too_deeply_does_not_stop_a_halt(isolated_home):
    from brokers.paths import default_config_path

    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    result = invoke("halt")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert flag().exists()


def test_a_config_with_errors_and_a_relative_state_dir_halts_beside_the_config(tmp_path, monkeypatch):
    folder = tmp_path / "desk"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text('state_dir = "state"\nbase_currency = "DOLLARS"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("--config", str(config), "halt")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert (folder / "state" / "SYSTEM_HALTED").exists()
    assert not (tmp_path / "state").exists()


def test_resume_with_an_unreadable_config_resumes_nothing(tmp_path):
    invoke("halt", "--reason", "x")
    result = invoke("--config", str(deep_config(tmp_path)), "resume", "--reason", "done")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert "nothing resumed" in error_lines(result)[0]
    assert flag().exists()


def test_halt_status_with_an_unreadable_config_shows_the_default_folder_and_exits_3(tmp_path):
    invoke("halt", "--reason", "x")
    result = invoke("--config", str(deep_config(tmp_path)), "halt-status", "--json")
    assert_no_traceback(result)
    assert result.exit_code == 3
    assert json.loads(result.stdout)["halted"] is True


@pytest.mark.parametrize("command", MAIN_COMMANDS, ids=lambda c: " ".join(c) or "console")
def test_no_command_shows_a_traceback_for_a_config_nested_too_deeply(tmp_path, command):
    result = invoke("--config", str(deep_config(tmp_path)), *command)
    assert_no_traceback(result)
    assert result.exit_code == 3, result.output
    [line] = error_lines(result)
    assert "too deeply" in line


@pytest.mark.parametrize("command", MAIN_COMMANDS, ids=lambda c: " ".join(c) or "console")
def test_no_command_shows_a_traceback_for_a_config_that_is_not_utf8(tmp_path, command):
    path, _ = unreadable_configs(tmp_path)["binary"]
    result = invoke("--config", str(path), *command)
    assert_no_traceback(result)
    assert result.exit_code == 3, result.output
    assert len(error_lines(result)) == 1


# -- a journal or state folder that cannot be used ----------------------------------------------


def demo_journal() -> Path:
    """The journal the demo keeps its orders in (halts are also recorded in the main one)."""
    return state_dir() / "demo-journal.sqlite"


def damaged_journal() -> Path:
    path = demo_journal()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x13\x37garbage, not SQLite\x00" * 2000)
    return path


@pytest.mark.parametrize(
    "command",
    [c for c in MAIN_COMMANDS if c[:1] not in (["halt"], ["halt-status"], ["resume"])],
    ids=lambda c: " ".join(c) or "console",
)
def test_a_damaged_journal_is_one_line_saying_what_to_do_and_exit_1(command):
    path = damaged_journal()
    result = invoke("--demo", *command)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert str(path) in line and "move it aside" in line
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["halt"], ["halt-status"], ["resume", "--reason", "checked"]])
def test_the_flag_commands_work_with_a_damaged_journal_and_say_so(command):
    damaged_journal()
    invoke("--demo", "halt")
    result = invoke("--demo", *command)
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert f"journal {demo_journal()} could not be opened" in result.stderr


def test_a_journal_that_is_a_directory_is_an_error_not_an_empty_history():
    path = demo_journal()
    path.mkdir(parents=True)
    result = invoke("--demo", "journal")
    assert_no_traceback(result)
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert str(path) in line and "not a file" in line
    assert "no events" not in result.output.lower()


@pytest.mark.parametrize(
    "command",
    [["status"], ["order", "buy", "AAPL", "1", "--yes"], ["cancel", "--all"], []],
    ids=lambda c: " ".join(c) or "console",
)
def test_a_journal_that_is_a_directory_stops_the_commands_that_need_it_in_one_line(command):
    path = demo_journal()
    path.mkdir(parents=True)
    result = invoke("--demo", *command)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert str(path) in line and "read and write" in line


@pytest.mark.parametrize(
    "command",
    [["status"], ["order", "buy", "AAPL", "1", "--yes"], ["journal"], ["halt"], []],
    ids=lambda c: " ".join(c) or "console",
)
def test_a_state_folder_that_is_a_file_is_one_line_and_exit_1(command):
    folder = state_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder", encoding="utf-8")
    result = invoke("--demo", *command)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert len(error_lines(result)) == 1
    assert str(folder) in error_lines(result)[0]


# -- an order while halted ------------------------------------------------------------------------


def test_an_order_while_halted_says_so_first_and_asks_nothing():
    invoke("halt", "--reason", "risk review")
    result = invoke("order", "buy", "AAPL", "1", "--json", input="y\n")
    assert_no_traceback(result)
    assert result.exit_code == 7, result.output
    assert "Send this order?" not in result.output
    assert result.stderr.startswith("Trading is HALTED")
    assert "risk review" in result.stderr.splitlines()[0]
    assert "trading-console resume" in result.stderr.splitlines()[0]
    order = json.loads(result.stdout)
    assert (order["status"], order["reject_code"]) == ("REJECTED", "SYSTEM_HALTED")
