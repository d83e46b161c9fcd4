"""halt, resume, halt-status: the SYSTEM_HALTED flag from the shell, seen by running services."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from brokers.config import demo_config
from brokers.journal import Journal
from brokers.models import OrderRequest, OrderStatus, TradingState
from brokers.paths import state_dir
from brokers.runtime import build_runtime
from console.cli.main import app


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def flag() -> Path:
    return state_dir() / "SYSTEM_HALTED"


def journal_kinds(path: Path | None = None) -> list[tuple[str, dict]]:
    with Journal(path or state_dir() / "journal.sqlite") as journal:
        return [(event.kind, event.data) for event in journal.events()]


def test_halt_writes_the_flag_with_reason_and_source():
    result = invoke("halt", "--reason", "fat finger on desk 2")
    assert result.exit_code == 0, result.output
    data = json.loads(flag().read_text(encoding="utf-8"))
    assert data["reason"] == "fat finger on desk 2"
    assert data["source"].startswith("cli:")
    assert data["time"].endswith("+00:00")
    assert "Trading HALTED" in result.output
    assert str(flag()) in result.output
    assert [kind for kind, _ in journal_kinds()] == ["halt"]


def test_halt_is_idempotent_and_keeps_the_first_reason():
    invoke("halt", "--reason", "first")
    first = flag().read_text(encoding="utf-8")
    again = invoke("halt", "--reason", "second", "--json")
    assert again.exit_code == 0
    data = json.loads(again.stdout)
    assert data["already_halted"] is True
    assert data["reason"] == "first"
    assert flag().read_text(encoding="utf-8") == first
    assert [kind for kind, _ in journal_kinds()] == ["halt"]


def test_halt_status_json_shapes():
    active = json.loads(invoke("halt-status", "--json").stdout)
    assert active == {
        "state": "ACTIVE",
        "halted": False,
        "time": None,
        "reason": None,
        "source": None,
        "flag": str(flag()),
    }
    invoke("halt", "-r", "maintenance")
    halted = invoke("halt-status", "--json")
    assert halted.exit_code == 0
    data = json.loads(halted.stdout)
    assert data["state"] == "HALTED" and data["halted"] is True
    assert data["reason"] == "maintenance"
    assert data["source"].startswith("cli:")
    assert "HALTED since" in invoke("halt-status").stdout


def test_resume_needs_a_reason():
    invoke("halt")
    missing = invoke("resume")
    assert missing.exit_code == 2
    assert "--reason" in plain(missing.output)
    blank = invoke("resume", "--reason", "   ")
    assert blank.exit_code == 2
    assert "Invalid value for '--reason'" in plain(blank.output)
    assert flag().exists()


def test_resume_removes_the_flag_and_journals_who_and_why():
    invoke("halt", "--reason", "feed down")
    result = invoke("resume", "--reason", "feed back", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "state": "ACTIVE",
        "was": "HALTED",
        "was_halted": True,
        "reason": "feed back",
        "flag": str(flag()),
    }
    assert not flag().exists()
    events = journal_kinds()
    assert [kind for kind, _ in events] == ["halt", "resume"]
    assert events[1][1]["reason"] == "feed back"
    assert events[1][1]["source"].startswith("cli:")


def test_resume_when_not_halted_changes_nothing():
    result = invoke("resume", "--reason", "just in case")
    assert result.exit_code == 0
    assert "not halted" in result.output
    assert not (state_dir() / "journal.sqlite").exists() or journal_kinds() == []


def test_an_unreadable_flag_counts_as_halted_and_halt_rewrites_it():
    flag().parent.mkdir(parents=True, exist_ok=True)
    flag().write_text("garbage", encoding="utf-8")
    status = json.loads(invoke("halt-status", "--json").stdout)
    assert status["halted"] is True
    result = json.loads(invoke("halt", "--reason", "make it explicit", "--json").stdout)
    assert result["already_halted"] is False
    assert json.loads(flag().read_text(encoding="utf-8"))["reason"] == "make it explicit"


def test_halt_status_does_not_write_the_flag_because_of_the_environment(monkeypatch):
    monkeypatch.setenv("SYSTEM_HALTED", "1")
    result = invoke("halt-status", "--json")
    assert json.loads(result.stdout)["halted"] is False
    assert not flag().exists()


def test_halt_uses_the_configured_state_dir(tmp_path):
    shared = tmp_path / "shared-state"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{shared}"\n[[accounts]]\nname = "p"\ntype = "sim"\n', encoding="utf-8")
    result = invoke("--config", str(config), "halt", "--reason", "x")
    assert result.exit_code == 0, result.output
    assert (shared / "SYSTEM_HALTED").exists()
    assert not flag().exists()


def test_a_config_with_errors_does_not_stop_a_halt(tmp_path):
    shared = tmp_path / "shared-state"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{shared}"\nbase_currency = "DOLLARS"\n', encoding="utf-8")
    result = invoke("--config", str(config), "halt", "--reason", "x")
    assert result.exit_code == 0, result.output
    assert (shared / "SYSTEM_HALTED").exists()
    assert "base_currency" in plain(result.output)


def test_an_unreadable_config_halts_the_default_state_dir_and_says_so(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("this is [not toml", encoding="utf-8")
    result = invoke("--config", str(config), "halt")
    assert result.exit_code == 3
    assert flag().exists()
    assert "default state directory" in plain(result.output)


def test_halt_cancel_reports_each_account():
    result = invoke("--demo", "halt", "--cancel", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == "HALTED"
    assert set(data["cancel"]) == {"paper-us", "paper-us-cash", "paper-in"}
    assert all(outcome["ok"] for outcome in data["cancel"].values())
    assert flag().exists()


def test_halt_loads_no_broker_sdk_and_no_ui():
    code = (
        "import sys\n"
        "from console.cli.main import app\n"
        "try:\n    app(['halt', '--reason', 'x'], prog_name='trading-console')\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=True,
    )
    modules = done.stdout.split()
    assert "console.cli.main" in modules and "brokers.killswitch" in modules
    assert not {m.split(".")[0] for m in modules} & {"textual", "rich", "alpaca", "ib_async", "kiteconnect"}
    assert not [
        m for m in modules if m.startswith(("console.tui.app", "console.tui.widgets", "brokers.runtime"))
    ]
    assert flag().exists()


async def test_halt_from_another_shell_is_obeyed_by_a_running_execution_service():
    runtime = build_runtime(demo_config(tick_interval=None))
    await runtime.start()
    seen: list[float] = []
    runtime.kill_switch.subscribe(
        lambda state, info: seen.append(time.monotonic()) if state is TradingState.HALTED else None
    )
    try:
        resting = await runtime.execution.submit(
            OrderRequest(
                symbol="AAPL",
                side="BUY",
                quantity=5,
                order_type="LIMIT",
                limit_price="220",
                account="paper-us",
            )
        )
        assert resting.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "console.cli.main", "halt", "--reason", "from the shell"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=60,
        )
        written = time.monotonic()
        assert done.returncode == 0, done.stderr
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen, "the running service never saw the halt"
        assert seen[0] - written < 0.25
        rejected = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reject_code == "SYSTEM_HALTED"
        assert "from the shell" in rejected.reject_reason
        # halt.cancel_open_orders: the service that sees the flag cancels its own working orders.
        for _ in range(100):
            if resting.status is OrderStatus.CANCELLED:
                break
            await asyncio.sleep(0.01)
        assert resting.status is OrderStatus.CANCELLED
        assert resting.filled_quantity == Decimal(0)
    finally:
        await runtime.stop()


def reduce_only_on_disk(reason: str = "daily loss limit reached at ib-live") -> None:
    """Reduce-only as a console's daily-loss watch leaves it, for the rest of the day."""
    from brokers.killswitch import KillSwitch

    with Journal(state_dir() / "journal.sqlite") as journal:
        KillSwitch(state_dir(), journal=journal, env={}).reduce_only(
            reason, source="risk:daily_loss", day=datetime.now(UTC).date()
        )


