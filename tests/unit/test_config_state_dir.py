"""A config's state_dir names one folder, whatever directory a command runs from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brokers.config import Config, load_config, parse_config
from brokers.errors import ConfigError
from brokers.runtime import build_runtime

ROOT = Path(__file__).resolve().parents[2]


def write_config(folder: Path, state_dir: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(f'state_dir = "{state_dir}"\n', encoding="utf-8")
    return path


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder holding the config, and two unrelated working directories."""
    here, elsewhere, third = tmp_path / "conf", tmp_path / "elsewhere", tmp_path / "third"
    for folder in (here, elsewhere, third):
        folder.mkdir()
    return here, elsewhere, third


def test_relative_state_dir_is_anchored_to_the_config_file_folder(places, monkeypatch):
    here, elsewhere, third = places
    path = write_config(here, "state")
    seen = []
    for cwd in (elsewhere, third):
        monkeypatch.chdir(cwd)
        seen.append(load_config(path).resolved_state_dir())
    assert seen == [here / "state", here / "state"]


def test_relative_config_path_anchors_to_that_file_not_the_current_directory(places, monkeypatch):
    here, elsewhere, _ = places
    write_config(here, "./state/../state")
    monkeypatch.chdir(elsewhere)
    resolved = load_config(Path("..") / "conf" / "config.toml").resolved_state_dir()
    assert resolved.is_absolute()
    assert os.path.normpath(resolved) == str(here / "state")


def test_home_and_variables_are_expanded(places, monkeypatch, tmp_path):
    here, elsewhere, _ = places
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TC_TEST_ROOT", str(tmp_path / "vars"))
    monkeypatch.chdir(elsewhere)
    assert (
        load_config(write_config(here, "~/tc-state")).resolved_state_dir() == tmp_path / "home" / "tc-state"
    )
    assert (
        load_config(write_config(here, "${TC_TEST_ROOT}/s")).resolved_state_dir() == tmp_path / "vars" / "s"
    )
    assert load_config(write_config(here, "$TC_TEST_ROOT")).resolved_state_dir() == tmp_path / "vars"
    runtime = build_runtime(load_config(write_config(here, "~/tc-state")))
    runtime.journal.close()
    assert not (elsewhere / "~").exists() and not (here / "~").exists()
    assert (tmp_path / "home" / "tc-state" / "journal.sqlite").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("$TC_SURELY_UNSET_VARIABLE/state", "$TC_SURELY_UNSET_VARIABLE is not set"),
        ("${TC_SURELY_UNSET_VARIABLE}", "${TC_SURELY_UNSET_VARIABLE} is not set"),
        ("~tc-no-such-user-here/state", "no such user"),
        ("  ", "must name a folder"),
    ],
)
def test_a_state_dir_that_cannot_be_expanded_is_refused_naming_the_key(places, value, message):
    here, _, _ = places
    path = write_config(here, value)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text and "state_dir" in text and message in text


def test_settings_built_in_code_are_anchored_when_built(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_config({"state_dir": "state"})
    built = Config(state_dir=Path("state"))
    monkeypatch.chdir("/")
    assert parsed.resolved_state_dir() == built.resolved_state_dir() == tmp_path / "state"
    assert (
        parse_config({"state_dir": "s"}, base_dir=tmp_path / "x").resolved_state_dir() == tmp_path / "x" / "s"
    )


def test_halt_from_another_directory_halts_the_running_runtime(places, monkeypatch):
    """The console runs from one folder; `trading-console halt` is typed in another, naming the
    config by a relative path: both must use the same flag."""
    here, elsewhere, third = places
    write_config(here, "state")
    monkeypatch.chdir(elsewhere)
    runtime = build_runtime(load_config(here / "config.toml"))
    try:
        assert not runtime.kill_switch.is_halted
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "console.cli.main",
                "--config",
                "../conf/config.toml",
                "halt",
                "-r",
                "test",
            ],
            cwd=third,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert runtime.kill_switch.is_halted
        assert (here / "state" / "SYSTEM_HALTED").exists()
        assert not (third / "state").exists() and not (elsewhere / "state").exists()
    finally:
        runtime.journal.close()
