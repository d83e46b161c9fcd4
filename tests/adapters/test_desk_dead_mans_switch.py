"""The desk's dead man's switch: a console killed with a working order at Alpaca has it
cancelled by another console of the desk connected to the same account, and the desk says so."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import psycopg
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    API_KEY,
    SECRET_KEY,
    alpaca_peer_fixture,
)
from support import until

from brokers.config import AccountConfig, Config
from brokers.desk import DeskSettings
from brokers.runtime import build_runtime

PROJECT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from brokers.config import AccountConfig, Config
    from brokers.desk import DeskSettings
    from brokers.models import OrderRequest
    from brokers.runtime import build_runtime

    async def main():
        account = json.loads(sys.argv[1])
        config = Config(
            accounts=[AccountConfig.model_validate(account)],
            desk=DeskSettings(dsn=sys.argv[2], poll_ms=100, heartbeat_ms=200, dead_after_ms=1000),
        )
        runtime = build_runtime(config, state_dir=Path(sys.argv[3]))
        await runtime.start()
        order = await runtime.execution.submit(
            OrderRequest(symbol="AAPL", side="BUY", quantity=3, order_type="LIMIT", limit_price="150")
        )
        print("placed", order.broker_order_id, flush=True)
        while True:
            await asyncio.sleep(1)

    asyncio.run(main())
    """
)


def account(peer) -> dict:
    return {**peer.settings(key_env="DESK_TEST_KEY", secret_env="DESK_TEST_SECRET")}


async def test_a_killed_consoles_working_order_is_cancelled_by_another(
    peer, desk_dsn: str, tmp_path: Path, monkeypatch
) -> None:
    import json

    monkeypatch.setenv("DESK_TEST_KEY", API_KEY)
    monkeypatch.setenv("DESK_TEST_SECRET", SECRET_KEY)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        json.dumps(account(peer)),
        desk_dsn,
        str(tmp_path / "doomed"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert child.stdout is not None
    line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().split()
    assert line[:1] == ["placed"], line
    broker_order_id = line[1]
    assert peer.orders[broker_order_id]["status"] in ("new", "accepted")

    config = Config(
        accounts=[AccountConfig.model_validate(account(peer))],
        desk=DeskSettings(dsn=desk_dsn, poll_ms=100, heartbeat_ms=200, dead_after_ms=1000),
    )
    survivor = build_runtime(config, state_dir=tmp_path / "survivor")
    await survivor.start()
    try:
        # Its heartbeat has told the desk of the order; then it dies without a word.
        await until(lambda: _published(desk_dsn) == [broker_order_id], within=10)
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        desk = survivor.desk
        assert desk is not None
        await until(lambda: peer.orders[broker_order_id]["status"] == "canceled" and desk.alerts, within=15)
        (alert,) = desk.alerts
        assert "went silent" in alert and broker_order_id in alert and "cancelled from" in alert
        with psycopg.connect(desk_dsn) as conn:
            stored = conn.execute("SELECT message FROM desk.alerts").fetchall()
        assert [row[0] for row in stored] == [alert]
        assert not survivor.kill_switch.is_halted  # one console dying halts nobody
    finally:
        await survivor.stop()
        if child.returncode is None:
            child.kill()
            await child.wait()


def _published(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT broker_order_id FROM desk.working_orders").fetchall()
    return [str(row[0]) for row in rows]
