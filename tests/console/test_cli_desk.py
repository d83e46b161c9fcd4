"""halt, resume and halt-status with ``[desk]`` configured: they act on the desk's PostgreSQL
server, and say so when it cannot be reached."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from console.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def config_with_desk(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n\n[desk]\ndsn = "{dsn}"\nfail_after_ms = 1000\n',
        encoding="utf-8",
    )
    return path


def desk_state(dsn: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state, reason FROM desk.trading_state").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def test_halt_and_resume_act_on_the_desk(tmp_path: Path, desk_dsn: str) -> None:
    config = str(config_with_desk(tmp_path, desk_dsn))
    halted = invoke("--config", config, "halt", "--reason", "desk-wide stop", "--json")
    assert halted.exit_code == 0, halted.output
    data = json.loads(halted.stdout)
    assert data["desk"]["reachable"] and data["desk"]["state"] == "HALTED"
    assert desk_state(desk_dsn) == ("HALTED", "desk-wide stop")
    assert (tmp_path / "state" / "SYSTEM_HALTED").exists()

    status = invoke("--config", config, "halt-status")
    assert status.exit_code == 0, status.output
    assert "Desk: HALTED" in status.output and "desk-wide stop" in status.output

    resumed = invoke("--config", config, "resume", "--reason", "all clear")
    assert resumed.exit_code == 0, resumed.output
    assert desk_state(desk_dsn) == ("ACTIVE", "all clear")
    assert not (tmp_path / "state" / "SYSTEM_HALTED").exists()


def test_an_unreachable_desk_halts_here_says_so_and_refuses_to_resume(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    config = str(config_with_desk(tmp_path, f"postgresql://trader@127.0.0.1:{port}/desk"))
    halted = invoke("--config", config, "halt", "--reason", "network trouble")
    assert halted.exit_code != 0
    assert "unreachable" in halted.output and "halted on this machine only" in halted.output
    assert (tmp_path / "state" / "SYSTEM_HALTED").exists()

    resumed = invoke("--config", config, "resume", "--reason", "try")
    assert resumed.exit_code != 0 and "nothing resumed" in resumed.output
    assert (tmp_path / "state" / "SYSTEM_HALTED").exists()