def test_halt_status_shows_reduce_only_with_its_reason():
    reduce_only_on_disk()
    result = invoke("halt-status")
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    assert "REDUCE-ONLY since" in text and "risk:daily_loss" in text
    assert "daily loss limit reached at ib-live" in text and "resume" in text
    data = json.loads(invoke("halt-status", "--json").stdout)
    assert data["state"] == "REDUCING" and data["halted"] is False
    assert data["reason"] == "daily loss limit reached at ib-live"
    assert data["source"] == "risk:daily_loss"


def test_resume_lifts_a_persisted_reduce_only():
    from brokers.killswitch import KillSwitch

    reduce_only_on_disk()
    result = invoke("resume", "--reason", "limit reviewed with risk desk")
    assert result.exit_code == 0, result.output
    assert "Trading resumed (was reduce-only)" in result.output
    assert KillSwitch(state_dir(), env={}).state is TradingState.ACTIVE
    assert json.loads(invoke("halt-status", "--json").stdout)["state"] == "ACTIVE"
    kinds = [kind for kind, _ in journal_kinds()]
    assert kinds[-2:] == ["reduce_only", "resume"]


def test_resume_json_says_what_it_lifted():
    reduce_only_on_disk()
    data = json.loads(invoke("resume", "--reason", "ok", "--json").stdout)
    assert (data["state"], data["was"], data["was_halted"]) == ("ACTIVE", "REDUCING", False)


