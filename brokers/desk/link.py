"""``DeskLink``: one process's kill switch kept in step with the desk.

- A halt, reduce-only or resume made in this process (a key, a command, the library, a flag
  file another local process wrote) is written to the desk, which announces it.
- A change announced by the desk, or found by the poll behind the announcements, is applied to
  the local kill switch, whose flag file and final check before every order stay what they are:
  the order path never waits on the database.
- Fail closed: when the desk's state cannot be confirmed for ``fail_after_ms``, the process
  halts itself (source ``desk-unreachable``). That halt is never written to the desk (one
  process losing its network must not halt the others) and holds until a deliberate resume
  once the desk answers again; resuming while it does not answer halts again at once.
- A local halt made while the desk is down is written to it when it comes back.
- The dead man's switch: every process tells the desk, with its heartbeat, which orders it has
  working. One that stays silent past ``dead_after_ms`` is claimed by one live process, which
  raises an alert and cancels the dead one's orders at every account it is connected to itself;
  orders at accounts it cannot reach are named in the alert (the venue's own cancel-after timer
  is what is left for them, where the adapter set one).

Which word wins when the process starts: the newer of the local halt and the desk's last change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..enums import TradingState
from ..killswitch import HaltInfo, KillSwitch
from .settings import DeskSettings
from .store import DeskProcess, DeskState, DeskStore, DeskUnavailableError, WorkingOrder

__all__ = ["DESK_SOURCE", "UNREACHABLE_SOURCE", "DeskLink", "DeskOrders"]

log = logging.getLogger(__name__)

# Sources of local changes that came from the desk, or from losing it: never written back.
DESK_SOURCE = "desk"
UNREACHABLE_SOURCE = "desk-unreachable"


class DeskOrders(Protocol):
    """What the dead man's switch needs of a process's orders (``ExecutionService`` and its
    manager, through ``brokers.runtime``)."""

    def working(self) -> list[WorkingOrder]:
        """This process's working orders."""

    def reaches(self, account: str) -> bool:
        """Whether this process is connected to ``account`` now."""

    async def cancel_for_desk(self, account: str, broker_order_id: str) -> None:
        """Cancel an order another process left working; raises on failure."""


@dataclass(frozen=True, slots=True)
class _Change:
    state: TradingState
    reason: str
    source: str


def _from_desk(info: HaltInfo | None) -> bool:
    return info is not None and (info.source.startswith(DESK_SOURCE))


