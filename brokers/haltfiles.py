"""The kill switch's files in the state folder, as they are on disk: the SYSTEM_HALTED flag, the
REDUCE_ONLY file beside it, and the lock file that serialises changes across processes.

Fail closed. Anything at the flag path counts as HALTED, whatever it is: a regular file (a JSON
halt, an empty one, garbage), a symbolic link (dangling or looping), a FIFO, a directory. The
flag is examined with ``lstat`` and opened only with ``O_NOFOLLOW | O_NONBLOCK`` and only if it
is a regular file (checked again with ``fstat`` once open), so nothing at the path can block the
event loop; whatever cannot be read or parsed (times out of range included) is a halt whose
reason says what was found. No read of the flag raises.

Files are replaced atomically (a temporary file, fsync, rename, fsync of the folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from .clock import utcnow

__all__ = [
    "CREATE_FLAGS",
    "FLAG_NAME",
    "LOCK_NAME",
    "READ_FLAGS",
    "REDUCE_NAME",
    "HaltInfo",
    "StateLock",
    "examine_flag",
    "flag_present",
    "fsync_dir",
    "parse_reduce",
    "place_flag",
    "read_regular",
    "remove",
    "write_json",
]

log = logging.getLogger(__name__)

FLAG_NAME = "SYSTEM_HALTED"
REDUCE_NAME = "REDUCE_ONLY"
LOCK_NAME = "killswitch.lock"

_MAX_FLAG_BYTES = 64 * 1024
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class HaltInfo:
    """Why trading is halted or reduced. ``persisted`` is False only when nothing could be put
    at the flag path; the halt then holds in this process alone."""

    time: datetime
    reason: str
    source: str
    persisted: bool = True

    def to_json(self) -> str:
        return json.dumps({"time": self.time.isoformat(), "reason": self.reason, "source": self.source})


def when(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return utcnow()


def odd_kind(mode: int) -> str | None:
    """What a flag path holds that is not a regular file, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def parse_info(raw: bytes) -> HaltInfo:
    """The halt a flag's JSON describes. Raises for anything else (a time out of range too)."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    when = datetime.fromisoformat(str(data.get("time")))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return HaltInfo(when.astimezone(UTC), str(data.get("reason") or ""), str(data.get("source") or "unknown"))


def read_regular(path: str) -> bytes | str:
    """The bytes of a regular file at ``path`` (links not followed, nothing that could block
    opened), or what was found there instead, in words."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        return "a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened ({exc.strerror or exc})"
    try:
        kind = odd_kind(os.fstat(fd).st_mode)
        if kind is not None:
            return kind
        return os.read(fd, _MAX_FLAG_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)


class StateLock:
    """An ``flock`` on a lock file in the state folder, taken around every change of state.
    A lock that cannot be taken is logged and done without: a halt must never wait on it.

    The file also holds a stamp that every resume renews: a switch holding a halt whose flag
    was removed reads these few bytes at each poll, and the journal only when they change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def stamp(fd: int | None) -> None:
        """Renew the stamp; ``fd`` from ``hold``."""
        if fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(fd, b"%020d" % time.time_ns(), 0)

    def read_stamp(self) -> bytes:
        try:
            fd = os.open(self.path, READ_FLAGS)
        except OSError:
            return b""
        try:
            return os.read(fd, 32)
        except OSError:
            return b""
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self, *, shared: bool = False) -> Iterator[int | None]:
        fd: int | None = None
        try:
            if not shared:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError as exc:
            if fd is not None:
                os.close(fd)
                fd = None
            if not (shared and isinstance(exc, FileNotFoundError)):
                log.warning("could not lock %s (%s); going on without it", self.path, exc.strerror or exc)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)  # closing releases the lock


def flag_present(flag: str, folder: str) -> bool:
    """Whether anything is at the flag path ``flag`` in ``folder``; cannot tell is yes."""
    # access() answers without raising, which matters on the order path (a stat that raises
    # FileNotFoundError costs several microseconds); not following links, a dangling or
    # looping link is seen as the entry it is. It cannot tell "absent" from "cannot look",
    # so "absent" is believed only when the folder itself can be searched; otherwise a stat
    # decides, failing closed.
    if os.access(flag, os.F_OK, follow_symlinks=False):
        return True
    if os.access(folder, os.X_OK):
        return False
    try:
        os.stat(flag, follow_symlinks=False)
    except FileNotFoundError:
        return False  # no state folder yet: nothing was ever halted here
    except (OSError, ValueError):
        return True  # cannot tell: fail closed
    return True


def examine_flag(flag: str, st: os.stat_result) -> tuple[HaltInfo, bool]:
    """The halt the flag at ``flag`` (``lstat`` gave ``st``) describes, and whether it made
    sense. Never raises."""
    written = when(st.st_mtime)
    kind = odd_kind(st.st_mode)
    raw = read_regular(flag) if kind is None else kind
    if isinstance(raw, str):
        return HaltInfo(
            written, f"{FLAG_NAME} is {raw}, not a readable flag file; treated as halted", "unknown"
        ), False
    if not raw.strip():
        why = "empty: a halt whose details are not written"
    else:
        try:
            return parse_info(raw), True
        except Exception as exc:  # anything a file can hold: fail closed, never raise
            why = f"{type(exc).__name__}: {exc}"[:200]
    return HaltInfo(
        written, f"{FLAG_NAME} flag file present but unreadable ({why}); treated as halted", "unknown"
    ), False


def parse_reduce(raw: bytes | str) -> tuple[HaltInfo, date | None]:
    """The reduce-only state a REDUCE_ONLY file holds, and the trading day it is tied to, if
    any; what cannot be read is a reduce-only state that says so."""
    try:
        if isinstance(raw, str):
            raise ValueError(raw)
        data = json.loads(raw)
        info = parse_info(raw)
        day = data.get("day")
        return info, date.fromisoformat(day) if isinstance(day, str) else None
    except Exception:
        return HaltInfo(
            utcnow(), f"{REDUCE_NAME} is present but unreadable; treated as reduce-only", "unknown"
        ), None


def place_flag(folder: Path, flag: str) -> bool:
    """Create an empty flag unless something is there already; whether the path is taken."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(flag, CREATE_FLAGS, 0o644)
    except OSError:
        # A link, a FIFO, a directory is already a halt; a path that cannot be looked at
        # is not one another process would see.
        try:
            os.stat(flag, follow_symlinks=False)
        except (OSError, ValueError):
            return False
        return True
    os.close(fd)
    return True


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(path)  # a directory put there by hand; one with contents stays, and raises
    # Any other OSError propagates: the flag is still there, so we stay halted.


def write_json(folder: Path, path: str, text: str) -> None:
    """Replace ``path`` atomically with ``text``: a temporary file, fsync, rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself survive a power cut; not possible on every platform.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
