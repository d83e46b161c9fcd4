"""The journal's tables and indexes, and how a journal written before them is brought up to date.

Besides the ``events`` rows the database keeps what lets a restart and the reads people make cost
what is open or asked for, not what the journal holds. These are not SQLite indexes of
``events``: kept inside every commit, those made each order cost twice as much (every commit
rewrote a page of each, at random places for client ids). They are tables that
``brokers.journal_index`` brings up to date in batches, off the order path, from the rows after
``indexed.upto``; a read adds the few rows written since by a scan of the id range after it.

- ``order_rows``: each order's rows by client id (its history, the replay of an open one, and
  whether an id was sent).
- ``row_times``: row ids by time (``journal --since``).
- ``open_orders``: the client ids whose last journaled status could still fill, from the
  ``status`` column each order row carries.
- ``archived_ids``: the client ids sent in days moved to the archive, so that an id a broker has
  seen is still refused after its rows have left this file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["SCHEMA_VERSION", "JournalEvent", "event_from_row", "prepare", "statements", "status_of"]

SCHEMA_VERSION = 2

EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,            -- microseconds since the Unix epoch, UTC
    kind TEXT NOT NULL,
    client_order_id TEXT,
    account TEXT,
    data TEXT NOT NULL,             -- JSON
    status TEXT                     -- the order's status after this row, where it says one
);
"""
# The halts and resumes have a partial index of their own so that order rows never pay for it:
# the kill switch reads the last of them without a scan (``last_halt_or_resume``). SQLite uses a
# partial index only for a query that repeats its condition word for word.
HALT_CONDITION = "kind IN ('halt', 'resume')"
INDEXES = f"""
CREATE INDEX IF NOT EXISTS events_halts ON events (id) WHERE {HALT_CONDITION};
"""


OPEN_ORDERS = """
CREATE TABLE IF NOT EXISTS order_rows (
    client_order_id TEXT NOT NULL, id INTEGER NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (client_order_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS row_times (ts INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (ts, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexed (one INTEGER PRIMARY KEY CHECK (one = 1), upto INTEGER NOT NULL);
INSERT OR IGNORE INTO indexed (one, upto) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS open_orders (client_order_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archived_ids (client_order_id TEXT PRIMARY KEY, day TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class JournalEvent:
    id: int
    time: datetime
    kind: str
    client_order_id: str | None
    account: str | None
    data: dict[str, Any]


COLUMNS = "id, ts, kind, client_order_id, account, data"


def event_from_row(row: tuple[Any, ...]) -> JournalEvent:
    """A ``JournalEvent`` from a row of ``SELECT {COLUMNS}``."""
    return JournalEvent(
        row[0], datetime.fromtimestamp(row[1] / 1_000_000, UTC), row[2], row[3], row[4], json.loads(row[5])
    )


def status_of(kind: str, data: dict[str, Any]) -> str | None:
    """The order status a row leaves its order in, as replaying it would (see ``_replay``)."""
    if kind == "intent":
        return "PENDING"
    state = data.get("state")
    if isinstance(state, dict):
        status = state.get("status")
        if isinstance(status, str):
            return status
    return None


def prepare(db: sqlite3.Connection, rebuild_open: Callable[[sqlite3.Connection], None]) -> None:
    """Create what is missing; a journal from an earlier version gets its ``status`` column and
    its ``open_orders`` table, filled once by ``rebuild_open(db)`` (a replay of its history; its
    rows carry no status, so the indexing that follows leaves that table as it is), in one
    transaction so that a second process opening it at the same time waits and finds it done."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
            had_events = found.fetchone() is not None
            for statement in statements(EVENTS):
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
            if "status" not in columns:
                db.execute("ALTER TABLE events ADD COLUMN status TEXT")
            for statement in statements(INDEXES + OPEN_ORDERS):
                db.execute(statement)
            if had_events:
                rebuild_open(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def statements(script: str) -> list[str]:
    """The statements of ``script`` one by one (``executescript`` would commit a transaction)."""
    found: list[str] = []
    current = ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                found.append(current.strip())
            current = ""
    return found
