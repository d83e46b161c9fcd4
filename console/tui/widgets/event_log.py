"""The event log: connection changes, rejections, halts, cancel-all results. Newest at the bottom."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from console import formatting as fmt

LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red", "halt": "bold white on red"}


class EventLog(RichLog):
    def __init__(self, *, clock: Callable[[], datetime] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("max_lines", 1000)
        # One event, one line: in a small terminal the last line must be a whole event's start,
        # not the tail of a wrapped one.
        kwargs.setdefault("wrap", False)
        kwargs.setdefault("markup", False)
        super().__init__(**kwargs)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.entries: list[tuple[str, str]] = []

    def on_mount(self) -> None:
        self.border_title = "Events"

    def add(self, text: str, level: str = "info") -> None:
        self.entries.append((level, text))
        del self.entries[:-1000]
        line = Text(fmt.clock_time(self._clock()) + " ", style="dim")
        line.append(fmt.one_line(text, 500), style=LEVEL_STYLE.get(level, ""))
        self.write(line)
