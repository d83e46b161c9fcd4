"""Desk mode: one trading state shared by every process on every machine of a desk, kept in
PostgreSQL (``[desk] dsn``). Without a desk, everything stays local (the flag file and SQLite).

``DeskLink`` ties a process's ``KillSwitch`` to the desk: a halt, reduce-only or resume made in
the process goes to the desk, and one made anywhere else comes back through LISTEN/NOTIFY (with a
poll behind it). A process that cannot confirm the desk's state in time halts itself.
"""

from .link import DESK_SOURCE, UNREACHABLE_SOURCE, DeskLink
from .settings import DeskSettings
from .store import DeskProcess, DeskState, DeskStore, DeskUnavailableError

__all__ = [
    "DESK_SOURCE",
    "UNREACHABLE_SOURCE",
    "DeskLink",
    "DeskProcess",
    "DeskSettings",
    "DeskState",
    "DeskStore",
    "DeskUnavailableError",
]
