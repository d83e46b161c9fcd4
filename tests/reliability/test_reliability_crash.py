"""kill -9 in the middle of a burst of 1,000 orders, and while halted; then a restart.

The broker outlives the process: a loopback Alpaca in the test's own process, which the killed
process traded with through the real adapter over HTTP and the trade_updates websocket. After
the restart the journal must know every order the broker holds, reconciliation must agree with
the broker about every order and the position, and no order may be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from reliability_rig import AlpacaSide, journal_positions, note
from support import until

from brokers.journal import Journal
from brokers.models import OrderRequest, OrderStatus, TradingState
from brokers.runtime import build_brokers, build_runtime

CATEGORY = "crash recovery"
CHILD = Path(__file__).with_name("crash_child.py")
BURST = 1_000
KILL_AFTER = 298  # acknowledged orders seen before the kill: mid-way through a batch of four

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

_PEER_STATUS = {
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "new": OrderStatus.ACCEPTED,
    "accepted": OrderStatus.SUBMITTED,
}


async def run_child(
    state: Path, side: AlpacaSide, mode: str, count: int, until_line
) -> tuple[list[str], int]:
    """Start the child, read its lines until ``until_line(lines)`` says enough, kill -9 it.
    Returns every line it wrote (including those still in the pipe) and its exit status."""
    # Keys from the environment; the null keyring keeps the child away from the real one.
    env = {
        **os.environ,
        "ALPACA_API_KEY": side.peer.api_key,
        "ALPACA_SECRET_KEY": side.peer.secret_key,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "PYTHONUNBUFFERED": "1",
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(state),
        side.peer.base_url,
        mode,
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            assert (await child.stdout.readline()).decode().strip() == "READY"
            while not until_line(lines):
                line = await child.stdout.readline()
                assert line, f"the child ended early after {len(lines)} lines"
                lines.append(line.decode().strip())
        os.kill(child.pid, signal.SIGKILL)
        rest = await child.stdout.read()
        lines.extend(line for line in rest.decode().splitlines() if line.strip())
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        code = await child.wait()
    return lines, code


def journal_intents_and_acks(path: Path) -> Counter:
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        check.close()
    with Journal(path) as journal:
        return Counter(
            (event.client_order_id, event.kind)
            for event in journal.events(kinds=["intent", "ack", "update", "fill"])
        )


async def restarted(state: Path, side: AlpacaSide):
    """The runtime as the trader starts it again, on the same state folder and broker."""
    from crash_child import config_for

    config = config_for(str(state), side.peer.base_url)
    brokers = build_brokers(config)
    # Everything the dead process sent has reached the peer (it runs in this process and has
    # answered every request it received), so "not at the broker" is final at once.
    brokers["alpaca"].late_order_window = 0
    runtime = build_runtime(config, brokers=brokers)
    await runtime.start()
    return runtime


async def test_kill_9_during_a_burst_of_1000_orders_then_restart(tmp_path):
    state = tmp_path / "state"
    side = AlpacaSide(auto_fill=True)
    side.store_keys("alpaca")
    await side.start()
    try:
        lines, code = await run_child(state, side, "burst", BURST, lambda seen: len(seen) >= KILL_AFTER)
        assert code == -signal.SIGKILL
        assert "DONE" not in lines, "the burst finished before the kill: nothing was in flight"
        acknowledged = [line for line in lines if line.startswith("TC")]
        assert len(acknowledged) == len(set(acknowledged)) >= KILL_AFTER
        # The peer finishes what it received before the kill, on its own schedule.
        with contextlib.suppress(TimeoutError):
            await until(lambda: len(side.peer.orders) == side.submits(), within=2.0)
        submitted_before = side.submits()
        at_peer = {o["client_order_id"]: o for o in side.peer.orders.values()}
        # A request the kill cut off half-sent reaches the peer without becoming an order.
        assert submitted_before - 1 <= len(at_peer) <= submitted_before < BURST

        rows = journal_intents_and_acks(state / "journal.sqlite")
        for client_order_id in acknowledged:
            assert rows[(client_order_id, "intent")] == 1 and rows[(client_order_id, "ack")] <= 1
        # An answer is written with the next intent or at the end of its turn: the kill can take
        # the answers of that last turn with it (never an intent); reconcile settles them below.
        # An order whose answer was lost but whose fill came in on the stream is known already.
        unanswered = {
            coid
            for coid in acknowledged
            if rows[(coid, "ack")] == 0 and rows[(coid, "update")] == 0 and rows[(coid, "fill")] == 0
        }
        assert len(unanswered) <= 4
        # Written ahead: no order exists at the broker that the journal does not know of.
        assert {coid for coid, kind in rows if kind == "intent"} >= set(at_peer)

        runtime = await restarted(state, side)
        try:
            report = await runtime.execution.reconcile()
            assert report.clean, report
            assert report.resolved == []  # everything was settled by the start-up reconcile
            journal = runtime.journal.orders()
            for client_order_id, order in journal.items():
                peer_order = at_peer.get(client_order_id)
                if peer_order is None:
                    # In flight at the kill and never reached the broker.
                    assert order.status is OrderStatus.REJECTED and "never reached" in order.reject_reason
                    continue
                assert order.status is _PEER_STATUS[peer_order["status"]], client_order_id
                assert order.filled_quantity == Decimal(peer_order["filled_qty"])
                assert order.broker_order_id == peer_order["id"]
            assert set(at_peer) <= set(journal)
            in_flight = len(journal) - len(at_peer)
            assert 0 <= in_flight <= 4
            peer_position = side.peer.positions["AAPL"].qty
            assert journal_positions(runtime.journal) == {("alpaca", "AAPL"): peer_position}
            assert runtime.execution.book_positions()[("alpaca", "AAPL")] == peer_position

            # Sending an acknowledged order again is refused before it reaches the broker.
            again = await runtime.execution.submit(journal[acknowledged[0]].request)
            assert again.reject_code == "DUPLICATE_ORDER"
            fresh = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
            assert fresh.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED, OrderStatus.FILLED)
            assert side.submits() == submitted_before + 1  # nothing was submitted again
            settled = {e.client_order_id for e in runtime.journal.events(kinds=["reconcile"])}
            assert unanswered <= settled
            working = sum(o.is_working for o in journal.values())
            note(
                CATEGORY,
                f"kill -9 after {len(acknowledged)} of {BURST} orders acknowledged: "
                f"{len(at_peer)} at the broker, all in the journal; {len(settled)} brought up to "
                f"date by reconciliation at restart, {working} still working there and here, "
                f"{in_flight} in flight that never reached it; 0 sent again; position "
                f"{peer_position} in journal, book and broker alike",
            )
        finally:
            await runtime.stop()
    finally:
        await side.stop()


async def test_kill_9_while_halted_restarts_halted(tmp_path):
    state = tmp_path / "state"
    side = AlpacaSide()
    side.store_keys("alpaca")
    await side.start()
    try:
        lines, code = await run_child(
            state, side, "halt", 5, lambda seen: "HALTED" in seen and len(seen) >= 6
        )
        assert code == -signal.SIGKILL
        assert not any(line.startswith("NOT REFUSED") for line in lines)
        resting = [line for line in lines if line.startswith("TC")]
        assert len(resting) == 5
        # The halt cancelled the resting orders at the broker before it returned.
        assert {o["status"] for o in side.peer.orders.values()} == {"canceled"}
        submitted_before = side.submits()

        runtime = await restarted(state, side)
        try:
            switch = runtime.kill_switch
            assert switch.state is TradingState.HALTED
            assert switch.info.reason == "halted before the crash" and switch.info.source == "crash test"
            refused = await runtime.execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
            assert refused.reject_code == "SYSTEM_HALTED"
            assert side.submits() == submitted_before
            journal = runtime.journal.orders()
            assert all(journal[coid].status is OrderStatus.CANCELLED for coid in resting)
            halts = runtime.journal.events(kinds=["halt"])
            assert len(halts) == 1 and halts[0].data["reason"] == "halted before the crash"
        finally:
            await runtime.stop()
        # And again: the flag does not wear off with a second restart.
        runtime = await restarted(state, side)
        try:
            assert runtime.kill_switch.is_halted
        finally:
            await runtime.stop()
        note(
            CATEGORY,
            f"kill -9 while halted: restarted halted twice, {len(resting)} resting orders "
            f"cancelled by the halt, 0 orders sent after it",
        )
    finally:
        await side.stop()
