"""Library errors shown in the Events pane: the terminal belongs to the screen."""

from __future__ import annotations

import logging

from textual.app import App

from brokers.credentials import RedactingFilter, redact
from console import formatting as fmt

from .messages import LogEvent


class EventLogHandler(logging.Handler):
    def __init__(self, app: App[int]) -> None:
        super().__init__(level=logging.ERROR)
        self._app = app
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            # The filter cleans the message; the exception's own text is cleaned here.
            text = f"{text}: {redact(record.exc_info[1])}"
        # post_message is thread-safe: adapter callback threads log too.
        self._app.post_message(LogEvent(fmt.one_line(text, 300), "error"))