class DeskLink:
    def __init__(
        self,
        kill_switch: KillSwitch,
        settings: DeskSettings,
        *,
        name: str = "process",
        host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        orders: DeskOrders | None = None,
    ) -> None:
        self.kill_switch = kill_switch
        self.orders = orders
        self._published: list[WorkingOrder] | None = None
        # Alerts raised here (a dead process taken over), newest last.
        self.alerts: list[str] = []
        self.settings = settings
        self.name = name
        self.host = host or socket.gethostname()
        self.process_id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._clock = clock
        self._store: DeskStore | None = None
        self._listener: DeskStore | None = None
        self._applied: int | None = None  # the desk version this process is in step with
        self._applying = False
        self._outbox: _Change | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = clock()
        self._confirmed_at: float | None = None
        self._heartbeat_at = 0.0
        self._connected_at = 0.0  # by ``clock``, when the desk last answered after not answering
        # By ``clock``, when this process last looked for silent processes to take over.
        self.looked_for_dead_at: float | None = None
        self.last_error: str | None = None
        self.desk_state: DeskState | None = None
        kill_switch.subscribe(self._on_local)

    # -- what the rest of the process sees -----------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._store is not None and self._confirmed_at is not None

    @property
    def unsent(self) -> TradingState | None:
        """A state changed here that the desk has not been told of yet."""
        change = self._outbox
        return None if change is None else change.state

    @property
    def confirmed_age(self) -> float | None:
        """Seconds since the desk's state was last read; None if it never was."""
        return None if self._confirmed_at is None else self._clock() - self._confirmed_at

    async def start(self) -> None:
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._started_at = self._clock()
        self._tasks = [
            asyncio.create_task(self._follow(), name="desk follow"),
            asyncio.create_task(self._push_loop(), name="desk push"),
            asyncio.create_task(self._guard(), name="desk guard"),
        ]

    async def stop(self) -> None:
        self.kill_switch.unsubscribe(self._on_local)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # A database call being cancelled may wait on its server; never longer than this.
            await asyncio.wait(tasks, timeout=self.settings.fail_after)
        store, listener = self._store, self._listener
        self._store = self._listener = None
        if store is not None:
            with contextlib.suppress(DeskUnavailableError):
                await store.leave(self.process_id)
            await store.close()
        if listener is not None:
            await listener.close()

    async def wait_connected(self, within: float) -> bool:
        """Whether the desk's state was read (and applied here) within ``within`` seconds."""
        deadline = self._clock() + within
        while self._clock() < deadline:
            if self.connected and self._applied is not None:
                return True
            await asyncio.sleep(0.01)
        return False

    # -- local changes to the desk -------------------------------------------------------------
    def _on_local(self, state: TradingState, info: HaltInfo | None) -> None:
        """The kill switch changed (on whichever thread changed it)."""
        if self._applying or _from_desk(info) or (info is not None and info.source == UNREACHABLE_SOURCE):
            # What holds here now came from the desk, or from losing it: nothing of ours is left
            # to write (a resume tried while the desk was unreachable, and undone at once, must
            # never reach it later).
            self._outbox = None
            return
        if state is TradingState.ACTIVE:
            resumed = self.kill_switch.last_resume
            reason = resumed.reason if resumed is not None else f"resumed at {self.host}"
            change = _Change(state, reason, resumed.source if resumed is not None else self.name)
        else:
            change = _Change(state, info.reason if info else state.value.lower(), info.source if info else "")
        self._outbox = change
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _push_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            change, store = self._outbox, self._store
            if change is None:
                continue
            if store is None:
                continue  # pushed once connected (_follow wakes this loop again)
            try:
                written = await store.write(
                    change.state,
                    change.reason,
                    change.source,
                    self.host,
                    always=change.state is TradingState.ACTIVE,
                )
            except DeskUnavailableError as exc:
                self.last_error = str(exc)
                continue
            if self._outbox is change:
                self._outbox = None
            if written is not None:
                self._applied = max(self._applied or 0, written.version)
                self.desk_state = written
                log.warning("desk: %s written for every process (%s)", change.state.value, change.reason)

    # -- the desk to this process --------------------------------------------------------------
    async def _connect(self) -> None:
        store = await DeskStore.connect(self.settings)
        try:
            await store.migrate()
            listener = await DeskStore.connect(self.settings)
        except DeskUnavailableError:
            await store.close()
            raise
        try:
            await listener.listen()
        except DeskUnavailableError:
            await store.close()
            await listener.close()
            raise
        self._store, self._listener = store, listener

    async def _disconnect(self) -> None:
        store, listener = self._store, self._listener
        self._store = self._listener = None
        for each in (store, listener):
            if each is not None:
                await each.close()

    async def _follow(self) -> None:
        poll = self.settings.poll_interval
        while True:
            try:
                if self._store is None:
                    await self._connect()
                    self._connected_at = self._clock()
                    self.last_error = None
                    log.info("desk: connected to %s", self.settings.dsn)
                store, listener = self._store, self._listener
                assert store is not None and listener is not None
                await self._sync(store)
                if self._outbox is not None:
                    self._wake.set()
                await self._heartbeat(store)
                await listener.wait_for_notice(poll)
            except DeskUnavailableError as exc:
                if self.last_error != str(exc):
                    log.error("desk: %s", exc)
                self.last_error = str(exc)
                await self._disconnect()
                await asyncio.sleep(poll)

    async def _heartbeat(self, store: DeskStore) -> None:
        now = self._clock()
        if now - self._heartbeat_at < self.settings.heartbeat_ms / 1000 / 2:
            return
        self._heartbeat_at = now
        await store.heartbeat(
            self.process_id, self.host, os.getpid(), self.name, self.kill_switch.state.value
        )
        if self.orders is None:
            return
        working = sorted(self.orders.working(), key=lambda o: (o.account, o.client_order_id))
        if working != self._published:
            await store.publish_orders(self.process_id, working)
            self._published = working
        # Only once this process has itself heard the desk for a whole dead_after: when the
        # desk comes back after an outage every process looks silent until it reconnects.
        dead_after = self.settings.dead_after_ms / 1000
        if now - self._connected_at < dead_after:
            return
        for process, left in await store.take_over_silent(self.process_id, dead_after):
            await self._take_over(store, process, left)
        self.looked_for_dead_at = now

    async def _take_over(self, store: DeskStore, process: DeskProcess, left: list[WorkingOrder]) -> None:
        """Cancel what a dead process left working, where this process can; say what it did."""
        assert self.orders is not None
        cancelled: list[str] = []
        failed: list[str] = []
        unreachable: list[str] = []
        for order in left:
            label = f"{order.account}:{order.broker_order_id or order.client_order_id}"
            if order.broker_order_id is None or not self.orders.reaches(order.account):
                unreachable.append(label)
                continue
            try:
                await self.orders.cancel_for_desk(order.account, order.broker_order_id)
            except Exception as exc:  # each order on its own; the alert names what failed
                failed.append(f"{label} ({exc})")
            else:
                cancelled.append(label)
        message = (
            f"{process.name} on {process.host} (pid {process.pid}) went silent "
            f"{process.silent_for:.1f}s ago with {len(left)} working order(s); "
            f"cancelled from {self.host}: {', '.join(cancelled) or 'none'}"
        )
        if failed:
            message += f"; could not cancel: {', '.join(failed)}"
        if unreachable:
            message += (
                f"; not connected here: {', '.join(unreachable)} (left to the venue's own "
                "cancel-after timer where the adapter set one)"
            )
        log.error("desk: %s", message)
        self.alerts.append(message)
        await store.alert(self.host, message)
        await store.forget(process.id)

    async def _sync(self, store: DeskStore) -> None:
        desk = await store.read()
        self._confirmed_at = self._clock()
        self.desk_state = desk
        if self._applied is None:
            self._first_sync(desk)
        elif desk.version > self._applied:
            self._apply(desk)
        self._applied = max(self._applied or 0, desk.version)

    def _first_sync(self, desk: DeskState) -> None:
        switch = self.kill_switch
        local, info = switch.state, switch.info
        if local is desk.state:
            return
        if local is not TradingState.ACTIVE and info is not None and info.time > desk.changed_at:
            # Halted here since the desk last changed: the newer word holds. A halt of ours (a
            # key, a command, a file) is told to the desk; one that losing the desk caused
            # stays for a deliberate resume, whatever the desk says now.
            if not _from_desk(info) and info.source != UNREACHABLE_SOURCE:
                self._outbox = _Change(local, info.reason, info.source)
            return
        self._apply(desk)

    def _apply(self, desk: DeskState) -> None:
        switch = self.kill_switch
        source = f"{DESK_SOURCE} ({desk.source or '?'} at {desk.host or '?'})"
        self._applying = True
        try:
            if desk.state is TradingState.HALTED:
                if switch.state is not TradingState.HALTED:
                    switch.halt(desk.reason, source=source)
            elif desk.state is TradingState.REDUCING:
                if switch.state is TradingState.ACTIVE:
                    switch.reduce_only(desk.reason, source=source)
            elif switch.state is not TradingState.ACTIVE:
                switch.resume(f"the desk resumed ({desk.reason})", source=source)
        except OSError as exc:
            log.error("desk: could not apply the desk's %s here: %s", desk.state.value, exc)
        finally:
            self._applying = False

    # -- fail closed ---------------------------------------------------------------------------
    async def _guard(self) -> None:
        limit = self.settings.fail_after
        step = min(self.settings.poll_interval, limit / 4)
        while True:
            await asyncio.sleep(step)
            self.check_confirmed()

    def check_confirmed(self) -> None:
        """Halt this process if the desk's state has not been confirmed within the limit."""
        since = self._confirmed_at if self._confirmed_at is not None else self._started_at
        age = self._clock() - since
        if age <= self.settings.fail_after:
            return
        if self.kill_switch.state is TradingState.HALTED:
            return
        why = self.last_error or "no answer"
        self.kill_switch.halt(
            f"desk unreachable for {age:.1f}s: halted until a deliberate resume once it answers ({why})",
            source=UNREACHABLE_SOURCE,
        )
