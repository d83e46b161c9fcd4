"""The journal's lookup tables: a database file of their own beside the journal
(``journal.lookup.sqlite``), attached as ``lk``, filed in batches off the order path.

- ``order_rows``: each order's rows by client id (its history, the replay of an open one, and
  whether an id was sent).
- ``row_times``: row ids by time (``journal --since``).
- ``open_orders``: the client ids whose last journaled status could still fill, from the
  ``status`` column each order row carries.
- ``indexed``: the last row filed, and which journal these tables describe.

Why not SQLite indexes of ``events``, and why another file: an index on client ids (random keys)
rewrites a page at a random place for nearly every row. Kept inside each commit, that doubled
the cost of an order; in the journal's own file, even filed in batches, it filled the journal's
WAL with those pages four times as fast as the rows themselves. In a file of their own they
are written by the journal's upkeep thread alone, on its own connection: the order path never
waits for them, and neither WAL grows with the other.

``index_rows`` files the rows after ``indexed.upto``, a batch at a time; the batch and the new
``upto`` commit together, so a crash loses both or neither and the next run files them again.
Readers join these tables with the rows written since ``upto`` (a range of ids, the last fraction
of a second), so they never miss a row. The tables are derived: a lookup file that is missing,
or describes another journal, is filled again from the rows.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

from .enums import TERMINAL_STATUSES, WORKING_STATUSES
from .journal_schema import statements

__all__ = ["BATCH_ROWS", "attach_lookup", "index_rows", "indexed_upto", "lookup_path"]

BATCH_ROWS = 2_000

log = logging.getLogger(__name__)

_WORKING = ", ".join(f"'{status.value}'" for status in sorted(WORKING_STATUSES, key=str))
_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES, key=str))
_SPAN = "id > ?1 AND id <= ?2"
# Each order's last row with a status in the span. (SQLite takes a bare column of a MAX()
# aggregate from the row holding the maximum.)
_LAST_STATUS = (
    "SELECT client_order_id, status, MAX(id) FROM main.events "
    f"WHERE {_SPAN} AND client_order_id IS NOT NULL AND status IS NOT NULL GROUP BY client_order_id"
)
LOOKUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS lk.order_rows (
    client_order_id TEXT NOT NULL, id INTEGER NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (client_order_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.row_times (
    ts INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (ts, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.open_orders (client_order_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.indexed (
    one INTEGER PRIMARY KEY CHECK (one = 1), upto INTEGER NOT NULL, journal TEXT NOT NULL
);
"""
_TABLES = ("order_rows", "row_times", "open_orders")


def lookup_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.lookup{path.suffix}")


def attach_lookup(db: sqlite3.Connection, path: Path, journal_id: str) -> None:
    """Attach the lookup file of the journal at ``path`` to ``db`` as ``lk``, creating it, and
    emptying it when it describes another journal (``journal_id``) or rows the journal no
    longer has. A lookup file that is not a database any more (damaged) is deleted and made
    again: it holds nothing the rows do not."""
    try:
        _attach(db, path, journal_id)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError:
        log.exception("the journal's lookup file %s is damaged; it is made again", lookup_path(path))
        with contextlib.suppress(sqlite3.Error):
            db.execute("DETACH DATABASE lk")
        lookup = lookup_path(path)
        for tail in ("", "-wal", "-shm"):
            lookup.with_name(lookup.name + tail).unlink(missing_ok=True)
        _attach(db, path, journal_id)


def _attach(db: sqlite3.Connection, path: Path, journal_id: str) -> None:
    db.execute("ATTACH DATABASE ? AS lk", (str(lookup_path(path)),))
    db.execute("PRAGMA lk.journal_mode=WAL")
    db.execute("PRAGMA lk.synchronous=NORMAL")
    for statement in statements(LOOKUP_SCHEMA):
        db.execute(statement)
    row = db.execute("SELECT upto, journal FROM lk.indexed WHERE one = 1").fetchone()
    top = db.execute("SELECT COALESCE(MAX(id), 0) FROM main.events").fetchone()[0]
    if row is not None and row[1] == journal_id and row[0] <= top:
        return
    db.execute("BEGIN")
    try:
        for table in _TABLES:
            db.execute(f"DELETE FROM lk.{table}")
        db.execute("INSERT OR REPLACE INTO lk.indexed (one, upto, journal) VALUES (1, 0, ?)", (journal_id,))
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def indexed_upto(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT upto FROM lk.indexed WHERE one = 1").fetchone()
    return 0 if row is None else int(row[0])


def index_rows(db: sqlite3.Connection, limit: int = BATCH_ROWS) -> int:
    """File up to ``limit`` rows not filed yet, in one transaction on ``db`` (autocommit, with
    the lookup file attached as ``lk``); how many were filed. 0 as well when another
    connection is filing the same rows at this moment: the next call goes on."""
    if db.execute("SELECT 1 FROM main.events WHERE id > ? LIMIT 1", (indexed_upto(db),)).fetchone() is None:
        return 0
    # Deferred: only ``lk`` is written, and ``main`` is only read, so the order path's writer
    # never waits. ``upto`` is read again inside, so two connections filing at once cannot
    # both take the same span: the second one's write fails and it tries again later.
    db.execute("BEGIN")
    try:
        upto = indexed_upto(db)
        last, count = db.execute(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM main.events WHERE id > ? ORDER BY id LIMIT ?)",
            (upto, limit),
        ).fetchone()
        if count:
            span = (upto, last)
            db.execute(
                f"INSERT OR IGNORE INTO lk.row_times (ts, id) SELECT ts, id FROM main.events WHERE {_SPAN}",
                span,
            )
            db.execute(
                "INSERT OR IGNORE INTO lk.order_rows (client_order_id, id, kind) SELECT client_order_id, id, kind "
                f"FROM main.events WHERE {_SPAN} AND client_order_id IS NOT NULL",
                span,
            )
            db.execute(
                f"WITH last AS ({_LAST_STATUS}) INSERT OR IGNORE INTO lk.open_orders (client_order_id) "
                f"SELECT client_order_id FROM last WHERE status IN ({_WORKING})",
                span,
            )
            db.execute(
                f"WITH last AS ({_LAST_STATUS}) DELETE FROM lk.open_orders WHERE client_order_id IN "
                f"(SELECT client_order_id FROM last WHERE status IN ({_TERMINAL}))",
                span,
            )
            db.execute("UPDATE lk.indexed SET upto = ? WHERE one = 1", (last,))
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        _rollback(db)
        if "locked" in str(exc) or "busy" in str(exc):
            return 0
        raise
    except BaseException:
        _rollback(db)
        raise
    return int(count)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")
