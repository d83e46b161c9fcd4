"""What the journal holds and what it takes on disk (``trading-console journal --stats``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .journal_archive import archive_path, archived_days
from .journal_index import lookup_path

__all__ = ["JournalStats", "read_stats"]


@dataclass(frozen=True, slots=True)
class JournalStats:
    path: Path
    database_bytes: int  # the database file
    wal_bytes: int  # its write-ahead log (bounded by the checkpoints)
    shm_bytes: int  # the WAL's shared-memory index
    lookup_bytes: int  # the lookup tables' file, its WAL and index (``brokers.journal_index``)
    archive_folder: Path
    archive_bytes: int
    archived_days: int
    first_archived: datetime | None
    events: int  # rows in the journal file (not counting the archive)
    open_orders: int
    first: datetime | None  # the oldest row in the journal file
    last: datetime | None

    @property
    def total_bytes(self) -> int:
        return self.database_bytes + self.wal_bytes + self.shm_bytes + self.lookup_bytes + self.archive_bytes


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _time(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts / 1_000_000, UTC)


def read_stats(db: sqlite3.Connection, path: Path, folder: Path) -> JournalStats:
    """The figures, read on ``db`` (the caller holds whatever lock guards it)."""
    # Counted in the narrow lookup table and the few rows not filed in it yet, not in the rows.
    events = db.execute(
        "SELECT (SELECT COUNT(*) FROM lk.row_times) + (SELECT COUNT(*) FROM main.events "
        "WHERE id > (SELECT upto FROM lk.indexed WHERE one = 1))"
    ).fetchone()[0]
    first = db.execute("SELECT ts FROM main.events ORDER BY id LIMIT 1").fetchone()
    last = db.execute("SELECT ts FROM main.events ORDER BY id DESC LIMIT 1").fetchone()
    # Those filed, and those opened since (an order closed since is still counted).
    open_orders = db.execute(
        "SELECT COUNT(*) FROM (SELECT client_order_id FROM lk.open_orders UNION SELECT client_order_id "
        "FROM main.events WHERE id > (SELECT upto FROM lk.indexed WHERE one = 1) AND status = 'PENDING')"
    ).fetchone()[0]
    days = archived_days(folder)
    lookup = lookup_path(path)
    return JournalStats(
        path=path,
        database_bytes=_size(path),
        wal_bytes=_size(path.with_name(path.name + "-wal")),
        shm_bytes=_size(path.with_name(path.name + "-shm")),
        lookup_bytes=sum(_size(lookup.with_name(lookup.name + tail)) for tail in ("", "-wal", "-shm")),
        archive_folder=folder,
        archive_bytes=sum(_size(archive_path(folder, day)) for day in days),
        archived_days=len(days),
        first_archived=datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC) if days else None,
        events=int(events),
        open_orders=int(open_orders),
        first=_time(None if first is None else first[0]),
        last=_time(None if last is None else last[0]),
    )
