"""The second process of the interleaving tests: one stack (the runtime over paper brokers of its
own) on the state folder it is given, driven one command at a time.

    python interleavings_child.py STATE_DIR

Each line read is a JSON command ``{"op": ..., ...}``; each answer is one JSON line. It prints
``{"ready": true}`` once started and stops at ``{"op": "quit"}`` or the end of its input. Times are
``time.monotonic_ns()``, which every process on the machine reads from the same clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from interleavings_rig import Stack, request

from brokers.models import Order

LATENCY_METHODS = frozenset({"place_order"})


class Child:
    def __init__(self, root: Path) -> None:
        # The watch task ticks every 20 ms, so a halt from elsewhere is seen well within a second.
        self.stack = Stack("B", root, poll_interval_ms=20)
        self.tasks: list[asyncio.Task[object]] = []

    async def drain(self) -> None:
        tasks, self.tasks = self.tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        stack = self.stack
        execution = stack.runtime.execution
        if op == "reset":
            await self.drain()
            await execution.resume("next case", source="interleavings child")
            for name, broker in stack.brokers.items():
                broker.faults.clear()
                if command.get("latency"):
                    broker.faults.hang_seconds, broker.faults.hang_next = command["latency"], math.inf
                    broker.faults.hang_methods = LATENCY_METHODS
                if not (broker.is_connected() and stack.runtime.manager.is_available(name)):
                    await stack.runtime.manager.connect(name)
                await broker.cancel_all_orders()
                broker.places.clear()
            stack.poll()
            return {}
        if op in ("submit", "fire"):
            call = execution.submit(request(command["kind"], command["account"], command["side"]))
            if op == "fire":
                self.tasks.append(asyncio.ensure_future(call))
                return {}
            order: Order = await call
            return {"status": order.status.value}
        if op == "split":
            await execution.submit_distributed(request(command["kind"], None, command["side"]))
            return {}
        if op == "halt":
            execution.halt_now("halt from the second process", source="interleavings child")
            return {"ns": time.monotonic_ns()}
        if op == "resume":
            before = time.monotonic_ns()
            await execution.resume("resume from the second process", source="interleavings child")
            return {"ns": before}
        if op == "reduce":
            await execution.reduce_only("reduce-only from the second process", source="interleavings child")
            return {}
        if op == "drop":
            await stack.runtime.manager.disconnect(command["account"])
            return {}
        if op == "reconnect":
            await stack.runtime.manager.connect(command["account"])
            return {}
        if op == "restart":
            await stack.restart()
            return {}
        if op == "state":
            # As the process itself knows it: what its watch task has seen, and the switch now.
            return {"state": stack.state.value}
        if op == "working":
            return {"working": [f"B/{name}:{o.client_order_id}" for name, o in stack.connected_working()]}
        if op == "places":
            return {"places": [[ns, coid, where] for _seq, ns, coid, where in stack.places()]}
        if op == "drain":
            await self.drain()
            return {}
        raise ValueError(f"unknown command {op!r}")


def say(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


async def main(root: Path) -> None:
    child = Child(root)
    await child.stack.start()
    say({"ready": True})
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["op"] == "quit":
                break
            try:
                answer = await child.handle(command)
            except Exception as exc:  # the parent shows it as the case's failure
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            say(answer)
    finally:
        await child.drain()
        await child.stack.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
