"""journal, screenshot, bench, opening the console, and the cost of starting the command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from brokers.paths import state_dir
from console.cli.bench import runner
from console.cli.main import app
from console.cli.tools import parse_since, parse_size


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def plain(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


# -- journal ------------------------------------------------------------------------------------


def test_journal_shows_an_order_and_a_halt():
    order = json.loads(invoke("order", "buy", "AAPL", "3", "--yes", "--json").stdout)
    invoke("halt", "--reason", "end of day")
    result = invoke("journal", "--json")
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    kinds = [event["kind"] for event in events]
    assert "intent" in kinds and kinds[-1] == "halt"
    intent = next(e for e in events if e["kind"] == "intent")
    assert intent["client_order_id"] == order["client_order_id"]
    assert intent["account"] == "paper-us"
    assert intent["data"]["request"]["quantity"] == "3"
    assert set(intent) == {"id", "time", "kind", "client_order_id", "account", "data"}
    table = invoke("journal")
    assert "end of day" in table.stdout
    assert order["client_order_id"] in table.stdout


def test_journal_filters():
    first = json.loads(invoke("order", "buy", "AAPL", "1", "--yes", "--json").stdout)
    invoke("order", "buy", "MSFT", "1", "--yes", "--json")
    invoke("halt")
    only = json.loads(invoke("journal", "--order", first["client_order_id"], "--json").stdout)
    assert only and {e["client_order_id"] for e in only} == {first["client_order_id"]}
    halts = json.loads(invoke("journal", "--kind", "halt", "--json").stdout)
    assert [e["kind"] for e in halts] == ["halt"]
    assert json.loads(invoke("journal", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(invoke("journal", "--since", "1h", "--json").stdout)) >= 3
    last = json.loads(invoke("journal", "--limit", "1", "--json").stdout)
    assert [e["kind"] for e in last] == ["halt"]


def test_journal_without_a_journal_is_empty():
    result = invoke("journal", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert not (state_dir() / "journal.sqlite").exists()


def test_journal_bad_since_is_a_usage_error():
    result = invoke("journal", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "Invalid value for '--since'" in plain(result.output)


def test_parse_since():
    now = datetime(2024, 6, 3, 15, 45, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1.5d", now) == now - timedelta(days=1.5)
    assert parse_since("today", now) == datetime(2024, 6, 3, tzinfo=UTC)
    assert parse_since("2024-06-01", now) == datetime(2024, 6, 1, tzinfo=UTC)
    assert parse_since("2024-06-01T09:30+05:30", now) == datetime(2024, 6, 1, 4, 0, tzinfo=UTC)
    assert parse_since("2024-06-01T09:30:00Z", now) == datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("last week", now)


# -- screenshot ---------------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("160x48") == (160, 48)
    assert parse_size(" 120 X 40 ") == (120, 40)
    for bad in ("160", "0x0", "160x5", "axb", "9000x40"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_screenshot_of_the_demo_is_an_svg_of_the_console(tmp_path):
    target = tmp_path / "shot.svg"
    result = invoke("--demo", "screenshot", "--output", str(target), "--size", "140x40")
    assert result.exit_code == 0, result.output
    svg = target.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg")
    text = svg.replace("&#160;", " ")
    for expected in ("paper-us", "paper-in", "AAPL"):
        assert expected in text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--size", "big"], "--size"),
        (["--output", "shot.png"], "--output"),
        (["--output", "/no/such/folder/shot.svg"], "--output"),
    ],
)
def test_screenshot_bad_arguments(args, named):
    result = invoke("screenshot", *args)
    assert result.exit_code == 2
    assert f"Invalid value for '{named}'" in plain(result.output)


# -- bench --------------------------------------------------------------------------------------


def fake_module(result=None, error: Exception | None = None, is_async: bool = False):
    module = types.ModuleType("fake_bench")

    def run():
        if error is not None:
            raise error
        return result

    async def run_async():
        return run()

    module.run = run_async if is_async else run
    return module


@pytest.fixture
def fake_benchmarks(monkeypatch):
    modules = {
        "execution": fake_module(
            {
                "orders_per_second": 12_500,
                "submit_p99_us": 1_400.0,
                "halted_p99_us": 12.0,
                "goal_throughput_met": True,
            },
            is_async=True,
        ),
        "manager": fake_module(
            {"refresh_median_ms": 101.0, "refresh_ok": True, "cancel_all_ms": 104.0, "cancel_all_ok": False}
        ),
        "ui": None,
        "startup": fake_module(error=RuntimeError("the console did not start")),
    }
    monkeypatch.setattr(runner, "load", lambda name: modules[name])
    return modules


def test_bench_runner_sets_each_figure_beside_its_target(fake_benchmarks):
    report = runner.run_all()
    figures = {f.name: f for f in report.figures}
    assert figures["Order-path throughput"].status == "PASS"
    assert figures["Order-path throughput"].value == 12_500
    p99 = figures["Order-path latency p99"]
    assert (p99.value, p99.unit, p99.target, p99.status) == (1.4, "ms", 1.0, "FAIL")
    assert figures["Halted-reject latency"].status == "PASS"
    assert figures["Fan-out refresh, 8 brokers at 100 ms"].status == "PASS"
    cancel = figures["Cancel-all across 8 brokers at 100 ms"]
    assert cancel.status == "FAIL" and "cancel_all_ok" in cancel.detail
    ui = [f for f in report.figures if f.benchmark == "ui"]
    assert len(ui) == 1 and ui[0].status == "NOT AVAILABLE"
    startup = [f for f in report.figures if f.benchmark == "startup"]
    assert len(startup) == 1 and startup[0].status == "ERROR"
    assert "the console did not start" in startup[0].detail
    assert report.failed


def test_bench_command_json_and_exit_code(fake_benchmarks):
    result = invoke("bench", "--json", "--only", "manager", "--only", "ui")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert {f["benchmark"] for f in data["figures"]} == {"manager", "ui"}
    assert data["raw"]["manager"]["refresh_median_ms"] == 101.0
    fake_benchmarks["manager"] = fake_module({"refresh_median_ms": 101.0, "cancel_all_ms": 99.0})
    passing = invoke("bench", "--only", "manager")
    assert passing.exit_code == 0, passing.output
    assert "PASS" in passing.stdout and "< 150 ms" in passing.stdout


def test_bench_unknown_name_is_a_usage_error():
    result = invoke("bench", "--only", "everything")
    assert result.exit_code == 2
    assert "Invalid value for '--only'" in plain(result.output)


def test_bench_loader_reports_a_missing_module():
    assert runner.load("nonexistent") is None
    assert runner.load("execution") is not None


def test_startup_benchmark_measures_a_real_launch():
    from console.cli.bench import startup

    result = startup.run(runs=1)
    assert result["runs"] == 1
    assert 0 < result["import_ms"] < result["startup_ms"] < 60_000
    assert result["halt_command_ms"] > 0
    # It ran in a private home: this test's flag was never touched.
    assert not (state_dir() / "SYSTEM_HALTED").exists()


# -- the console itself -------------------------------------------------------------------------


@pytest.fixture
def launched(monkeypatch):
    import console.tui.run

    seen = []

    def fake_run_console(config):
        seen.append(config)
        return 0

    monkeypatch.setattr(console.tui.run, "run_console", fake_run_console)
    return seen


def test_no_subcommand_opens_the_console_with_the_demo(launched):
    result = invoke()
    assert result.exit_code == 0, result.output
    assert launched[0].demo is True


def test_no_subcommand_uses_the_config_and_demo_overrides_it(launched, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[accounts]]\nname = "mine"\ntype = "sim"\n', encoding="utf-8")
    assert invoke("--config", str(path)).exit_code == 0
    assert [a.name for a in launched[-1].accounts] == ["mine"]
    assert invoke("--config", str(path), "--demo").exit_code == 0
    assert launched[-1].demo is True


def test_console_exit_code_is_passed_on(monkeypatch):
    import console.tui.run

    monkeypatch.setattr(console.tui.run, "run_console", lambda config: 3)
    assert invoke().exit_code == 3


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("trading-console ")


def test_help_lists_exit_codes_and_every_command():
    text = plain(invoke("--help").output)
    for command in (
        "init",
        "accounts",
        "broker-types",
        "add",
        "set-creds",
        "status",
        "test",
        "positions",
        "balances",
        "order",
        "cancel",
        "halt",
        "resume",
        "halt-status",
        "journal",
        "screenshot",
        "bench",
    ):
        assert re.search(rf"\b{re.escape(command)}\b", text), command
    assert "7 order rejected" in text


def test_importing_the_command_line_stays_cheap():
    code = "import sys, console.cli.main\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=True,
    )
    modules = done.stdout.split()
    heavy = {"textual", "rich", "pydantic", "alpaca", "ib_async", "kiteconnect", "sqlite3", "keyring"}
    assert not {m.split(".")[0] for m in modules} & heavy
    assert not [m for m in modules if m.startswith(("brokers.", "console.tui.app"))]


def test_bench_module_may_describe_its_own_figures():
    result = {
        "figures": [
            {"name": "Event-loop lag", "value": 12.5, "unit": "ms", "op": "<", "target": 50},
            {"name": "Halt-key reaction", "value": 2, "unit": "frames", "op": "<=", "target": 1},
            {"name": "Rows", "value": 5000, "unit": "rows"},
            {"name": "Not run", "value": None, "unit": "ms", "op": "<", "target": 1},
        ]
    }
    statuses = [(f.name, f.status) for f in runner.figures_for("ui", result)]
    assert statuses == [
        ("Event-loop lag", "PASS"),
        ("Halt-key reaction", "FAIL"),
        ("Rows", "INFO"),
        ("Not run", "NOT AVAILABLE"),
    ]
