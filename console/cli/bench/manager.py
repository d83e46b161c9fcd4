"""MultiBrokerManager figures: fan-out refresh and cancel-all across brokers.

Eight paper brokers each answer every call after ``LATENCY`` seconds. A refresh of all eight
must take under ``REFRESH_BUDGET_MS`` (one round trip plus overhead, not eight), and so must a
cancel-all across them. ``run()`` returns the figures; ``python -m console.cli.bench.manager``
prints them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from decimal import Decimal
from typing import Any

from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderType, Side
from brokers.sim import SimBroker

BROKERS = 8
LATENCY = 0.1
REFRESH_BUDGET_MS = 150.0
CANCEL_BUDGET_MS = 150.0
ROUNDS = 5
ORDERS_PER_BROKER = 25


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def _build() -> tuple[MultiBrokerManager, list[SimBroker]]:
    brokers = [SimBroker(f"paper-{i}", prices={"AAPL": 200}, seed=i) for i in range(BROKERS)]
    manager = MultiBrokerManager(timeout=2.0)
    for broker in brokers:
        manager.add_broker(broker.name, broker)
    await manager.connect_all()
    # Resting orders far from the market, placed before latency is switched on so that setting
    # up costs nothing; the cancel-all below then has real work at every broker.
    for broker in brokers:
        for _ in range(ORDERS_PER_BROKER):
            await broker.place_order(
                OrderRequest(
                    symbol="AAPL",
                    side=Side.BUY,
                    quantity=Decimal(1),
                    order_type=OrderType.LIMIT,
                    limit_price=Decimal(100),
                )
            )
        broker.latency = LATENCY
    return manager, brokers


async def run() -> dict[str, Any]:
    manager, brokers = await _build()
    try:
        # One broker after another: what the fan-out saves, measured in the same run.
        started = time.perf_counter()
        for broker in brokers:
            await asyncio.gather(broker.get_balance(), broker.get_positions(), broker.get_fx_rates())
        sequential = time.perf_counter() - started

        refreshes = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            snapshot = await manager.refresh()
            refreshes.append(time.perf_counter() - started)
            if snapshot.stale or len(snapshot.balances) != BROKERS:
                raise RuntimeError(f"refresh lost accounts: {sorted(snapshot.stale)} stale")

        started = time.perf_counter()
        results = await manager.cancel_all_orders()
        cancel = time.perf_counter() - started
        cancelled = sum(result.cancelled for result in results.values())
        failed = sorted(name for name, result in results.items() if not result.ok)
    finally:
        await manager.stop()
        await manager.disconnect_all()

    refresh_median = statistics.median(refreshes)
    return {
        "brokers": BROKERS,
        "broker_latency_ms": _ms(LATENCY),
        "refresh_budget_ms": REFRESH_BUDGET_MS,
        "refresh_median_ms": _ms(refresh_median),
        "refresh_max_ms": _ms(max(refreshes)),
        "refresh_sequential_ms": _ms(sequential),
        "refresh_speedup": round(sequential / refresh_median, 2),
        "refresh_ok": _ms(refresh_median) < REFRESH_BUDGET_MS,
        "cancel_all_budget_ms": CANCEL_BUDGET_MS,
        "cancel_all_ms": _ms(cancel),
        "cancel_all_orders": cancelled,
        "cancel_all_failed_accounts": failed,
        "cancel_all_ok": _ms(cancel) < CANCEL_BUDGET_MS
        and not failed
        and cancelled == BROKERS * ORDERS_PER_BROKER,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
