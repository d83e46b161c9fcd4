"""The desk's tables in PostgreSQL and every statement that reads or writes them.

One row holds the desk's trading state (ACTIVE, REDUCING or HALTED, with reason, source, host,
a version that grows with every change, and when). A change is written and announced on the
``desk_state`` channel in one transaction, so a listener hears of it only once it is there to
read. Every process keeps a heartbeat row. The schema is created and migrated by the program,
under an advisory lock so that processes starting together do not race.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..credentials import get_secret, redact
from ..enums import TradingState
from ..journal_schema import JournalEvent, event_from_row
from .settings import DeskSettings

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHANNEL", "DeskProcess", "DeskState", "DeskStore", "DeskUnavailableError", "WorkingOrder"]

CHANNEL = "desk_state"
SCHEMA_VERSION = 4
# Any fixed number: the lock that one process at a time holds while migrating.
_MIGRATION_LOCK = 0x6465736B

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS desk.trading_state (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            state text NOT NULL CHECK (state IN ('ACTIVE', 'REDUCING', 'HALTED')),
            reason text NOT NULL DEFAULT '',
            source text NOT NULL DEFAULT '',
            host text NOT NULL DEFAULT '',
            version bigint NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT now()
        )""",
        "INSERT INTO desk.trading_state (state, version) VALUES ('ACTIVE', 0) ON CONFLICT DO NOTHING",
        """CREATE TABLE IF NOT EXISTS desk.processes (
            id text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            name text NOT NULL DEFAULT '',
            state text NOT NULL DEFAULT '',
            started_at timestamptz NOT NULL DEFAULT now(),
            seen_at timestamptz NOT NULL DEFAULT now()
        )""",
    ),
    # The dead man's switch: each process's working orders, who took over a silent process,
    # and the alerts raised.
    2: (
        "ALTER TABLE desk.processes ADD COLUMN IF NOT EXISTS taken_by text",
        """CREATE TABLE IF NOT EXISTS desk.working_orders (
            process_id text NOT NULL,
            account text NOT NULL,
            client_order_id text NOT NULL,
            broker_order_id text,
            PRIMARY KEY (process_id, client_order_id)
        )""",
        """CREATE TABLE IF NOT EXISTS desk.alerts (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            host text NOT NULL,
            message text NOT NULL
        )""",
    ),
    # The desk's journal: every process's journal rows, copied from its local journal. A row is
    # known by the local journal it came from and its id there, so a copy made twice (a restart,
    # ``desk migrate`` run again) is one row.
    3: (
        """CREATE TABLE IF NOT EXISTS desk.journal (
            id bigserial PRIMARY KEY,
            journal_id text NOT NULL,
            local_id bigint NOT NULL,
            host text NOT NULL,
            process text NOT NULL,
            ts bigint NOT NULL,
            kind text NOT NULL,
            client_order_id text,
            account text,
            data text NOT NULL,
            status text,
            UNIQUE (journal_id, local_id)
        )""",
        "CREATE INDEX IF NOT EXISTS journal_ts ON desk.journal (ts)",
        "CREATE INDEX IF NOT EXISTS journal_order ON desk.journal (client_order_id) WHERE client_order_id IS NOT NULL",
    ),
    # The shared risk state: order-rate buckets (taken by the database's clock, under a row
    # lock) and the daily P&L baselines.
    4: (
        """CREATE TABLE IF NOT EXISTS desk.rate_buckets (
            account text PRIMARY KEY,
            tokens float8 NOT NULL,
            at float8 NOT NULL
        )""",
        """CREATE OR REPLACE FUNCTION desk.take_token(p_account text, p_rate float8, p_capacity float8)
        RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE
            now_s float8 := extract(epoch FROM clock_timestamp());
            have float8;
        BEGIN
            INSERT INTO desk.rate_buckets VALUES (p_account, p_capacity, now_s) ON CONFLICT (account) DO NOTHING;
            SELECT least(p_capacity, tokens + greatest(0, now_s - at) * p_rate) INTO have
                FROM desk.rate_buckets WHERE account = p_account FOR UPDATE;
            IF have IS NULL OR have = 'NaN'::float8 THEN
                have := p_capacity;
            END IF;
            UPDATE desk.rate_buckets SET tokens = CASE WHEN have >= 1 THEN have - 1 ELSE have END, at = now_s
                WHERE account = p_account;
            RETURN have >= 1;
        END $$""",
        """CREATE TABLE IF NOT EXISTS desk.day_pnl (
            account text NOT NULL,
            day date NOT NULL,
            symbol text NOT NULL,
            basis text NOT NULL,
            realized text NOT NULL,
            PRIMARY KEY (account, day, symbol)
        )""",
    ),
}


