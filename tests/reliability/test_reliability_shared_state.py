"""Several processes on one state folder: halts and resumes serialised, one rate limit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from brokers.journal import Journal
from brokers.killswitch import FLAG_NAME

CATEGORY = "faults"
CHILD = Path(__file__).with_name("shared_state_child.py")
TRIALS = 200
STEPS = 4


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_halting_and_resuming_leave_flag_and_journal_agreeing(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    children = [_child("halts", str(folder), str(seed)) for seed in (1, 2)]
    journal = Journal(folder / "journal.sqlite")
    try:
        for trial in range(TRIALS):
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"go {STEPS}\n")
                child.stdin.flush()
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "done"
            rows = journal.events(kinds=["halt", "resume"])
            last = rows[-1].kind if rows else "resume"
            flag = (folder / FLAG_NAME).exists()
            assert (last == "halt") == flag, f"trial {trial}: journal says {last}, flag present {flag}"
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            assert child.wait(timeout=60) == 0
        journal.close()


def test_three_processes_share_one_rate_limit(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    names = ["a", "b", "c"]
    children = [_child("orders", str(folder), name) for name in names]
    try:
        deadline = time.monotonic() + 60
        while not all((folder / f"ready-{name}").exists() for name in names):
            assert time.monotonic() < deadline, "the processes did not start"
            assert all(child.poll() is None for child in children)
            time.sleep(0.01)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        passed = []
        for child in children:
            assert child.stdout is not None
            passed.append(int(child.stdout.readline()))
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=60)
    # Five at once between them; the bucket may have refilled by one while they ran.
    assert 5 <= sum(passed) <= 6, passed
