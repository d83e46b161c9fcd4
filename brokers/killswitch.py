"""The kill switch and the persisted SYSTEM_HALTED flag.

HALTED lives in a file so that every process sharing the state directory agrees on it: a halt
from another shell, another console or a plain ``touch`` stops this process on its very next
order. Reading the state is one ``access`` call that does not follow links, cheap enough to do
twice per order.

Anything at the flag path counts as HALTED, whatever it is, and no read of it raises: how the
files are read and written is ``brokers.haltfiles``; this module is the switch's states and how
they change.

A halt puts an empty file at the flag path before anything else (so a full disk still halts
every process) and then writes the JSON details atomically; if they cannot be written yet, the
next poll tries again. Halts, resumes and reduce-only changes are serialised across processes
by an ``flock`` on a lock file in the state folder, so the flag and the journal's last halt or
resume row always agree.

A flag that disappears without a journaled resume (an ``rm``, a clean-up job) keeps trading
HALTED, and a switch starting with no flag but an unresumed halt as the journal's last
halt/resume row starts HALTED: resuming is deliberate and journaled. (A switch given no journal
cannot tell a removal from a resume and trusts the flag.)

REDUCING is kept beside the flag, in ``REDUCE_ONLY`` (JSON), so that it too is shared by every
process and survives a restart; one tied to a trading day (the daily loss limit) lapses when the
day ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .base import EventRecorder, RecordedEvent
from .clock import utcnow
from .enums import TradingState
from .haltfiles import (
    FLAG_NAME,
    LOCK_NAME,
    REDUCE_NAME,
    HaltInfo,
    StateLock,
    examine_flag,
    flag_present,
    fsync_dir,
    parse_reduce,
    place_flag,
    read_regular,
    remove,
    write_json,
)
from .paths import state_dir as default_state_dir
from .pubsub import EventHub

__all__ = [
    "ENV_FLAG",
    "FLAG_NAME",
    "LOCK_NAME",
    "REDUCE_NAME",
    "RESUME_HINT",
    "HaltInfo",
    "HaltSettings",
    "KillSwitch",
    "StateCallback",
    "StateChange",
    "env_halt_reason",
]

log = logging.getLogger(__name__)

ENV_FLAG = "SYSTEM_HALTED"
RESUME_HINT = "resume deliberately with ctrl+r in the console or `trading-console resume`"
_TRUTHY = frozenset({"1", "true", "yes", "on", "y"})
# The only values of SYSTEM_HALTED in the environment that do not halt: someone who set the
# variable at all most likely meant to halt, so a value not understood ("2", "halt") halts too.
_FALSY = frozenset({"", "0", "false", "no", "off", "n"})


def env_halt_reason(value: str | None) -> str | None:
    """Why a SYSTEM_HALTED value from the environment halts, or None when it does not. A value
    that is not one of the usual spellings halts with a warning naming it."""
    if value is None:
        return None
    word = value.strip().lower()
    if word in _FALSY:
        return None
    if word in _TRUTHY:
        return f"{ENV_FLAG} is set in the environment"
    shown = value.strip() if len(value.strip()) <= 40 else value.strip()[:39] + "…"
    log.warning(
        "%s=%r in the environment is not a value this program knows; it halts trading, as any "
        "value but 0, false, no or off does",
        ENV_FLAG,
        shown,
    )
    return f"{ENV_FLAG}={shown!r} is set in the environment (any value but 0, false, no or off halts)"


_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
_ACTIVE = TradingState.ACTIVE


class HaltSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel_open_orders: bool = True
    poll_interval_ms: int = Field(default=100, ge=10, le=250)


StateCallback = Callable[[TradingState, "HaltInfo | None"], object]


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the switch's listeners hear: the new state and why (None when ACTIVE)."""

    state: TradingState
    info: HaltInfo | None


def _utc_today() -> date:
    return datetime.now(UTC).date()


