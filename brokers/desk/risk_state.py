"""The desk's share of the risk state: one order-rate bucket per account and one daily P&L
baseline per account, day and instrument, for every process of the desk on every machine.

- The rate bucket is taken in one statement (``desk.take_token``), under a row lock and by the
  database's clock, so that two machines cannot both spend the last token and no two hosts'
  clocks are compared. It is one round trip on the order path; while the desk does not answer,
  the bucket falls back to one in this process (orders are still limited, per process: new
  orders are refused by the desk journal meanwhile anyway), and a thread reconnects in the
  background so that no order waits for a connection attempt.
- The baselines are read when an account is read and written about once a second, never on
  the order path; a fault is logged and the day's P&L is counted in this process until the
  desk answers (as with the state folder's ``DayStore``).
"""

from __future__ import annotations

import logging
import threading
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from ..riskstate import DayBaseline, LocalBuckets
from .settings import DeskSettings
from .store import connection_info, unavailable

if TYPE_CHECKING:
    import psycopg

__all__ = ["DeskBuckets", "DeskDayStore"]

log = logging.getLogger(__name__)

# The bucket of orders not tied to one account: no account name starts with "*" (and a NUL
# byte, which would do as well in Python, is not text to PostgreSQL).
_ALL = "*"


class _Connection:
    """One connection to the desk, made again in the background after a fault: a caller finds
    it ready or finds None, and never waits for a connection attempt."""

    def __init__(self, settings: DeskSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=name, daemon=True)
        self._thread.start()

    def take(self) -> psycopg.Connection[tuple[object, ...]] | None:
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def lost(self, exc: BaseException) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            log.warning(
                "%s: %s; kept in this process until the desk answers",
                self.name,
                unavailable(self.settings, exc),
            )
            try:
                conn.close()
            except Exception:  # the server went away: the connection is gone anyway
                pass
        self._wake.set()

    def _keep(self) -> None:
        import psycopg

        while not self._closed.is_set():
            if self._conn is None:
                try:
                    conn = psycopg.Connection.connect(connection_info(self.settings), autocommit=True)
                except (OSError, psycopg.Error):
                    self._closed.wait(self.settings.poll_interval)
                    continue
                with self._lock:
                    self._conn = conn
            self._wake.wait()
            self._wake.clear()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(5)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class DeskBuckets:
    """The order-rate buckets on the desk (``brokers.riskstate.TokenBuckets``)."""

    def __init__(self, settings: DeskSettings) -> None:
        self._connection = _Connection(settings, "desk rate buckets")
        self._local = LocalBuckets()
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        """Whether the desk's buckets are in use (else this process's own)."""
        return self._connection.connected

    def take(self, account: str | None, rate: float, capacity: float, now: float) -> bool:
        import psycopg

        conn = self._connection.take()
        if conn is not None:
            try:
                with self._lock:
                    row = conn.execute(
                        "SELECT desk.take_token(%s, %s, %s)",
                        (_ALL if account is None else account, rate, capacity),
                    ).fetchone()
                return bool(row is not None and row[0])
            except (OSError, psycopg.Error) as exc:
                self._connection.lost(exc)
        return self._local.take(account, rate, capacity, now)

    def close(self) -> None:
        self._connection.close()


class DeskDayStore:
    """The daily P&L baselines on the desk (``brokers.riskstate.DayBaselines``)."""

    def __init__(self, settings: DeskSettings) -> None:
        self.settings = settings
        self._connection = _Connection(settings, "desk daily P&L baselines")

    @property
    def connected(self) -> bool:
        return self._connection.connected

    def load(self, account: str, day: date) -> dict[str, DayBaseline]:
        import psycopg

        conn = self._connection.take()
        if conn is None:
            log.warning("the desk's daily P&L baselines of %s cannot be read now; counted from here", account)
            return {}
        try:
            rows = conn.execute(
                "SELECT symbol, basis, realized FROM desk.day_pnl WHERE account = %s AND day = %s",
                (account, day),
            ).fetchall()
            return {
                str(symbol): DayBaseline(Decimal(str(basis)), Decimal(str(realized)))
                for symbol, basis, realized in rows
            }
        except (OSError, psycopg.Error) as exc:
            self._connection.lost(exc)
        except (InvalidOperation, ValueError):
            log.exception("the desk's daily P&L baselines of %s are damaged; counted from here", account)
        return {}

    def save(self, day: date, rows: list[tuple[str, str, DayBaseline]]) -> bool:
        import psycopg

        if not rows:
            return True
        conn = self._connection.take()
        if conn is None:
            return False
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO desk.day_pnl VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, day, symbol) "
                    "DO UPDATE SET basis = EXCLUDED.basis, realized = EXCLUDED.realized",
                    [(account, day, label, str(b.basis), str(b.realized)) for account, label, b in rows],
                )
                cursor.execute("DELETE FROM desk.day_pnl WHERE day < %s", (day - timedelta(days=7),))
            return True
        except (OSError, psycopg.Error) as exc:
            self._connection.lost(exc)
            return False

    def close(self) -> None:
        self._connection.close()
