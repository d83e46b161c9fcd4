"""Runs every benchmark module and sets each figure beside its target.

The modules are imported only when run, and one that is missing or fails is reported as such
rather than stopping the others. A module returns a dict; the figures below say which key holds
each number (a few spellings are accepted, with their unit) and what it must beat.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PASS, FAIL, NOT_AVAILABLE, ERROR, INFO = "PASS", "FAIL", "NOT AVAILABLE", "ERROR", "INFO"

BENCHMARKS = ("execution", "manager", "ui", "startup", "journal", "desk", "quotes")


@dataclass(frozen=True)
class Spec:
    """One figure: where to find it in a module's result and what it must beat."""

    benchmark: str
    name: str
    unit: str
    keys: tuple[tuple[str, float], ...]  # (result key, factor to ``unit``); the first present counts
    op: str | None = None  # ">=" or "<"; None: shown for information
    target: float | None = None
    ok_keys: tuple[str, ...] = ()  # the module's own verdict, which may check more than the number
    note_key: str | None = None  # a result key whose text goes in the Note column


SPECS: tuple[Spec, ...] = (
    Spec(
        "execution",
        "Order-path throughput",
        "orders/s",
        (("orders_per_second", 1),),
        ">=",
        10_000,
        ("goal_throughput_met",),
        "python",
    ),
    Spec(
        "execution", "Order-path latency p99", "ms", (("submit_p99_us", 0.001),), "<", 1.0, ("goal_p99_met",)
    ),
    Spec("execution", "Halted-reject latency", "µs", (("halted_p99_us", 1),), "<", 50, ("goal_halted_met",)),
    Spec(
        "manager",
        "Fan-out refresh, 8 brokers at 100 ms",
        "ms",
        (("refresh_median_ms", 1),),
        "<",
        150,
        ("refresh_ok",),
    ),
    Spec(
        "manager",
        "Cancel-all across 8 brokers at 100 ms",
        "ms",
        (("cancel_all_ms", 1),),
        "<",
        150,
        ("cancel_all_ok",),
    ),
    Spec("ui", "Event-loop lag, 5,000 positions ticking", "ms", (("lag_max_ms", 1),), "<", 50, ("lag_ok",)),
    Spec("ui", "Halt-key reaction", "frames", (("halt_reaction_frames", 1),), "<=", 1, ("halt_reaction_ok",)),
    Spec("ui", "Halt-key reaction time", "ms", (("halt_reaction_ms", 1),)),
    Spec("startup", "Startup to usable screen", "ms", (("startup_ms", 1),), "<", 1000),
    Spec("startup", "Console import (cold, in a new process)", "ms", (("import_ms", 1),)),
    Spec(
        "startup", "`trading-console halt` (process start to flag written)", "ms", (("halt_command_ms", 1),)
    ),
)


@dataclass
class Figure:
    benchmark: str
    name: str
    unit: str
    value: float | None
    op: str | None
    target: float | None
    status: str
    detail: str | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(f.status in (FAIL, ERROR) for f in self.figures)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "figures": [asdict(f) for f in self.figures],
            "seconds": self.seconds,
            "raw": self.raw,
        }


def load(name: str) -> ModuleType | None:
    """``console.cli.bench.<name>``, or None when that benchmark is not installed."""
    module_name = f"console.cli.bench.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
    return None


def call(run: Callable[[], Any]) -> Any:
    result = run()
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        result = asyncio.run(wait())
    return result


def verdict(value: float, op: str | None, target: float | None) -> str:
    if op is None or target is None:
        return INFO
    checks = {"<": value < target, "<=": value <= target, ">=": value >= target, ">": value > target}
    if op not in checks:
        return INFO
    passed = checks[op]
    return PASS if passed else FAIL


def _declared(benchmark: str, result: dict[str, Any]) -> list[Figure]:
    """Figures a module describes itself: ``{"figures": [{"name", "value", "unit", "op",
    "target"}, ...]}``. They take the place of the table below for that benchmark."""
    figures = []
    for item in result.get("figures") or []:
        if not isinstance(item, dict) or "name" not in item:
            continue
        value = item.get("value")
        op, target = item.get("op"), item.get("target")
        if not isinstance(value, int | float) or isinstance(value, bool):
            figures.append(
                Figure(
                    benchmark,
                    str(item["name"]),
                    str(item.get("unit", "")),
                    None,
                    op,
                    target,
                    NOT_AVAILABLE,
                    "not measured",
                )
            )
            continue
        status = verdict(float(value), op, target)
        if status == PASS and item.get("ok") is False:
            status = FAIL
        figures.append(
            Figure(
                benchmark,
                str(item["name"]),
                str(item.get("unit", "")),
                round(float(value), 3),
                op,
                target,
                status,
                item.get("detail"),
            )
        )
    return figures


def figures_for(benchmark: str, result: dict[str, Any]) -> list[Figure]:
    declared = _declared(benchmark, result)
    if declared:
        return declared
    figures = []
    for spec in SPECS:
        if spec.benchmark != benchmark:
            continue
        value = None
        for key, factor in spec.keys:
            if isinstance(result.get(key), int | float) and not isinstance(result.get(key), bool):
                value = float(result[key]) * factor
                break
        if value is None:
            if spec.op is not None:
                figures.append(
                    Figure(
                        benchmark,
                        spec.name,
                        spec.unit,
                        None,
                        spec.op,
                        spec.target,
                        NOT_AVAILABLE,
                        "not reported by the benchmark",
                    )
                )
            continue
        status = verdict(value, spec.op, spec.target)
        note = result.get(spec.note_key) if spec.note_key else None
        detail = note if isinstance(note, str) else None
        refused = [key for key in spec.ok_keys if result.get(key) is False]
        if status == PASS and refused:
            status, detail = FAIL, f"the benchmark's own check ({refused[0]}) failed"
        figures.append(
            Figure(benchmark, spec.name, spec.unit, round(value, 3), spec.op, spec.target, status, detail)
        )
    return figures


def run_all(names: Iterable[str] = BENCHMARKS, *, progress: Callable[[str], None] | None = None) -> Report:
    report = Report()
    for name in names:
        if progress:
            progress(name)
        started = time.perf_counter()
        try:
            module = load(name)
        except Exception as exc:
            report.figures.append(_whole(name, ERROR, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        if module is None or not callable(getattr(module, "run", None)):
            report.figures.append(_whole(name, NOT_AVAILABLE, f"console.cli.bench.{name} is not installed"))
            continue
        try:
            result = call(module.run)
        except Exception as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            report.figures.append(
                _whole(name, ERROR, f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})")
            )
            continue
        finally:
            report.seconds[name] = round(time.perf_counter() - started, 2)
        if not isinstance(result, dict):
            report.figures.append(_whole(name, ERROR, f"run() returned {type(result).__name__}, not a dict"))
            continue
        report.raw[name] = result
        report.figures.extend(figures_for(name, result))
    return report


def _whole(benchmark: str, status: str, detail: str) -> Figure:
    """One line standing for every figure of a benchmark that could not run."""
    names = [spec.name for spec in SPECS if spec.benchmark == benchmark and spec.op is not None]
    return Figure(benchmark, "; ".join(names) or benchmark, "", None, None, None, status, detail)
