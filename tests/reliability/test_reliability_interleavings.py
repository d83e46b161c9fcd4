"""Random interleavings of trading, halting and tampering across two processes sharing a state
folder, each step followed by the checks a halt must pass:

- no order reaches a broker after a halt is on disk;
- no working order survives at a connected broker one second after a halt;
- an account that reconnects while halted has none working either;
- the journal's last trading-state row (halt, resume, reduce-only) agrees with the flag;
- whatever is put at the flag path (a link, dangling, looping or to a regular file, a FIFO,
  garbage, an empty file) or its removal, no process reads ACTIVE, and none opens a FIFO.

Most cases run two stacks in this process (each what one process runs, over the same folder);
the cross-process ones drive a real second process (``interleavings_child.py``) over a pipe,
started once for the whole group. Seeds are fixed (``derandomize``) so CI runs the same cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from interleavings_rig import (
    ACCOUNTS,
    TAMPERS,
    FifoWatch,
    HeldRecord,
    Model,
    Stack,
    clear_tampering,
    flag_present,
    holds_within,
    journal_disagreement,
    last_row,
    next_seq,
    placed_during_halt,
    request,
    tamper,
)
from reliability_rig import note

from brokers.models import TradingState

CATEGORY = "faults"

Step = tuple[Any, ...]

WHO = st.sampled_from(("A", "B"))
ACCOUNT = st.sampled_from(ACCOUNTS)
KIND = st.sampled_from(("rest", "market"))
SIDE = st.sampled_from(("BUY", "SELL"))

SUBMIT = st.tuples(st.just("submit"), WHO, ACCOUNT, KIND, SIDE)
FIRE = st.tuples(st.just("fire"), WHO, ACCOUNT, KIND, SIDE)
SPLIT = st.tuples(st.just("split"), WHO, KIND, SIDE)
HALT = st.tuples(st.just("halt"), WHO)
RESUME = st.tuples(st.just("resume"), WHO)
REDUCE = st.tuples(st.just("reduce"), WHO)
RACE = st.tuples(st.just("race"), WHO, st.sampled_from(("halt", "resume")))
TAMPER = st.tuples(st.just("tamper"), st.sampled_from(TAMPERS))
DROP = st.tuples(st.just("drop"), WHO, ACCOUNT)
RECONNECT = st.tuples(st.just("reconnect"), WHO, ACCOUNT)
RESTART = st.tuples(st.just("restart"), WHO)
SLOW = st.tuples(st.just("slow"), WHO, ACCOUNT)
WAIT = st.tuples(st.just("wait"))
SLOW_SECONDS = 0.01
FRESH_EVERY = 20
# Tasks that run for as long as a stack does.
BACKGROUND = frozenset({"execution-watch", "manager-heartbeat"})

TRADING = (SUBMIT, FIRE, SPLIT)
FAMILIES: dict[str, tuple[st.SearchStrategy[Step], ...]] = {
    "orders and halts": (*TRADING, HALT, RESUME, REDUCE, RACE, SLOW, WAIT),
    "tampering": (*TRADING, HALT, RESUME, TAMPER, RESTART),
    "connections": (*TRADING, HALT, RESUME, DROP, RECONNECT, RESTART),
    "everything": (*TRADING, HALT, RESUME, REDUCE, RACE, SLOW, WAIT, TAMPER, DROP, RECONNECT, RESTART),
}
# Paper brokers answer at once in three cases of four; otherwise orders are still on their way
# when the next step comes.
LATENCY = st.sampled_from((0.0, 0.0, 0.0, 0.001))


def program(family: str) -> st.SearchStrategy[list[Step]]:
    return st.lists(st.one_of(*FAMILIES[family]), min_size=1, max_size=6)


class InvariantBroken(AssertionError):
    pass


# Tasks that run for as long as a stack does, whatever their names: those a start left running.
LONG_LIVED: set[asyncio.Task[Any]] = set()


async def started(start: Callable[[], Awaitable[object]]) -> None:
    """Run a stack's start (or restart) and remember the tasks it leaves running."""
    before = asyncio.all_tasks()
    await start()
    LONG_LIVED.update(task for task in asyncio.all_tasks() - before if not task.done())


