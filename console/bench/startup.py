"""Startup time: a new process, from launch to the console's first screen mounted and painted.

Each run starts a fresh interpreter that opens the demo console headless and notes the wall
clock when the first screen is ready (Textual's auto-pilot starts once the app is ready; one
``pilot.pause()`` lets the first refresh through). The parent notes the clock before the launch,
so interpreter start-up and every import count. Also measured, for information: the cold import
of the console, and ``trading-console halt`` from launch to the flag on disk.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 3
TARGET_MS = 1000.0
SIZE = (160, 48)

CHILD = """
import json, sys, time
started = time.perf_counter()
from console.app import make_app
from brokers.config import demo_config
imported = time.perf_counter() - started
app = make_app(demo_config(), start_feed=False, cursor_blink=False)
ready = {}

async def first_screen(pilot):
    await pilot.pause()
    ready["wall"] = time.time()
    pilot.app.exit()

app.run(headless=True, size=(%d, %d), auto_pilot=first_screen)
print(json.dumps({"ready_wall": ready["wall"], "import_s": imported}))
"""


def _env(home: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "SYSTEM_HALTED"}
    # A private home: the benchmark must not write into the user's journal or halt flag.
    env["TRADING_CONSOLE_HOME"] = home
    return env


def _one_start(home: str) -> tuple[float, float]:
    code = CHILD % SIZE
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(home),
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the console did not start: {done.stderr.strip()[-500:]}")
    line = done.stdout.strip().splitlines()[-1]
    data = json.loads(line)
    return (data["ready_wall"] - launched) * 1000, data["import_s"] * 1000


def _halt_command(home: str) -> float:
    launched = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "console.cli", "halt", "--reason", "startup benchmark"],
                          capture_output=True, text=True, env=_env(home), timeout=60, check=False)
    elapsed = (time.perf_counter() - launched) * 1000
    if done.returncode != 0 or not (Path(home) / "state" / "SYSTEM_HALTED").exists():
        raise RuntimeError(f"`trading-console halt` failed: {done.stderr.strip()[-500:]}")
    return elapsed


def run(runs: int = RUNS) -> dict[str, Any]:
    starts: list[float] = []
    imports: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as home:
        for _ in range(runs):
            startup, imported = _one_start(home)
            starts.append(startup)
            imports.append(imported)
        halt_ms = _halt_command(home)
    startup_ms = statistics.median(starts)
    return {
        "runs": runs,
        "startup_ms": round(startup_ms, 1),
        "startup_runs_ms": [round(value, 1) for value in starts],
        "startup_target_ms": TARGET_MS,
        "startup_ok": startup_ms < TARGET_MS,
        "import_ms": round(statistics.median(imports), 1),
        "halt_command_ms": round(halt_ms, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
