"""One-off desk calls for commands that do not keep a link open (``halt``, ``resume``,
``halt-status`` on the command line)."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from pathlib import Path

from ..enums import TradingState
from ..journal import Journal
from ..journal_schema import JournalEvent
from .journal import copy_journal
from .settings import DeskSettings
from .store import DeskProcess, DeskState, DeskStore

__all__ = ["desk_journal", "desk_migrate", "desk_status", "desk_write"]


async def desk_write(settings: DeskSettings, state: TradingState, reason: str, source: str) -> DeskState:
    """Set the desk's state (creating the desk if it is new); the desk's state afterwards.
    Raises ``DeskUnavailableError``."""
    store = await DeskStore.connect(settings)
    try:
        await store.migrate()
        written = await store.write(
            state, reason, source, socket.gethostname(), always=state is TradingState.ACTIVE
        )
        return written if written is not None else await store.read()
    finally:
        await store.close()


async def desk_status(settings: DeskSettings) -> tuple[DeskState, list[DeskProcess]]:
    """The desk's state and the processes whose heartbeat is recent (within three heartbeat
    intervals). Raises ``DeskUnavailableError``."""
    store = await DeskStore.connect(settings)
    try:
        await store.migrate()
        state = await store.read()
        processes = await store.processes()
    finally:
        await store.close()
    limit = 3 * settings.heartbeat_ms / 1000
    return state, [process for process in processes if process.silent_for <= limit]


async def desk_journal(
    settings: DeskSettings,
    *,
    since: datetime | None = None,
    order: str | None = None,
    kinds: list[str] | None = None,
    last: int | None = None,
) -> tuple[list[JournalEvent], int]:
    """The desk journal's rows (every process's), the ``last`` that match, and how many match.
    Raises ``DeskUnavailableError``."""
    store = await DeskStore.connect(settings)
    try:
        await store.migrate()
        return await store.journal_events(since=since, order=order, kinds=kinds, last=last)
    finally:
        await store.close()


async def desk_migrate(settings: DeskSettings, path: Path) -> int:
    """Copy the local journal at ``path`` into the desk journal: the rows the desk did not have
    (a second run copies none). Raises ``DeskUnavailableError``."""
    store = await DeskStore.connect(settings)
    try:
        await store.migrate()
    finally:
        await store.close()
    journal = Journal(path)  # opened once so an old journal is brought to the current layout
    try:
        journal_id = journal.journal_id
    finally:
        journal.close()
    return await asyncio.to_thread(copy_journal, settings, path, journal_id)
