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


async def run() -> dict[str, Any]:
    from .postgres import ClusterError, private_cluster

    folder = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    dsn = os.environ.get("DESK_BENCH_DSN")
    try:
        if dsn:
            result = await _measure(dsn, folder)
            result["desk"] = "DESK_BENCH_DSN"
        else:
            with private_cluster("desk-bench-pg-") as cluster:
                result = await _measure(cluster.dsn, folder)
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
    ]
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2, default=str))