def test_halt_writes_the_flag_before_it_opens_any_journal(monkeypatch):
    # The first opening of a journal from an earlier version brings it up to date, which takes
    # seconds with a long history: by then every process must already see the halt.
    flag_there_at_open: list[bool] = []
    opening = Journal.__init__

    def noting(self, *args, **kwargs):
        flag_there_at_open.append(flag().exists())
        opening(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "__init__", noting)
    result = invoke("halt", "--reason", "before the journal")
    assert result.exit_code == 0, result.output
    assert flag_there_at_open and all(flag_there_at_open)
    monkeypatch.setattr(Journal, "__init__", opening)
    events = journal_kinds()
    assert [kind for kind, _ in events] == ["halt"]
    assert events[0][1]["reason"] == "before the journal"
    assert events[0][1]["source"].startswith("cli:")


def test_an_unreadable_flag_rewritten_by_halt_is_journaled_once():
    flag().parent.mkdir(parents=True, exist_ok=True)
    flag().write_text("garbage", encoding="utf-8")
    assert invoke("halt", "--reason", "make it explicit").exit_code == 0
    events = journal_kinds()
    assert [kind for kind, _ in events] == ["halt"]
    assert events[0][1]["reason"] == "make it explicit"


def test_a_halt_seen_by_a_running_console_is_journaled_once_whoever_writes_it_first():
    from brokers.killswitch import KillSwitch

    with Journal(state_dir() / "journal.sqlite") as journal:
        console = KillSwitch(state_dir(), journal=journal, env={})
        assert invoke("halt", "--reason", "from the shell").exit_code == 0
        assert console.poll() is True  # the console sees the flag and finds the row journaled
        assert console.state is TradingState.HALTED
    assert [kind for kind, _ in journal_kinds()] == ["halt"]

    # And the other way round: a console journals a flag it found before `halt` gets to it.
    assert invoke("resume", "--reason", "back").exit_code == 0
    KillSwitch(state_dir(), env={}).halt("written by a script", source="script")
    with Journal(state_dir() / "journal.sqlite") as journal:
        console = KillSwitch(state_dir(), journal=journal, env={})  # journals what it found
        again = json.loads(invoke("halt", "--reason", "from the shell", "--json").stdout)
        assert again["already_halted"] is True
        assert console.state is TradingState.HALTED
    events = journal_kinds()
    assert [kind for kind, _ in events] == ["halt", "resume", "halt"]
    assert events[2][1]["reason"] == "written by a script"


def test_a_halt_after_an_unresumed_one_whose_flag_was_removed_is_journaled():
    assert invoke("halt", "--reason", "first").exit_code == 0
    flag().unlink()  # removed without a resume: the journal still says halted
    assert json.loads(invoke("halt-status", "--json").stdout)["halted"] is True
    assert invoke("halt", "--reason", "second").exit_code == 0
    events = journal_kinds()
    assert [kind for kind, _ in events] == ["halt", "halt"]
    assert events[1][1]["reason"] == "second"
