"""The journal with a long history: a restart reads what is open, not the history; used client ids
are found through the lookup tables; reads by time and by order follow the rows found; the WAL
starts over under a burst; closed days move to the archive and read back identically."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import brokers.journal as journal_module
import brokers.journal_checkpoint as checkpoints
from brokers.execution import ExecutionService
from brokers.journal import _WAS_SENT, Journal, _conditions
from brokers.journal_archive import archived_days
from brokers.journal_schema import SCHEMA_VERSION
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Fill, Order, OrderRequest, OrderStatus, RejectCode
from brokers.sim import SimBroker
from console.cli.bench.journal import ACCOUNT, open_ids, write_history

MILLION_ROWS_ORDERS = 500_000  # an intent and an answer each


def make_order(account: str = ACCOUNT, **fields: object) -> Order:
    request = OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 10, "account": account, **fields})
    return Order(request=request, account=account)


async def _service(root: Path, journal: Journal) -> tuple[ExecutionService, MultiBrokerManager]:
    manager = MultiBrokerManager(heartbeat_interval=3600)
    broker = SimBroker(ACCOUNT, prices={"AAPL": Decimal(100)}, initial_cash=10**9, seed=1)
    manager.add_broker(ACCOUNT, broker, default=True)
    await manager.connect_all()
    service = ExecutionService(manager, KillSwitch(root, journal=journal, env={}), journal=journal)
    await service.start()
    return service, manager


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of 1,000,000 rows, bulk-inserted: 500,000 orders over 60 days, 20 still open."""
    path = tmp_path_factory.mktemp("million") / "journal.sqlite"
    now = datetime.now(UTC)
    write_history(path, MILLION_ROWS_ORDERS, start=now - timedelta(days=60), end=now - timedelta(hours=2))
    return path


async def test_a_restart_over_a_million_rows_finds_exactly_the_open_orders(
    million: Path, tmp_path: Path
) -> None:
    with Journal(million) as journal:
        assert journal.stats().events == 2 * MILLION_ROWS_ORDERS
        service, manager = await _service(tmp_path, journal)
        try:
            expected = open_ids(MILLION_ROWS_ORDERS)
            assert len(expected) == 20
            assert set(service.tracker.orders) == expected
            assert {o.client_order_id for o in service.working_orders()} == expected
            assert all(o.status is OrderStatus.ACCEPTED for o in service.working_orders())
            # An id filled weeks ago is still known as sent, without the history in memory.
            assert len(service.tracker.sent) == len(expected)
            old = OrderRequest(symbol="AAPL", side="BUY", quantity=1, client_order_id="H00000000007")
            refused = await service.submit(old)
            assert refused.reject_code == RejectCode.DUPLICATE_ORDER
            fresh = await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
            assert fresh.reject_code is None and fresh.client_order_id in service.tracker.sent
        finally:
            await service.stop()
            await manager.disconnect_all()


def test_reads_by_time_and_by_order_go_through_the_lookup_tables(million: Path) -> None:
    with Journal(million) as journal:
        since = datetime.now(UTC) - timedelta(hours=3)
        recent = journal.events(since=since)
        assert recent and all(event.time >= since for event in recent)
        assert journal.count_events(since=since) == len(recent)
        assert [e.id for e in journal.events(since=since, last=3)] == [e.id for e in recent[-3:]]
        history = journal.order_history("H00000000007")
        assert [(e.kind, e.client_order_id) for e in history] == [
            ("intent", "H00000000007"),
            ("fill", "H00000000007"),
        ]
        assert journal.was_sent("H00000000007") and not journal.was_sent("NEVER-SEEN")
        # The plans: every look-up through a primary key, no scan of the rows.
        plans = []
        for where, params in (
            _conditions(since, None, None),
            _conditions(None, "H00000000007", None),
            _conditions(since, None, ["fill"]),
        ):
            query = f"EXPLAIN QUERY PLAN SELECT id FROM main.events{where} ORDER BY id"
            plans += [str(step[3]) for step in journal._db.execute(query, params)]
        plans += [str(step[3]) for step in journal._db.execute("EXPLAIN QUERY PLAN " + _WAS_SENT, ("x",))]
        assert plans and not [step for step in plans if step.startswith("SCAN") and "events" in step], plans


