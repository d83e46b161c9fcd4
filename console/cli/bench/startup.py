"""Startup time: a new process, from launch to a usable console, and on to accounts connected.

"Usable" (``startup_ms``, the figure held to the target): the demo console's main screen has
painted a frame with every pane in it (title, the six panes, key hints, footer; the halt banner
takes no room until trading is halted) and the halt key works. The child waits for the first
frame with all panes laid out, presses the halt key at once and notes the wall clock at the first
frame painted after the console went HALTED, so a key stuck behind start-up work counts. The
accounts need not be connected yet: they may still show as CONNECTING.

"Accounts connected" (``connected_ms``, for information): a separate launch, no key pressed, to
the first frame painted after the runtime started, every account was read and the first balances
and positions are on screen.

The parent notes the clock before each launch, so interpreter start-up and every import count,
the command line's own included (the child imports ``console.cli`` first, as the
``trading-console`` command does). Each launch gets a fresh private home, so every launch starts
alike: not halted, an empty journal. The launches inherit the environment: where it forbids
writing bytecode (``PYTHONDONTWRITEBYTECODE``), every module is compiled from source at every
launch, which then costs more than anything else in start-up. Also measured, for information:
"usable" again with compiled modules kept between launches, as on an ordinary installation from
its second launch on (``startup_bytecode_cached_ms``); the cold import of the console; and
``trading-console halt`` from launch to the flag on disk.
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
import asyncio, json, sys, time
started = time.perf_counter()
import console.cli.main
from console.tui.app import make_app
from console.tui.tuning import ProcessTuning
from brokers.config import demo_config
imported = time.perf_counter() - started
MODE = sys.argv[1]
PANES = ("#title-bar", "#connections", "#accounts", "#positions", "#order-entry",
         "#blotter", "#events", "#halt-hint", "Footer")
# Tuned as the console's launcher tunes its process.
tuning = ProcessTuning()
app = make_app(demo_config(), start_feed=False, cursor_blink=False,
               on_accounts_loaded=tuning.accounts_loaded)
tuning.loaded()
marks = {}
display = app._display

def all_panes_shown(screen):
    try:
        return all(screen.query_one(selector).region.area for selector in PANES)
    except Exception:
        return False

def noting_frames(screen, renderable):
    display(screen, renderable)
    if renderable is None:
        return
    now = time.time()
    if "painted" not in marks and all_panes_shown(screen):
        marks["painted"] = now
    if "key" in marks and "usable" not in marks and app.trading_state.value == "HALTED":
        marks["usable"] = now
    if "ready" in marks and "connected" not in marks:
        marks["connected"] = now

app._display = noting_frames

async def wait_for(name):
    while name not in marks:
        await asyncio.sleep(0.001)

async def drive(pilot):
    await wait_for("painted")
    if MODE == "usable":
        marks["key"] = time.time()
        app.simulate_key(app.keys["halt"].split(",")[0].strip())
        await wait_for("usable")
    else:
        await app.wait_until_ready(60)
        marks["ready"] = time.time()
        app.refresh()
        await wait_for("connected")
    app.exit()

app.run(headless=True, size=(%d, %d), auto_pilot=drive)
print(json.dumps({"marks": marks, "import_s": imported}))
"""


def _env(home: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "SYSTEM_HALTED"}
    # A private home: the benchmark must not write into the user's journal or halt flag.
    env["TRADING_CONSOLE_HOME"] = home
    return env


def _one_start(mode: str, bytecode_cache: str | None = None) -> tuple[float, float]:
    """Launch the console once; milliseconds from launch to ``mode``, and the import time.
    With ``bytecode_cache``, compiled modules are kept in that private directory between launches
    whatever the environment says, as a normal installation keeps them next to the sources."""
    code = CHILD % SIZE
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as home:
        env = _env(home)
        if bytecode_cache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = bytecode_cache
        launched = time.time()
        done = subprocess.run(
            [sys.executable, "-c", code, mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the console did not start: {done.stderr.strip()[-500:]}")
    line = done.stdout.strip().splitlines()[-1]
    data = json.loads(line)
    return (data["marks"][mode] - launched) * 1000, data["import_s"] * 1000


def _halt_command(home: str) -> float:
    launched = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "console.cli.main", "halt", "--reason", "startup benchmark"],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=60,
        check=False,
    )
    elapsed = (time.perf_counter() - launched) * 1000
    if done.returncode != 0 or not (Path(home) / "state" / "SYSTEM_HALTED").exists():
        raise RuntimeError(f"`trading-console halt` failed: {done.stderr.strip()[-500:]}")
    return elapsed


def run(runs: int = RUNS) -> dict[str, Any]:
    starts: list[float] = []
    imports: list[float] = []
    connected: list[float] = []
    for _ in range(runs):
        startup, imported = _one_start("usable")
        starts.append(startup)
        imports.append(imported)
    for _ in range(runs):
        connected.append(_one_start("connected")[0])
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-pyc-") as cache:
        _one_start("usable", cache)  # fills the cache
        for _ in range(runs):
            warm.append(_one_start("usable", cache)[0])
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as home:
        halt_ms = _halt_command(home)
    startup_ms = statistics.median(starts)
    return {
        "runs": runs,
        "startup_ms": round(startup_ms, 1),
        "startup_runs_ms": [round(value, 1) for value in starts],
        "startup_target_ms": TARGET_MS,
        "startup_ok": startup_ms < TARGET_MS,
        "connected_ms": round(statistics.median(connected), 1),
        "connected_runs_ms": [round(value, 1) for value in connected],
        "startup_bytecode_cached_ms": round(statistics.median(warm), 1),
        "startup_bytecode_cached_runs_ms": [round(value, 1) for value in warm],
        "import_ms": round(statistics.median(imports), 1),
        "halt_command_ms": round(halt_ms, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
