"""Closed days of the journal, moved to archive files: one SQLite file per UTC day in a folder
beside the journal (``journal-archive/2026-03-02.sqlite``), with the same rows, ids included,
and the same indexes, so ``Journal.events(archived=True)`` and an order's history read them as
they read the journal.

A day moves only when it is over and holds no row of an order still open, nor the last halt or
resume (the kill switch reads that one from the journal): the cut-off is the earliest of those.
The rows are copied and checked first, then deleted from the journal a few thousand at a time,
each batch under the journal's own lock, so the order path waits at most for one batch. A copy
interrupted half way is rolled back by SQLite; a run stopped between copy and delete leaves the
day in both, which the next run finishes and readers take once. Client ids sent in an archived
day stay in the journal (``archived_ids``) for good, so an id a broker has seen is never sent
again, whatever the archive's retention.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .journal_index import attach_lookup
from .journal_schema import (
    COLUMNS,
    EVENTS,
    HALT_CONDITION,
    JournalEvent,
    event_from_row,
    open_read_only,
    statements,
)

__all__ = [
    "KEEP_DAYS_SETTING",
    "ArchiveResult",
    "archive_closed_days",
    "archived_count",
    "archived_days",
    "archived_events",
]

log = logging.getLogger(__name__)

KEEP_DAYS_SETTING = "archive_keep_days"
_DELETE_BATCH = 250  # rows deleted under the journal's lock at a time: about a millisecond
_DAY_US = 86_400 * 1_000_000
# The rows of one day, through the time lookup table (``?`` start and end, in microseconds).
_DAY_IDS = "id IN (SELECT id FROM lk.row_times WHERE ts >= ? AND ts < ?)"
_ARCHIVE_INDEXES = """
CREATE INDEX IF NOT EXISTS arch.events_orders ON events (client_order_id) WHERE client_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS arch.events_time ON events (ts);
"""


@dataclass(slots=True)
class ArchiveResult:
    """What one run of ``archive_closed_days`` did."""

    archived: list[date] = field(default_factory=list)  # days moved to the archive
    rows: int = 0  # rows moved
    held_back_from: date | None = None  # the first day kept: today, or one with an open order
    removed: list[date] = field(default_factory=list)  # archive files past their retention


def _start_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1_000_000)


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts / 1_000_000, UTC).date()


def archived_days(folder: Path) -> list[date]:
    """The days in the archive folder, oldest first."""
    if not folder.is_dir():
        return []
    days = []
    for path in folder.glob("*.sqlite"):
        try:
            days.append(date.fromisoformat(path.stem))
        except ValueError:
            continue
    return sorted(days)


def archive_path(folder: Path, day: date) -> Path:
    return folder / f"{day.isoformat()}.sqlite"


def archived_events(
    folder: Path, since: datetime | None, order: str | None, kinds: list[str] | None
) -> list[JournalEvent]:
    """Archived rows, oldest first, under the same conditions as ``Journal.events``."""
    found: list[JournalEvent] = []
    first = since.astimezone(UTC).date() if since is not None else None
    for day in archived_days(folder):
        if first is not None and day < first:
            continue
        where, params = _where(since, order, kinds)
        db = open_read_only(archive_path(folder, day))
        try:
            rows = db.execute(f"SELECT {COLUMNS} FROM events{where} ORDER BY id", params).fetchall()
        finally:
            db.close()
        found.extend(event_from_row(row) for row in rows)
    return found


def archived_count(
    folder: Path, since: datetime | None, order: str | None, kinds: list[str] | None, below: int | None
) -> int:
    """How many archived rows ``archived_events`` would return, counting only ids below
    ``below`` (the journal's first row: a day in both is counted once)."""
    total = 0
    first = since.astimezone(UTC).date() if since is not None else None
    for day in archived_days(folder):
        if first is not None and day < first:
            continue
        where, params = _where(since, order, kinds)
        if below is not None:
            where += (" AND " if where else " WHERE ") + "id < ?"
            params.append(below)
        db = open_read_only(archive_path(folder, day))
        try:
            total += int(db.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()[0])
        finally:
            db.close()
    return total


def _where(since: datetime | None, order: str | None, kinds: list[str] | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        params.append(int(since.timestamp() * 1_000_000))
    if order is not None:
        where.append("client_order_id = ?")
        params.append(order)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _cutoff(src: sqlite3.Connection, today: date, keep_rows_after: int | None) -> date:
    """The first day that must stay: today, or the first day of an open order, of the last halt
    or of a row after ``keep_rows_after``."""
    cutoff = today
    if keep_rows_after is not None:
        first_kept = src.execute(
            "SELECT MIN(ts) FROM main.events WHERE id > ?", (keep_rows_after,)
        ).fetchone()[0]
        if first_kept is not None:
            cutoff = min(cutoff, _day(first_kept))
    oldest_open = src.execute(
        "SELECT MIN(ts) FROM main.events WHERE id = (SELECT MIN(r.id) FROM lk.open_orders AS o "
        "CROSS JOIN lk.order_rows AS r ON r.client_order_id = o.client_order_id)"
    ).fetchone()[0]
    if oldest_open is not None:
        cutoff = min(cutoff, _day(oldest_open))
    last_halt = src.execute(
        f"SELECT ts FROM events WHERE {HALT_CONDITION} ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if last_halt is not None:
        cutoff = min(cutoff, _day(last_halt[0]))
    return cutoff


def archive_closed_days(
    path: Path,
    folder: Path,
    writer: sqlite3.Connection,
    lock: threading.Lock,
    journal_id: str,
    *,
    today: date | None = None,
    keep_days: int | None = None,
    after_days: int = 0,
    catch_up: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
    wrote: Callable[[], None] | None = None,
    keep_rows_after: int | None = None,
) -> ArchiveResult:
    """Move every closed day before the cut-off (see the module text), and more than
    ``after_days`` days before ``today``, from the journal at ``path`` to ``folder``; then
    delete archive files older than ``keep_days`` days. ``writer`` is the journal's own
    connection, used only while holding ``lock``; ``catch_up`` writes what waits and files every
    row in the lookup tables, which this reads; ``stop``, asked between days, ends the run
    early (the days left go next time); ``wrote``, called after each batch deleted, tells the
    journal's checkpoints that its WAL grew; ``keep_rows_after``, a row id after which every row
    must stay (with the rest of its day), for rows another copy has not taken yet."""
    result = ArchiveResult()
    today = today or datetime.now(UTC).date()
    if catch_up is not None:
        catch_up()
    folder.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        attach_lookup(src, path, journal_id)
        cutoff = min(_cutoff(src, today, keep_rows_after), today - timedelta(days=after_days))
        result.held_back_from = cutoff
        end = _start_us(cutoff)
        while stop is None or not stop():
            first = src.execute("SELECT MIN(ts) FROM lk.row_times WHERE ts < ?", (end,)).fetchone()[0]
            if first is None:
                break
            day = _day(first)
            if result.archived and day <= result.archived[-1]:
                raise RuntimeError(
                    f"the rows of {day} were archived but are still listed; nothing more was moved"
                )
            moved = _archive_day(src, folder, day)
            _forget_day(writer, lock, src, day, moved, wrote)
            result.archived.append(day)
            result.rows += len(moved)
    finally:
        src.close()
    if keep_days is not None:
        oldest = today - timedelta(days=keep_days)
        for day in archived_days(folder):
            if day < oldest:
                archive_path(folder, day).unlink(missing_ok=True)
                result.removed.append(day)
    return result


def _archive_day(src: sqlite3.Connection, folder: Path, day: date) -> list[int]:
    """Copy one day's rows into its archive file (joining what an earlier run left there) and
    check them; the ids of the rows copied."""
    start, end = _start_us(day), _start_us(day) + _DAY_US
    src.execute("ATTACH DATABASE ? AS arch", (str(archive_path(folder, day)),))
    try:
        src.execute("PRAGMA arch.synchronous=FULL")
        # Deferred: the journal is only read here, so its writers never wait for the copy.
        src.execute("BEGIN")
        try:
            for statement in statements(EVENTS.replace("IF NOT EXISTS events", "IF NOT EXISTS arch.events")):
                src.execute(statement)
            for statement in statements(_ARCHIVE_INDEXES):
                src.execute(statement)
            src.execute(
                "INSERT OR IGNORE INTO arch.events (id, ts, kind, client_order_id, account, data, status) "
                "SELECT id, ts, kind, client_order_id, account, data, status FROM main.events "
                "WHERE ts >= ? AND ts < ?",
                (start, end),
            )
            ids = [
                row[0]
                for row in src.execute("SELECT id FROM main.events WHERE ts >= ? AND ts < ?", (start, end))
            ]
            missing = src.execute(
                "SELECT COUNT(*) FROM main.events AS m WHERE m.ts >= ? AND m.ts < ? AND NOT EXISTS "
                "(SELECT 1 FROM arch.events AS a WHERE a.id = m.id AND a.data = m.data)",
                (start, end),
            ).fetchone()[0]
            if missing:
                raise RuntimeError(f"{missing} rows of {day} did not reach the archive; nothing was deleted")
            src.execute("COMMIT")
        except BaseException:
            src.execute("ROLLBACK")
            raise
    finally:
        src.execute("DETACH DATABASE arch")
    return ids


def _forget_day(
    writer: sqlite3.Connection,
    lock: threading.Lock,
    src: sqlite3.Connection,
    day: date,
    ids: list[int],
    wrote: Callable[[], None] | None,
) -> None:
    """Keep the day's sent client ids, then delete its rows from the journal, in batches, each
    under the journal's lock (small ones: an order waits for at most one); then from the lookup
    tables, on ``src``, without it. ``wrote`` is called, under the lock, after each batch."""
    for at in range(0, len(ids), _DELETE_BATCH):
        batch = ids[at : at + _DELETE_BATCH]
        marks = ", ".join("?" * len(batch))
        # Read without the lock: rows never change once written.
        rows = src.execute(
            f"SELECT id, ts, kind, client_order_id FROM main.events WHERE id IN ({marks})", batch
        ).fetchall()
        sent: dict[str, bool] = {}
        for _id, _ts, kind, coid in sorted(rows):
            if coid is not None and kind in ("intent", "reject"):
                sent[coid] = kind == "intent"
        with lock:
            writer.execute("BEGIN")
            try:
                writer.executemany(
                    "INSERT OR IGNORE INTO main.archived_ids (client_order_id, day) VALUES (?, ?)",
                    [(coid, day.isoformat()) for coid, was in sent.items() if was],
                )
                writer.executemany(
                    "DELETE FROM main.archived_ids WHERE client_order_id = ?",
                    [(coid,) for coid, was in sent.items() if not was],
                )
                writer.execute(f"DELETE FROM main.events WHERE id IN ({marks})", batch)
                writer.execute("COMMIT")
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            if wrote is not None:
                wrote()
        src.execute("BEGIN")
        try:
            src.executemany(
                "DELETE FROM lk.order_rows WHERE client_order_id = ? AND id = ?",
                [(coid, row_id) for row_id, _ts, _kind, coid in rows if coid is not None],
            )
            src.executemany(
                "DELETE FROM lk.row_times WHERE ts = ? AND id = ?",
                [(ts, row_id) for row_id, ts, _k, _c in rows],
            )
            src.execute("COMMIT")
        except BaseException:
            src.execute("ROLLBACK")
            raise
