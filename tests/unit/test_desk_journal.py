"""The desk journal against a real PostgreSQL server: every process's rows in one place, read
back from another process; a lost desk refusing new orders without losing a row; a local
journal copied in once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from support import until
from typer.testing import CliRunner

from brokers import journal as journal_module
from brokers.config import AccountConfig, Config
from brokers.desk import DeskSettings
from brokers.desk.commands import desk_migrate
from brokers.desk.journal import DeskJournal
from brokers.journal import Journal
from brokers.models import OrderRequest, OrderStatus, OrderType, RejectCode, Side
from brokers.runtime import Runtime, build_runtime
from brokers.sim import SimBroker
from console.cli.bench.postgres import Cluster
from console.cli.main import app

PROJECT = Path(__file__).resolve().parents[2]


def runtime_on(dsn: str, folder: Path, **desk: object) -> tuple[Runtime, SimBroker]:
    broker = SimBroker("paper", prices={"AAPL": Decimal(100)}, seed=1)
    config = Config(
        accounts=[AccountConfig(name="paper", type="sim")],
        desk=DeskSettings(dsn=dsn, **{"poll_ms": 100, **desk}),  # type: ignore[arg-type]
    )
    return build_runtime(config, brokers={"paper": broker}, state_dir=folder), broker


def local_ids(path: Path) -> set[int]:
    journal = Journal(path)
    try:
        return {event.id for event in journal.events()}
    finally:
        journal.close()


def desk_ids(dsn: str, journal_id: str) -> set[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT local_id FROM desk.journal WHERE journal_id = %s", (journal_id,)
        ).fetchall()
    return {int(row[0]) for row in rows}


def config_file(folder: Path, dsn: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(f'state_dir = "{folder / "state"}"\n\n[desk]\ndsn = "{dsn}"\n', encoding="utf-8")
    return path


async def test_every_row_reaches_the_desk_and_another_process_reads_it(desk_dsn: str, tmp_path: Path) -> None:
    runtime, _ = runtime_on(desk_dsn, tmp_path / "here")
    await runtime.start()
    try:
        journal = runtime.journal
        assert isinstance(journal, DeskJournal)
        placed = [
            await runtime.execution.submit(OrderRequest(symbol="AAPL", side=Side.BUY, quantity=Decimal(n)))
            for n in (1, 2, 3)
        ]
        assert all(order.status is OrderStatus.FILLED for order in placed), [o.reject_reason for o in placed]
        journal.flush()
        path = journal.path
        await until(lambda: desk_ids(desk_dsn, journal.journal_id) == local_ids(path), within=5)
    finally:
        await runtime.stop()

    # Another process, with a state folder of its own, reads them from the desk.
    config = config_file(tmp_path / "elsewhere", desk_dsn)
    env = {**os.environ, "NO_COLOR": "1"}
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "console.cli", "--config", str(config), "journal", "--json", "--limit", "0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    intents = {row["client_order_id"] for row in rows if row["kind"] == "intent"}
    assert intents == {order.client_order_id for order in placed}
    assert {row["process"] for row in rows} == {f"console pid {os.getpid()}"}
    # Its own local journal was neither read nor made.
    assert not (tmp_path / "elsewhere" / "state" / "journal.sqlite").exists()


async def test_a_lost_desk_refuses_new_orders_lets_cancels_out_and_loses_no_row(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn
    # The link's own fail-closed halt is set far off, so that what refuses here is the journal.
    runtime, broker = runtime_on(dsn, tmp_path / "here", fail_after_ms=60_000)
    await runtime.start()
    try:
        journal = runtime.journal
        assert isinstance(journal, DeskJournal) and journal.copier.problem is None
        working = await runtime.execution.submit(
            OrderRequest(
                symbol="AAPL",
                side=Side.BUY,
                quantity=Decimal(1),
                order_type=OrderType.LIMIT,
                limit_price=Decimal(50),
            )
        )
        assert working.status is OrderStatus.ACCEPTED, working.reject_reason

        own_cluster.stop("immediate")
        await until(lambda: journal.copier.problem is not None, within=5)
        sent_before = len(await broker.get_open_orders())
        refused = await runtime.execution.submit(
            OrderRequest(symbol="AAPL", side=Side.BUY, quantity=Decimal(1))
        )
        assert refused.reject_code == RejectCode.JOURNAL_ERROR
        assert "desk" in (refused.reject_reason or "") and "nothing was sent" in (refused.reject_reason or "")
        assert len(await broker.get_open_orders()) == sent_before
        assert not runtime.kill_switch.is_halted

        assert working.broker_order_id is not None
        cancelled = await runtime.execution.cancel("paper", working.broker_order_id)
        assert cancelled.status is OrderStatus.CANCELLED
        journal.flush()

        own_cluster.start()
        await until(lambda: journal.copier.problem is None, within=10)
        await until(lambda: desk_ids(dsn, journal.journal_id) == local_ids(journal.path), within=5)
        with psycopg.connect(dsn) as conn:
            kinds = {
                str(row[0])
                for row in conn.execute(
                    "SELECT kind FROM desk.journal WHERE client_order_id = %s", (working.client_order_id,)
                )
            }
        assert "cancel" in kinds, kinds

        again = await runtime.execution.submit(
            OrderRequest(symbol="AAPL", side=Side.BUY, quantity=Decimal(1))
        )
        assert again.status is OrderStatus.FILLED, again.reject_reason
    finally:
        await runtime.stop()


def test_desk_migrate_copies_a_local_journal_once(desk_dsn: str, tmp_path: Path) -> None:
    config = config_file(tmp_path, desk_dsn)
    path = tmp_path / "state" / "journal.sqlite"
    path.parent.mkdir(parents=True)
    journal = Journal(path)
    try:
        for n in range(2500):  # more than one batch
            journal.record("note", data={"n": n})
        journal_id = journal.journal_id
    finally:
        journal.close()

    first = CliRunner().invoke(app, ["--config", str(config), "desk", "migrate", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["copied"] == 2500
    second = CliRunner().invoke(app, ["--config", str(config), "desk", "migrate"])
    assert second.exit_code == 0, second.output
    assert "Copied 0 row(s)" in second.output
    assert desk_ids(desk_dsn, journal_id) == local_ids(path)


def test_desk_migrate_without_a_desk_says_what_to_add(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "desk", "migrate"])
    assert result.exit_code == 1
    assert "[desk]" in result.output


class _FixedClock:
    """The journal's clock, set to one moment (rows written on a past day)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def time_ns(self) -> int:
        return int(self.at.timestamp() * 1_000_000) * 1000


