"""Desk benchmark: a halt made in one process, visible in eight others on the same desk.

Each of eight child processes keeps its own state folder and its own ``DeskLink``, and notes the
wall-clock time at which its kill switch turned HALTED (the same machine, so one clock). The
parent halts through its own link, then resumes, twenty times; every child's delay from the halt
call is a sample. The desk is the config's ``[desk] dsn`` when ``DESK_BENCH_DSN`` names one,
else a private PostgreSQL cluster started from the installed server binaries.

Run alone: ``python -m console.cli.bench.desk``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROCESSES = 8
ROUNDS = 20
TARGET_P99_MS = 50.0
# The order path with the desk journal, on one process.
JOURNAL_ORDERS = 10_000
TARGET_ORDERS_PER_SECOND = 2_000
TARGET_SUBMIT_P99_MS = 5.0

_CHILD = """
import asyncio, sys, time
from pathlib import Path
from brokers.desk import DeskLink, DeskSettings
from brokers.enums import TradingState
from brokers.killswitch import KillSwitch

async def main():
    switch = KillSwitch(Path(sys.argv[2]), env={})
    loop = asyncio.get_running_loop()
    def seen(state, info):
        print(f"{state.value} {time.time():.6f}", flush=True)
    switch.subscribe(seen)
    link = DeskLink(switch, DeskSettings(dsn=sys.argv[1], poll_ms=250), name="bench")
    await link.start()
    if not await link.wait_connected(20):
        print("unreachable", flush=True)
        return
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # until the parent is done
    await link.stop()

