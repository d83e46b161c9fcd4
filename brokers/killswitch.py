"""The kill switch and the persisted SYSTEM_HALTED flag.

HALTED lives in a file so that every process sharing the state directory agrees on it: a halt
from another shell, another console or a plain ``touch`` stops this process on its very next
order. Reading the state is one ``stat`` call, cheap enough to do twice per order. Anything odd
about the flag (unreadable, unparseable, a state directory we cannot look into) counts as
HALTED: the switch fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .base import EventRecorder
from .models import TradingState, utcnow
from .paths import state_dir as default_state_dir
from .pubsub import EventHub

log = logging.getLogger(__name__)

FLAG_NAME = "SYSTEM_HALTED"
ENV_FLAG = "SYSTEM_HALTED"
_TRUTHY = frozenset({"1", "true", "yes", "on", "y"})

_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
_ACTIVE = TradingState.ACTIVE


class HaltSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel_open_orders: bool = True
    poll_interval_ms: int = Field(default=100, ge=10, le=250)


@dataclass(frozen=True, slots=True)
class HaltInfo:
    """Why trading is halted or reduced. ``persisted`` is False only when the flag file could
    not be written; the halt then holds in this process alone."""

    time: datetime
    reason: str
    source: str
    persisted: bool = True

    def to_json(self) -> str:
        return json.dumps({"time": self.time.isoformat(), "reason": self.reason, "source": self.source})


StateCallback = Callable[[TradingState, "HaltInfo | None"], object]


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the switch's listeners hear: the new state and why (None when ACTIVE)."""

    state: TradingState
    info: HaltInfo | None


