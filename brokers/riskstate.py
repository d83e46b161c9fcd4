"""Risk state shared by every process that uses one state folder.

The order-rate limit is a token bucket per account. Kept in memory, three processes with
``5/s, burst 5`` would send fifteen orders at once; kept in the state folder, they send five
between them. Each account's bucket is a file of sixteen bytes (the tokens left and when they
were counted, on the machine's monotonic clock, which every process shares), read and written
under an ``flock``: a few system calls per order, no database round trip.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
from pathlib import Path
from typing import Protocol

__all__ = ["LocalBuckets", "SharedBuckets", "TokenBuckets", "bucket_folder"]

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
