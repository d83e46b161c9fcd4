"""The journal's tables, and how a journal written before them is brought up to date.

``events`` holds the rows; each order row carries the order's ``status`` after it, from which
the lookup tables (``brokers.journal_index``, in a file of their own) are filed. Beside them:

- ``archived_ids``: the client ids sent in days moved to the archive, so that an id a broker has
  seen is still refused after its rows have left this file;
- ``settings``: the journal's own (its identity, the archive's retention).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "JournalEvent",
    "event_from_row",
    "prepare",
    "statements",
    "status_of",
]

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


TABLES = """
CREATE TABLE IF NOT EXISTS archived_ids (client_order_id TEXT PRIMARY KEY, day TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
JOURNAL_ID_SETTING = "journal_id"


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


def prepare(db: sqlite3.Connection) -> str:
    """Create what is missing, and return the journal's identity (which its lookup file must
    carry). A journal from an earlier version gets its ``status`` column, filled from its rows
    once, in one transaction, so that a second process opening it at the same time waits and
    finds it done."""
    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
                had_events = found.fetchone() is not None
                for statement in statements(EVENTS + INDEXES + TABLES):
                    db.execute(statement)
                columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
                if "status" not in columns:
                    db.execute("ALTER TABLE events ADD COLUMN status TEXT")
                if had_events:
                    _fill_status(db)
                db.execute(
                    "INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)",
                    (JOURNAL_ID_SETTING, uuid.uuid4().hex),
                )
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    row = db.execute("SELECT value FROM settings WHERE name = ?", (JOURNAL_ID_SETTING,)).fetchone()
    return str(row[0])


def _fill_status(db: sqlite3.Connection) -> None:
    """The ``status`` of each order row of a journal written before the column."""
    rows = db.execute(
        "SELECT id, kind, data FROM events WHERE client_order_id IS NOT NULL AND status IS NULL"
    ).fetchall()
    found = []
    for row_id, kind, raw in rows:
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        status = status_of(kind, data) if isinstance(data, dict) else None
        if status is not None:
            found.append((status, row_id))
    db.executemany("UPDATE events SET status = ? WHERE id = ?", found)


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


def open_read_only(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection that reads the SQLite file at ``path`` and cannot write it. The path goes
    into the URI percent-encoded: a folder named with "?", "#" or "%" is still that folder."""
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=check_same_thread
    )
