from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from brokers.journal import Journal
from brokers.killswitch import FLAG_NAME, LOCK_NAME, HaltSettings, KillSwitch
from brokers.models import TradingState
from brokers.paths import state_dir


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "state"


def test_starts_active_without_a_flag(folder):
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.ACTIVE
    assert not switch.is_halted
    assert switch.info is None


def test_defaults_to_the_state_dir():
    switch = KillSwitch(env={})
    switch.halt("test", source="unit")
    assert (state_dir() / FLAG_NAME).exists()


def test_halt_persists_json_flag_before_returning(folder):
    switch = KillSwitch(folder, env={})
    info = switch.halt("fat finger", source="console")
    data = json.loads((folder / FLAG_NAME).read_text())
    assert data["reason"] == "fat finger"
    assert data["source"] == "console"
    written = datetime.fromisoformat(data["time"])
    assert written.tzinfo is not None and abs((written - datetime.now(UTC)).total_seconds()) < 5
    assert switch.state is TradingState.HALTED
    assert info.reason == "fat finger" and info.persisted
    # The temporary file went through os.replace: nothing else is left beside the flag and the
    # lock file that serialises changes of state across processes.
    assert sorted(p.name for p in folder.iterdir()) == sorted([FLAG_NAME, LOCK_NAME])


def test_halt_is_idempotent(folder):
    switch = KillSwitch(folder, env={})
    first = switch.halt("first", source="a")
    before = (folder / FLAG_NAME).read_text()
    second = switch.halt("second", source="b")
    assert second == first
    assert (folder / FLAG_NAME).read_text() == before


def test_restart_while_halted_starts_halted(folder):
    KillSwitch(folder, env={}).halt("stop", source="cli")
    again = KillSwitch(folder, env={})
    assert again.state is TradingState.HALTED
    assert again.info is not None and again.info.reason == "stop" and again.info.source == "cli"


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_environment_variable_starts_halted(folder, value):
    switch = KillSwitch(folder, env={"SYSTEM_HALTED": value})
    assert switch.state is TradingState.HALTED
    assert switch.info.source == "env"
    assert (folder / FLAG_NAME).exists()


@pytest.mark.parametrize("value", ["0", "false", "FALSE", " no ", "off", "", "   "])
def test_environment_variable_off_does_not_halt(folder, value, caplog):
    assert KillSwitch(folder, env={"SYSTEM_HALTED": value}).state is TradingState.ACTIVE
    assert "SYSTEM_HALTED" not in caplog.text


@pytest.mark.parametrize("value", ["2", "halt", "HALTED", "-1", "stop now"])
def test_environment_variable_not_understood_halts_and_says_so(folder, value, caplog):
    with caplog.at_level("WARNING", logger="brokers.killswitch"):
        switch = KillSwitch(folder, env={"SYSTEM_HALTED": value})
    assert switch.state is TradingState.HALTED
    assert switch.info is not None and switch.info.source == "env"
    assert repr(value) in switch.info.reason
    assert (folder / FLAG_NAME).exists()
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "not a value" in r.getMessage()]
    assert repr(value) in warning.getMessage() and "halts trading" in warning.getMessage()


def test_environment_variable_understood_halts_without_a_warning(folder, caplog):
    with caplog.at_level("WARNING", logger="brokers.killswitch"):
        assert KillSwitch(folder, env={"SYSTEM_HALTED": "1"}).state is TradingState.HALTED
    assert not [r for r in caplog.records if "not a value" in r.getMessage()]


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'{"time": "yesterday"}', b"\xff\xfe"])
def test_unreadable_flag_fails_closed(folder, content):
    folder.mkdir()
    (folder / FLAG_NAME).write_bytes(content)
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "unreadable" in switch.info.reason


def test_halt_over_an_unreadable_flag_rewrites_it(folder):
    folder.mkdir()
    (folder / FLAG_NAME).write_text("")
    switch = KillSwitch(folder, env={})
    info = switch.halt("proper reason", source="console")
    assert info.reason == "proper reason"
    assert json.loads((folder / FLAG_NAME).read_text())["reason"] == "proper reason"


def test_a_flag_that_cannot_be_checked_counts_as_halted(folder, monkeypatch):
    switch = KillSwitch(folder, env={})
    real_stat = os.stat

    def refuse(path, *args, **kwargs):
        if str(path).endswith(FLAG_NAME):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refuse)
    assert switch.state is TradingState.HALTED


def test_halt_where_nothing_can_be_created_still_halts_this_process(folder, monkeypatch):
    switch = KillSwitch(folder, env={})
    real_open = os.open

    def full(path, *args, **kwargs):
        if FLAG_NAME in str(path):
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", full)  # neither the empty flag nor the JSON can be created
    info = switch.halt("disk full", source="test")
    assert not info.persisted
    assert switch.state is TradingState.HALTED
    assert not (folder / FLAG_NAME).exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left
    monkeypatch.undo()
    switch.resume("disk cleaned", source="test")
    assert switch.state is TradingState.ACTIVE


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_resume_needs_a_reason(folder, reason):
    switch = KillSwitch(folder, env={})
    switch.halt("x")
    with pytest.raises(ValueError, match="reason"):
        switch.resume(reason)  # type: ignore[arg-type]
    assert switch.state is TradingState.HALTED


