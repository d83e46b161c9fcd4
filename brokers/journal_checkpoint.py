"""The journal's upkeep thread: it files new rows in the lookup tables (``brokers.journal_index``)
and runs the checkpoints, on a connection of its own, so that copying the WAL into the database
never runs inside a commit on the order path, and the WAL stays bounded however long a burst
lasts.

A passive checkpoint never blocks a writer, but under a steady stream of commits it never
catches up either: by the time it has copied the WAL, more has been appended, and SQLite only
starts the WAL over from its beginning after a checkpoint that copied everything. So once the
WAL holds ``RESTART_FRAMES`` pages, the thread takes the journal's own lock (the one every write
takes) and runs a second passive checkpoint, which only has the few pages appended since the
first to copy: the next commit then starts the WAL over, and ``journal_size_limit`` cuts the file
back. Writers wait on that lock - a plain lock, woken the moment it is released, not SQLite's
sleeping busy handler - for as long as the second checkpoint takes (``longest_hold``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

from .journal_index import BATCH_ROWS

__all__ = [
    "CHECKPOINT_SECONDS",
    "FALLBACK_CHECKPOINT_PAGES",
    "RESTART_FRAMES",
    "WAL_SIZE_LIMIT",
    "Checkpointer",
    "CheckpointSource",
]

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 0.25  # while idle, how often to look for rows written
BUSY_CHECKPOINT_SECONDS = 0.1  # while rows are being written
IDLE_AFTER_SECONDS = 2.0  # and for this long after the last
RESTART_FRAMES = 2_048  # 8 MiB of 4 KiB pages: the WAL is started over from here on
WAL_SIZE_LIMIT = 4 * 1024 * 1024  # what the WAL file is cut back to when it starts over
# Should the thread stop, a commit checkpoints by itself from this many pages on (inside the
# commit, so a stall, but the WAL stays bounded).
FALLBACK_CHECKPOINT_PAGES = 12_000


class CheckpointSource(Protocol):
    """What the thread needs of a journal: how many statements it has written so far, and a way
    to file a batch of rows in its lookup tables."""

    @property
    def writes(self) -> int: ...

    def index_pending(self, limit: int = ...) -> int: ...


class Checkpointer:
    """Passive checkpoints from a thread (see the module text)."""

    def __init__(
        self, journal: CheckpointSource, path: Path, synchronous: str, write_lock: threading.Lock
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._write_lock = write_lock
        # Weak: a journal dropped without close() must not be kept alive by its own thread.
        self._journal = weakref.ref(journal)
        self._stopping = threading.Event()
        self.done = 0  # checkpoints run
        self.restarts = 0  # checkpoints run holding the write lock, to start the WAL over
        self.longest_hold = 0.0  # seconds writers waited for one of those, at most
        self._thread = threading.Thread(target=self._run, name="journal-checkpoints", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=10.0, check_same_thread=False)
        except sqlite3.Error:
            log.exception("journal checkpoints could not start; commits will checkpoint by themselves")
            return
        seen = 0
        # Started by a write: rows are being written.
        interval = BUSY_CHECKPOINT_SECONDS
        active = time.monotonic()  # when rows were last found written
        try:
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            while not self._stopping.wait(interval):
                journal = self._journal()
                if journal is None:
                    break
                writes = journal.writes
                now = time.monotonic()
                if writes == seen:
                    del journal
                    # A pause in a burst is not its end: look often for a while longer.
                    if now - active > IDLE_AFTER_SECONDS:
                        interval = CHECKPOINT_SECONDS
                    continue
                seen = writes
                active = now
                interval = BUSY_CHECKPOINT_SECONDS
                try:
                    self._index(journal)
                except sqlite3.Error:
                    log.exception("journal rows could not be filed in its lookup tables; will try again")
                del journal
                try:
                    self._checkpoint(db)
                except sqlite3.Error:
                    log.exception("journal checkpoint failed; will try again")
        finally:
            db.close()

    def _index(self, journal: CheckpointSource) -> None:
        """File what is new, a batch per hold of the lock, letting the order path in between."""
        while not self._stopping.is_set() and journal.index_pending() >= BATCH_ROWS:
            time.sleep(0)

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        _busy, frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
        if frames < RESTART_FRAMES:
            return
        # Again without the lock: it copies what was appended during the first, which was
        # longer; what is left for the one under the lock is what a few milliseconds append.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.done += 1
        with self._write_lock:
            started = time.perf_counter()
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            held = time.perf_counter() - started
        self.restarts += 1
        self.done += 1
        self.longest_hold = max(self.longest_hold, held)