class KillSwitch:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        journal: EventRecorder | None = None,
        env: Mapping[str, str] = os.environ,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.flag_path = self.state_dir / FLAG_NAME
        self.reduce_path = self.state_dir / REDUCE_NAME
        self._flag = str(self.flag_path)
        self._reduce_file = str(self.reduce_path)
        self._dir = str(self.state_dir)
        self.journal = journal
        self._today = today
        self._lock = threading.RLock()
        self._state_lock = StateLock(self.state_dir / LOCK_NAME)
        # Listeners only, no queues: a halt may be published from any thread.
        self.hub: EventHub[StateChange] = EventHub("kill switch")
        # subscribe() callback -> the hub listener that calls it, so unsubscribe finds it.
        self._listeners: dict[StateCallback, Callable[[StateChange], object]] = {}
        # A halt that could not be put on disk at all still holds here.
        self._memory_halt: HaltInfo | None = None
        # When this switch first saw the current halt (its own halt: once journaled). Once the
        # flag is gone, only a resume journaled after that lifts the halt. A time, not a row id:
        # noting it costs no read of the journal on the order path.
        self._seen: datetime | None = None
        # The lock file's stamp when a removed flag was noticed (see ``StateLock``).
        self._stamp = b""
        # The halt that holds because the flag went away without a journaled resume.
        self._removed: HaltInfo | None = None
        # A halt whose JSON details could not be written yet (the empty flag holds).
        self._pending: HaltInfo | None = None
        self._reduce: HaltInfo | None = None
        self._reduce_day: date | None = None
        self._reduce_local = False  # set here but not on disk
        self._reduce_key: tuple[int, int, int] | None = None
        # The last resume made by this switch (its time, reason and who), for whoever passes
        # it on (the desk link).
        self.last_resume: HaltInfo | None = None
        # (mtime_ns, inode, size) of the flag file last parsed, and what it said.
        self._flag_key: tuple[int, int, int] | None = None
        self._flag_info: tuple[HaltInfo, bool] | None = None
        self._load()
        self._notified = self.state
        self._notified_removed: HaltInfo | None = self._removed
        if self._notified is _HALTED:
            self._journal_observed()
        reason = env_halt_reason(env.get(ENV_FLAG))
        if reason is not None and not self._flag_exists():
            self.halt(reason, source="env")

    def _load(self) -> None:
        """At start: a flag on disk is a halt; without one, an unresumed halt in the journal is."""
        self._read_reduce()
        if self._flag_exists():
            self._seen = utcnow()
            return
        self._stamp = self._state_lock.read_stamp()
        try:
            row = self._last_row()
        except Exception:
            return
        if row is None or row.kind != "halt":
            return
        self._seen = row.time
        data = row.data
        said = str(data.get("reason") or "")
        self._removed = HaltInfo(
            row.time,
            f"the journal's last halt ({said or 'no reason given'}) was never resumed and the "
            f"{FLAG_NAME} flag is gone; trading stays halted: {RESUME_HINT}",
            str(data.get("source") or "journal"),
        )

    # -- reading -------------------------------------------------------------------------
    def _flag_exists(self) -> bool:
        return flag_present(self._flag, self._dir)

    @property
    def state(self) -> TradingState:
        if self._flag_exists():
            if self._seen is None:
                self._seen = utcnow()
            return _HALTED
        if self._memory_halt is not None or self._removed is not None:
            return _HALTED
        if self._seen is not None and self._flag_removed():
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
        if self._removed is not None or (self._seen is not None and self._flag_removed()):
            return self._removed
        return self._reduce

    def _flag_removed(self) -> bool:
        """The flag has gone since this switch saw the halt: was a resume journaled after it?
        If not, the halt holds (``_removed``); if so, it is over."""
        journal = self.journal
        if journal is None:
            self._seen = None
            return False
        # A resume elsewhere removes the flag and writes its journal row under the lock: wait
        # for it to finish before reading the journal.
        with self._state_lock.hold(shared=True):
            if self._flag_exists():
                return True
            self._stamp = self._state_lock.read_stamp()
            try:
                row = self._last_row()
            except Exception:
                row = None  # cannot tell: fail closed
        if self._resumed_since(row):
            self._seen = None
            return False
        if self._removed is None:
            self._removed = HaltInfo(
                utcnow(),
                f"the {FLAG_NAME} flag was removed without a journaled resume; trading stays "
                f"halted: {RESUME_HINT}",
                "flag removed",
            )
            log.error("%s was removed without a journaled resume; trading stays halted", self.flag_path)
        return True

    def _last_row(self) -> RecordedEvent | None:
        if self.journal is None:
            return None
        try:
            return self.journal.last_halt_or_resume()
        except Exception:
            log.exception("could not read the last halt or resume from the journal")
            raise

    def _resumed_since(self, row: RecordedEvent | None) -> bool:
        """Whether ``row``, the journal's last halt or resume, is a resume journaled after this
        switch saw the halt (rows are stamped with the same clock, microseconds apart)."""
        seen = self._seen
        return row is not None and row.kind == "resume" and (seen is None or row.time >= seen)

    def _read_flag(self) -> tuple[HaltInfo, bool] | None:
        """The halt the flag describes and whether it made sense; None if absent. Never raises."""
        try:
            st = os.stat(self._flag, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            return HaltInfo(
                utcnow(), f"cannot check the halt flag ({why}); treated as halted", "unknown"
            ), False
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            if key == self._flag_key and self._flag_info is not None:
                return self._flag_info
        parsed = examine_flag(self._flag, st)
        with self._lock:
            self._flag_key, self._flag_info = key, parsed
        return parsed

    def _read_reduce(self) -> None:
        """Take up a reduce-only state another process set or lifted (or one from before a
        restart); one tied to a trading day that has ended has lapsed."""
        try:
            st = os.stat(self._reduce_file, follow_symlinks=False)
        except FileNotFoundError:
            if not self._reduce_local:
                self._reduce, self._reduce_day, self._reduce_key = None, None, None
            return
        except (OSError, ValueError):
            st = None
        key = (st.st_mtime_ns, st.st_ino, st.st_size) if st is not None else None
        if key is not None and key == self._reduce_key:
            self._lapse_reduce()
            return
        raw = read_regular(self._reduce_file) if st is not None and stat.S_ISREG(st.st_mode) else b""
        info, day = parse_reduce(raw)
        self._reduce, self._reduce_day, self._reduce_key = info, day, key
        self._reduce_local = False
        self._lapse_reduce()

    def _lapse_reduce(self) -> None:
        day = self._reduce_day
        if day is not None and day != self._today():
            log.warning("reduce-only for %s has lapsed with the end of that trading day", day)
            self._reduce, self._reduce_day, self._reduce_local = None, None, False

    # -- changing ------------------------------------------------------------------------
    def halt(self, reason: str = "", source: str = "api") -> HaltInfo:
        """Put the flag on disk, then journal and tell subscribers. Calling it again while
        halted returns the halt already in force. Never raises for a file that cannot be
        written: a halt holds in this process at least."""
        with self._lock:
            if self._memory_halt is not None:
                return self._memory_halt
            info = HaltInfo(utcnow(), reason.strip() or "halted", source)
            placed = place_flag(self.state_dir, self._flag)  # before anything else, lock included
            with self._state_lock.hold():
                existing = self._read_flag()
                if existing is not None and existing[1]:
                    if self._seen is None:
                        self._seen = utcnow()
                    self._removed = None
                    return existing[0]
                # An empty or unreadable flag (a bare ``touch``) is rewritten to say who and why.
                try:
                    write_json(self.state_dir, self._flag, info.to_json())
                except OSError as exc:
                    if placed:
                        self._pending = info
                        log.error(
                            "could not write the details into %s (%s); the flag is on disk and "
                            "halts every process, details follow when they can be written",
                            self.flag_path,
                            exc.strerror or exc,
                        )
                    else:
                        info = replace(info, persisted=False)
                        self._memory_halt = info
                        log.error(
                            "could not write %s (%s); halted in this process only",
                            self.flag_path,
                            exc.strerror or exc,
                        )
                self._journal("halt", info)
                # After the row: a resume anywhere comes after it, once this lock is released.
                self._seen = utcnow()
                self._removed = None
        log.warning("trading HALTED by %s: %s", info.source, info.reason)
        self._changed(info)
        return info

    def reduce_only(self, reason: str = "", source: str = "api", *, day: date | None = None) -> HaltInfo:
        """Allow only orders that shrink a position, in every process sharing the state folder,
        until a resume (or, with ``day``, until that trading day ends). A halt outranks it."""
        with self._lock:
            if self._reduce is not None:
                return self._reduce
            info = HaltInfo(utcnow(), reason.strip() or "reduce only", source)
            self._reduce, self._reduce_day = info, day
            with self._state_lock.hold():
                data = json.loads(info.to_json())
                if day is not None:
                    data["day"] = day.isoformat()
                try:
                    write_json(self.state_dir, self._reduce_file, json.dumps(data))
                    self._reduce_local = False
                    st = os.stat(self._reduce_file, follow_symlinks=False)
                    self._reduce_key = (st.st_mtime_ns, st.st_ino, st.st_size)
                except OSError as exc:
                    self._reduce_local = True
                    log.error(
                        "could not write %s (%s); reduce-only in this process only",
                        self.reduce_path,
                        exc.strerror or exc,
                    )
                self._journal("reduce_only", info)
        log.warning("trading REDUCE-ONLY by %s: %s", info.source, info.reason)
        self._changed()
        return info

    def resume(self, reason: str, source: str = "api") -> None:
        """Back to ACTIVE. A reason is required: the journal keeps who, when and why. Raises
        ``OSError`` if the flag cannot be removed, and if the resume cannot be journaled (the
        flag is then put back): either way trading stays halted."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("resuming trading needs a reason")
        with self._lock, self._state_lock.hold() as lock_fd:
            before = self._read_flag()
            remove(self._flag)
            remove(self._reduce_file)
            fsync_dir(self.state_dir)
            info = HaltInfo(utcnow(), reason.strip(), source)
            if self.journal is not None:
                try:
                    self.journal.record("resume", data=self._row(info))
                except Exception as exc:
                    with contextlib.suppress(OSError):
                        held = before[0] if before is not None and before[1] else info
                        write_json(self.state_dir, self._flag, held.to_json())
                    raise OSError(
                        f"the resume could not be journaled, so trading stays halted: {exc}"
                    ) from exc
            self._state_lock.stamp(lock_fd)
            self._memory_halt = self._removed = self._pending = None
            self._seen = None
            self._reduce, self._reduce_day, self._reduce_local, self._reduce_key = None, None, False, None
            self._flag_key = self._flag_info = None
            self.last_resume = info
        log.warning("trading RESUMED by %s: %s", source, info.reason)
        self._changed()

    @staticmethod
    def _row(info: HaltInfo) -> dict[str, object]:
        return {
            "time": info.time.isoformat(),
            "reason": info.reason,
            "source": info.source,
            "persisted": info.persisted,
        }

    def _journal_observed(self) -> None:
        """A flag this switch found rather than wrote (a ``touch``, a link, another program) is
        journaled as a halt unless the journal's last halt/resume row already is one, so that
        every process, the command line's ``halt-status`` and ``resume`` included, reads the
        same state from the journal once the flag is gone, and the journal agrees with the flag.
        Under the state lock, so that several processes finding the same flag journal it once."""
        if self.journal is None or not self._flag_exists():
            return
        try:
            with self._lock, self._state_lock.hold():
                row = self._last_row()
                if row is not None and row.kind == "halt":
                    return
                found = self._read_flag()
                if found is None:
                    return  # gone again meanwhile: nothing on disk to record
                info = found[0]
                self.journal.record("halt", data={**self._row(info), "observed": True})
                self._seen = utcnow()  # a resume must come after this row to lift the halt
        except Exception:  # the flag holds whatever the journal does
            log.exception("could not journal the halt found in %s", self.flag_path)

    def _journal(self, kind: str, info: HaltInfo) -> None:
        if self.journal is None:
            return
        try:
            self.journal.record(kind, data=self._row(info))
        except Exception:  # the flag is what matters; a journal fault must not undo a halt
            log.exception("could not journal %s", kind)

    def _retry_details(self) -> None:
        """Write the details of a halt that could only leave an empty flag, if they can be now."""
        with self._lock, self._state_lock.hold():
            pending = self._pending
            if pending is None:
                return
            existing = self._read_flag()
            if existing is None or existing[1]:
                self._pending = None  # resumed, or another halt wrote its own details
                return
            try:
                write_json(self.state_dir, self._flag, pending.to_json())
            except OSError:
                return
            self._pending = None
            log.warning("the details of the halt are now written to %s", self.flag_path)

    def _recheck_removed(self) -> None:
        """A halt held because the flag went: lifted by a resume journaled since, or taken over
        by a flag on disk again."""
        if self._flag_exists():
            self._removed = None
            return
        if self.journal is None:
            return
        with self._state_lock.hold(shared=True):
            stamp = self._state_lock.read_stamp()
            if stamp == self._stamp:
                return  # no resume anywhere since
            self._stamp = stamp
            try:
                row = self._last_row()
            except Exception:
                return
        if self._resumed_since(row):
            self._removed = None
            self._seen = None

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
        """Re-read the flag and the reduce-only state; tell subscribers if another process
        changed the state. Never raises."""
        try:
            if self._removed is not None:
                self._recheck_removed()
            if self._pending is not None:
                self._retry_details()
            self._read_reduce()
        except Exception:  # the watch must go on whatever the state folder holds
            log.exception("could not re-read the trading state")
        return self._changed()

    def _changed(self, halted: HaltInfo | None = None) -> bool:
        """Tell subscribers if the state moved. ``halted``: the halt just written, so that the
        halt path does not read back and parse the flag it has only now put on disk."""
        with self._lock:
            state = self.state
            # A halt that holds because its flag went away is news too: the reason changes.
            removed = self._removed
            if state is self._notified and removed is self._notified_removed:
                return False
            moved = state is not self._notified
            self._notified = state
            self._notified_removed = removed
        if halted is None and state is _HALTED and moved:
            self._journal_observed()
        info = halted if halted is not None and state is _HALTED else self.info
        self.hub.publish(StateChange(state, info))
        return True

    async def watch(self, interval: float = 0.1) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval)

    def __repr__(self) -> str:
        return f"<KillSwitch {self.state.value} {self.flag_path}>"
