"""The flag at its edges: links, FIFOs, times out of range, a full disk, a removal without a
resume, and two processes halting and resuming at once."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from brokers.journal import Journal
from brokers.killswitch import FLAG_NAME, KillSwitch
from brokers.models import TradingState


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def journal(folder: Path):
    journal = Journal(folder / "journal.sqlite")
    yield journal
    journal.close()


def _within(seconds: float, work):
    """Run ``work`` in a thread; what it returned or raised, or None if it is still blocked."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:  # reported to the test, not swallowed
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else None


@pytest.mark.parametrize("target", ["nowhere", FLAG_NAME], ids=["dangling", "looping"])
def test_a_symlink_at_the_flag_path_halts(folder, target):
    os.symlink(target, folder / FLAG_NAME)
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "symbolic link" in switch.info.reason
    # A halt over it replaces the link itself with a real flag.
    info = switch.halt("over the link", source="test")
    assert info.reason == "over the link" and info.persisted
    assert not (folder / FLAG_NAME).is_symlink()
    assert json.loads((folder / FLAG_NAME).read_text())["reason"] == "over the link"


def test_a_symlink_to_a_valid_flag_elsewhere_still_counts_as_a_link(folder, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"time": "2026-01-01T00:00:00+00:00", "reason": "x", "source": "y"}))
    os.symlink(elsewhere, folder / FLAG_NAME)
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "symbolic link" in switch.info.reason


def test_a_fifo_at_the_flag_path_halts_without_blocking(folder):
    fifo = folder / FLAG_NAME
    os.mkfifo(fifo)
    try:
        switch = KillSwitch(folder, env={})
        outcome = _within(5, lambda: (switch.state, switch.info, switch.halt("x", "test"), switch.poll()))
        assert outcome is not None, "reading a FIFO flag blocked"
        assert outcome[0] == "ok", outcome
        state, info, _halt, _poll = outcome[1]
        assert state is TradingState.HALTED
        assert "FIFO" in info.reason
    finally:
        # Release any reader a failing run left blocked on the FIFO.
        if fifo.exists() and not fifo.is_file():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def test_a_directory_at_the_flag_path_halts(folder):
    (folder / FLAG_NAME).mkdir()
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "directory" in switch.info.reason
    info = switch.halt("still halted", source="test")
    assert switch.state is TradingState.HALTED and info.persisted


@pytest.mark.parametrize(
    "time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"], ids=["underflow", "overflow"]
)
def test_a_flag_time_out_of_range_halts_and_never_raises(folder, time):
    (folder / FLAG_NAME).write_text(json.dumps({"time": time, "reason": "odd", "source": "x"}))
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "unreadable" in switch.info.reason
    assert switch.poll() in (True, False)
    info = switch.halt("proper", source="test")
    assert info.reason == "proper"
    assert json.loads((folder / FLAG_NAME).read_text())["reason"] == "proper"


def test_a_deeply_nested_flag_halts_and_never_raises(folder):
    (folder / FLAG_NAME).write_text("[" * 100_000)
    switch = KillSwitch(folder, env={})
    assert switch.state is TradingState.HALTED
    assert "unreadable" in switch.info.reason


def test_a_full_disk_still_halts_every_process_with_an_empty_flag(folder, monkeypatch):
    switch = KillSwitch(folder, env={})
    other = KillSwitch(folder, env={})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(os, "replace", full)
    info = switch.halt("disk full", source="test")
    assert info.persisted
    assert (folder / FLAG_NAME).is_file()
    assert (folder / FLAG_NAME).read_bytes() == b""
    assert other.state is TradingState.HALTED
    assert switch.state is TradingState.HALTED
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    # Space again: the next poll writes the details.
    monkeypatch.undo()
    switch.poll()
    assert json.loads((folder / FLAG_NAME).read_text())["reason"] == "disk full"
    assert other.info.reason == "disk full"


