"""Order-path benchmark: market orders through ExecutionService into SimBroker, journal on.

``await run()`` returns the figures as a dict; ``python -m console.cli.bench.execution``
prints them. Everything lives in a temporary folder: the user's journal and halt flag are never
touched.

Goals (issue 3): at least 10,000 orders/s with p99 under 1 ms, and a submit while halted
rejected in under 50 µs.

What is measured: one task submits market orders one after another, as a script sending a burst
would. The manager's relay of broker updates and the service's handling of them run alongside
(the loop yields every ``yield_every`` orders), so the three stream events each order produces
(accepted, fill, filled) are applied and counted in the elapsed time; the per-order latency is
the ``submit`` call alone. The garbage collector stays on; objects built during set-up are
frozen out of it and young collections made rarer first, as the console does once its runtime
is up (``console.tui.tuning``). How many collections ran during the timed orders, and how long they took, is
reported with the figures.

The whole thing - a fresh temporary folder, journal, manager and service, then 20,000 orders -
runs ``rounds`` times (three by default), and the figures are those of the median round by
throughput, with every round's throughput and p99 listed beside them. On a shared virtual
machine the same code measures up to a third slower from one minute to the next (the CPU time
per order moves with it); one round alone says as much about the neighbours as about the code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, Side
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker
from console.tui.tuning import GcTuning

SYMBOL = "AAPL"
PRICE = Decimal("100")


def _percentile(sorted_ns: list[int], fraction: float) -> float:
    index = min(len(sorted_ns) - 1, int(len(sorted_ns) * fraction))
    return sorted_ns[index] / 1000


def _latency_figures(prefix: str, samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        f"{prefix}_p50_us": round(_percentile(ordered, 0.50), 1),
        f"{prefix}_p99_us": round(_percentile(ordered, 0.99), 1),
        f"{prefix}_max_us": round(ordered[-1] / 1000, 1),
        f"{prefix}_mean_us": round(statistics.fmean(ordered) / 1000, 1),
    }


class _GcWatch:
    """Counts and times the collector's runs while ``on`` is set."""

    def __init__(self) -> None:
        self.on = False
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.counts[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started


def _requests(count: int) -> list[OrderRequest]:
    # Alternating sides keep the position (and so the buying power needed) bounded.
    return [
        OrderRequest(symbol=SYMBOL, side=Side.BUY if i % 2 == 0 else Side.SELL, quantity=Decimal(1))
        for i in range(count)
    ]


async def _timed_submits(
    service: ExecutionService, requests: list[OrderRequest], yield_every: int
) -> tuple[float, float, list[int]]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    record = samples.append
    submit = service.submit
    pause = asyncio.sleep
    cpu_started = time.process_time()
    started = clock()
    for index, request in enumerate(requests, 1):
        before = clock()
        await submit(request)
        record(clock() - before)
        if index % yield_every == 0:
            await pause(0)
    for _ in range(5):  # the last orders' events: broker queue -> manager pump -> service
        await pause(0)
    return (clock() - started) / 1e9, time.process_time() - cpu_started, samples


async def run(
    n: int = 20_000,
    *,
    rounds: int = 3,
    halted_n: int = 5_000,
    warmup: int = 500,
    yield_every: int = 10,
    synchronous: str = "NORMAL",
    with_risk: bool = True,
) -> dict[str, Any]:
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    results = [
        await _round(
            n,
            halted_n=halted_n,
            warmup=warmup,
            yield_every=yield_every,
            synchronous=synchronous,
            with_risk=with_risk,
        )
        for _ in range(rounds)
    ]
    ranked = sorted(results, key=lambda figures: figures["orders_per_second"])
    median = dict(ranked[len(ranked) // 2])
    median["rounds"] = [
        {
            "orders_per_second": figures["orders_per_second"],
            "cpu_us_per_order": figures["cpu_us_per_order"],
            "submit_p99_us": figures["submit_p99_us"],
            "halted_p99_us": figures["halted_p99_us"],
        }
        for figures in results
    ]
    median["python"] = _interpreter()
    return median


def _interpreter() -> str:
    # The same code runs about a fifth slower on a CPython built as a shared library without
    # profile feedback (see the README): a figure means little without the interpreter.
    return (
        f"{platform.python_implementation()} {platform.python_version()} ({os.path.realpath(sys.executable)})"
    )


async def _round(
    n: int, *, halted_n: int, warmup: int, yield_every: int, synchronous: str, with_risk: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as folder:
        root = Path(folder)
        manager = MultiBrokerManager(heartbeat_interval=3600)
        broker = SimBroker("bench", prices={SYMBOL: PRICE}, initial_cash=10**9, seed=1)
        manager.add_broker("bench", broker, default=True)
        await manager.connect_all()
        await manager.start()
        journal = Journal(root / "journal.sqlite", synchronous=synchronous)  # type: ignore[arg-type]
        kill_switch = KillSwitch(root, journal=journal, env={})
        risk = None
        if with_risk:
            # Limits that every order passes, so each check runs in full.
            risk = RiskEngine(
                RiskLimits(
                    max_order_quantity=Decimal(1000),
                    max_order_notional=Decimal(10**6),
                    max_position=Decimal(10**6),
                    max_open_orders=10_000,
                    daily_loss_limit=Decimal(10**9),
                )
            )
        service = ExecutionService(manager, kill_switch, risk=risk, journal=journal)
        await service.start()
        try:
            await _timed_submits(service, _requests(warmup), yield_every)
            requests = _requests(n)
            halted_requests = _requests(halted_n)
            tuning = GcTuning()
            tuning.apply()
            watch = _GcWatch()
            gc.callbacks.append(watch)
            try:
                watch.on = True
                elapsed, cpu, samples = await _timed_submits(service, requests, yield_every)
                watch.on = False
                statuses = Counter(order.status.value for order in service.orders()[-n:])
                kill_switch.halt("benchmark", source="bench")
                halted_elapsed, _, halted_samples = await _timed_submits(
                    service, halted_requests, yield_every
                )
            finally:
                gc.callbacks.remove(watch)
                tuning.restore()
            rejected = sum(
                1 for order in service.orders()[-halted_n:] if order.reject_code == "SYSTEM_HALTED"
            )
            rows = len(journal.events())
        finally:
            await service.stop()
            await manager.stop()
            await manager.disconnect_all()
            journal.close()

    figures: dict[str, Any] = {
        "orders": n,
        "orders_per_second": round(n / elapsed),
        # CPU time is what the order path costs; on a shared machine wall time also counts the
        # time other processes held the cores.
        "cpu_us_per_order": round(cpu / n * 1e6, 1),
        "orders_per_cpu_second": round(n / cpu) if cpu else None,
        **_latency_figures("submit", samples),
        "gc_collections": dict(zip(("gen0", "gen1", "gen2"), watch.counts, strict=True)),
        "gc_us_per_order": round(watch.seconds / n * 1e6, 1),
        "statuses": dict(statuses),
        "journal_rows": rows,
        "journal_synchronous": synchronous,
        "risk_checks": with_risk,
        "halted_orders": halted_n,
        "halted_rejected": rejected,
        "halted_per_second": round(halted_n / halted_elapsed),
        **_latency_figures("halted", halted_samples),
    }
    figures["goal_throughput_met"] = figures["orders_per_second"] >= 10_000
    figures["goal_p99_met"] = figures["submit_p99_us"] < 1000
    figures["goal_halted_met"] = figures["halted_p99_us"] < 50
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