def _rows_on_past_days(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two notes on each of two past days, written through the journal; its id."""
    with monkeypatch.context() as patch:
        journal = Journal(path)
        try:
            for day in (date(2026, 3, 6), date(2026, 3, 7)):
                patch.setattr(journal_module, "time", _FixedClock(datetime(2026, 3, day.day, 12, tzinfo=UTC)))
                journal.record("note", data={"day": day.isoformat()})
                journal.record("note", data={"day": day.isoformat(), "n": 2})
            return journal.journal_id
        finally:
            journal.close()


UNREACHABLE = "postgresql://trader@127.0.0.1:9/desk"  # the discard port: nothing listens


def test_rows_the_desk_has_not_copied_stay_out_of_the_archive(
    desk_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    journal_id = _rows_on_past_days(path, monkeypatch)
    today = date(2026, 3, 10)

    lost = DeskJournal(path, settings=DeskSettings(dsn=UNREACHABLE, poll_ms=100))
    try:
        held = lost.archive(today=today)
    finally:
        lost.close()
    assert held.archived == []
    assert held.held_back_from == date(2026, 3, 6)
    assert len(local_ids(path)) == 4

    asyncio.run(desk_migrate(DeskSettings(dsn=desk_dsn), path))
    found = DeskJournal(path, settings=DeskSettings(dsn=desk_dsn, poll_ms=100))
    try:
        assert found.copier.wait_ready(10)
        moved = found.archive(today=today)
        assert moved.archived == [date(2026, 3, 6), date(2026, 3, 7)]
        assert len(found.events(archived=True)) == 4
    finally:
        found.close()
    assert len(desk_ids(desk_dsn, journal_id)) == 4


def test_journal_archive_copies_to_the_desk_first_and_refuses_without_it(
    desk_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    path.parent.mkdir(parents=True)
    journal_id = _rows_on_past_days(path, monkeypatch)

    unreachable = tmp_path / "lost.toml"
    unreachable.write_text(
        f'state_dir = "{path.parent}"\n\n[desk]\ndsn = "{UNREACHABLE}"\n', encoding="utf-8"
    )
    refused = CliRunner().invoke(app, ["--config", str(unreachable), "journal", "--archive"])
    assert refused.exit_code == 1, refused.output
    assert "nothing was archived" in refused.output
    assert len(local_ids(path)) == 4

    asyncio.run(
        desk_migrate(DeskSettings(dsn=desk_dsn), Path(tmp_path / "empty.sqlite"))
    )  # the desk's tables
    reachable = config_file(tmp_path, desk_dsn)
    done = CliRunner().invoke(app, ["--config", str(reachable), "journal", "--archive", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["archived"] == ["2026-03-06", "2026-03-07"]
    assert len(desk_ids(desk_dsn, journal_id)) == 4
