"""The write-ahead journal: one SQLite row per order event, the intent written before the broker
call, so that after any crash we know every order that might exist at a broker.

In short: WAL mode, and a row committed before ``record`` returns, so it survives the process
being killed at any instant (``synchronous="FULL"`` also survives a power cut, at one fsync per
commit). A broker's answer about an order already journaled (``soon=True``) is written with the
next intent or at the end of the event loop's turn; a process killed in between loses at most
those answers, never an intent. Checkpoints run in a thread of the journal's own. Why each of
these, and what it costs: "The journal's durability" in CONTRIBUTING.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from .journal_archive import (
    KEEP_DAYS_SETTING,
    ArchiveResult,
    archive_closed_days,
    archived_count,
    archived_events,
)
from .journal_checkpoint import (
    CHECKPOINT_SECONDS,
    FALLBACK_CHECKPOINT_PAGES,
    WAL_SIZE_LIMIT,
    Checkpointer,
)
from .journal_index import BATCH_ROWS, attach_lookup, index_rows, indexed_upto, lookup_path
from .journal_rows import (
    ACK,
    CANCEL,
    FILL,
    HALT,
    INTENT,
    RECONCILE,
    RECONNECT,
    REDUCE_ONLY,
    REJECT,
    RESUME,
    RISK,
    RISK_REJECT,
    UNKNOWN,
    UPDATE,
    dumps,
    fill_data,
    order_row,
    order_state,
    quote,
    replay_rows,
    request_data,
    request_json,
    request_text,
    state_json,
)
from .journal_schema import COLUMNS, HALT_CONDITION, JournalEvent, prepare, status_of
from .journal_schema import event_from_row as _event
from .journal_stats import JournalStats, read_stats
from .models import Fill, Order, OrderStatus
from .paths import ensure_dir
from .paths import state_dir as default_state_dir

__all__ = [
    "ACK",
    "CANCEL",
    "CHECKPOINT_SECONDS",
    "FALLBACK_CHECKPOINT_PAGES",
    "FILL",
    "HALT",
    "INTENT",
    "RECONCILE",
    "RECONNECT",
    "REDUCE_ONLY",
    "REJECT",
    "RESUME",
    "RISK",
    "RISK_REJECT",
    "UNKNOWN",
    "UPDATE",
    "ArchiveResult",
    "Journal",
    "JournalEvent",
    "JournalStats",
    "fill_data",
    "order_row",
    "order_state",
    "request_data",
    "request_json",
    "state_json",
]

log = logging.getLogger(__name__)

_LAST_HALT = f"SELECT {COLUMNS} FROM events WHERE {HALT_CONDITION} ORDER BY id DESC LIMIT 1"
_INSERT = "INSERT INTO events (ts, kind, client_order_id, account, data, status) VALUES (?, ?, ?, ?, ?, ?)"
_ROWS_PER_STATEMENT = 100  # 600 parameters, far below SQLite's limit


@functools.lru_cache(maxsize=_ROWS_PER_STATEMENT)
def _insert_rows(count: int) -> str:
    return _INSERT + ", (?, ?, ?, ?, ?, ?)" * (count - 1)


# Whether a client id was handed to a broker: its last intent is not followed by a refusal at
# the final kill-switch check (``REJECT``), here or in an archived day.
_WAS_SENT = (
    "SELECT COALESCE((SELECT kind = 'intent' FROM lk.order_rows WHERE client_order_id = ?1 "
    "AND kind IN ('intent', 'reject') ORDER BY id DESC LIMIT 1), "
    "(SELECT 1 FROM main.archived_ids WHERE client_order_id = ?1), 0)"
)
# The rows not filed in the lookup tables yet (see ``brokers.journal_index``).
_NOT_INDEXED = "SELECT id FROM main.events WHERE id > (SELECT upto FROM lk.indexed WHERE one = 1)"
# An open order's rows: those filed, and those written since. ``?1``: a JSON list of client ids.
_OPEN_ROWS = (
    "SELECT ts, kind, client_order_id, account, data FROM main.events WHERE id IN ("
    "SELECT r.id FROM json_each(?1) AS c CROSS JOIN lk.order_rows AS r ON r.client_order_id = c.value "
    "UNION ALL SELECT id FROM main.events WHERE id > ?2 AND client_order_id IN (SELECT value FROM json_each(?1))"
    ") ORDER BY id"
)


_PENDING = OrderStatus.PENDING.value
_OPENING_BATCH = 20_000


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Journal:
    def __init__(
        self, path: Path | str | None = None, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = Path(path) if path is not None else default_state_dir() / "journal.sqlite"
        ensure_dir(self.path.parent)
        self._lock = threading.Lock()
        # Autocommit: every row is its own transaction, committed before ``record`` returns.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self.journal_id = prepare(self._db)
        attach_lookup(self._db, self.path, self.journal_id)
        # What a crash left unfiled (or a journal from before the lookup tables); readers take
        # the rows written since the last filing on their own, but not a whole history.
        while index_rows(self._db, _OPENING_BATCH):
            pass
        self._writer = self._db.cursor()  # reused: a cursor per row is measurable on the order path
        self.synchronous = synchronous
        self._closed = False
        self._released = False  # the connection closed
        # Follow-up rows not written yet (see the module text), and the loop whose end of turn
        # will write them, if a callback is waiting there. Not a ``pubsub.TurnBatch``: these rows
        # are also taken, under the lock and from any thread, by the next row written (in its
        # statement, so one commit and ids in arrival order) and by every read, and a write
        # that fails keeps them waiting; a TurnBatch is one loop's and gives its items up first.
        self._waiting: list[tuple[Any, ...]] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self.writes = 0  # statements written, for the checkpoint thread to notice
        self._checkpointer: Checkpointer | None = None  # started by the first write

    # -- writing -------------------------------------------------------------------------
    def record(
        self,
        kind: str,
        *,
        client_order_id: str | None = None,
        account: str | None = None,
        data: dict[str, Any] | None = None,
        soon: bool = False,
    ) -> int | None:
        """Append one event and commit it; returns the row id. With ``soon`` the row may wait for
        the next one or the end of this turn of the event loop (see the module text), and then
        None is returned."""
        values = data or {}
        status = None if client_order_id is None else status_of(kind, values)
        return self._insert(kind, client_order_id, account, dumps(values), soon, status)

    def _insert(
        self,
        kind: str,
        client_order_id: str | None,
        account: str | None,
        payload: str,
        soon: bool = False,
        status: str | None = None,
    ) -> int | None:
        """``status``: the order's status after this row, which keeps ``open_orders``."""
        row = (time.time_ns() // 1000, kind, client_order_id, account, payload, status)
        with self._lock:
            if self._closed:
                raise RuntimeError("the journal is closed")
            if soon:
                loop = _running_loop()
                if loop is not None:
                    self._waiting.append(row)
                    # One flush callback per turn, however many orders the turn sends.
                    if self._flush_loop is not loop:
                        self._flush_loop = loop
                        loop.call_soon(self._end_of_turn, loop)
                    return None
            return self._write(row)

    def _write(self, row: tuple[Any, ...] | None = None) -> int | None:
        """The rows waiting and then ``row``, committed; the row id of the last. Holding the lock."""
        waiting = self._waiting
        if waiting:
            rows = [*waiting, row] if row is not None else list(waiting)
            for at in range(0, len(rows), _ROWS_PER_STATEMENT):
                # One statement, so one transaction and one set of locks, for all of them.
                chunk = rows[at : at + _ROWS_PER_STATEMENT]
                self._writer.execute(_insert_rows(len(chunk)), [value for each in chunk for value in each])
                # Written: not to be written again if a later chunk fails.
                del waiting[: len(chunk)]
        elif row is not None:
            self._writer.execute(_INSERT, row)
        else:
            return None
        self._wrote()
        return self._writer.lastrowid

    def _wrote(self) -> None:
        """A statement was written: the checkpoint thread notices it (started by the first).
        Holding the lock."""
        self.writes += 1
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self, self.path, self.synchronous, self._lock, self.journal_id)

    def _end_of_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flush_loop is loop:
            self._flush_loop = None
        self.flush()

    def flush(self) -> None:
        """Write the follow-up rows still waiting (it happens by itself; see the module text)."""
        with self._lock:
            self._write_waiting("yet; they go with the next row written")

    def _write_waiting(self, otherwise: str) -> None:
        """Write what is waiting, if anything; on failure the rows stay waiting and the log says
        so, ending with ``otherwise``. Holding the lock."""
        if self._waiting and not self._closed:
            try:
                self._write()
            except sqlite3.Error:
                log.exception("%d journal rows could not be written %s", len(self._waiting), otherwise)

    def record_order(
        self,
        kind: str,
        order: Order,
        *,
        fills: list[Fill] | None = None,
        soon: bool = False,
        with_request: bool = False,
    ) -> int | None:
        """One row with the order's resulting state, and the fills that led to it; with its
        request too when ``with_request`` (an order modified at its broker), which replaces the
        intent's on reading."""
        payload = order_row(order, fills)
        if with_request:
            payload = '{"request":' + request_text(order.request) + "," + payload[1:]
        return self._insert(kind, order.client_order_id, order.account, payload, soon, order.status._value_)

    def record_intent(self, order: Order) -> int | None:
        payload = '{"request":' + request_text(order.request) + "}"
        return self._insert(INTENT, order.client_order_id, order.account, payload, False, _PENDING)

    def record_refusal(self, order: Order, *, resent: bool) -> None:
        """A ``RISK_REJECT`` row for an order refused before its intent was written: what was
        asked and the refused state. ``resent``: the client id belongs to an order already
        sent, whose own rows this one must not join (the id goes into the data instead). The
        row may wait for the end of the loop's turn, like a follow-up row: a script hammering
        a halted switch costs no commit per order."""
        coid = order.client_order_id
        payload = '{"request":' + request_text(order.request) + ',"state":' + state_json(order)
        if resent:
            payload += ',"client_order_id":' + quote(coid)
        self._insert(
            RISK_REJECT,
            None if resent else coid,
            order.account,
            payload + "}",
            True,
            None if resent else order.status._value_,
        )

    # -- reading -------------------------------------------------------------------------
    def events(
        self,
        since: datetime | None = None,
        order: str | None = None,
        kinds: list[str] | None = None,
        *,
        last: int | None = None,
        archived: bool = False,
    ) -> list[JournalEvent]:
        """History, oldest first, optionally from ``since`` on, for one client_order_id, of
        these kinds, only the ``last`` so many; with ``archived``, the archived days too. A time
        or an order is read through the lookup tables: the cost follows the rows found, not the
        journal."""
        where, params = _conditions(since, order, kinds)
        query = f"SELECT {COLUMNS} FROM events{where} ORDER BY id"
        if last is not None:
            query += " DESC LIMIT ?"
            params.append(last)
        with self._lock:
            self._write_waiting("now; this read goes without them")
            rows = self._db.execute(query, params).fetchall()
            first = self._db.execute("SELECT MIN(id) FROM events").fetchone()[0] if archived else None
        if last is not None:
            rows.reverse()
        found = [_event(row) for row in rows]
        if not archived or (last is not None and len(found) >= last):
            return found
        older = archived_events(self.archive_folder, since, order, kinds)
        if older:
            # A day archived by a run that stopped before deleting it is in both: once is enough.
            older = [event for event in older if first is None or event.id < first]
            found = older + found
            if last is not None:
                found = found[-last:] if last else []
        return found

    def count_events(
        self,
        since: datetime | None = None,
        order: str | None = None,
        kinds: list[str] | None = None,
        *,
        archived: bool = False,
    ) -> int:
        """How many rows ``events`` would return without ``last``."""
        where, params = _conditions(since, order, kinds)
        with self._lock:
            self._write_waiting("now; this read goes without them")
            count = int(self._db.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()[0])
            first = self._db.execute("SELECT MIN(id) FROM events").fetchone()[0]
        if archived:
            count += archived_count(self.archive_folder, since, order, kinds, first)
        return count

    def rows_since(self, since: datetime, *, up_to: int) -> int:
        """How many rows were written from ``since`` on, counted through the lookup table of
        row times and no further than ``up_to``: as quick with a long history as with none."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        since_us = int(since.timestamp() * 1_000_000)
        with self._lock:
            self._write_waiting("now; this read goes without them")
            filed = self._db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM lk.row_times WHERE ts >= ? LIMIT ?)", (since_us, up_to)
            ).fetchone()[0]
            unfiled = self._db.execute(
                f"SELECT COUNT(*) FROM main.events WHERE ts >= ? AND id IN ({_NOT_INDEXED})", (since_us,)
            ).fetchone()[0]
        return min(up_to, int(filed) + int(unfiled))

    def order_history(self, client_order_id: str) -> list[JournalEvent]:
        """Every row of one order, archived days included, through its client id's lookup table."""
        return self.events(order=client_order_id, archived=True)

    @property
    def lookup_path(self) -> Path:
        """The lookup tables' own database file (``brokers.journal_index``)."""
        return lookup_path(self.path)

    @property
    def archive_folder(self) -> Path:
        """Where closed days go (``brokers.journal_archive``): beside the journal."""
        return self.path.with_name(self.path.stem + "-archive")

    def last_halt_or_resume(self) -> JournalEvent | None:
        """The newest ``halt`` or ``resume`` row, read through an index of their own: as cheap
        with a million order rows as with none."""
        with self._lock:
            row = self._db.execute(_LAST_HALT).fetchone()
        return None if row is None else _event(row)

    def orders(self) -> dict[str, Order]:
        """The last known state of every order in this file, by client_order_id, in the order
        first seen. It replays the whole file: for what a restart needs, ``open_orders``."""
        with self._lock:
            self._write_waiting("now; this read goes without them")
            rows = self._db.execute(
                "SELECT ts, kind, client_order_id, account, data FROM events "
                "WHERE client_order_id IS NOT NULL ORDER BY id"
            ).fetchall()
        return replay_rows(rows)

    def orders_since(self, since: datetime, *, most: int = 1000) -> list[Order]:
        """Orders with a row at or after ``since`` (the ``most`` most recently written to),
        oldest first, each replayed from all its own rows. Read through the lookup tables: the
        cost follows those orders, not the day's rows or the history."""
        recent = self.events(since=since, last=most * 4)
        wanted = list(dict.fromkeys(e.client_order_id for e in recent if e.client_order_id))[-most:]
        if not wanted:
            return []
        with self._lock:
            self._write_waiting("now; this read goes without them")
            db = self._db
            rows = db.execute(_OPEN_ROWS, (json.dumps(sorted(wanted)), indexed_upto(db))).fetchall()
        replayed = replay_rows(rows)
        return sorted((replayed[c] for c in wanted if c in replayed), key=lambda order: order.created_at)

    def open_orders(self) -> list[Order]:
        """Orders whose last known state could still fill (including UNKNOWN), in the order
        ``orders`` gives them. Only their own rows are read, found through ``open_orders`` and
        ``order_rows`` and among the rows not filed yet: the cost follows what is open, not
        the history."""
        with self._lock:
            self._write_waiting("now; this read goes without them")
            db = self._db
            upto = indexed_upto(db)
            candidates = {row[0] for row in db.execute("SELECT client_order_id FROM lk.open_orders")}
            for coid, status in db.execute(
                "SELECT client_order_id, status FROM main.events WHERE id > ? AND client_order_id IS NOT NULL",
                (upto,),
            ):
                if status is not None and OrderStatus(status).is_working:
                    candidates.add(coid)
            rows = db.execute(_OPEN_ROWS, (json.dumps(sorted(candidates)), upto)).fetchall()
        return [order for order in replay_rows(rows).values() if order.status.is_working]

    def index_pending(self, limit: int = BATCH_ROWS) -> int:
        """File up to ``limit`` rows in the lookup tables (``brokers.journal_index``), on this
        journal's connection; how many were filed. The upkeep thread files on a connection of
        its own; this is for a caller that wants them filed now."""
        with self._lock:
            if self._closed:
                return 0
            return index_rows(self._db, limit)

    def was_sent(self, client_order_id: str) -> bool:
        """Whether an order with this client id was handed to a broker, as far as this journal
        knows (archived days included): one look-up in ``order_rows``. Rows this process wrote
        and did not file yet are the ids it holds itself (``SentIds``); those another process
        wrote in the last fraction of a second may not be seen yet. A read that fails says no
        and is logged; the intent written next for the order is then what fails, and nothing
        goes out."""
        with self._lock:
            if self._closed:
                return False
            try:
                row = self._db.execute(_WAS_SENT, (client_order_id,)).fetchone()
            except sqlite3.Error:
                log.exception("could not look up client id %s in the journal", client_order_id)
                return False
        return bool(row[0])

    @property
    def upkeep(self) -> Checkpointer | None:
        """The thread that files rows and runs checkpoints (started by the first write), with
        its counts: checkpoints run, WAL restarts, the longest it held the lock."""
        return self._checkpointer

    def stats(self) -> JournalStats:
        """Rows, open orders and size on disk, the archive included."""
        with self._lock:
            self._write_waiting("now; this read goes without them")
            return read_stats(self._db, self.path, self.archive_folder)

    # -- archive ---------------------------------------------------------------------------
    def archive(
        self,
        *,
        today: date | None = None,
        keep_days: int | None = None,
        after_days: int = 0,
        stop: Callable[[], bool] | None = None,
    ) -> ArchiveResult:
        """Move closed days (those more than ``after_days`` days old) to the archive (see
        ``brokers.journal_archive``) and delete archive files older than ``keep_days`` days.
        ``keep_days`` is remembered in the journal for the runs that do not give it; never
        given, archives are kept for good. ``stop`` is asked between days."""
        if after_days < 0:
            raise ValueError("after_days must be 0 or more days")
        if keep_days is not None:
            if keep_days < 0:
                raise ValueError("keep_days must be 0 or more days")
            self._set_setting(KEEP_DAYS_SETTING, str(keep_days))
        else:
            stored = self.setting(KEEP_DAYS_SETTING)
            keep_days = int(stored) if stored is not None and stored.isdigit() else None
        return archive_closed_days(
            self.path,
            self.archive_folder,
            self._db,
            self._lock,
            self.journal_id,
            today=today or datetime.now(UTC).date(),
            keep_days=keep_days,
            after_days=after_days,
            catch_up=self._catch_up,
            stop=stop,
            wrote=self._wrote,
            keep_rows_after=self.archive_floor(),
        )

    def archive_floor(self) -> int | None:
        """The last row id that may leave this file for the archive; None when any may. A copy
        of the journal that has not taken every row yet (the desk's) holds the rest here."""
        return None

    def _catch_up(self) -> None:
        with self._lock:
            self._write_waiting("now; the archive goes without them")
            while index_rows(self._db, _OPENING_BATCH):
                pass

    def setting(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _set_setting(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._write_waiting("on close; those orders reconcile on restart")
                self._closed = True
        # Outside the lock: the thread may be waiting for it to file a batch.
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if not self._released:
                self._released = True
                try:
                    while index_rows(self._db, _OPENING_BATCH):
                        pass
                except sqlite3.Error:
                    log.exception(
                        "the journal's lookup tables could not be brought up to date; the next opening will"
                    )
                self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path} synchronous={self.synchronous}>"


def _conditions(since: datetime | None, order: str | None, kinds: list[str] | None) -> tuple[str, list[Any]]:
    """The WHERE clause for these conditions. One order or a time goes through the lookup tables
    (with the rows not filed yet), so the read follows the rows found, not the journal."""
    where: list[str] = []
    params: list[Any] = []
    since_us = None
    if since is not None:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        since_us = int(since.timestamp() * 1_000_000)
    if order is not None:
        where.append(
            f"id IN (SELECT id FROM lk.order_rows WHERE client_order_id = ? UNION ALL {_NOT_INDEXED})"
        )
        params.append(order)
    elif since_us is not None:
        where.append(f"id IN (SELECT id FROM lk.row_times WHERE ts >= ? UNION ALL {_NOT_INDEXED})")
        params.append(since_us)
    if since_us is not None:
        where.append("ts >= ?")
        params.append(since_us)
    if order is not None:
        where.append("client_order_id = ?")
        params.append(order)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    return (" WHERE " + " AND ".join(where) if where else ""), params