class DeskUnavailableError(Exception):
    """The desk's database could not be reached or answered in time. The message names the
    server, never a password."""


@dataclass(frozen=True, slots=True)
class DeskState:
    state: TradingState
    reason: str
    source: str
    host: str
    version: int
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """A working order a process told the desk of, for the dead man's switch."""

    account: str
    client_order_id: str
    broker_order_id: str | None


@dataclass(frozen=True, slots=True)
class DeskProcess:
    id: str
    host: str
    pid: int
    name: str
    state: str
    started_at: datetime
    seen_at: datetime
    # Seconds since its last heartbeat, by the database's clock (no two hosts' clocks compared).
    silent_for: float


def _unavailable(settings: DeskSettings, exc: BaseException) -> DeskUnavailableError:
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return DeskUnavailableError(f"the desk database at {settings.dsn} is unreachable: {detail}")


def connection_info(settings: DeskSettings) -> str:
    """libpq's connection string for the desk, with the password from the keyring when it has
    one (else libpq reads ``PGPASSWORD`` itself). Never to be logged or shown."""
    import psycopg

    password = get_secret("desk", "password")
    return psycopg.conninfo.make_conninfo(
        settings.dsn,
        connect_timeout=max(1, int(settings.fail_after + 0.999)),
        application_name="trading-console",
        **({"password": password} if password else {}),
    )


def unavailable(settings: DeskSettings, exc: BaseException) -> DeskUnavailableError:
    """The error for a desk that did not answer: names the server, never a password."""
    return _unavailable(settings, exc)


