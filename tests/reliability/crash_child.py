"""The process the crash-recovery tests kill: the real runtime trading against a loopback Alpaca.

    python crash_child.py STATE_DIR BASE_URL burst COUNT   submit COUNT orders, 4 at a time
    python crash_child.py STATE_DIR BASE_URL halt COUNT    rest COUNT orders, halt, keep trying

It prints READY once connected, then the client order id of every order the broker acknowledged
(one line each, flushed), HALTED once a halt has returned, and waits to be killed. Secrets come
from ALPACA_API_KEY and ALPACA_SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import sys

from brokers.config import Config, parse_config
from brokers.models import OrderRequest, OrderStatus
from brokers.runtime import build_runtime

ACKNOWLEDGED = {
    OrderStatus.SUBMITTED,
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.CANCELLED,
}


def config_for(state_dir: str, base_url: str) -> Config:
    return parse_config(
        {
            "state_dir": state_dir,
            "accounts": [
                {
                    "name": "alpaca",
                    "type": "alpaca",
                    "base_url": base_url,
                    "timeout": 5,
                    "reconnect_delay": 0.05,
                }
            ],
        },
        where="crash test",
    )


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def burst(runtime, count: int) -> None:
    async def one(n: int) -> None:
        side = "SELL" if n % 3 == 0 else "BUY"
        # One order in five rests far from the market, so some are still working at the kill.
        away = {"order_type": "LIMIT", "limit_price": "150" if side == "BUY" else "250"} if n % 5 == 0 else {}
        order = await runtime.execution.submit(
            OrderRequest(symbol="AAPL", side=side, quantity=1 + n % 4, **away)
        )
        if order.status in ACKNOWLEDGED:
            say(order.client_order_id)

    for start in range(0, count, 4):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 4))))
    say("DONE")


async def halt(runtime, count: int) -> None:
    for n in range(count):
        order = await runtime.execution.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=1 + n, order_type="LIMIT", limit_price="150")
        )
        if order.status in ACKNOWLEDGED:
            say(order.client_order_id)
    await runtime.execution.halt("halted before the crash", source="crash test")
    say("HALTED")
    while True:
        refused = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
        if refused.reject_code != "SYSTEM_HALTED":
            say(f"NOT REFUSED {refused.client_order_id}")
        await asyncio.sleep(0.01)


async def main(state_dir: str, base_url: str, mode: str, count: int) -> None:
    runtime = build_runtime(config_for(state_dir, base_url))
    await runtime.start()
    say("READY")
    await (burst if mode == "burst" else halt)(runtime, count)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