def test_open_orders_and_sent_ids_match_a_replay_of_the_whole_history(tmp_path: Path) -> None:
    """Orders through every kind of outcome, some ids refused at the final check and sent again:
    the lookup tables give what replaying every row gives."""
    rng = random.Random(7)
    sent: set[str] = set()
    with Journal(tmp_path / "journal.sqlite") as journal:
        for n in range(600):
            order = make_order()
            journal.record_intent(order)
            outcome = rng.choice(["filled", "accepted", "unknown", "cancelled", "final_check", "pending"])
            if outcome == "final_check":
                order.reject("SYSTEM_HALTED", "halted")
                journal.record_order("reject", order)
                if n % 2:  # sent again later, under the same id
                    order = Order(request=order.request, account=ACCOUNT)
                    journal.record_intent(order)
                    sent.add(order.client_order_id)
                continue
            sent.add(order.client_order_id)
            if outcome == "pending":
                continue
            order.broker_order_id = f"B{n}"
            if outcome == "unknown":
                order.transition(OrderStatus.UNKNOWN)
                journal.record_order("unknown", order)
                continue
            order.transition(OrderStatus.ACCEPTED)
            journal.record_order("ack", order, soon=True)
            if outcome == "filled":
                fill = Fill(
                    fill_id=f"F{n}",
                    account=ACCOUNT,
                    symbol="AAPL",
                    side="BUY",
                    quantity=Decimal(10),
                    price=Decimal(100),
                    client_order_id=order.client_order_id,
                )
                order.apply_fill(fill)
                journal.record_order("fill", order, fills=[fill])
            elif outcome == "cancelled":
                order.transition(OrderStatus.CANCELLED)
                journal.record_order("cancel", order)
        replayed = [o for o in journal.orders().values() if o.status.is_working]
        found = journal.open_orders()
        assert [o.client_order_id for o in found] == [o.client_order_id for o in replayed]
        assert [(o.status, o.filled_quantity) for o in found] == [
            (o.status, o.filled_quantity) for o in replayed
        ]
        ids = {o.client_order_id for o in journal.orders().values()}
    # ``was_sent`` reads the filed rows (this process's own sends are held by ``SentIds``). The
    # upkeep thread may hold a batch of them in its own transaction at any moment: reopened, no
    # thread runs until the next write, and whatever is left is filed here.
    with Journal(tmp_path / "journal.sqlite") as journal:
        while journal.index_pending():
            pass
        assert {coid for coid in ids if journal.was_sent(coid)} == sent


