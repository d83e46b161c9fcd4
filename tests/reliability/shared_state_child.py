"""A process sharing a state folder with others, driven by the test over stdin and stdout.

``halts FOLDER SEED``: for each line ``go N`` on stdin, N random halts and resumes, then ``done``.
``orders FOLDER NAME``: an execution service with a 5/s, burst 5 rate limit; writes ``ready``,
waits for ``go`` on stdin, sends five orders at once and prints how many the
rate limit let through.
"""

from __future__ import annotations

import asyncio
import random
import sys
from decimal import Decimal
from pathlib import Path

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker


def halts(folder: Path, seed: int) -> None:
    rng = random.Random(seed)
    journal = Journal(folder / "journal.sqlite")
    switch = KillSwitch(folder, journal=journal, env={})
    for line in sys.stdin:
        count = int(line.split()[1])
        for step in range(count):
            if rng.random() < 0.5:
                switch.halt(f"halt {seed}/{step}", source=f"p{seed}")
            else:
                switch.resume(f"resume {seed}/{step}", source=f"p{seed}")
        print("done", flush=True)
    journal.close()


async def orders(folder: Path, name: str) -> None:
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("acct", SimBroker("acct", prices={"AAPL": 100}, initial_cash=10**7), default=True)
    await manager.connect_all()
    journal = Journal(folder / "journal.sqlite")
    switch = KillSwitch(folder, journal=journal, env={})
    risk = RiskEngine(RiskLimits(max_orders_per_second=Decimal(5), burst=5))
    service = ExecutionService(manager, switch, risk=risk, journal=journal)
    await service.start()
    (folder / f"ready-{name}").touch()
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    sent = await asyncio.gather(
        *(service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1)) for _ in range(5))
    )
    passed = sum(1 for order in sent if order.reject_code != "RATE_LIMIT")
    print(passed, flush=True)
    await service.stop()
    await manager.disconnect_all()
    journal.close()


if __name__ == "__main__":
    mode, where, arg = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "halts":
        halts(where, int(arg))
    else:
        asyncio.run(orders(where, arg))
