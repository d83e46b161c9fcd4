"""Connections: each account's type, PAPER or LIVE, state, latency, session time left, last error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from brokers.models import AccountStatus, ConnectionState
from console import formatting as fmt

from .keyed_table import KeyedTable

STATE_STYLE: dict[ConnectionState, str] = {
    ConnectionState.CONNECTED: "bold green",
    ConnectionState.CONNECTING: "yellow",
    ConnectionState.RESYNCING: "yellow",
    ConnectionState.DEGRADED: "bold yellow",
    ConnectionState.DISCONNECTED: "bold red",
    ConnectionState.FAILED: "bold white on red",
}

LatencyOf = Callable[[AccountStatus], float | None]
"""The latency shown for an account, in milliseconds: measured, or fixed for screenshots."""


def measured_latency(status: AccountStatus) -> float | None:
    return status.latency_ms


PROBLEM_STATES = frozenset({ConnectionState.FAILED, ConnectionState.DEGRADED, ConnectionState.DISCONNECTED})


def mode_cell(live: bool) -> Text:
    return Text(" LIVE ", style="bold white on red") if live else Text("PAPER", style="cyan")


def state_cell(state: ConnectionState) -> Text:
    return Text(state.value, style=STATE_STYLE.get(state, ""))


class ConnectionsTable(KeyedTable):
    COLUMNS = (
        # What a trader needs first comes first: narrow terminals cut from the right.
        ("account", "Account", 13),
        ("mode", "Mode", 5),
        ("state", "State", 12),
        ("latency", "Latency", 7),
        ("session", "Session", 7),
        ("type", "Type", 7),
        ("error", "Last error", None),
    )

    def show_statuses(
        self, statuses: Mapping[str, AccountStatus], now: datetime, latency: LatencyOf = measured_latency
    ) -> None:
        for name, status in statuses.items():
            session_left = (
                None
                if status.session_expires_at is None
                else (status.session_expires_at - now).total_seconds()
            )
            error = fmt.without_prefix(name, fmt.one_line(status.last_error))
            self.upsert(
                name,
                {
                    "account": name,
                    "type": status.broker_type,
                    "mode": mode_cell(status.live),
                    "state": state_cell(status.state),
                    "latency": fmt.right(fmt.latency(latency(status))),
                    "session": fmt.right(fmt.duration(session_left)),
                    "error": Text(error, style="red") if error else Text(fmt.DASH, style="dim"),
                },
            )
        self.keep_only(statuses)


class ConnectionsPane(Vertical):
    """The table, plus the full text of every current connection problem under it: a table cell
    cuts long errors short, and "why is this account down" is the thing a trader must read."""

    def compose(self) -> ComposeResult:
        yield ConnectionsTable(id="connections-table")
        yield Static("", id="connection-problems", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Connections"
        self.query_one("#connection-problems").display = False

    @property
    def table(self) -> ConnectionsTable:
        return self.query_one(ConnectionsTable)

    def show_statuses(
        self, statuses: Mapping[str, AccountStatus], now: datetime, latency: LatencyOf = measured_latency
    ) -> None:
        self.table.show_statuses(statuses, now, latency)
        problems = Text()
        for name, status in statuses.items():
            if status.state in PROBLEM_STATES and status.last_error:
                if problems:
                    problems.append("\n")
                problems.append(f"{name} {status.state.value}: ", style=STATE_STYLE[status.state])
                problems.append(fmt.without_prefix(name, fmt.one_line(status.last_error, 400)))
        box = self.query_one("#connection-problems", Static)
        box.update(problems)
        box.display = bool(problems)
