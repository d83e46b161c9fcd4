"""No order reaches a broker after ``halt()`` has returned, whatever else runs at the same time.

Many tasks submit, halt and resume in random interleavings. The broker records the moment each
``place_order`` is entered in the same log as the halts and resumes, and the log is then checked:
between a halt returning and the next resume being called, no ``place_order`` may start.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import FLAG_NAME, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus
from brokers.sim import SimBroker

OPS = [
    "submit",
    "submit",
    "submit",
    "limit",
    "distributed",
    "halt",
    "halt_switch",
    "halt_file",
    "resume",
    "yield",
]


class RecordingSim(SimBroker):
    def __init__(self, log: list, suspend: bool, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log
        self.suspend = suspend

    async def place_order(self, request):
        self.log.append(("place", request.client_order_id))
        if self.suspend:
            await asyncio.sleep(0)  # in flight at the broker: a halt may land now, and that is fine
        return await super().place_order(request)


def violations(log: list) -> list[int]:
    """Positions in the log of every place_order entered while a finished halt was in force."""
    halted = False
    open_halts: set[int] = set()
    bad = []
    for position, (kind, token) in enumerate(log):
        if kind == "halt_called":
            open_halts.add(token)
        elif kind == "halt_returned":
            # A resume called while this halt was still running has already undone it.
            if token in open_halts:
                halted = True
                open_halts.discard(token)
        elif kind == "resume_called":
            halted = False
            open_halts.clear()
        elif kind == "place" and halted:
            bad.append(position)
    return bad


async def scenario(root: Path, programs: list[list[str]], suspend: bool) -> tuple[list, list]:
    log: list = []
    manager = MultiBrokerManager(heartbeat_interval=3600)
    for name in ("a", "b"):
        broker = RecordingSim(log, suspend, name, prices={"AAPL": 100}, initial_cash=10**9)
        manager.add_broker(name, broker, default=(name == "a"))
    await manager.connect_all()
    await manager.start()
    journal = Journal(root / "journal.sqlite")
    switch = KillSwitch(root, journal=journal, env={})
    service = ExecutionService(manager, switch, journal=journal)
    await service.start()
    results = []
    tokens = iter(range(10**9))

    async def halting(action):
        token = next(tokens)
        log.append(("halt_called", token))
        await action()
        log.append(("halt_returned", token))

    async def switch_halt():
        switch.halt("property", source="test")

    async def file_halt():
        (root / FLAG_NAME).write_text("")  # what another process (or a touch) does

    async def run(program: list[str]) -> None:
        for op in program:
            if op == "submit":
                results.append(await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1)))
            elif op == "limit":
                results.append(
                    await service.submit(
                        OrderRequest(
                            symbol="AAPL", side="SELL", quantity=1, order_type="LIMIT", limit_price=150
                        )
                    )
                )
            elif op == "distributed":
                results.extend(
                    await service.submit_distributed(OrderRequest(symbol="AAPL", side="BUY", quantity=2))
                )
            elif op == "halt":
                await halting(lambda: service.halt("property", source="test"))
            elif op == "halt_switch":
                await halting(switch_halt)
            elif op == "halt_file":
                await halting(file_halt)
            elif op == "resume":
                log.append(("resume_called", None))
                await service.resume("property", source="test")
            else:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(run(program) for program in programs))
    finally:
        await service.stop()
        await manager.stop()
        await manager.disconnect_all()
        journal.close()
    return log, results


@settings(max_examples=40, deadline=None)
@given(
    programs=st.lists(st.lists(st.sampled_from(OPS), min_size=1, max_size=10), min_size=2, max_size=8),
    suspend=st.booleans(),
)
def test_no_order_reaches_a_broker_after_halt_returned(programs, suspend):
    with tempfile.TemporaryDirectory() as folder:
        log, results = asyncio.run(scenario(Path(folder), programs, suspend))
    assert violations(log) == []
    placed = {token for kind, token in log if kind == "place"}
    for order in results:
        assert order.status is not OrderStatus.PENDING
        if order.reject_code == "SYSTEM_HALTED":
            assert order.client_order_id not in placed


def test_a_halt_in_the_middle_of_a_busy_burst(tmp_path):
    """Fifty tasks keep submitting while one halts: orders went before, none after."""
    burst = [["submit", "yield"] * 20 for _ in range(50)]
    halter = ["yield"] * 30 + ["halt"]
    log, results = asyncio.run(scenario(tmp_path, [*burst, halter], suspend=True))
    halt_at = next(i for i, (kind, _) in enumerate(log) if kind == "halt_returned")
    assert violations(log) == []
    assert any(kind == "place" for kind, _ in log[:halt_at])
    assert not any(kind == "place" for kind, _ in log[halt_at:])
    assert any(order.reject_code == "SYSTEM_HALTED" for order in results)


def test_the_checker_catches_a_late_order():
    assert violations([("halt_called", 1), ("halt_returned", 1), ("place", "X")]) == [2]
    assert (
        violations([("halt_called", 1), ("resume_called", None), ("halt_returned", 1), ("place", "X")]) == []
    )
    assert violations([("halt_called", 1), ("place", "X"), ("halt_returned", 1)]) == []