class DeskStore:
    """One connection to the desk. ``timeout`` bounds every call: past it the call raises
    ``DeskUnavailableError`` (the caller decides whether that halts anything)."""

    def __init__(self, settings: DeskSettings, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        self.settings = settings
        self.conn = conn

    @classmethod
    async def connect(cls, settings: DeskSettings) -> DeskStore:
        import psycopg

        limit = settings.fail_after
        conninfo = connection_info(settings)
        try:
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(conninfo, autocommit=True), limit)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(settings, exc) from None
        return cls(settings, conn)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.conn.close(), self.settings.fail_after)
        except Exception:  # closing a connection to a server that went away may fail; it is gone
            pass

    async def _execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        import psycopg

        async def run() -> list[tuple[object, ...]]:
            cursor = await self.conn.execute(sql, params)
            return await cursor.fetchall() if cursor.description is not None else []

        try:
            return await asyncio.wait_for(run(), self.settings.fail_after)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None

    async def migrate(self) -> None:
        """Create or bring up to date the desk's schema."""
        import psycopg

        async def run() -> None:
            async with self.conn.transaction():
                await self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await self.conn.execute("CREATE SCHEMA IF NOT EXISTS desk")
                await self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS desk.schema_version (version integer NOT NULL)"
                )
                cursor = await self.conn.execute("SELECT max(version) FROM desk.schema_version")
                row = await cursor.fetchone()
                current = int(str(row[0])) if row is not None and row[0] is not None else 0
                if current > SCHEMA_VERSION:
                    raise DeskUnavailableError(
                        f"the desk's schema is version {current}, newer than this program's "
                        f"{SCHEMA_VERSION}; upgrade trading-console"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[version]:
                        await self.conn.execute(statement)
                    await self.conn.execute("INSERT INTO desk.schema_version VALUES (%s)", (version,))

        try:
            await asyncio.wait_for(run(), max(self.settings.fail_after, 5.0))
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None

    async def read(self) -> DeskState:
        rows = await self._execute(
            "SELECT state, reason, source, host, version, changed_at FROM desk.trading_state"
        )
        if not rows:
            raise DeskUnavailableError("the desk has no trading state row; run the program once to create it")
        return _state(rows[0])

    async def write(
        self, state: TradingState, reason: str, source: str, host: str, *, always: bool = False
    ) -> DeskState | None:
        """Set the desk's state and announce it; None when the desk was in that state already
        (nothing written, nobody woken) unless ``always``: a deliberate resume is written and
        announced even onto an ACTIVE desk, so that processes which halted themselves while
        they could not reach it hear of it."""
        import psycopg

        async def run() -> DeskState | None:
            async with self.conn.transaction():
                cursor = await self.conn.execute(
                    "UPDATE desk.trading_state SET state = %s, reason = %s, source = %s, host = %s, "
                    "version = version + 1, changed_at = now() WHERE state <> %s OR %s "
                    "RETURNING state, reason, source, host, version, changed_at",
                    (state.value, reason, source, host, state.value, always),
                )
                row = await cursor.fetchone()
                if row is None:
                    return None
                await self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[4])))
                return _state(row)

        try:
            return await asyncio.wait_for(run(), self.settings.fail_after)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None

    async def heartbeat(self, process_id: str, host: str, pid: int, name: str, state: str) -> None:
        await self._execute(
            "INSERT INTO desk.processes (id, host, pid, name, state) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET seen_at = now(), state = EXCLUDED.state",
            (process_id, host, pid, name, state),
        )

    async def leave(self, process_id: str) -> None:
        """A process that stops cleanly takes its rows with it: it is not dead, it is gone."""
        import psycopg

        async def run() -> None:
            async with self.conn.transaction():
                await self.conn.execute(
                    "DELETE FROM desk.working_orders WHERE process_id = %s", (process_id,)
                )
                await self.conn.execute("DELETE FROM desk.processes WHERE id = %s", (process_id,))

        try:
            await asyncio.wait_for(run(), self.settings.fail_after)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None

    async def publish_orders(self, process_id: str, orders: list[WorkingOrder]) -> None:
        """Replace the list of ``process_id``'s working orders."""
        import psycopg

        async def run() -> None:
            async with self.conn.transaction():
                await self.conn.execute(
                    "DELETE FROM desk.working_orders WHERE process_id = %s", (process_id,)
                )
                if orders:
                    async with self.conn.cursor() as cursor:
                        await cursor.executemany(
                            "INSERT INTO desk.working_orders VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [(process_id, o.account, o.client_order_id, o.broker_order_id) for o in orders],
                        )

        try:
            await asyncio.wait_for(run(), self.settings.fail_after)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None

    async def take_over_silent(
        self, process_id: str, silent_for: float
    ) -> list[tuple[DeskProcess, list[WorkingOrder]]]:
        """Claim every process silent for longer than ``silent_for`` seconds that nobody has
        claimed yet (one claimer each, whatever the number of processes asking at once), with
        its working orders."""
        rows = await self._execute(
            "UPDATE desk.processes SET taken_by = %s WHERE taken_by IS NULL AND id <> %s "
            # Silent since it was last heard or since the server started, whichever is later:
            # after a restart of the desk's server every process looks silent until it is back.
            "AND greatest(seen_at, pg_postmaster_start_time()) < now() - make_interval(secs => %s) "
            "RETURNING id, host, pid, name, state, started_at, seen_at, "
            "extract(epoch FROM now() - seen_at)::float8",
            (process_id, process_id, silent_for),
        )
        taken = []
        for r in rows:
            process = _process(r)
            orders = await self._execute(
                "SELECT account, client_order_id, broker_order_id FROM desk.working_orders "
                "WHERE process_id = %s ORDER BY account, client_order_id",
                (process.id,),
            )
            taken.append(
                (
                    process,
                    [WorkingOrder(str(o[0]), str(o[1]), None if o[2] is None else str(o[2])) for o in orders],
                )
            )
        return taken

    async def forget(self, process_id: str) -> None:
        """Drop a dead process once its orders were seen to."""
        await self.leave(process_id)

    async def alert(self, host: str, message: str) -> None:
        await self._execute("INSERT INTO desk.alerts (host, message) VALUES (%s, %s)", (host, message))

    async def alerts(self, limit: int = 20) -> list[tuple[datetime, str, str]]:
        rows = await self._execute(
            "SELECT at, host, message FROM desk.alerts ORDER BY id DESC LIMIT %s", (limit,)
        )
        return [(_time(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def processes(self) -> list[DeskProcess]:
        rows = await self._execute(
            "SELECT id, host, pid, name, state, started_at, seen_at, "
            "extract(epoch FROM now() - seen_at)::float8 FROM desk.processes ORDER BY host, pid"
        )
        return [_process(r) for r in rows]

    async def journal_events(
        self,
        *,
        since: datetime | None = None,
        order: str | None = None,
        kinds: list[str] | None = None,
        last: int | None = None,
    ) -> tuple[list[JournalEvent], int]:
        """The desk journal's rows, every process's, oldest first: the ``last`` of them that
        match, and how many match in all. Each row's data says which host and process wrote
        it (``desk_host``, ``desk_process``)."""
        where = ["true"]
        params: list[object] = []
        if since is not None:
            where.append("ts >= %s")
            params.append(int(since.timestamp() * 1_000_000))
        if order is not None:
            where.append("client_order_id = %s")
            params.append(order)
        if kinds:
            where.append("kind = ANY(%s)")
            params.append(list(kinds))
        condition = " AND ".join(where)
        counted = await self._execute(f"SELECT count(*) FROM desk.journal WHERE {condition}", tuple(params))
        total = int(str(counted[0][0])) if counted else 0
        limit = f" LIMIT {int(last)}" if last else ""
        rows = await self._execute(
            "SELECT id, ts, kind, client_order_id, account, data, host, process FROM ("
            f"SELECT * FROM desk.journal WHERE {condition} ORDER BY ts DESC, id DESC{limit}"
            ") AS latest ORDER BY ts, id",
            tuple(params),
        )
        events = []
        for row in rows:
            event = event_from_row(row[:6])
            event.data.setdefault("desk_host", str(row[6]))
            event.data.setdefault("desk_process", str(row[7]))
            events.append(event)
        return events, total

    async def listen(self) -> None:
        await self._execute(f"LISTEN {CHANNEL}")

    async def wait_for_notice(self, within: float) -> bool:
        """Whether a change was announced within ``within`` seconds (on a listening store)."""
        import psycopg

        try:
            async for _notice in self.conn.notifies(timeout=within, stop_after=1):
                return True
        except (OSError, psycopg.Error) as exc:
            raise _unavailable(self.settings, exc) from None
        return False


def _time(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise DeskUnavailableError(f"the desk sent {value!r} where a time belongs")
    return value


def _process(row: tuple[object, ...]) -> DeskProcess:
    """A ``desk.processes`` row, read with its silence in seconds as the last column."""
    return DeskProcess(
        str(row[0]),
        str(row[1]),
        int(str(row[2])),
        str(row[3]),
        str(row[4]),
        _time(row[5]),
        _time(row[6]),
        float(str(row[7])),
    )


def _state(row: tuple[object, ...]) -> DeskState:
    return DeskState(
        TradingState(str(row[0])),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        int(str(row[4])),
        _time(row[5]),
    )