class Quiet:
    """True once this loop has had nothing running but the stacks' own background loops for
    ``for_seconds`` in a row: from then on nothing in this process will change an order."""

    def __init__(self, for_seconds: float = 0.02) -> None:
        self.for_seconds = for_seconds
        self.since: float | None = None

    def __call__(self) -> bool:
        me = asyncio.current_task()
        LONG_LIVED.difference_update([task for task in LONG_LIVED if task.done()])
        idle = all(
            task is me
            or task.done()
            or task in LONG_LIVED
            or task.get_name() in BACKGROUND
            or task.get_name().startswith("reconnect:")
            for task in asyncio.all_tasks()
        )
        now = time.monotonic()
        if not idle:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.for_seconds


class Bench:
    """Two stacks over one folder, kept across the cases of a test and put back to ACTIVE, all
    accounts connected and nothing working, before each. Every ``FRESH_EVERY`` cases they move to
    a new folder, so that the journal a restart reads back stays small."""

    def __init__(self, base: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.base = base
        self.loop = loop
        self.folders = 0
        self.cases = 0
        self._make()

    def _make(self) -> None:
        self.folders += 1
        self.root = self.base / f"state-{self.folders}"
        self.stacks = {label: Stack(label, self.root) for label in ("A", "B")}
        self.watch = FifoWatch(self.root)
        self.fifo_opened = 0
        self.tasks: list[asyncio.Task[object]] = []
        self.model = Model()

    async def start(self) -> None:
        for stack in self.stacks.values():
            await started(stack.start)

    async def stop(self) -> None:
        await self._drain()
        for stack in self.stacks.values():
            await stack.stop()
        self.watch.stop()

    async def _drain(self) -> None:
        tasks, self.tasks = self.tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self, latency: float) -> None:
        await self._drain()
        self.cases += 1
        if self.cases % FRESH_EVERY == 0:
            await self.stop()
            self._make()
            await self.start()
        # What the last case set going (a halt's cancel-all, a late answer) runs to its end, so
        # that each case starts from the same state whatever ran before it.
        await holds_within(Quiet(for_seconds=0), within=1.0)
        clear_tampering(self.root)
        since = datetime.now(UTC)
        for stack in self.stacks.values():
            await stack.runtime.execution.resume("next case", source="interleavings")
        for stack in self.stacks.values():
            manager = stack.runtime.manager
            for name, broker in stack.brokers.items():
                broker.faults.clear()
                if latency:
                    # Orders take a while to reach the venue; nothing else does.
                    broker.faults.hang_seconds, broker.faults.hang_next = latency, math.inf
                    broker.faults.hang_methods = frozenset({"place_order"})
                if not (broker.is_connected() and manager.is_available(name)):
                    await manager.connect(name)
                await broker.cancel_all_orders()
                broker.places.clear()
            stack.poll()
        self.fifo_opened = self.watch.opened
        self.model = Model(since=since)

    # -- steps -------------------------------------------------------------------------------
    async def step(self, step: Step) -> None:
        what, *args = step
        model = self.model
        if what in ("submit", "fire"):
            who, account, kind, side = args
            call = self.stacks[who].runtime.execution.submit(request(kind, account, side))
            if what == "submit":
                await call
            else:
                self.tasks.append(asyncio.ensure_future(call))
        elif what == "split":
            who, kind, side = args
            await self.stacks[who].runtime.execution.submit_distributed(request(kind, None, side))
        elif what == "halt":
            self.stacks[args[0]].runtime.execution.halt_now("halt step", source="interleavings")
            model.halt(next_seq())
            model.tampered = False
        elif what == "resume":
            model.resume(next_seq())
            await self.stacks[args[0]].runtime.execution.resume("resume step", source="interleavings")
            model.tampered = False
        elif what == "reduce":
            await self.stacks[args[0]].runtime.execution.reduce_only("reduce step", source="interleavings")
        elif what == "race":
            await self._race(*args)
        elif what == "tamper":
            if tamper(self.root, args[0]):
                model.halt(next_seq())
                model.tampered = True
        elif what == "slow":
            # The account's next cancel-all answers late, as a busy broker does.
            who, account = args
            faults = self.stacks[who].brokers[account].faults
            faults.hang_seconds, faults.hang_next = SLOW_SECONDS, 1
            faults.hang_methods = frozenset({"cancel_all_orders"})
        elif what == "wait":
            await asyncio.sleep(0.001)  # the event loop runs, as it does between two keystrokes
        elif what == "drop":
            who, account = args
            await self.stacks[who].runtime.manager.disconnect(account)
        elif what == "reconnect":
            who, account = args
            await self.stacks[who].runtime.manager.connect(account)
        elif what == "restart":
            who = args[0]
            await started(self.stacks[who].restart)
            if model.halted and not flag_present(self.root):
                if last_row(self.stacks[who].runtime, None, ["halt", "resume"]) != "halt":
                    model.forgetful[who] = next_seq()
        else:
            raise ValueError(what)

    async def _race(self, halter: str, first: str) -> None:
        """One process halts while the other resumes: ``first`` changes the flag first, and the
        other starts just before the first's journal row is written."""
        model = self.model
        halting = self.stacks[halter].runtime.kill_switch
        resuming = self.stacks["B" if halter == "A" else "A"].runtime.kill_switch

        def halt() -> None:
            halting.halt("race halt", "interleavings")

        def resume() -> None:
            resuming.resume("race resume", "interleavings")

        one, other = (halt, resume) if first == "halt" else (resume, halt)
        held_switch = halting if first == "halt" else resuming
        inner = held_switch.journal
        assert inner is not None  # the runtime gives every switch its journal
        held = HeldRecord(inner, other)
        # Orders that reach a broker while the race runs are not judged: when the flag was on
        # disk in between is not known here.
        model.resume(next_seq())
        held_switch.journal = held
        try:
            await asyncio.to_thread(one)
        finally:
            held_switch.journal = inner
        if held.meanwhile.ident is None:
            await asyncio.to_thread(other)  # the first wrote no row (nothing changed)
        else:
            await asyncio.to_thread(held.meanwhile.join, 10.0)
        if flag_present(self.root):
            model.halt(next_seq())
        model.tampered = False

    # -- checks ------------------------------------------------------------------------------
    def _held(self) -> list[Stack]:
        """The stacks a halt in force binds."""
        return [s for label, s in self.stacks.items() if label not in self.model.forgetful]

    async def check(self, step: Step | None) -> None:
        model = self.model
        if self.watch.opened != self.fifo_opened:
            self.fifo_opened = self.watch.opened
            raise InvariantBroken(
                "a process opened the FIFO at the flag path (and would have blocked until a writer came)"
            )
        if model.halted:
            for stack in self._held():
                stack.poll()
                if stack.state is not TradingState.HALTED:
                    raise InvariantBroken(
                        f"tampering made a process trade: {stack.label} reads {stack.state.value} "
                        f"while a halt is in force (flag {'present' if flag_present(self.root) else 'absent'})"
                    )
        early = placed_during_halt(model, (p for s in self.stacks.values() for p in s.places()))
        if early:
            raise InvariantBroken(f"an order reached a broker after the halt was on disk: {early[0]}")
        problem = journal_disagreement(
            self.stacks["A"].runtime, model.since, self.root, tampered=model.tampered
        )
        if problem is not None:
            raise InvariantBroken(problem)
        if not model.halted:
            return
        held = self._held()

        def nothing_working() -> bool:
            for stack in held:
                stack.poll()  # the watch task's tick, without waiting for it
            return not any(stack.connected_working() for stack in held)

        # Ends early once nothing is left running that could still cancel anything.
        quiet = Quiet()
        await holds_within(lambda: nothing_working() or quiet(), within=1.0)
        survived = nothing_working()
        left = [(s.label, name, o.client_order_id) for s in held for name, o in s.connected_working()]
        if step is not None and step[0] == "reconnect":
            if not survived:
                raise InvariantBroken(f"working after a reconnect while halted: {left}")
        elif not survived:
            raise InvariantBroken(f"working at a connected broker a second after the halt: {left}")

    async def case(self, steps: list[Step], latency: float) -> None:
        await self.reset(latency)
        for step in steps:
            await self.step(step)
            await self.check(step)
        await self._drain()
        await self.check(None)


