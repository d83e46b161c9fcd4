"""Quote load: 500 instruments quoted 20 times a second each (10,000 quotes a second through the
manager's quote board) while the console shows 5,000 positions ticking. Run by
``trading-console bench``; not a test.

The console runs headless at 160x48 with its real runtime, as in the UI benchmark: four paper
accounts of 1,250 positions each whose prices move every 0.25 s. A fifth paper account, the
default, trades the first 500 of those symbols; the board is asked for all 500 (as the
positions pane, a watchlist and the order ticket ask), so that account streams them, and the
benchmark moves all 500 twenty times a second on a fixed schedule (a tick that comes too late is
skipped, never made up in a burst): every move is a quote through the board. A reader takes the
changed quotes ten times a second and reads each one, as a pane repainting its rows would.

Measured in a process of its own, so that nothing run before it counts. The quotes run in
alternate windows, on and off, so that the machine's own noise shows in both: event-loop lag
(how late a 10 ms sleep wakes up), the process's CPU time over wall time (every thread), the
quotes that went through the board, over the windows with quotes; the same without them, and the
CPU one quote costs (feed and board, 10,000 of them back to back, in CPU time alone, which a
busy machine does not change) and what 10,000 a second of them come to; resident memory at the
end; and the halt key, pressed while quotes flow, from the key event to the banner shown, worst
of five, in frames of 1/60 s.

The positions pane does not read the board's quotes yet; the reader above stands for it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokers.config import Config

from .ui import lag_probe, wait_until

INSTRUMENTS = 500
QUOTES_PER_SECOND_EACH = 20
WINDOW_SECONDS = 3.0
WINDOWS = 4  # alternating, quotes on first
READS_PER_SECOND = 10
LAG_TARGET_MS = 50.0
CPU_TARGET_PERCENT = 60.0
RSS_TARGET_MB = 200.0
FRAME_MS = 1000 / 60
HALT_TRIALS = 5
QUOTE_ACCOUNT = "bench-quotes"


def bench_config(state_dir: Path) -> Config:
    from brokers.config import parse_config

    from .ui import bench_config as positions_config

    config = positions_config(state_dir)
    data = config.model_dump(mode="json", exclude={"source", "state_dir"})
    first = data["accounts"][0]
    symbols = sorted(first["prices"])[:INSTRUMENTS]
    for account in data["accounts"]:
        account["default"] = False
    data["accounts"].insert(
        0,
        {
            "name": QUOTE_ACCOUNT,
            "type": "sim",
            "currency": "USD",
            "default": True,
            "initial_cash": 1_000_000,
            "prices": {symbol: first["prices"][symbol] for symbol in symbols},
            "seed": 99,
        },
    )
    bench = parse_config(data, where="bench")
    bench.state_dir = state_dir
    return bench


def _rss_mb() -> float:
    """Resident memory now (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _drive(step: Callable[[], object], stop: asyncio.Event, rate: float) -> int:
    """Call ``step()`` ``rate`` times a second on a fixed schedule until ``stop``; a tick that
    comes too late is skipped. Returns how many were made."""
    loop = asyncio.get_running_loop()
    period = 1 / rate
    start = loop.time()
    made = 0
    tick = 0
    while not stop.is_set():
        step()
        made += 1
        tick = max(tick + 1, int((loop.time() - start) / period))
        await asyncio.sleep(max(0.0, start + tick * period - loop.time()))
    return made


async def measure() -> dict[str, Any]:
    from textual import events

    from brokers.instruments import Instrument
    from brokers.quotes import Quote
    from brokers.sim import SimBroker
    from console.tui.app import make_app
    from console.tui.tuning import ProcessTuning

    with tempfile.TemporaryDirectory(prefix="tc-bench-quotes-") as tmp:
        config = bench_config(Path(tmp))
        tuning = ProcessTuning()
        app = make_app(config, start_feed=True, cursor_blink=False, on_accounts_loaded=tuning.accounts_loaded)
        tuning.loaded()
        result: dict[str, Any] = {"instruments": INSTRUMENTS, "quotes_per_second_asked": INSTRUMENTS * 20}
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await app.wait_until_ready(within=60)
                result["positions"] = len(app.positions.rows)
                board = app.runtime.manager.quotes
                quote_account = app.runtime.manager.get(QUOTE_ACCOUNT)
                assert isinstance(quote_account, SimBroker)
                board.want("bench", [Instrument.stock(symbol) for symbol in quote_account.symbols])
                await wait_until(lambda: len(board.streamed(QUOTE_ACCOUNT)) == INSTRUMENTS, within=10)
                result["streamed"] = len(board.streamed(QUOTE_ACCOUNT))
                await pilot.pause(0.5)

                received = 0

                def count(quote: Quote) -> None:
                    nonlocal received
                    received += 1

                board.add_listener(count)
                repaints: list[int] = []

                async def reader(stop: asyncio.Event) -> None:
                    # What a pane does: take what changed, read each quote, at its own pace.
                    while not stop.is_set():
                        await asyncio.sleep(1 / READS_PER_SECOND)
                        changed = board.take_changed()
                        for instrument in changed:
                            board.quote(instrument)
                        repaints.append(len(changed))

                windows: dict[bool, dict[str, Any]] = {
                    on: {"lag": [], "cpu": 0.0, "wall": 0.0, "quotes": 0} for on in (True, False)
                }
                for window in range(WINDOWS):
                    on = window % 2 == 0
                    stop = asyncio.Event()
                    samples: list[float] = []
                    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(lag_probe(samples, stop))]
                    if on:
                        tasks.append(asyncio.create_task(reader(stop)))
                        tasks.append(
                            asyncio.create_task(_drive(quote_account.step, stop, QUOTES_PER_SECOND_EACH))
                        )
                    before = received
                    cpu_before, wall_before = time.process_time(), time.perf_counter()
                    await asyncio.sleep(WINDOW_SECONDS)
                    figures_of = windows[on]
                    figures_of["cpu"] += time.process_time() - cpu_before
                    figures_of["wall"] += time.perf_counter() - wall_before
                    figures_of["quotes"] += received - before
                    stop.set()
                    await asyncio.gather(*tasks)
                    figures_of["lag"].extend(samples)

                def p99(samples: list[float]) -> float:
                    ordered = sorted(samples)
                    return round(ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)], 2)

                with_quotes, without = windows[True], windows[False]
                result["quotes_per_second"] = round(with_quotes["quotes"] / with_quotes["wall"])
                result["rows_repainted_per_read_median"] = statistics.median(repaints) if repaints else 0
                result["lag_p99_ms"] = p99(with_quotes["lag"])
                result["lag_max_ms"] = round(max(with_quotes["lag"]), 2)
                result["lag_median_ms"] = round(statistics.median(with_quotes["lag"]), 2)
                result["cpu_percent"] = round(with_quotes["cpu"] / with_quotes["wall"] * 100, 1)
                result["without_quotes_lag_p99_ms"] = p99(without["lag"])
                result["without_quotes_cpu_percent"] = round(without["cpu"] / without["wall"] * 100, 1)
                # What one quote costs, feed and board together, counted in CPU time alone so
                # that a busy machine does not change it: 20 moves of all 500 back to back.
                before, cpu_before = received, time.process_time()
                for _ in range(QUOTES_PER_SECOND_EACH):
                    quote_account.step()
                board.take_changed()
                per_quote = (time.process_time() - cpu_before) / max(1, received - before)
                result["cpu_us_per_quote"] = round(per_quote * 1e6, 2)
                result["quotes_cpu_percent_at_target"] = round(
                    per_quote * INSTRUMENTS * QUOTES_PER_SECOND_EACH * 100, 1
                )
                result["rss_mb"] = round(_rss_mb(), 1)

                # The halt key while quotes flow.
                stop = asyncio.Event()
                driving = asyncio.create_task(_drive(quote_account.step, stop, QUOTES_PER_SECOND_EACH))
                reactions: list[float] = []
                for _ in range(HALT_TRIALS):
                    app.post_message(events.Key("f12", None))
                    reactions.append(await wait_until(lambda: app.banner.display, within=5) * 1000)
                    await pilot.pause(0.3)
                    await app.runtime.execution.resume("bench", "bench")
                    await wait_until(lambda: not app.banner.display, within=5)
                    await pilot.pause(0.3)
                worst = max(reactions)
                result["halt_reaction_ms"] = round(statistics.median(reactions), 2)
                result["halt_reaction_max_ms"] = round(worst, 2)
                result["halt_reaction_frames"] = max(1, math.ceil(worst / FRAME_MS))
                stop.set()
                await driving
                board.remove_listener(count)
        finally:
            tuning.restore()
    return result


def figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    enough = result.get("quotes_per_second", 0) >= 0.9 * INSTRUMENTS * QUOTES_PER_SECOND_EACH
    load = (
        f"{result.get('quotes_per_second', 0):,} quotes/s, {result.get('positions', 0):,} positions; "
        f"without quotes {result.get('without_quotes_lag_p99_ms')} ms, {result.get('without_quotes_cpu_percent')} %"
    )
    return [
        {
            "name": "Quotes through the board (500 instruments x 20/s)",
            "value": result.get("quotes_per_second"),
            "unit": "quotes/s",
            "op": ">=",
            "target": 0.9 * INSTRUMENTS * QUOTES_PER_SECOND_EACH,
        },
        {
            "name": "Event-loop lag p99 under quote load",
            "value": result.get("lag_p99_ms"),
            "unit": "ms",
            "op": "<",
            "target": LAG_TARGET_MS,
            "ok": enough,
            "detail": load,
        },
        {
            "name": "Console CPU under quote load",
            "value": result.get("cpu_percent"),
            "unit": "% of a core",
            "op": "<",
            "target": CPU_TARGET_PERCENT,
            "ok": enough,
            "detail": f"{load}; quotes alone {result.get('quotes_cpu_percent_at_target')} % at 10,000/s "
            f"({result.get('cpu_us_per_quote')} µs each)",
        },
        {
            "name": "Console memory (RSS) under quote load",
            "value": result.get("rss_mb"),
            "unit": "MB",
            "op": "<",
            "target": RSS_TARGET_MB,
        },
        {
            "name": "Halt-key reaction under quote load",
            "value": result.get("halt_reaction_frames"),
            "unit": "frames",
            "op": "<=",
            "target": 1,
            "detail": f"worst {result.get('halt_reaction_max_ms')} ms",
        },
    ]


def run() -> dict[str, Any]:
    """Measure in a new process and describe the figures for the bench table."""
    child = subprocess.run(
        [sys.executable, "-m", "console.cli.bench.quotes", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if child.returncode != 0:
        tail = (child.stderr or child.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the quote benchmark's process failed: {tail[0]}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result["figures"] = figures(result)
    return result


def main() -> None:
    result = asyncio.run(measure())
    if "--json" in sys.argv[1:]:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name}: {value}")
    for figure in figures(result):
        print(
            f"{figure['name']}: {figure['value']} {figure['unit']} (target {figure['op']} {figure['target']})"
        )


if __name__ == "__main__":
    main()