def test_a_removed_flag_keeps_trading_halted_until_a_journaled_resume(folder, journal):
    switch = KillSwitch(folder, journal=journal, env={})
    switch.halt("news", source="console")
    heard = []
    switch.subscribe(lambda state, info: heard.append((state, info.reason if info else None)))
    (folder / FLAG_NAME).unlink()
    assert switch.state is TradingState.HALTED
    switch.poll()  # listeners hear why the halt still holds, never that trading is ACTIVE
    assert [state for state, _ in heard] == [TradingState.HALTED]
    assert "removed" in heard[0][1]
    reason = switch.info.reason
    assert "removed" in reason and "ctrl+r" in reason and "trading-console resume" in reason
    # A process started now, with no flag, starts halted from the journal.
    restarted = KillSwitch(folder, journal=Journal(folder / "journal.sqlite"), env={})
    assert restarted.state is TradingState.HALTED
    assert "trading-console resume" in restarted.info.reason
    # A deliberate resume elsewhere lifts it here at the next poll.
    restarted.resume("checked", source="cli")
    assert restarted.state is TradingState.ACTIVE
    switch.poll()
    assert switch.state is TradingState.ACTIVE
    restarted.journal.close()


def test_a_touched_then_removed_flag_keeps_trading_halted(folder, journal):
    switch = KillSwitch(folder, journal=journal, env={})
    switch.halt("one", source="test")
    switch.resume("fine", source="test")  # the journal's last row is a resume
    (folder / FLAG_NAME).touch()
    assert switch.state is TradingState.HALTED
    (folder / FLAG_NAME).unlink()
    assert switch.state is TradingState.HALTED
    assert "removed" in switch.info.reason


def test_a_flag_found_rather_than_written_is_journaled_once_and_a_later_resume_lifts_it(folder, journal):
    here = KillSwitch(folder, journal=journal, env={})
    there = KillSwitch(folder, journal=Journal(folder / "journal.sqlite"), env={})
    os.symlink(folder / "nowhere", folder / FLAG_NAME)  # nobody's halt(): a link appears
    assert here.poll() and there.poll()
    rows = journal.events(kinds=["halt", "resume"])
    assert [row.kind for row in rows] == ["halt"] and rows[0].data["observed"] is True
    assert "symbolic link" in str(rows[0].data["reason"])
    (folder / FLAG_NAME).unlink()
    # A process started now has no flag to see, but the journal says halted, as the others do.
    started = KillSwitch(folder, journal=Journal(folder / "journal.sqlite"), env={})
    assert started.state is TradingState.HALTED
    started.resume("link was a mistake", source="cli")
    here.poll()
    there.poll()
    assert (here.state, there.state) == (TradingState.ACTIVE, TradingState.ACTIVE)
    last = journal.events(kinds=["halt", "resume"])[-1].kind
    assert last == "resume" and not (folder / FLAG_NAME).exists()
    there.journal.close()
    started.journal.close()


def test_a_switch_started_while_a_touched_flag_exists_journals_it(folder, journal):
    (folder / FLAG_NAME).touch()
    switch = KillSwitch(folder, journal=journal, env={})
    assert switch.state is TradingState.HALTED
    assert [row.kind for row in journal.events(kinds=["halt", "resume"])] == ["halt"]


def test_a_resume_in_another_process_is_not_mistaken_for_a_removal(folder, journal):
    here = KillSwitch(folder, journal=journal, env={})
    there = KillSwitch(folder, journal=Journal(folder / "journal.sqlite"), env={})
    here.halt("x", source="test")
    assert there.state is TradingState.HALTED
    there.resume("back", source="cli")
    assert here.state is TradingState.ACTIVE
    assert here.info is None
    there.journal.close()


def test_the_flag_and_the_journal_agree_after_each_change(folder, journal):
    switch = KillSwitch(folder, journal=journal, env={})
    for step in range(6):
        if step % 2 == 0:
            switch.halt(f"h{step}", source="test")
        else:
            switch.resume(f"r{step}", source="test")
        last = journal.events(kinds=["halt", "resume"])[-1].kind
        assert (last == "halt") == (folder / FLAG_NAME).exists()


def test_a_resume_that_cannot_be_journaled_leaves_trading_halted(folder, journal, monkeypatch):
    switch = KillSwitch(folder, journal=journal, env={})
    switch.halt("x", source="test")

    def broken(*args, **kwargs):
        raise RuntimeError("the journal is closed")

    monkeypatch.setattr(journal, "record", broken)
    with pytest.raises(OSError, match="journaled"):
        switch.resume("try", source="test")
    assert (folder / FLAG_NAME).exists()
    assert switch.state is TradingState.HALTED


def test_a_state_folder_that_cannot_exist_halts_this_process_without_raising(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the state folder should be")
    switch = KillSwitch(blocker / "state", env={})
    info = switch.halt("nowhere to write", source="test")
    assert not info.persisted
    assert switch.state is TradingState.HALTED
    assert switch.poll() is False