asyncio.run(main())
"""


async def _expect(child: asyncio.subprocess.Process, word: str, limit: float) -> float | None:
    assert child.stdout is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(child.stdout.readline(), max(0.01, deadline - time.monotonic()))
        text = line.decode().strip()
        if not text:
            return None
        kind, _, at = text.partition(" ")
        if kind == word:
            return float(at) if at else 0.0
    return None


async def _measure(dsn: str, folder: Path) -> dict[str, Any]:
    from brokers.desk import DeskLink, DeskSettings
    from brokers.killswitch import KillSwitch

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            dsn,
            str(folder / f"child-{index}"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # their log lines say what the figures say
            env=env,
        )
        for index in range(PROCESSES)
    ]
    switch = KillSwitch(folder / "parent", env={})
    link = DeskLink(switch, DeskSettings(dsn=dsn, poll_ms=250), name="bench parent")
    samples: list[float] = []
    missed = 0
    try:
        for child in children:
            if await _expect(child, "ready", 60) is None:
                raise RuntimeError("a child process could not reach the desk")
        await link.start()
        if not await link.wait_connected(10):
            raise RuntimeError("the desk cannot be reached")
        for _round in range(ROUNDS):
            started = time.time()
            switch.halt("desk benchmark", source="bench")
            seen = await asyncio.gather(*(_expect(child, "HALTED", 5) for child in children))
            samples.extend((at - started) * 1000 for at in seen if at is not None)
            missed += sum(at is None for at in seen)
            switch.resume("desk benchmark round done", source="bench")
            await asyncio.gather(*(_expect(child, "ACTIVE", 5) for child in children))
    finally:
        await link.stop()
        for child in children:
            if child.stdin is not None:
                child.stdin.write(b"\n")
                await child.stdin.drain()
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
    samples.sort()
    p50 = statistics.median(samples) if samples else None
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] if samples else None
    return {
        "processes": PROCESSES,
        "rounds": ROUNDS,
        "samples": len(samples),
        "missed": missed,
        "halt_visible_p50_ms": None if p50 is None else round(p50, 2),
        "halt_visible_p99_ms": None if p99 is None else round(p99, 2),
        "halt_visible_max_ms": None if not samples else round(samples[-1], 2),
    }


async def _order_path(dsn: str, folder: Path) -> dict[str, Any]:
    """Orders through ``ExecutionService`` with the desk journal, and how long after the last
    one the desk held every row."""
    from brokers.desk import DeskSettings
    from brokers.desk.journal import DeskJournal
    from brokers.desk.store import DeskStore
    from brokers.execution import ExecutionService
    from brokers.killswitch import KillSwitch
    from brokers.manager import MultiBrokerManager
    from brokers.sim import SimBroker

    from .execution import PRICE, SYMBOL, _latency_figures, _requests, _timed_submits

    settings = DeskSettings(dsn=dsn)
    store = await DeskStore.connect(settings)
    try:
        await store.migrate()
    finally:
        await store.close()
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker(
        "bench", SimBroker("bench", prices={SYMBOL: PRICE}, initial_cash=10**9, seed=1), default=True
    )
    await manager.connect_all()
    await manager.start()
    journal = DeskJournal(folder / "journal.sqlite", settings=settings, process="bench")
    service = ExecutionService(manager, KillSwitch(folder, journal=journal, env={}), journal=journal)
    await service.start()
    try:
        if not await asyncio.to_thread(journal.copier.wait_ready, 10):
            raise RuntimeError(f"the desk journal cannot be written: {journal.copier.problem}")
        await _timed_submits(service, _requests(500), 10)
        elapsed, _cpu, samples = await _timed_submits(service, _requests(JOURNAL_ORDERS), 10)
        journal.flush()
        written = time.monotonic()
        last = journal.events(last=1)[-1].id
        while journal.copier.copied_up_to < last:
            if time.monotonic() - written > 30:
                raise RuntimeError("the desk journal fell more than 30 s behind")
            await asyncio.sleep(0.005)
        caught_up_ms = (time.monotonic() - written) * 1000
        refused = sum(order.status.value == "REJECTED" for order in service.orders())
    finally:
        await service.stop()
        await manager.stop()
        await manager.disconnect_all()
        journal.close()
    return {
        "orders": JOURNAL_ORDERS,
        "orders_per_second": round(JOURNAL_ORDERS / elapsed),
        "refused": refused,
        "desk_caught_up_ms": round(caught_up_ms, 1),
        **_latency_figures("submit", samples),
    }


async def run() -> dict[str, Any]:
    from .postgres import ClusterError, private_cluster

    folder = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    dsn = os.environ.get("DESK_BENCH_DSN")
    try:
        if dsn:
            result = await _measure(dsn, folder)
            result["journal"] = await _order_path(dsn, folder / "orders")
            result["desk"] = "DESK_BENCH_DSN"
        else:
            with private_cluster("desk-bench-pg-") as cluster:
                result = await _measure(cluster.dsn, folder)
                result["journal"] = await _order_path(cluster.dsn, folder / "orders")
            result["desk"] = "a private PostgreSQL cluster on this machine"
    except (ClusterError, RuntimeError) as exc:
        return {
            "figures": [
                {
                    "name": f"Desk halt visible in {PROCESSES} processes, p99",
                    "value": None,
                    "unit": "ms",
                    "op": "<",
                    "target": TARGET_P99_MS,
                    "detail": str(exc),
                }
            ]
        }
    p99 = result["halt_visible_p99_ms"]
    result["figures"] = [
        {
            "name": f"Desk halt visible in {PROCESSES} processes, p50",
            "value": result["halt_visible_p50_ms"],
            "unit": "ms",
        },
        {
            "name": f"Desk halt visible in {PROCESSES} processes, p99",
            "value": p99,
            "unit": "ms",
            "op": "<",
            "target": TARGET_P99_MS,
            "ok": result["missed"] == 0,
            "detail": f"{result['samples']} samples, {result['missed']} missed",
        },
        {
            "name": "Order path with the desk journal",
            "value": result["journal"]["orders_per_second"],
            "unit": "orders/s",
            "op": ">=",
            "target": TARGET_ORDERS_PER_SECOND,
            "ok": result["journal"]["refused"] == 0,
            "detail": (
                f"{result['journal']['orders']:,} orders, {result['journal']['refused']} refused; "
                f"the desk held every row {result['journal']['desk_caught_up_ms']} ms after the last"
            ),
        },
        {
            "name": "Order path with the desk journal, submit p99",
            "value": round(result["journal"]["submit_p99_us"] / 1000, 3),
            "unit": "ms",
            "op": "<",
            "target": TARGET_SUBMIT_P99_MS,
        },
    ]
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2, default=str))
