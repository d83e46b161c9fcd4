"""A read-only account's figures are as old as its export: the file's time reaches the manager's
account record, its status, the snapshot the consolidated view is built from, the command line's
status rows and the connections pane; an account read live keeps the time it was read."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from textual.app import App, ComposeResult

from brokers.fx import FxRates, FxSettings
from brokers.manager import MultiBrokerManager
from brokers.registry import BrokerFactory
from brokers.sim import SimBroker
from console.cli.tables import status_view
from console.tui.widgets.connections import ConnectionsPane

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
WRITTEN = datetime(2026, 11, 30, 21, 15, tzinfo=UTC)


def export(tmp_path: Path, written: datetime = WRITTEN) -> Path:
    target = tmp_path / "vanguard_positions.csv"
    shutil.copy(FIXTURES / "vanguard_positions.csv", target)
    os.utime(target, (written.timestamp(), written.timestamp()))
    return target


async def test_the_file_time_reaches_the_status_and_the_snapshot(tmp_path):
    path = export(tmp_path)
    held = BrokerFactory.create({"type": "csv", "name": "held", "path": str(path), "format": "vanguard"})
    paper = SimBroker("paper", prices={"VTI": 280}, seed=1, initial_positions={"VTI": (5, 250)})
    manager = MultiBrokerManager(fx=FxRates("USD", FxSettings()), heartbeat_interval=3600)
    manager.add_broker("held", held)
    manager.add_broker("paper", paper)
    try:
        await manager.connect_all()
        await manager.refresh()
        statuses = manager.statuses()
        assert statuses["held"].as_of == WRITTEN
        assert statuses["paper"].as_of is None  # read live: as of its last refresh
        snapshot = manager.snapshot
        assert snapshot.as_of["held"] == WRITTEN
        assert snapshot.as_of["paper"] == statuses["paper"].last_refresh
        assert statuses["held"].last_refresh is not None and statuses["held"].last_refresh > WRITTEN
        rows = {row.label: row for row in manager.consolidated_positions()}
        assert sorted(rows["VTI"].accounts) == ["held", "paper"]

        # A newer export moves the time with it at the next read.
        later = WRITTEN + timedelta(days=2, hours=3)
        path.write_text(path.read_text() + "\n")
        os.utime(path, (later.timestamp(), later.timestamp()))
        await manager.refresh()
        assert manager.statuses()["held"].as_of == later
        assert manager.snapshot.as_of["held"] == later

        view = status_view(
            {
                "trading_state": "ACTIVE",
                "halt": None,
                "base_currency": "USD",
                "total": {"equity": None, "buying_power": None},
                "accounts": [
                    {
                        "name": name,
                        "type": status.broker_type,
                        "live": status.live,
                        "state": status.state,
                        "latency_ms": status.latency_ms,
                        "as_of": status.as_of,
                        "equity": None,
                        "buying_power": None,
                        "equity_base": None,
                        "buying_power_base": None,
                        "error": None,
                    }
                    for name, status in manager.statuses().items()
                ],
            }
        )
        out = Console(width=200, record=True)
        out.print(view)
        shown = out.export_text()
        assert "as of 2026-12-03 00:15 UTC" in shown
        assert shown.count("as of") == 1
    finally:
        await manager.disconnect_all()


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ConnectionsPane()


async def test_the_connections_pane_says_how_old_an_export_is(tmp_path):
    path = export(tmp_path)
    held = BrokerFactory.create({"type": "csv", "name": "held", "path": str(path), "format": "vanguard"})
    paper = SimBroker("paper", prices={"VTI": 280}, seed=1)
    manager = MultiBrokerManager(fx=FxRates("USD", FxSettings()), heartbeat_interval=3600)
    manager.add_broker("held", held)
    manager.add_broker("paper", paper)
    app = PaneApp()
    try:
        await manager.connect_all()
        await manager.refresh()
        async with app.run_test(size=(160, 12)) as pilot:
            pane = app.query_one(ConnectionsPane)
            now = WRITTEN + timedelta(days=1, hours=2, minutes=5)
            pane.show_statuses(manager.statuses(), now)
            await pilot.pause()
            notes = app.query_one("#connection-as-of")
            assert notes.display
            assert str(notes.render()) == "held figures as of 2026-11-30 21:15 UTC (1d 2h old)"
            # Without a dated account the line is gone.
            pane.show_statuses({"paper": manager.statuses()["paper"]}, now)
            await pilot.pause()
            assert not notes.display
    finally:
        await manager.disconnect_all()
