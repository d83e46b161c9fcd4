"""Connections: each account's type, PAPER or LIVE, state, latency, session time left, last error;
under them, each problem in full, an account whose quote stream is down (its quotes come as
snapshots meanwhile), and how old the figures of an account are where the broker says (a position
export's file time)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from brokers.models import AccountStatus, ConnectionState

if TYPE_CHECKING:
    from brokers.quotes import StreamOutage
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


def as_of_line(name: str, as_of: datetime, now: datetime) -> str:
    """An account whose figures are as of a time the broker gave (a position export's): which
    time, and how long before ``now``."""
    moment = as_of.astimezone(UTC)
    minutes = max(int((now - moment).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    old = f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
    return f"{name} figures as of {moment:%Y-%m-%d %H:%M} UTC ({old} old)"


class ConnectionsTable(KeyedTable):
    COLUMNS = (
        # What a trader needs first comes first: narrow terminals cut from the right. The state
        # before the mode: cut to "CONNE" it could be CONNECTED or CONNECTING, and a LIVE
        # account is also named on the title line.
        ("account", "Account", 13),
        ("state", "State", 12),
        ("mode", "Mode", 5),
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
        yield Static("", id="connection-as-of", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Connections"
        self.query_one("#connection-problems").display = False
        self.query_one("#connection-as-of").display = False

    @property
    def table(self) -> ConnectionsTable:
        return self.query_one(ConnectionsTable)

    def show_statuses(
        self,
        statuses: Mapping[str, AccountStatus],
        now: datetime,
        latency: LatencyOf = measured_latency,
        outages: Mapping[str, StreamOutage] | None = None,
    ) -> None:
        """``outages``: accounts whose quote stream is down (their quotes come as snapshots)."""
        self.table.show_statuses(statuses, now, latency)
        problems = Text()
        for name, status in statuses.items():
            if status.state in PROBLEM_STATES and status.last_error:
                if problems:
                    problems.append("\n")
                problems.append(f"{name} {status.state.value}: ", style=STATE_STYLE[status.state])
                problems.append(fmt.without_prefix(name, fmt.one_line(status.last_error, 400)))
        for name, outage in (outages or {}).items():
            if name not in statuses:
                continue
            if problems:
                problems.append("\n")
            problems.append(f"{name} quotes as snapshots: ", style="yellow")
            problems.append(
                fmt.without_prefix(name, fmt.one_line(outage.reason or "the quote stream is down", 400))
            )
        box = self.query_one("#connection-problems", Static)
        box.update(problems)
        box.display = bool(problems)
        dated = "\n".join(
            as_of_line(name, status.as_of, now)
            for name, status in statuses.items()
            if status.as_of is not None
        )
        notes = self.query_one("#connection-as-of", Static)
        notes.update(Text(dated, style="yellow"))
        notes.display = bool(dated)