def test_resume_removes_the_flag(folder):
    switch = KillSwitch(folder, env={})
    switch.halt("x")
    switch.resume("checked the book", source="console")
    assert not (folder / FLAG_NAME).exists()
    assert switch.state is TradingState.ACTIVE
    assert KillSwitch(folder, env={}).state is TradingState.ACTIVE


def test_halt_resume_and_reduce_are_journaled(folder):
    journal = Journal(folder / "journal.sqlite")
    switch = KillSwitch(folder, journal=journal, env={})
    switch.reduce_only("near the loss limit", source="risk")
    switch.halt("news", source="console")
    switch.resume("news digested", source="trader")
    events = journal.events()
    assert [e.kind for e in events] == ["reduce_only", "halt", "resume"]
    assert events[2].data["reason"] == "news digested"
    assert events[2].data["source"] == "trader"
    journal.close()


def test_reduce_only_then_halt_outranks_it(folder):
    switch = KillSwitch(folder, env={})
    switch.reduce_only("loss", source="risk")
    assert switch.state is TradingState.REDUCING
    assert switch.info.source == "risk"
    switch.halt("stop")
    assert switch.state is TradingState.HALTED
    switch.resume("done")
    assert switch.state is TradingState.ACTIVE


def test_callbacks_get_state_changes(folder):
    switch = KillSwitch(folder, env={})
    seen = []

    def record(state, info):
        seen.append((state, info.reason if info else None))

    switch.subscribe(record)
    switch.halt("one")
    switch.halt("again")  # no change, no callback
    switch.resume("two")
    switch.reduce_only("three")
    switch.unsubscribe(record)
    switch.resume("four")
    assert seen == [
        (TradingState.HALTED, "one"),
        (TradingState.ACTIVE, None),
        (TradingState.REDUCING, "three"),
    ]


def test_a_failing_callback_does_not_stop_the_halt(folder):
    switch = KillSwitch(folder, env={})
    calls = []
    switch.subscribe(lambda state, info: 1 / 0)
    switch.subscribe(lambda state, info: calls.append(state))
    switch.halt("x")
    assert switch.state is TradingState.HALTED
    assert calls == [TradingState.HALTED]


def test_poll_sees_a_halt_from_another_instance(folder):
    here = KillSwitch(folder, env={})
    there = KillSwitch(folder, env={})
    seen = []
    here.subscribe(lambda state, info: seen.append((state, info.source if info else None)))
    there.halt("elsewhere", source="cli")
    # The state itself is read from the file on every check, poll or no poll.
    assert here.state is TradingState.HALTED
    assert here.poll() is True
    assert here.poll() is False
    there.resume("back", source="cli")
    assert here.poll() is True
    assert seen == [(TradingState.HALTED, "cli"), (TradingState.ACTIVE, None)]


def test_a_plain_touch_halts(folder):
    switch = KillSwitch(folder, env={})
    folder.mkdir(exist_ok=True)
    (folder / FLAG_NAME).touch()
    assert switch.state is TradingState.HALTED


def test_halt_from_a_subprocess(folder):
    switch = KillSwitch(folder, env={})
    code = (
        "import sys; from pathlib import Path; from brokers.killswitch import KillSwitch; "
        "KillSwitch(Path(sys.argv[1]), env={}).halt('from a shell', source='cli')"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, timeout=60)
    assert switch.state is TradingState.HALTED
    assert switch.info.reason == "from a shell"


async def test_watch_notices_an_external_halt_within_the_interval(folder):
    switch = KillSwitch(folder, env={})
    noticed = asyncio.Event()
    switch.subscribe(lambda state, info: noticed.set() if state is TradingState.HALTED else None)
    watcher = asyncio.create_task(switch.watch(interval=0.01))
    try:
        KillSwitch(folder, env={}).halt("other process")
        await asyncio.wait_for(noticed.wait(), timeout=1.0)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


def test_halt_settings_bounds():
    assert HaltSettings().cancel_open_orders is True
    with pytest.raises(ValueError):
        HaltSettings(poll_interval_ms=1000)


def test_repr_names_the_state(folder):
    switch = KillSwitch(folder, env={})
    assert "ACTIVE" in repr(switch)


def test_a_callback_subscribed_twice_hears_each_change_once(folder):
    switch = KillSwitch(folder, env={})
    seen = []

    def record(state, info):
        seen.append(state)

    switch.subscribe(record)
    switch.subscribe(record)
    switch.halt("once")
    switch.unsubscribe(record)
    switch.unsubscribe(record)  # already gone: nothing to do
    switch.resume("back")
    assert seen == [TradingState.HALTED]
    assert switch.hub.listeners == ()