def test_rows_not_filed_yet_are_read_all_the_same(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        order = make_order()
        journal.record_intent(order)
        # Straight after the write, before the thread has filed it:
        assert [e.kind for e in journal.events(order=order.client_order_id)] == ["intent"]
        assert [e.kind for e in journal.events(since=datetime.now(UTC) - timedelta(minutes=1))] == ["intent"]
        assert [o.client_order_id for o in journal.open_orders()] == [order.client_order_id]


def test_a_journal_from_before_the_lookup_tables_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, "
        "client_order_id TEXT, account TEXT, data TEXT NOT NULL)"
    )
    working, done = make_order(), make_order()
    for order, status in ((working, "ACCEPTED"), (done, "FILLED")):
        db.execute(
            "INSERT INTO events (ts, kind, client_order_id, account, data) VALUES (1, 'intent', ?, ?, ?)",
            (order.client_order_id, ACCOUNT, '{"request":' + order.request.model_dump_json() + "}"),
        )
        db.execute(
            "INSERT INTO events (ts, kind, client_order_id, account, data) VALUES (2, 'ack', ?, ?, ?)",
            (order.client_order_id, ACCOUNT, '{"state":{"status":"' + status + '","filled_quantity":"0"}}'),
        )
    db.commit()
    db.close()
    with Journal(path) as journal:
        assert [o.client_order_id for o in journal.open_orders()] == [working.client_order_id]
        assert journal.was_sent(done.client_order_id)
        assert [e.kind for e in journal.order_history(done.client_order_id)] == ["intent", "ack"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_the_wal_starts_over_under_a_burst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scaled down: restarts from 64 pages on, cut back to 256 KiB. Eight MiB of commits would
    grow the WAL to eight MiB if it never started over."""
    monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 64)
    monkeypatch.setattr(checkpoints, "BUSY_CHECKPOINT_SECONDS", 0.005)
    monkeypatch.setattr(journal_module, "WAL_SIZE_LIMIT", 256 * 1024)
    synced_by: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_by.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync)
    with Journal(tmp_path / "journal.sqlite") as journal:
        wal = Path(str(journal.path) + "-wal")
        largest = rounds = 0
        deadline = time.monotonic() + 30
        while rounds < 40 or journal.upkeep is None or journal.upkeep.restarts < 3:
            assert time.monotonic() < deadline, "the WAL was not started over three times"
            for _ in range(50):  # each commit appends at least one 4 KiB page
                journal.record_intent(make_order())
            largest = max(largest, os.stat(wal).st_size)
            rounds += 1
            await asyncio.sleep(0.01)
        assert largest < 4 * 2**20
        assert journal.stats().wal_bytes == os.stat(wal).st_size
        # Before each restart the checkpoint thread syncs the files itself, without the lock.
        assert journal.upkeep is not None and len(journal.upkeep.holds) == journal.upkeep.restarts
        assert synced_by.count("journal-checkpoints") >= journal.upkeep.restarts


class _Clock:
    """``time`` for ``brokers.journal``, with ``time_ns`` at a chosen moment."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def time_ns(self) -> int:
        at = self.at
        return time.time_ns() if at is None else int(at.timestamp() * 1_000_000) * 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(journal_module, "time", fake)
    return fake


def _days_of_orders(
    journal: Journal, clock: _Clock, days: list[date], *, open_on: date | None = None
) -> dict[date, list[Order]]:
    """Three filled orders written at noon on each day; one left ACCEPTED on ``open_on``."""
    made: dict[date, list[Order]] = {}
    for day in days:
        clock.at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        made[day] = []
        for n in range(3):
            order = make_order()
            journal.record_intent(order)
            order.broker_order_id = f"B-{day}-{n}"
            order.transition(OrderStatus.ACCEPTED)
            if not (day == open_on and n == 1):
                order.transition(OrderStatus.FILLED)
            journal.record_order("ack", order)
            made[day].append(order)
    clock.at = None
    return made


def test_closed_days_archive_and_read_back_identically(tmp_path: Path, clock: _Clock) -> None:
    today = date(2026, 3, 10)
    days = [date(2026, 3, 6), date(2026, 3, 7), date(2026, 3, 9)]
    with Journal(tmp_path / "journal.sqlite") as journal:
        made = _days_of_orders(journal, clock, days, open_on=date(2026, 3, 7))
        before = journal.events()
        open_before = [o.client_order_id for o in journal.open_orders()]

        first = journal.archive(today=today)
        # The day with an open order, and every day after it, stay.
        assert first.archived == [date(2026, 3, 6)]
        assert first.held_back_from == date(2026, 3, 7)
        assert archived_days(journal.archive_folder) == [date(2026, 3, 6)]
        assert journal.events(archived=True) == before
        assert len(journal.events()) == len(before) - 6
        since = datetime(2026, 3, 1, tzinfo=UTC)
        assert journal.events(since=since, archived=True) == before
        gone = made[date(2026, 3, 6)][0].client_order_id
        assert journal.order_history(gone) == [e for e in before if e.client_order_id == gone]
        assert journal.was_sent(gone)
        assert [o.client_order_id for o in journal.open_orders()] == open_before

        # The open order fills: its day and the next close too.
        still = made[date(2026, 3, 7)][1]
        still.transition(OrderStatus.FILLED)
        journal.record_order("fill", still)
        everything = journal.events(archived=True)
        second = journal.archive(today=today, keep_days=30)
        assert second.archived == [date(2026, 3, 7), date(2026, 3, 9)]
        assert journal.events(archived=True) == everything
        assert [e.time.date() for e in journal.events()] == [datetime.now(UTC).date()]
        stats = journal.stats()
        assert stats.archived_days == 3 and stats.archive_bytes > 0
        assert journal.setting("archive_keep_days") == "30"

        # Past the retention, archive files go (the ids sent stay known).
        third = journal.archive(today=date(2026, 4, 7))
        assert third.removed == [date(2026, 3, 6), date(2026, 3, 7)]
        assert archived_days(journal.archive_folder) == [date(2026, 3, 9)]
        assert journal.was_sent(gone)


def test_archiving_keeps_the_day_of_the_last_halt(tmp_path: Path, clock: _Clock) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        _days_of_orders(journal, clock, [date(2026, 3, 6)])
        clock.at = datetime(2026, 3, 8, 9, tzinfo=UTC)
        journal.record("halt", data={"reason": "test"})
        _days_of_orders(journal, clock, [date(2026, 3, 9)])
        result = journal.archive(today=date(2026, 3, 10))
        assert result.archived == [date(2026, 3, 6)]
        assert result.held_back_from == date(2026, 3, 8)
        last = journal.last_halt_or_resume()
        assert last is not None and last.data == {"reason": "test"}


def test_a_damaged_lookup_file_is_made_again_from_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        order = make_order()
        journal.record_intent(order)
        lookup = journal.lookup_path
    for tail in ("-wal", "-shm"):
        lookup.with_name(lookup.name + tail).unlink(missing_ok=True)
    lookup.write_bytes(b"not a database" * 100)
    with Journal(path) as journal:
        assert [o.client_order_id for o in journal.open_orders()] == [order.client_order_id]
        assert journal.was_sent(order.client_order_id)


def test_a_lookup_file_of_another_journal_is_not_believed(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        kept = make_order()
        journal.record_intent(kept)
        lookup = journal.lookup_path
    (tmp_path / "journal.sqlite").unlink()
    for tail in ("-wal", "-shm"):
        (tmp_path / f"journal.sqlite{tail}").unlink(missing_ok=True)
    with Journal(tmp_path / "journal.sqlite") as journal:  # a new journal, the old lookup file
        assert journal.lookup_path == lookup
        assert journal.open_orders() == []
        assert not journal.was_sent(kept.client_order_id)