@pytest.fixture
def fast_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory where there is one: every halt and resume syncs the state folder to
    disk, which here proves nothing and costs most of a case's time."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="interleavings-", dir=shm) as folder:
        yield Path(folder)


@pytest.fixture
def bench(fast_folder: Path) -> Iterator[Bench]:
    loop = asyncio.new_event_loop()
    made = Bench(fast_folder, loop)
    try:
        loop.run_until_complete(made.start())
        yield made
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(made.stop())
        loop.close()


IN_PROCESS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Cases run and broken, by where they ran, for the line under the suite's summary.
COUNTS: dict[str, list[int]] = {"in one process": [0, 0], "across two processes": [0, 0]}


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    started = time.perf_counter()
    yield
    parts = [f"{ran:,} {where} ({broken:,} broke an invariant)" for where, (ran, broken) in COUNTS.items()]
    note(
        "faults",
        f"interleavings: {sum(ran for ran, _ in COUNTS.values()):,} generated cases, "
        f"{'; '.join(parts)}, in {time.perf_counter() - started:.1f} s",
    )


def _counted(where: str, tally: Any, run: Callable[[], None]) -> None:
    counts = COUNTS[where]
    counts[0] += 1
    try:
        with tally.case():
            run()
    except AssertionError:
        counts[1] += 1
        raise


