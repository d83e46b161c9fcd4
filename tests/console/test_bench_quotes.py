"""The quote benchmark's set-up and how its figures are judged (the measuring is not a test)."""

from __future__ import annotations

from console.cli.bench import quotes, runner


def test_the_quote_account_is_the_default_and_trades_500_of_the_positions_symbols(tmp_path):
    config = quotes.bench_config(tmp_path)
    assert config.default_account == quotes.QUOTE_ACCOUNT
    prices = config.account(quotes.QUOTE_ACCOUNT).settings["prices"]
    assert isinstance(prices, dict) and len(prices) == quotes.INSTRUMENTS
    positions = sum(len(a.settings.get("initial_positions") or {}) for a in config.accounts)
    assert positions == 5000
    # No feed of its own: the benchmark moves it on a fixed schedule.
    assert "tick_interval" not in config.account(quotes.QUOTE_ACCOUNT).settings


def test_figures_are_judged_against_the_issue_targets():
    good = {
        "quotes_per_second": 10_000,
        "positions": 5000,
        "lag_p99_ms": 12.0,
        "cpu_percent": 40.0,
        "rss_mb": 150.0,
        "halt_reaction_frames": 1,
    }
    figures = runner.figures_for("quotes", {**good, "figures": quotes.figures(good)})
    assert [f.status for f in figures] == [runner.PASS] * 5
    starved = {**good, "quotes_per_second": 3000}
    figures = runner.figures_for("quotes", {**starved, "figures": quotes.figures(starved)})
    # A low lag proves nothing when the quotes did not flow.
    assert [f.status for f in figures][:3] == [runner.FAIL, runner.FAIL, runner.FAIL]
    slow = {**good, "lag_p99_ms": 60.0, "rss_mb": 250.0, "halt_reaction_frames": 2}
    statuses = {f.name: f.status for f in runner.figures_for("quotes", {"figures": quotes.figures(slow)})}
    assert list(statuses.values()) == [runner.PASS, runner.FAIL, runner.PASS, runner.FAIL, runner.FAIL]
    assert "quotes" in runner.BENCHMARKS
