"""``[journal]`` in the config: closed days archived once a day by a running process, and the
archive's retention used by ``trading-console journal --archive``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokers.config import load_config
from brokers.errors import ConfigError
from brokers.journal import Journal
from brokers.journal_archive import archive_path, archived_days
from brokers.journal_schedule import ArchiveSchedule, JournalSettings
from brokers.runtime import build_runtime
from brokers.sim import SimBroker
from console.cli.bench.journal import write_history
from console.cli.main import app

NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 3, 20, tzinfo=UTC)


def _history(path: Path, midnight: datetime = MIDNIGHT) -> None:
    """Two orders a day, each filled, over the ten days before ``midnight``."""
    write_history(
        path, 20, start=midnight - timedelta(days=10), end=midnight - timedelta(hours=1), open_every=0
    )


def _config(tmp_path: Path, journal: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n\n'
        '[[accounts]]\nname = "sim"\ntype = "sim"\ndefault = true\n\n'
        f"[journal]\n{journal}\n",
        encoding="utf-8",
    )
    return path


def test_the_journal_section_is_read_and_bad_values_are_named(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "archive_after_days = 7\nkeep_archive_days = 90"))
    assert config.journal == JournalSettings(archive_after_days=7, keep_archive_days=90)
    assert load_config(_config(tmp_path, "")).journal == JournalSettings(
        archive_after_days=30, keep_archive_days=None
    )
    for bad, field in (
        ("archive_after_days = -1", "archive_after_days"),
        ("keep_archive_days = 0", "keep_archive_days"),
        ('archive_after_days = "soon"', "archive_after_days"),
        ("archive_daily = true", "archive_daily"),
    ):
        with pytest.raises(ConfigError) as raised:
            load_config(_config(tmp_path, bad))
        assert f"journal.{field}" in str(raised.value)


@pytest.mark.parametrize("folder", ["state", "odd ?#% folder"])
async def test_a_run_archives_only_days_older_than_the_setting(tmp_path: Path, folder: str) -> None:
    # A folder name that means something in a URI is still that folder: archives are read back.
    path = tmp_path / folder / "journal.sqlite"
    path.parent.mkdir()
    _history(path)
    journal = Journal(path)
    try:
        rows_before = journal.events()
        schedule = ArchiveSchedule(journal, JournalSettings(archive_after_days=4), clock=lambda: NOW)
        result = await schedule.run_once()
        assert result.archived == [MIDNIGHT.date() - timedelta(days=d) for d in range(10, 4, -1)]
        assert result.held_back_from == MIDNIGHT.date() - timedelta(days=4)
        left = journal.events()
        assert left and min(event.time for event in left).date() == MIDNIGHT.date() - timedelta(days=4)
        # Nothing lost: the archive and the journal together read back as before.
        assert journal.events(archived=True) == rows_before
        assert schedule.last_day == NOW.date()
    finally:
        journal.close()


async def test_the_schedule_archives_once_a_day_off_the_loop_and_applies_retention(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    _history(path)
    folder = path.with_name("journal-archive")
    folder.mkdir()
    stale = MIDNIGHT.date() - timedelta(days=400)
    sqlite3.connect(archive_path(folder, stale)).close()  # an archive file past its retention
    now = [NOW]
    slept: list[float] = []
    results: list[object] = []
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        # Each look's outcome, then the clock moves on: an hour, then into the next day.
        slept.append(seconds)
        results.append(schedule.last_result)
        if len(slept) == 2:
            now[0] = NOW + timedelta(hours=1)
        elif len(slept) == 3:
            now[0] = NOW + timedelta(days=1)
        elif len(slept) >= 4:
            parked.set()
            await asyncio.Event().wait()  # parked until stopped
        await asyncio.sleep(0)

    journal = Journal(path)
    schedule = ArchiveSchedule(
        journal,
        JournalSettings(archive_after_days=2, keep_archive_days=100),
        clock=lambda: now[0],
        sleep=sleep,
        first_after=60.0,
    )
    try:
        schedule.start()
        await asyncio.wait_for(parked.wait(), 30)
        assert slept[:2] == [60.0, 3600.0]
        assert results[0] is None  # nothing before the first look
        first = results[1]
        assert first is not None and first is results[2]  # an hour later, the same day: nothing more
        assert len(first.archived) == 8 and first.removed == [stale]
        assert stale not in archived_days(folder)
        second = results[3]
        assert second is not first and second.archived == [MIDNIGHT.date() - timedelta(days=2)]
        assert schedule.last_day == (NOW + timedelta(days=1)).date()
        # Every row still reads back, archived or not.
        assert len(journal.events(archived=True)) == 40
    finally:
        await schedule.stop()
        journal.close()
    assert schedule.enabled


async def test_no_schedule_when_archive_after_days_is_zero(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        schedule = ArchiveSchedule(journal, JournalSettings(archive_after_days=0))
        schedule.start()
        assert not schedule.enabled
        await schedule.stop()
    finally:
        journal.close()


async def test_the_runtime_runs_the_configured_schedule(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "archive_after_days = 3"))
    runtime = build_runtime(config, brokers={"sim": SimBroker("sim", seed=1)})
    assert runtime.archive_schedule is not None
    assert runtime.archive_schedule.settings.archive_after_days == 3
    await runtime.start()
    await runtime.stop()


def test_journal_archive_uses_the_configured_retention(tmp_path: Path) -> None:
    config_path = _config(tmp_path, "keep_archive_days = 30")
    config = load_config(config_path)
    today = datetime.now(UTC).date()
    _history(config.journal_path, datetime.combine(today, datetime.min.time(), UTC))
    folder = config.journal_path.with_name("journal-archive")
    stale = today - timedelta(days=45)
    kept = today - timedelta(days=20)
    folder.mkdir(parents=True)
    for day in (stale, kept):
        sqlite3.connect(archive_path(folder, day)).close()
    done = CliRunner().invoke(app, ["--config", str(config_path), "journal", "--archive", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["removed"] == [stale.isoformat()] and len(result["archived"]) == 10
    assert kept in archived_days(folder) and stale not in archived_days(folder)
    # --keep-days still wins over the config.
    done = CliRunner().invoke(
        app, ["--config", str(config_path), "journal", "--archive", "--keep-days", "10", "--json"]
    )
    assert json.loads(done.stdout)["removed"] == [kept.isoformat()]
