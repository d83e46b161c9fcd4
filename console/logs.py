"""Where log records go: stderr for the commands (at ``-v``), a rotating file for the console.

Both handlers carry the library's one redaction filter, so a secret the process loaded never
reaches a terminal or a file; the filter cleans the message, and the handlers' formatter cleans
what the filter cannot reach: an exception's traceback and a logged stack. The levels live on the handlers; the root logger lets through
whatever the most talkative of them wants.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import TextIO, TypeAlias

from brokers.credentials import RedactingFilter, redact

_ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)

LOG_FILE_NAME = "console.log"
LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 3
FILE_LEVEL = logging.INFO

_STDERR_FORMAT = "%(levelname)s %(name)s: %(message)s"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats through redaction: a secret inside an exception's message or a frame's source
    line is masked like one in the log message."""

    def formatException(self, ei: _ExcInfo) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        # Another handler may have formatted the record first and left its own traceback text
        # on it, which formatException never sees: the whole line is cleaned once more.
        return redact(super().format(record))


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (a test runner swaps it per invocation)."""

    def __init__(self, level: int) -> None:
        super().__init__(sys.stderr)
        self.setLevel(level)
        self.addFilter(RedactingFilter())
        self.setFormatter(RedactingFormatter(_STDERR_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class ConsoleFileHandler(RotatingFileHandler):
    """The console's own log file: the terminal belongs to the screen, so this is where the
    library's warnings (UNKNOWN orders, reconnects, halts) are kept."""

    def __init__(self, path: Path, level: int = FILE_LEVEL) -> None:
        super().__init__(path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8")
        self.setLevel(level)
        self.addFilter(RedactingFilter())
        self.setFormatter(RedactingFormatter(_FILE_FORMAT))


def verbosity_level(verbosity: int) -> int:
    """Errors only by default: the commands say what happened themselves. -v adds warnings,
    -vv progress, -vvv everything."""
    return {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)


def _replace(handler: logging.Handler) -> None:
    root = logging.getLogger()
    for existing in [h for h in root.handlers if type(h) is type(handler)]:
        root.removeHandler(existing)
        existing.close()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)


def log_to_stderr(verbosity: int) -> None:
    _replace(StderrHandler(verbosity_level(verbosity)))


def log_to_file(state_dir: Path, level: int = FILE_LEVEL) -> Path:
    """Send records at ``level`` and above to the rotating log file in ``state_dir``; returns
    its path. Calling it again replaces the handler rather than adding a second one."""
    from brokers.paths import ensure_dir

    path = ensure_dir(state_dir) / LOG_FILE_NAME
    _replace(ConsoleFileHandler(path, level))
    return path
