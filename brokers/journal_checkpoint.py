"""The journal's upkeep thread: on a connection of its own, it files new rows in the lookup tables
(``brokers.journal_index``, a file of their own, which nothing on the order path writes) and
runs the checkpoints, so that copying a WAL into its database never runs inside a commit on the
order path, and the journal's WAL stays bounded however long a burst lasts.

A passive checkpoint never blocks a writer, but under a steady stream of commits it never
catches up either: by the time it has copied the WAL, more has been appended, and SQLite only
starts the WAL over from its beginning after a checkpoint that copied everything and synced the
database. So once the WAL holds ``RESTART_FRAMES`` pages, the thread runs passive checkpoints
until little is left to copy, puts what they wrote on disk itself (``fsync`` of the journal, its
WAL and the lookup file, outside any lock: that is where the time goes), and only then takes the
journal's own lock (the one every write takes) for a last passive checkpoint. That one copies
the few pages appended since, and its syncs find almost nothing left to write, so writers wait
about a millisecond, not the tens a sync of everything took. The next commit starts the WAL
over; ``journal_size_limit`` (above the restart point) keeps the file from being cut and
regrown at every restart. Writers wait on a plain lock, woken the moment it is released, not
on SQLite's sleeping busy handler; ``longest_hold`` says how long at most.

Durability is SQLite's own: the database is synced by the checkpoint before the WAL can start
over, whatever was synced before it. The lookup file's WAL needs none of this: the thread is
its only writer, so a passive checkpoint after each filing copies all of it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Protocol

from .journal_index import BATCH_ROWS, attach_lookup, index_rows, lookup_path

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
BUSY_CHECKPOINT_SECONDS = 0.05  # while rows are being written
IDLE_AFTER_SECONDS = 2.0  # and for this long after the last
PAGE_BYTES = 4096
RESTART_FRAMES = 1_536  # 6 MiB of 4 KiB pages: the WAL is started over from here on
LOOKUP_WAL_BYTES = 16 * 1024 * 1024  # the lookup file's WAL is copied back from here on
# What the WAL file is cut back to when it starts over: above the restart point, so that a
# commit that starts it over does not also truncate it (that commit is on the order path).
WAL_SIZE_LIMIT = 16 * 1024 * 1024
LOCKED_FRAMES = 64  # at most about this much left for the checkpoint under the lock
UNLOCKED_PASSES = 3  # passes without the lock before it, at most
LOOKUP_CACHE_KIB = -32_768  # the lookup tables' pages kept in memory by the thread: 32 MiB
# Should the thread stop, a commit checkpoints by itself from this many pages on (inside the
# commit, so a stall, but the WAL stays bounded).
FALLBACK_CHECKPOINT_PAGES = 12_000


class CheckpointSource(Protocol):
    """What the thread needs of a journal: how many statements it has written so far."""

    @property
    def writes(self) -> int: ...


class Checkpointer:
    """Passive checkpoints from a thread (see the module text)."""

    def __init__(
        self,
        journal: CheckpointSource,
        path: Path,
        synchronous: str,
        write_lock: threading.Lock,
        journal_id: str,
    ) -> None:
        self._path = path
        self._journal_id = journal_id
        self._wal = path.with_name(path.name + "-wal")
        lookup = lookup_path(path)
        self._lookup_wal = lookup.with_name(lookup.name + "-wal")
        self._synced = (self._wal, path, self._lookup_wal)
        self._synchronous = synchronous
        self._write_lock = write_lock
        # Weak: a journal dropped without close() must not be kept alive by its own thread.
        self._journal = weakref.ref(journal)
        self._stopping = threading.Event()
        self.done = 0  # checkpoints run
        self.restarts = 0  # checkpoints run holding the write lock, to start the WAL over
        self.longest_hold = 0.0  # seconds writers waited for one of those, at most
        self.holds: deque[float] = deque(maxlen=1_000)  # the last ones, in seconds
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
        checked = 0.0  # when the last checkpoint ran
        try:
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            attach_lookup(db, self._path, self._journal_id)
            db.execute(f"PRAGMA lk.journal_size_limit={WAL_SIZE_LIMIT}")
            db.execute(f"PRAGMA lk.cache_size={LOOKUP_CACHE_KIB}")
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
                    self._index(db)
                except sqlite3.Error:
                    log.exception("journal rows could not be filed in its lookup tables; will try again")
                # A checkpoint writes back and syncs: every CHECKPOINT_SECONDS, or sooner when the
                # WAL must start over. Fewer syncs, fewer stalls of the writes beside them.
                if now - checked < CHECKPOINT_SECONDS and _size(self._wal) < RESTART_FRAMES * PAGE_BYTES:
                    continue
                checked = now
                try:
                    self._checkpoint(db)
                except sqlite3.Error:
                    log.exception("journal checkpoint failed; will try again")
        finally:
            db.close()

    def _index(self, db: sqlite3.Connection) -> None:
        """File what is new, then copy the lookup file's WAL into it (nothing else writes there,
        so the copy is whole and the next filing starts its WAL over)."""
        filed = 0
        while not self._stopping.is_set():
            count = index_rows(db, BATCH_ROWS)
            filed += count
            if count < BATCH_ROWS:
                break
            # A long backlog to file: the journal's WAL must not wait for the end of it.
            if _size(self._wal) >= RESTART_FRAMES * PAGE_BYTES:
                self._checkpoint(db)
        if filed and _size(self._lookup_wal) >= LOOKUP_WAL_BYTES:
            db.execute("PRAGMA lk.wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        _busy, frames, _copied = db.execute("PRAGMA main.wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
        if frames < RESTART_FRAMES:
            return
        # Again without the lock while the WAL grew by more than a little during the last one,
        # each pass after a sync of what the one before it wrote: what is left for the one
        # under the lock is what a few milliseconds append, and little of it is unsynced.
        for _ in range(UNLOCKED_PASSES):
            self._sync_files()
            _busy, now, _copied = db.execute("PRAGMA main.wal_checkpoint(PASSIVE)").fetchone()
            self.done += 1
            grown, frames = now - frames, now
            if grown < LOCKED_FRAMES:
                break
        self._sync_files()
        with self._write_lock:
            started = time.perf_counter()
            db.execute("PRAGMA main.wal_checkpoint(PASSIVE)").fetchall()
            held = time.perf_counter() - started
        self.restarts += 1
        self.done += 1
        self.longest_hold = max(self.longest_hold, held)
        self.holds.append(held)

    def _sync_files(self) -> None:
        """Put on disk what the passes wrote to the journal and what was appended to its WAL,
        and the lookup file's writes, which a sync of the journal's file system would otherwise
        have to write out under the lock."""
        for path in self._synced:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # a file not there (yet) has nothing to sync
            try:
                os.fsync(fd)
            except OSError:
                log.warning("could not sync %s before a checkpoint; the checkpoint syncs it", path)
            finally:
                os.close(fd)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
