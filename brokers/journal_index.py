"""The journal's lookup tables (see ``brokers.journal_schema``), brought up to date in batches.

``index_rows`` takes the rows after ``indexed.upto``, a batch at a time, and files them: each
order row under its client id (``order_rows``), each row under its time (``row_times``), and the
order's last status into ``open_orders``. The batch and the new ``upto`` commit together, so a
crash loses both or neither, and the next run takes the rows again. The journal's maintenance
thread runs it every few tens of milliseconds while rows are written; each batch holds the
journal's lock for a millisecond or two, then lets the order path in. A journal opened after a
crash files the rest of its rows before anything reads it.

The reads in ``brokers.journal`` join these tables with the rows written since ``upto`` (a range
of ids: a scan of the last fraction of a second), so they never miss a row.
"""

from __future__ import annotations

import sqlite3

from .enums import TERMINAL_STATUSES, WORKING_STATUSES

__all__ = ["BATCH_ROWS", "index_rows", "indexed_upto"]

BATCH_ROWS = 400

_WORKING = ", ".join(f"'{status.value}'" for status in sorted(WORKING_STATUSES, key=str))
_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES, key=str))
_SPAN = "id > ?1 AND id <= ?2"
# Each order's last row with a status in the span. (SQLite takes a bare column of a MAX()
# aggregate from the row holding the maximum.)
_LAST_STATUS = (
    "SELECT client_order_id, status, MAX(id) FROM events "
    f"WHERE {_SPAN} AND client_order_id IS NOT NULL AND status IS NOT NULL GROUP BY client_order_id"
)


def indexed_upto(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT upto FROM indexed WHERE one = 1").fetchone()
    return 0 if row is None else int(row[0])


def index_rows(db: sqlite3.Connection, limit: int = BATCH_ROWS) -> int:
    """File up to ``limit`` rows not filed yet, in one transaction on ``db`` (an autocommit
    connection whose writes the caller has to itself); how many were filed. All in SQL: no
    Python runs per row, so the thread holds the interpreter as briefly as the lock."""
    if db.execute("SELECT 1 FROM events WHERE id > ? LIMIT 1", (indexed_upto(db),)).fetchone() is None:
        return 0
    # Immediate, and ``upto`` read again inside: another process filing the same journal at
    # the same moment goes before or after this batch, never through the middle of it.
    db.execute("BEGIN IMMEDIATE")
    try:
        upto = indexed_upto(db)
        last, count = db.execute(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ?)",
            (upto, limit),
        ).fetchone()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if not count:
        db.execute("COMMIT")
        return 0
    span = (upto, last)
    try:
        db.execute(f"INSERT OR IGNORE INTO row_times (ts, id) SELECT ts, id FROM events WHERE {_SPAN}", span)
        db.execute(
            "INSERT OR IGNORE INTO order_rows (client_order_id, id, kind) SELECT client_order_id, id, kind "
            f"FROM events WHERE {_SPAN} AND client_order_id IS NOT NULL",
            span,
        )
        db.execute(
            f"WITH last AS ({_LAST_STATUS}) INSERT OR IGNORE INTO open_orders (client_order_id) "
            f"SELECT client_order_id FROM last WHERE status IN ({_WORKING})",
            span,
        )
        db.execute(
            f"WITH last AS ({_LAST_STATUS}) DELETE FROM open_orders WHERE client_order_id IN "
            f"(SELECT client_order_id FROM last WHERE status IN ({_TERMINAL}))",
            span,
        )
        db.execute("UPDATE indexed SET upto = ? WHERE one = 1", (last,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return int(count)
