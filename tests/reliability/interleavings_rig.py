"""What the interleaving property tests build on: two trading stacks sharing one state folder,
paper brokers that note every order reaching them, the ways a person or a cleanup job can tamper
with the halt flag, and the checks each step is held to.

A "stack" is what one process runs: the runtime the console and the command line build
(``build_runtime``), over paper brokers of its own. Two stacks in one process share the folder
exactly as two processes do (the flag and the journal are files); ``interleavings_child.py`` runs
one in a real second process for the parts that need one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from support import until

from brokers.base import EventRecorder, RecordedEvent
from brokers.config import parse_config
from brokers.killswitch import FLAG_NAME, REDUCE_NAME
from brokers.models import Order, OrderRequest, OrderType, Side, TradingState
from brokers.runtime import Runtime, build_runtime
from brokers.sim import SimBroker

ACCOUNTS = ("p1", "p2")
SYMBOL = "AAPL"
TRADING_STATE_KINDS = ["halt", "resume", "reduce_only"]
TAMPERS = ("dangling_link", "link_to_file", "looping_link", "fifo", "garbage", "empty", "rm")

# One clock for every broker and every halt in this process: places and halts are totally
# ordered by it, with nothing of the wall clock's jitter.
SEQUENCE = itertools.count(1)


def next_seq() -> int:
    return next(SEQUENCE)


class TapedSim(SimBroker):
    """A paper broker that notes, on entry to ``place_order``, every order that reaches it: the
    process-wide sequence number and the monotonic clock (comparable across processes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.places: list[tuple[int, int, str]] = []  # (seq, monotonic_ns, client_order_id)

    async def place_order(self, request: OrderRequest) -> Order:
        self.places.append((next_seq(), time.monotonic_ns(), request.client_order_id))
        return await super().place_order(request)

    def working(self) -> list[Order]:
        """Orders resting at the venue now, whether or not anyone is connected to ask."""
        return self._venue.open_orders()


def config_for(root: Path, poll_interval_ms: int = 100) -> Any:
    return parse_config(
        {
            "state_dir": str(root),
            "accounts": [{"name": name, "type": "sim"} for name in ACCOUNTS],
            "halt": {"cancel_open_orders": True, "poll_interval_ms": poll_interval_ms},
        },
        where="interleaving test",
    )


def make_brokers() -> dict[str, TapedSim]:
    return {name: TapedSim(name, prices={SYMBOL: 200}) for name in ACCOUNTS}


class Stack:
    """One process's runtime over its own paper brokers; ``restart`` builds it again from the
    folder, as a new process would."""

    def __init__(self, label: str, root: Path, poll_interval_ms: int = 100) -> None:
        self.label = label
        self.root = root
        self.poll_interval_ms = poll_interval_ms
        self.brokers = make_brokers()
        self.runtime = self._build()

    def _build(self) -> Runtime:
        return build_runtime(
            config_for(self.root, self.poll_interval_ms), brokers=dict(self.brokers), state_dir=self.root
        )

    async def start(self) -> Stack:
        await self.runtime.start()
        return self

    async def stop(self) -> None:
        await self.runtime.stop()

    async def restart(self) -> None:
        """Stop, then start a new runtime on the same folder and the same broker accounts (the
        venue keeps its orders, as a real broker does while a process is down)."""
        await self.runtime.stop()
        self.runtime = self._build()
        await self.runtime.start()

    @property
    def state(self) -> TradingState:
        return self.runtime.kill_switch.state

    def poll(self) -> None:
        """What the runtime's watch task does on each tick."""
        self.runtime.kill_switch.poll()

    def connected_working(self) -> list[tuple[str, Order]]:
        return [
            (name, order)
            for name, broker in self.brokers.items()
            if broker.is_connected()
            for order in broker.working()
        ]

    def places(self) -> Iterable[tuple[int, int, str, str]]:
        for name, broker in self.brokers.items():
            for seq, ns, coid in broker.places:
                yield seq, ns, coid, f"{self.label}/{name}"


def request(kind: str, account: str | None = None, side: str = "BUY") -> OrderRequest:
    """``market`` fills at once; ``rest`` rests far from the market (200), so it is still working
    when the next step comes."""
    sell = Side(side) is Side.SELL
    if kind == "rest":
        return OrderRequest(
            symbol=SYMBOL,
            side=Side(side),
            quantity=Decimal(1),
            order_type=OrderType.LIMIT,
            limit_price=Decimal(300 if sell else 100),
            account=account,
        )
    return OrderRequest(symbol=SYMBOL, side=Side(side), quantity=Decimal(1), account=account)


# -- the flag, as someone other than the library leaves it ------------------------------------------


def flag_path(root: Path) -> Path:
    return root / FLAG_NAME


def flag_present(root: Path) -> bool:
    """Whether anything at all is at the flag path (a link is looked at, not followed)."""
    return os.path.lexists(flag_path(root))


def tamper(root: Path, how: str) -> bool:
    """Put something other than the library's flag at the flag path, in one rename so no reader
    sees a gap; ``rm`` removes whatever is there. Returns False when there was nothing to do."""
    flag = flag_path(root)
    if how == "rm":
        if not os.path.lexists(flag):
            return False
        os.unlink(flag)
        return True
    staging = root / f".tamper.{how}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    if how == "dangling_link":
        os.symlink(root / "no-such-file", staging)
    elif how == "link_to_file":
        target = root / "some-regular-file"
        target.write_text("not a halt flag\n")
        os.symlink(target, staging)
    elif how == "looping_link":
        os.symlink(FLAG_NAME, staging)  # once renamed, a link to itself
    elif how == "fifo":
        os.mkfifo(staging)
    elif how == "garbage":
        staging.write_bytes(b"\x00\xff{not json\x9c")
    elif how == "empty":
        staging.write_bytes(b"")
    else:
        raise ValueError(how)
    os.replace(staging, flag)
    return True


def clear_tampering(root: Path) -> None:
    """Between cases: remove anything at the flag path that is not a regular file."""
    flag = flag_path(root)
    if os.path.islink(flag) or (os.path.lexists(flag) and not os.path.isfile(flag)):
        os.unlink(flag)


class FifoWatch:
    """Notices anyone opening a FIFO at the flag path for reading (it should never be opened: a
    reader blocks until a writer comes), and lets them go by writing garbage into it, so that a
    process stuck in ``open()`` neither hangs the suite nor goes unnoticed."""

    def __init__(self, root: Path) -> None:
        self.flag = str(flag_path(root))
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fifo-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            try:
                # Succeeds on a FIFO only while someone has it open for reading.
                fd = os.open(self.flag, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue  # ENXIO: a FIFO nobody reads; or nothing, or not a FIFO, is there
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    self.opened += 1
                    with contextlib.suppress(OSError):
                        os.write(fd, b"\x00garbage")
            finally:
                os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class HeldRecord:
    """Stands in for a kill switch's journal: just before the first row is written, ``meanwhile``
    starts on a thread of its own, and the row waits for it (``hold`` seconds at most, as behind
    a slow disk or a lock), so another process's halt or resume can come in between the flag's change
    and its journal row. Nothing here needs the event loop, which a lock may hold up."""

    def __init__(self, inner: EventRecorder, meanwhile: Callable[[], object], hold: float = 0.005) -> None:
        self.inner = inner
        self.hold = hold
        self.meanwhile = threading.Thread(target=meanwhile, name="race-meanwhile", daemon=True)
        self._armed = True

    def record(self, kind: str, *, data: dict[str, object] | None = None) -> object:
        if self._armed:
            self._armed = False
            self.meanwhile.start()
            self.meanwhile.join(self.hold)
        return self.inner.record(kind, data=data)

    def events(
        self, since: datetime | None = None, order: str | None = None, kinds: list[str] | None = None
    ) -> Sequence[RecordedEvent]:
        return self.inner.events(since, order, kinds)

    def last_halt_or_resume(self) -> RecordedEvent | None:
        return self.inner.last_halt_or_resume()


# -- the model and the checks -------------------------------------------------------------------------


@dataclass
class Model:
    """What must hold, from the steps taken so far."""

    halted: bool = False
    """A halt is on disk (written by the library, or something at the flag path, or a flag removed
    without a journaled resume): nothing may trade."""

    halted_since: int = 0
    """Sequence number at which the current halt was on disk."""

    intervals: list[tuple[int, int]] = field(default_factory=list)
    """Every halt of this case: (on disk at, resumed at); the current one ends at infinity."""

    tampered: bool = False
    """Something other than the library changed the flag since the library last wrote it (a halt
    or a resume); the journal cannot know of it."""

    forgetful: dict[str, int] = field(default_factory=dict)
    """Stacks restarted while nothing on disk said a halt was in force (a flag put there by hand
    and then removed, a journal whose last word is not a halt), by label, with the sequence
    number of the restart: they cannot know of the halt and are not held to it."""

    since: datetime | None = None
    """Journal rows of this case are those from here on."""

    def halt(self, seq: int) -> None:
        if not self.halted:
            self.halted = True
            self.halted_since = seq
            self.intervals.append((seq, 1 << 62))

    def resume(self, seq: int) -> None:
        if self.halted:
            start, _ = self.intervals[-1]
            self.intervals[-1] = (start, seq)
        self.halted = False
        self.forgetful.clear()

    def in_halt(self, seq: int) -> tuple[int, int] | None:
        for start, end in self.intervals:
            if start < seq < end:
                return start, end
        return None


def placed_during_halt(model: Model, places: Iterable[tuple[int, int, str, str]]) -> list[str]:
    found = []
    for seq, _ns, coid, where in places:
        window = model.in_halt(seq)
        label = where.split("/")[0]
        if window is None or (label in model.forgetful and seq > model.forgetful[label]):
            continue
        found.append(f"{coid} reached {where} at #{seq}, halt on disk at #{window[0]}")
    return found


def last_row(runtime: Runtime, since: datetime | None, kinds: list[str]) -> str | None:
    rows = runtime.journal.events(since=since, kinds=kinds)
    return rows[-1].kind if rows else None


def journal_disagreement(
    runtime: Runtime, since: datetime | None, root: Path, *, tampered: bool
) -> str | None:
    """The journal's last trading-state rows against the files they describe: the last halt or
    resume against the flag (unless someone else has changed the flag since), the last
    reduce-only or resume against the reduce-only file beside it."""
    rows = [row.kind for row in runtime.journal.events(since=since, kinds=TRADING_STATE_KINDS)]
    halts = [kind for kind in rows if kind != "reduce_only"]
    if halts and not tampered and (halts[-1] == "halt") != flag_present(root):
        return (
            f"the journal's last halt/resume row is {halts[-1]!r} but the flag is "
            f"{'present' if flag_present(root) else 'absent'}"
        )
    reduces = [kind for kind in rows if kind != "halt"]
    reducing = os.path.lexists(root / REDUCE_NAME)
    if reduces and (reduces[-1] == "reduce_only") != reducing:
        return (
            f"the journal's last reduce-only/resume row is {reduces[-1]!r} but {REDUCE_NAME} is "
            f"{'present' if reducing else 'absent'}"
        )
    return None


async def holds_within(condition: Callable[[], bool], within: float = 1.0) -> bool:
    """Wait (bounded) for ``condition``; then say whether it holds, for the caller to assert on
    the state found at the end of the wait rather than on a timeout."""
    with contextlib.suppress(TimeoutError):
        # Most conditions come true within a few turns of the loop; do not sleep through those.
        await until(condition, within=min(within, 0.02), step=0)
    with contextlib.suppress(TimeoutError):
        await until(condition, within=max(0.0, within - 0.02), step=0.002)
    return condition()
