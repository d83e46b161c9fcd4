"""Risk state shared by every process that uses one state folder.

(The trading state itself, HALTED and REDUCING, is kept by ``brokers.killswitch``.)

The order-rate limit is a token bucket per account. Kept in memory, three processes with
``5/s, burst 5`` would send fifteen orders at once; kept in the state folder, they send five
between them. Each account's bucket is a file of sixteen bytes (the tokens left and when they
were counted, on the machine's monotonic clock, which every process shares), read and written
under an ``flock``: a few system calls per order, no database round trip.

The daily P&L baseline (``DayStore``) is kept in SQLite beside the journal and written about
once a second by the daily-loss watch, never on the order path.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import struct
import threading
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, Protocol

__all__ = [
    "RISK_DB",
    "DayBaseline",
    "DayBaselines",
    "DayStore",
    "LocalBuckets",
    "SharedBuckets",
    "TokenBuckets",
    "bucket_folder",
]

log = logging.getLogger(__name__)

_BUCKET = struct.Struct("<dd")  # tokens, at
_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def bucket_folder(state_dir: Path) -> Path:
    return state_dir / "rate"


def _refill(tokens: float, at: float, now: float, rate: float, capacity: float) -> float:
    return min(capacity, tokens + max(0.0, now - at) * rate)


class TokenBuckets(Protocol):
    """Where the rate check keeps its buckets."""

    def take(self, account: str | None, rate: float, capacity: float, now: float) -> bool:
        """Take one token from ``account``'s bucket if it holds one (refilled at ``rate`` per
        second up to ``capacity``); whether it did."""


class LocalBuckets:
    """Buckets in this process's memory."""

    def __init__(self) -> None:
        self._buckets: dict[str | None, tuple[float, float]] = {}

    def take(self, account: str | None, rate: float, capacity: float, now: float) -> bool:
        bucket = self._buckets.get(account)
        tokens = capacity if bucket is None else _refill(bucket[0], bucket[1], now, rate, capacity)
        taken = tokens >= 1
        self._buckets[account] = (tokens - 1 if taken else tokens, now)
        return taken


class SharedBuckets:
    """Buckets in ``folder``, one file per account, shared by every process using it. An
    account whose file cannot be opened falls back to a bucket in this process (logged once):
    its orders are still limited, per process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fds: dict[str | None, int] = {}
        self._local = LocalBuckets()
        self._failed: set[str | None] = set()
        self._lock = threading.Lock()

    def _path(self, account: str | None) -> Path:
        # Hex keeps any account name a safe, distinct file name.
        name = "all" if account is None else "account-" + account.encode().hex()
        return self.folder / name

    def _fd(self, account: str | None) -> int | None:
        fd = self._fds.get(account)
        if fd is not None or account in self._failed:
            return fd
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(account), _OPEN, 0o644)
        except OSError as exc:
            self._failed.add(account)
            log.error(
                "cannot keep the order rate of %s in %s (%s); it is limited in this process only",
                account,
                self.folder,
                exc.strerror or exc,
            )
            return None
        self._fds[account] = fd
        return fd

    def take(self, account: str | None, rate: float, capacity: float, now: float) -> bool:
        with self._lock:
            fd = self._fd(account)
            if fd is None:
                return self._local.take(account, rate, capacity, now)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    raw = os.pread(fd, _BUCKET.size, 0)
                    if len(raw) == _BUCKET.size:
                        tokens, at = _BUCKET.unpack(raw)
                        if tokens != tokens or at != at:  # NaN: a damaged file starts afresh
                            tokens, at = capacity, now
                        tokens = _refill(tokens, at, now, rate, capacity)
                    else:
                        tokens = capacity
                    taken = tokens >= 1
                    os.pwrite(fd, _BUCKET.pack(tokens - 1 if taken else tokens, now), 0)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                log.error("order rate file of %s unusable (%s); limited in this process", account, exc)
                self._failed.add(account)
                self._fds.pop(account, None)
                os.close(fd)
                return self._local.take(account, rate, capacity, now)
            return taken

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


RISK_DB = "risk.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS day_pnl (
    account TEXT NOT NULL,
    day TEXT NOT NULL,
    symbol TEXT NOT NULL,
    basis TEXT NOT NULL,
    realized TEXT NOT NULL,
    PRIMARY KEY (account, day, symbol)
)
"""


class DayBaseline(NamedTuple):
    """What one position's P&L for the day is counted from: the price it is marked against
    (the price when first seen that day, or the average price of what was bought today) and
    the profit already taken."""

    basis: Decimal
    realized: Decimal


class DayBaselines(Protocol):
    """Where the daily P&L baselines are kept: the state folder (``DayStore``) or the desk."""

    def load(self, account: str, day: date) -> dict[str, DayBaseline]:
        """The baselines of ``account`` for ``day`` by instrument label; empty on a fault."""

    def save(self, day: date, rows: list[tuple[str, str, DayBaseline]]) -> bool:
        """Write (account, label, baseline) rows for ``day``; False on a fault (logged)."""

    def close(self) -> None: ...


class DayStore:
    """The daily P&L baseline per account, trading day and symbol, in SQLite in the state
    folder: a restart on the same day, or another process, counts the day's P&L from where it
    was, not from nothing. Faults are logged, never raised: the P&L is then counted in this
    process only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def load(self, account: str, day: date) -> dict[str, DayBaseline]:
        try:
            with self._lock:
                rows = (
                    self._connect()
                    .execute(
                        "SELECT symbol, basis, realized FROM day_pnl WHERE account = ? AND day = ?",
                        (account, day.isoformat()),
                    )
                    .fetchall()
                )
            return {
                symbol: DayBaseline(Decimal(basis), Decimal(realized)) for symbol, basis, realized in rows
            }
        except (sqlite3.Error, OSError, ArithmeticError, ValueError):
            log.exception("could not read the daily P&L baseline of %s from %s", account, self.path)
            return {}

    def save(self, day: date, rows: list[tuple[str, str, DayBaseline]]) -> bool:
        """Write (account, symbol, baseline) rows for ``day`` in one transaction."""
        if not rows:
            return True
        values = [
            (account, day.isoformat(), symbol, str(b.basis), str(b.realized)) for account, symbol, b in rows
        ]
        try:
            with self._lock:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT OR REPLACE INTO day_pnl VALUES (?, ?, ?, ?, ?)", values)
                    db.execute("DELETE FROM day_pnl WHERE day < ?", ((day - timedelta(days=7)).isoformat(),))
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            return True
        except (sqlite3.Error, OSError):
            log.exception("could not write the daily P&L baseline to %s", self.path)
            return False

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