class KillSwitch:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        journal: EventRecorder | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.flag_path = self.state_dir / FLAG_NAME
        self._flag = str(self.flag_path)
        self._dir = str(self.state_dir)
        self.journal = journal
        self._lock = threading.RLock()
        # Listeners only, no queues: a halt may be published from any thread.
        self.hub: EventHub[StateChange] = EventHub("kill switch")
        # subscribe() callback -> the hub listener that calls it, so unsubscribe finds it.
        self._listeners: dict[StateCallback, Callable[[StateChange], object]] = {}
        # A halt that could not be written to disk still holds here.
        self._memory_halt: HaltInfo | None = None
        self._reduce: HaltInfo | None = None
        # (mtime_ns, inode, size) of the flag file last parsed, and what it said.
        self._flag_key: tuple[int, int, int] | None = None
        self._flag_info: tuple[HaltInfo, bool] | None = None
        self._notified = self.state
        if env.get(ENV_FLAG, "").strip().lower() in _TRUTHY and not self._flag_exists():
            self.halt(f"{ENV_FLAG} is set in the environment", source="env")

    # -- reading -------------------------------------------------------------------------
    def _flag_exists(self) -> bool:
        # os.access answers without raising, which matters on the order path (a stat that
        # raises FileNotFoundError costs several microseconds). It cannot tell "absent" from
        # "cannot look", so "absent" is believed only when the folder itself can be searched;
        # otherwise a stat decides, failing closed.
        if os.access(self._flag, os.F_OK):
            return True
        if os.access(self._dir, os.X_OK):
            return False
        try:
            os.stat(self._flag)
        except FileNotFoundError:
            return False  # no state folder yet: nothing was ever halted here
        except OSError:
            return True  # cannot tell: fail closed
        return True

    @property
    def state(self) -> TradingState:
        if self._memory_halt is not None or self._flag_exists():
            return _HALTED
        return _REDUCING if self._reduce is not None else _ACTIVE

    @property
    def is_halted(self) -> bool:
        return self.state is _HALTED

    @property
    def info(self) -> HaltInfo | None:
        """Time, reason and source of the current halt or reduce-only state; None when ACTIVE."""
        if self._memory_halt is not None:
            return self._memory_halt
        flag = self._read_flag()
        if flag is not None:
            return flag[0]
        return self._reduce

    def _read_flag(self) -> tuple[HaltInfo, bool] | None:
        """The halt the flag file describes and whether the file made sense; None if absent."""
        try:
            st = os.stat(self._flag)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return HaltInfo(
                utcnow(), f"cannot check the halt flag ({exc.strerror}); treated as halted", "unknown"
            ), False
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            if key == self._flag_key and self._flag_info is not None:
                return self._flag_info
        parsed = self._parse_flag(st)
        with self._lock:
            self._flag_key, self._flag_info = key, parsed
        return parsed

    def _parse_flag(self, st: os.stat_result) -> tuple[HaltInfo, bool]:
        written = datetime.fromtimestamp(st.st_mtime, UTC)
        try:
            with open(self._flag, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            when = datetime.fromisoformat(str(data.get("time")))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return HaltInfo(
                when.astimezone(UTC), str(data.get("reason") or ""), str(data.get("source") or "unknown")
            ), True
        except FileNotFoundError:
            # Removed between stat and open (a resume elsewhere): not a halt to rely on.
            return HaltInfo(written, "halt flag present", "unknown"), False
        except (OSError, ValueError, TypeError):
            return HaltInfo(
                written, f"{FLAG_NAME} flag file present but unreadable; treated as halted", "unknown"
            ), False

    # -- changing ------------------------------------------------------------------------
    def halt(self, reason: str = "", source: str = "api") -> HaltInfo:
        """Persist the flag, then journal and tell subscribers. Calling it again while halted
        returns the halt already in force."""
        with self._lock:
            if self._memory_halt is not None:
                return self._memory_halt
            existing = self._read_flag()
            if existing is not None and existing[1]:
                return existing[0]
            # An unreadable flag (a bare ``touch``) is rewritten so it says who halted and why.
            info = HaltInfo(utcnow(), reason.strip() or "halted", source)
            try:
                self._write_flag(info)
            except OSError as exc:
                info = HaltInfo(info.time, info.reason, info.source, persisted=False)
                self._memory_halt = info
                log.error(
                    "could not write %s (%s); halted in this process only",
                    self.flag_path,
                    exc.strerror or exc,
                )
        self._journal("halt", info)
        log.warning("trading HALTED by %s: %s", info.source, info.reason)
        self._changed(info)
        return info

    def reduce_only(self, reason: str = "", source: str = "api") -> HaltInfo:
        """Allow only orders that shrink a position. Held in this process; a halt outranks it."""
        with self._lock:
            if self._reduce is not None:
                return self._reduce
            info = HaltInfo(utcnow(), reason.strip() or "reduce only", source)
            self._reduce = info
        self._journal("reduce_only", info)
        log.warning("trading REDUCE-ONLY by %s: %s", info.source, info.reason)
        self._changed()
        return info

    def resume(self, reason: str, source: str = "api") -> None:
        """Back to ACTIVE. A reason is required: the journal keeps who, when and why."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("resuming trading needs a reason")
        with self._lock:
            try:
                os.unlink(self._flag)
            except FileNotFoundError:
                pass
            # Any other OSError propagates: the flag is still there, so we stay halted.
            self._fsync_dir()
            self._memory_halt = None
            self._reduce = None
            self._flag_key = self._flag_info = None
            info = HaltInfo(utcnow(), reason.strip(), source)
        self._journal("resume", info)
        log.warning("trading RESUMED by %s: %s", source, info.reason)
        self._changed()

    def _write_flag(self, info: HaltInfo) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{FLAG_NAME}.", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(info.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._flag)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        # Makes the rename itself survive a power cut; not possible on every platform.
        with contextlib.suppress(OSError, AttributeError):
            fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _journal(self, kind: str, info: HaltInfo) -> None:
        if self.journal is None:
            return
        try:
            self.journal.record(
                kind,
                data={
                    "time": info.time.isoformat(),
                    "reason": info.reason,
                    "source": info.source,
                    "persisted": info.persisted,
                },
            )
        except Exception:  # the flag is what matters; a journal fault must not undo a halt
            log.exception("could not journal %s", kind)

    # -- watching ------------------------------------------------------------------------
    def subscribe(self, callback: StateCallback) -> None:
        """Call ``callback(state, info)`` after every change of state, made here or seen by
        ``poll``; on the thread that made or saw the change."""
        with self._lock:
            if callback in self._listeners:
                return
            listener = self._listeners[callback] = lambda change: callback(change.state, change.info)
        self.hub.add_listener(listener)

    def unsubscribe(self, callback: StateCallback) -> None:
        with self._lock:
            listener = self._listeners.pop(callback, None)
        if listener is not None:
            self.hub.remove_listener(listener)

    def poll(self) -> bool:
        """Re-read the flag; tell subscribers if another process changed the state."""
        return self._changed()

    def _changed(self, halted: HaltInfo | None = None) -> bool:
        """Tell subscribers if the state moved. ``halted``: the halt just written, so that the
        halt path does not read back and parse the flag it has only now put on disk."""
        with self._lock:
            state = self.state
            if state is self._notified:
                return False
            self._notified = state
        info = halted if halted is not None and state is _HALTED else self.info
        self.hub.publish(StateChange(state, info))
        return True

    async def watch(self, interval: float = 0.1) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval)

    def __repr__(self) -> str:
        return f"<KillSwitch {self.state.value} {self.flag_path}>"
