"""The desk journal: every process's journal rows in the desk's database.

Each process keeps its local journal (SQLite) as the write-ahead record it has always been: an
order's intent is committed there before the order is sent, so a crash loses nothing, and the
order path never waits on a network round trip. A thread of the process's own copies every
row, in order, into ``desk.journal`` within milliseconds, by the local journal's id (a row copied
twice is one row), catching up from where the desk left off after a restart or an outage.

Fail closed: while the desk cannot be written (the copy failed, or the desk has not answered
since the process started), ``DeskJournal`` refuses to record a new order's intent, so the
order is refused with JOURNAL_ERROR and nothing is sent. Cancels and the rows of orders
already working are still written locally and reach the desk when it answers again.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..journal import Journal
from ..journal_schema import open_read_only
from ..orders import Order
from .settings import DeskSettings
from .store import DeskUnavailableError, connection_info, unavailable

if TYPE_CHECKING:
    import psycopg

__all__ = ["DeskJournal", "JournalCopier", "copy_journal"]

log = logging.getLogger(__name__)

# Rows read from the local journal and sent in one transaction.
BATCH = 500
# How often the copier looks for new rows; a row reaches the desk within about this.
LOOK_EVERY = 0.005
# How often an idle copier asks the desk whether it is still there.
PROBE_EVERY = 0.25

_INSERT = (
    "INSERT INTO desk.journal (journal_id, local_id, host, process, ts, kind, client_order_id, "
    "account, data, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (journal_id, local_id) DO NOTHING"
)


def _connect(settings: DeskSettings) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg

    return psycopg.Connection.connect(connection_info(settings), autocommit=False)


def _copied_up_to(conn: psycopg.Connection[tuple[object, ...]], journal_id: str) -> int:
    row = conn.execute(
        "SELECT coalesce(max(local_id), 0) FROM desk.journal WHERE journal_id = %s", (journal_id,)
    ).fetchone()
    conn.commit()
    return int(str(row[0])) if row is not None else 0


def _copy_batch(
    local: sqlite3.Connection,
    conn: psycopg.Connection[tuple[object, ...]],
    journal_id: str,
    host: str,
    process: str,
    after: int,
) -> tuple[int, int]:
    """Copy up to ``BATCH`` rows written after local id ``after``: the last id copied and how
    many rows were read."""
    rows = local.execute(
        "SELECT id, ts, kind, client_order_id, account, data, status FROM events WHERE id > ? ORDER BY id LIMIT ?",
        (after, BATCH),
    ).fetchall()
    if not rows:
        return after, 0
    with conn.cursor() as cursor:
        cursor.executemany(
            _INSERT, [(journal_id, r[0], host, process, r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]
        )
    conn.commit()
    return int(rows[-1][0]), len(rows)


def copy_journal(settings: DeskSettings, path: Path, journal_id: str, *, process: str = "migrate") -> int:
    """Copy every row of the local journal at ``path`` the desk does not have yet; the number
    copied. Raises ``DeskUnavailableError``."""
    import psycopg

    local = open_read_only(path)
    try:
        conn = _connect(settings)
    except (OSError, psycopg.Error) as exc:
        local.close()
        raise unavailable(settings, exc) from None
    try:
        after = _copied_up_to(conn, journal_id)
        copied = 0
        while True:
            after, count = _copy_batch(local, conn, journal_id, socket.gethostname(), process, after)
            if not count:
                return copied
            copied += count
    except (OSError, psycopg.Error) as exc:
        raise unavailable(settings, exc) from None
    finally:
        conn.close()
        local.close()


class JournalCopier:
    """The thread that copies a local journal's rows into the desk as they are written."""

    def __init__(self, settings: DeskSettings, path: Path, journal_id: str, process: str) -> None:
        self.settings = settings
        self.path = path
        self.journal_id = journal_id
        # Several processes of one name run on one host: the pid tells their rows apart.
        self.process = f"{process} pid {os.getpid()}"
        self.host = socket.gethostname()
        self.copied_up_to = 0
        self._problem: str | None = "the desk journal has not answered yet"
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="desk-journal", daemon=True)

    @property
    def problem(self) -> str | None:
        """Why the desk cannot be written now; None while it can."""
        return self._problem

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, within: float) -> bool:
        """Whether the desk answered within ``within`` seconds of now (or already had)."""
        return self._ready.wait(within)

    def stop(self, within: float = 5.0) -> None:
        """Copy what is left, if the desk answers, and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(within)

    def _run(self) -> None:
        import psycopg

        local = open_read_only(self.path, check_same_thread=False)
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        probed = time.monotonic()
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    if conn is None:
                        conn = _connect(self.settings)
                        self.copied_up_to = _copied_up_to(conn, self.journal_id)
                        probed = time.monotonic()
                    self.copied_up_to, count = _copy_batch(
                        local, conn, self.journal_id, self.host, self.process, self.copied_up_to
                    )
                    if not count and time.monotonic() - probed > PROBE_EVERY:
                        conn.execute("SELECT 1").fetchone()
                        conn.commit()
                        probed = time.monotonic()
                    if self._problem is not None:
                        log.info("desk journal: writing to the desk")
                    self._problem = None
                    self._ready.set()
                    if count:
                        continue  # more may be waiting: no pause while catching up
                except (OSError, psycopg.Error, DeskUnavailableError) as exc:
                    problem = str(unavailable(self.settings, exc))
                    if isinstance(exc, psycopg.errors.UndefinedTable):
                        # A new desk whose tables the process's link is making right now.
                        problem = "the desk's tables are being made"
                    elif self._problem != problem:
                        log.warning("desk journal: %s; new orders are refused until it answers", problem)
                    self._problem = problem
                    if conn is not None:
                        try:
                            conn.close()
                        except Exception:  # the server went away: the connection is gone anyway
                            pass
                        conn = None
                    if stopping:
                        return
                    self._stop.wait(self.settings.poll_interval)
                    continue
                if stopping:
                    return
                self._stop.wait(LOOK_EVERY)
        finally:
            if conn is not None:
                conn.close()
            local.close()


class DeskJournal(Journal):
    """A local journal whose rows are copied into the desk, and which refuses a new order's
    intent while the desk cannot be written (see the module text)."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        settings: DeskSettings,
        process: str = "console",
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        super().__init__(path, synchronous=synchronous)
        self.copier = JournalCopier(settings, self.path, self.journal_id, process)
        self.copier.start()

    def record_intent(self, order: Order) -> int | None:
        problem = self.copier.problem
        if problem is not None:
            raise DeskUnavailableError(problem)
        return super().record_intent(order)

    def archive_floor(self) -> int | None:
        # Rows the desk does not hold yet stay; before the desk has answered, that is all of them.
        return self.copier.copied_up_to

    def close(self) -> None:
        self.flush()
        self.copier.stop()
        super().close()
