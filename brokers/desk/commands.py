"""One-off desk calls for commands that do not keep a link open (``halt``, ``resume``,
``halt-status`` on the command line)."""

from __future__ import annotations

import socket

from ..enums import TradingState
from .settings import DeskSettings
from .store import DeskProcess, DeskState, DeskStore

__all__ = ["desk_status", "desk_write"]


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