def _run(bench: Bench, tally: Any, steps: list[Step], latency: float) -> None:
    _counted("in one process", tally, lambda: bench.loop.run_until_complete(bench.case(steps, latency)))


@settings(IN_PROCESS, max_examples=2500)
@given(steps=program("orders and halts"), latency=LATENCY)
def test_orders_halts_and_races_in_two_stacks(
    bench: Bench, tally: Any, steps: list[Step], latency: float
) -> None:
    _run(bench, tally, steps, latency)


@settings(IN_PROCESS, max_examples=2500)
@given(steps=program("tampering"), latency=LATENCY)
def test_tampering_with_the_flag_never_resumes(
    bench: Bench, tally: Any, steps: list[Step], latency: float
) -> None:
    _run(bench, tally, steps, latency)


@settings(IN_PROCESS, max_examples=2500)
@given(steps=program("connections"), latency=LATENCY)
def test_disconnects_reconnects_and_restarts(
    bench: Bench, tally: Any, steps: list[Step], latency: float
) -> None:
    _run(bench, tally, steps, latency)


# The smallest cases that broke an invariant once, kept so that every run tries them again.
FOUND: list[list[Step]] = [
    [("tamper", "dangling_link")],
    [("tamper", "looping_link")],
    [("tamper", "fifo")],
    [("halt", "A"), ("tamper", "rm")],
    [("halt", "A"), ("tamper", "rm"), ("restart", "B")],
    [("race", "A", "halt")],
    [("race", "A", "resume")],
    [("halt", "A"), ("reduce", "A")],
    [("submit", "A", "p1", "rest", "BUY"), ("drop", "A", "p1"), ("halt", "B"), ("reconnect", "A", "p1")],
    [
        ("submit", "A", "p1", "rest", "BUY"),
        ("halt", "A"),
        ("resume", "A"),
        ("submit", "A", "p1", "rest", "BUY"),
        ("halt", "A"),
    ],
    [
        ("slow", "A", "p1"),
        ("halt", "A"),
        ("wait",),
        ("resume", "A"),
        ("submit", "A", "p2", "rest", "BUY"),
        ("halt", "A"),
    ],
]


def with_found(test: Callable[..., None]) -> Callable[..., None]:
    for steps in reversed(FOUND):
        test = example(steps=steps, latency=0.0)(test)
    return test


@settings(IN_PROCESS, max_examples=2500)
@with_found
@given(steps=program("everything"), latency=LATENCY)
def test_everything_interleaved(bench: Bench, tally: Any, steps: list[Step], latency: float) -> None:
    _run(bench, tally, steps, latency)


# -- across two real processes ------------------------------------------------------------------

