"""kill -9 in the middle of an order burst: the journal still holds every order the dying process
saw acknowledged, each exactly once.

A broker's answer is committed with the next order's intent or at the end of the loop's turn
(``brokers.journal``), so the kill can take the answer to the last order with it - never its
intent. At most one order is left PENDING, and it is the newest: restart reconciles it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from brokers.journal import Journal
from brokers.models import OrderStatus

BURST = r"""
import asyncio, sys
from pathlib import Path
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest
from brokers.sim import SimBroker

async def main(root):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("sim", SimBroker("sim", prices={"AAPL": 100}, initial_cash=10**12), default=True)
    await manager.connect_all()
    await manager.start()
    journal = Journal(root / "journal.sqlite")
    service = ExecutionService(manager, KillSwitch(root, journal=journal, env={}), journal=journal)
    await service.start()
    print("READY", flush=True)
    n = 0
    while True:
        order = await service.submit(OrderRequest(symbol="AAPL", side="BUY" if n % 2 else "SELL", quantity=1))
        n += 1
        if order.status.value == "FILLED":
            print(order.client_order_id, flush=True)
        if n % 20 == 0:
            await asyncio.sleep(0)

asyncio.run(main(Path(sys.argv[1])))
"""

SEEN_BEFORE_KILL = 300


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_mid_burst_keeps_every_acknowledged_order(tmp_path):
    root = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", BURST, str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    acknowledged: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout.readline().strip() == "READY"
        while len(acknowledged) < SEEN_BEFORE_KILL:
            assert time.monotonic() < deadline, "the burst did not get going"
            line = proc.stdout.readline()
            assert line, "the burst process ended early"
            acknowledged.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        # Whatever it printed before dying was acknowledged too: read the pipe to the end.
        acknowledged.extend(line.strip() for line in proc.stdout if line.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    path = root / "journal.sqlite"
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    with Journal(path) as journal:
        orders = journal.orders()
        rows = Counter(
            (event.client_order_id, event.kind) for event in journal.events(kinds=["intent", "ack"])
        )
    assert len(acknowledged) == len(set(acknowledged)) >= SEEN_BEFORE_KILL
    for client_order_id in acknowledged:
        assert rows[(client_order_id, "intent")] == 1, client_order_id
        assert rows[(client_order_id, "ack")] <= 1, client_order_id
    # Every answer but the newest is committed: the next order's intent commits it.
    for client_order_id in acknowledged[:-1]:
        assert orders[client_order_id].status is OrderStatus.FILLED, client_order_id
        assert rows[(client_order_id, "ack")] == 1, client_order_id
    statuses = [order.status for order in orders.values()]
    assert statuses.count(OrderStatus.PENDING) <= 1
    assert set(statuses) <= {OrderStatus.PENDING, OrderStatus.FILLED}
    if OrderStatus.PENDING in statuses:  # in flight or answered in the turn the kill cut short
        assert statuses[-1] is OrderStatus.PENDING