CHILD = Path(__file__).with_name("interleavings_child.py")
TESTS = Path(__file__).resolve().parent.parent
CROSS_STEPS: tuple[st.SearchStrategy[Step], ...] = (
    *TRADING,
    HALT,
    RESUME,
    REDUCE,
    st.tuples(st.just("cross_race"), WHO),
    TAMPER,
    DROP,
    RECONNECT,
    RESTART,
)


class Child:
    """The second process, driven over its standard input and output."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, root: Path) -> Child:
        # The child imports the rig, which imports ``support`` from tests/, as pytest's path does.
        path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "PYTHONPATH": path}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(root),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        child = cls(process)
        assert await child._answer() == {"ready": True}
        return child

    async def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("the second process ended")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the second process failed: {answer['error']}")
        return answer

    def send(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return await self._answer()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.send("quit")
            async with asyncio.timeout(10):
                await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class CrossBench:
    """This process runs stack A; a real second process runs stack B on the same folder. Both
    rely on their own watch tasks to see each other's halts, as separate programs do."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.loop = loop
        self.a = Stack("A", root, poll_interval_ms=20)
        self.child: Child | None = None
        self.watch = FifoWatch(root)
        self.fifo_opened = 0
        self.tasks: list[asyncio.Task[object]] = []
        self.halts: list[list[int]] = []  # [on disk at, resumed at] in monotonic ns
        self.tampered = False
        self.since: datetime | None = None
        # Restarted while nothing on disk said a halt was in force: not held to it (see Model).
        self.forgetful: dict[str, int] = {}

    async def start(self) -> None:
        await self.a.start()
        self.child = await Child.start(self.root)

    async def stop(self) -> None:
        await self._drain()
        if self.child is not None:
            await self.child.stop()
        await self.a.stop()
        self.watch.stop()

    async def _drain(self) -> None:
        tasks, self.tasks = self.tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def b(self) -> Child:
        assert self.child is not None
        return self.child

    @property
    def halted(self) -> bool:
        return bool(self.halts) and self.halts[-1][1] == 1 << 62

    def _halt(self, ns: int) -> None:
        if not self.halted:
            self.halts.append([ns, 1 << 62])

    def _resume(self, ns: int) -> None:
        if self.halted:
            self.halts[-1][1] = ns
        self.forgetful.clear()

    async def reset(self, latency: float) -> None:
        await self._drain()
        await self.b.ask("drain")
        clear_tampering(self.root)
        self.since = datetime.now(UTC)
        await self.a.runtime.execution.resume("next case", source="interleavings")
        await self.b.ask("reset", latency=latency)
        for name, broker in self.a.brokers.items():
            broker.faults.clear()
            if latency:
                broker.faults.hang_seconds, broker.faults.hang_next = latency, math.inf
                broker.faults.hang_methods = frozenset({"place_order"})
            if not (broker.is_connected() and self.a.runtime.manager.is_available(name)):
                await self.a.runtime.manager.connect(name)
            await broker.cancel_all_orders()
            broker.places.clear()
        self.a.poll()
        self.fifo_opened = self.watch.opened
        self.halts, self.tampered = [], False
        self.forgetful.clear()

    async def step(self, step: Step) -> None:
        what, *args = step
        who = args[0] if args and args[0] in ("A", "B") else None
        a = self.a.runtime.execution
        if what in ("submit", "fire", "split"):
            kind, side = (args[2], args[3]) if what != "split" else (args[1], args[2])
            account = args[1] if what != "split" else None
            if who == "B":
                await self.b.ask(what, account=account, kind=kind, side=side)
            elif what == "split":
                await a.submit_distributed(request(kind, None, side))
            elif what == "submit":
                await a.submit(request(kind, account, side))
            else:
                self.tasks.append(asyncio.ensure_future(a.submit(request(kind, account, side))))
        elif what == "halt":
            if who == "B":
                self._halt((await self.b.ask("halt"))["ns"])
            else:
                a.halt_now("halt step", source="interleavings")
                self._halt(time.monotonic_ns())
            self.tampered = False
        elif what == "resume":
            if who == "B":
                self._resume((await self.b.ask("resume"))["ns"])
            else:
                self._resume(time.monotonic_ns())
                await a.resume("resume step", source="interleavings")
            self.tampered = False
        elif what == "reduce":
            if who == "B":
                await self.b.ask("reduce")
            else:
                await a.reduce_only("reduce step", source="interleavings")
        elif what == "cross_race":
            # One process halts while the other resumes, at the same moment.
            before = time.monotonic_ns()
            if who == "A":
                self.b.send("resume")
                a.halt_now("race halt", source="interleavings")
            else:
                self.b.send("halt")
                await a.resume("race resume", source="interleavings")
            await self.b._answer()
            self._resume(before)
            if flag_present(self.root):
                self._halt(time.monotonic_ns())
            self.tampered = False
        elif what == "tamper":
            if tamper(self.root, args[0]):
                self._halt(time.monotonic_ns())
                self.tampered = True
        elif what in ("drop", "reconnect"):
            account = args[1]
            if who == "B":
                await self.b.ask(what, account=account)
            elif what == "drop":
                await self.a.runtime.manager.disconnect(account)
            else:
                await self.a.runtime.manager.connect(account)
        elif what == "restart":
            if who == "B":
                await self.b.ask("restart")
            else:
                await self.a.restart()
            if self.halted and not flag_present(self.root):
                if last_row(self.a.runtime, None, ["halt", "resume"]) != "halt":
                    self.forgetful[who or "A"] = time.monotonic_ns()
        else:
            raise ValueError(what)

    async def check(self, step: Step | None) -> None:
        if self.watch.opened != self.fifo_opened:
            self.fifo_opened = self.watch.opened
            raise InvariantBroken("a process opened the FIFO at the flag path")
        if self.halted:
            states = {"A": self.a.state.value, "B": (await self.b.ask("state"))["state"]}
            held = {label: state for label, state in states.items() if label not in self.forgetful}
            if any(state != TradingState.HALTED.value for state in held.values()):
                raise InvariantBroken(f"tampering made a process trade: {states} while a halt is in force")
        places = [(ns, coid, where) for _seq, ns, coid, where in self.a.places()]
        places += [tuple(p) for p in (await self.b.ask("places"))["places"]]
        for ns, coid, where in places:
            label = str(where).split("/")[0]
            if label in self.forgetful and ns > self.forgetful[label]:
                continue
            if any(start < ns < end for start, end in self.halts):
                raise InvariantBroken(
                    f"an order reached a broker after the halt was on disk: {coid} at {where}"
                )
        problem = journal_disagreement(self.a.runtime, self.since, self.root, tampered=self.tampered)
        if problem is not None:
            raise InvariantBroken(problem)
        if not self.halted:
            return
        left: list[str] = []
        deadline = time.monotonic() + 1.0
        while True:
            left = []
            if "A" not in self.forgetful:
                left += [f"A/{name}:{o.client_order_id}" for name, o in self.a.connected_working()]
            if "B" not in self.forgetful:
                left += (await self.b.ask("working"))["working"]
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        if left and step is not None and step[0] == "reconnect":
            raise InvariantBroken(f"working after a reconnect while halted: {left}")
        if left:
            raise InvariantBroken(f"working at a connected broker a second after the halt: {left}")

    async def case(self, steps: list[Step], latency: float) -> None:
        await self.reset(latency)
        for step in steps:
            await self.step(step)
            await self.check(step)
        await self._drain()
        await self.b.ask("drain")
        await self.check(None)


@pytest.fixture
def cross_bench(fast_folder: Path) -> Iterator[CrossBench]:
    loop = asyncio.new_event_loop()
    made = CrossBench(fast_folder / "state", loop)
    try:
        loop.run_until_complete(made.start())
        yield made
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(made.stop())
        loop.close()


@settings(IN_PROCESS, max_examples=300)
@given(steps=st.lists(st.one_of(*CROSS_STEPS), min_size=1, max_size=6), latency=LATENCY)
def test_two_real_processes(cross_bench: CrossBench, tally: Any, steps: list[Step], latency: float) -> None:
    _counted(
        "across two processes",
        tally,
        lambda: cross_bench.loop.run_until_complete(cross_bench.case(steps, latency)),
    )
