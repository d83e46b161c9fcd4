from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.journal import _LAST_HALT, Journal, fill_data, order_row, order_state
from brokers.models import Fill, Order, OrderRequest, OrderStatus
from brokers.paths import state_dir


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "journal.sqlite") as opened:
        yield opened


def make_order(**fields):
    request = OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 10, **fields})
    return Order(request=request, account="us")


def fill(order, fill_id, quantity, price):
    return Fill(
        fill_id=fill_id,
        account="us",
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        price=price,
        broker_order_id=order.broker_order_id,
        client_order_id=order.client_order_id,
    )


def test_default_path_is_in_the_state_dir():
    with Journal() as journal:
        assert journal.path == state_dir() / "journal.sqlite"
        assert journal.path.exists()


def test_wal_mode_and_synchronous_setting(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with Journal(tmp_path / "full.sqlite", synchronous="FULL") as journal:
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ValueError):
        Journal(tmp_path / "x.sqlite", synchronous="OFF")  # type: ignore[arg-type]


def test_each_record_is_committed_and_visible_to_another_connection(journal):
    journal.record("halt", data={"reason": "test"})
    other = sqlite3.connect(journal.path)
    assert other.execute("SELECT kind, data FROM events").fetchall() == [("halt", '{"reason":"test"}')]
    other.close()


def _committed_kinds(path):
    other = sqlite3.connect(path)
    try:
        return [kind for (kind,) in other.execute("SELECT kind FROM events ORDER BY id")]
    finally:
        other.close()


def test_follow_up_rows_without_an_event_loop_commit_at_once(journal):
    order = make_order()
    journal.record_intent(order)
    journal.record_order("ack", order, soon=True)
    assert _committed_kinds(journal.path) == ["intent", "ack"]


async def test_follow_up_rows_commit_with_the_next_intent_or_at_the_end_of_the_turn(journal):
    first, second = make_order(), make_order(side="SELL")
    journal.record_intent(first)
    journal.record_order("ack", first, soon=True)
    assert _committed_kinds(journal.path) == ["intent"]
    journal.record_intent(second)  # writes the answer before it, in the same transaction
    assert _committed_kinds(journal.path) == ["intent", "ack", "intent"]
    journal.record_order("ack", second, soon=True)
    assert _committed_kinds(journal.path) == ["intent", "ack", "intent"]
    await asyncio.sleep(0)  # the turn ends
    assert _committed_kinds(journal.path) == ["intent", "ack", "intent", "ack"]


async def test_reading_the_journal_includes_rows_still_waiting(journal):
    order = make_order()
    journal.record_intent(order)
    journal.record_order("ack", dataclasses.replace(order, status=OrderStatus.ACCEPTED), soon=True)
    assert journal.orders()[order.client_order_id].status is OrderStatus.ACCEPTED
    assert [event.kind for event in journal.events()] == ["intent", "ack"]


async def test_close_writes_follow_up_rows_still_waiting(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    order = make_order()
    journal.record_intent(order)
    journal.record_order("ack", order, soon=True)
    journal.close()
    assert _committed_kinds(path) == ["intent", "ack"]
    await asyncio.sleep(0)  # the end-of-turn callback finds the journal closed and does nothing


async def test_follow_up_rows_that_cannot_be_written_wait_and_go_with_the_next_row(journal, caplog):
    first, second = make_order(), make_order(side="SELL")
    journal.record_intent(first)
    journal.record_order("ack", first, soon=True)
    blocker = sqlite3.connect(journal.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    journal._db.execute("PRAGMA busy_timeout=20")
    try:
        await asyncio.sleep(0)
        assert "could not be written yet" in caplog.text
        with pytest.raises(sqlite3.OperationalError):
            journal.record_intent(second)  # an intent that cannot be written raises: nothing is sent
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    journal.record_intent(second)
    assert _committed_kinds(journal.path) == ["intent", "ack", "intent"]


def test_many_waiting_rows_are_written_in_order(journal):
    orders = [make_order() for _ in range(250)]
    journal._waiting.extend((1, "ack", order.client_order_id, "us", "{}", None) for order in orders)
    journal.record("halt", data={})
    rows = [event.client_order_id for event in journal.events()]
    assert rows == [order.client_order_id for order in orders] + [None]
    assert journal._waiting == []


def test_events_in_order_with_filters(journal):
    a, b = make_order(), make_order(side="SELL")
    journal.record_intent(a)
    journal.record_intent(b)
    start = datetime.now(UTC)
    time.sleep(0.002)
    a.broker_order_id = "B-1"
    a.transition(OrderStatus.ACCEPTED)
    journal.record_order("ack", a)
    assert [e.kind for e in journal.events()] == ["intent", "intent", "ack"]
    assert [e.kind for e in journal.events(since=start)] == ["ack"]
    only_a = journal.events(order=a.client_order_id)
    assert [e.kind for e in only_a] == ["intent", "ack"]
    assert only_a[1].data["state"]["status"] == "ACCEPTED"
    assert only_a[1].time.tzinfo is not None
    assert [e.kind for e in journal.events(kinds=["intent"])] == ["intent", "intent"]
    with pytest.raises(ValueError):
        journal.events(since=datetime.now())  # naive on purpose


def test_orders_replays_the_last_known_state(journal):
    order = make_order(order_type="LIMIT", limit_price="101.5")
    journal.record_intent(order)
    order.broker_order_id = "B-7"
    order.transition(OrderStatus.ACCEPTED)
    journal.record_order("ack", order)
    first = fill(order, "F1", 4, Decimal("101"))
    order.apply_fill(first)
    journal.record_order("fill", order, fills=[first])
    second = fill(order, "F2", 6, Decimal("101.5"))
    order.apply_fill(second)
    journal.record_order("fill", order, fills=[second])

    replayed = journal.orders()[order.client_order_id]
    assert replayed.request == order.request
    assert replayed.account == "us"
    assert replayed.status is OrderStatus.FILLED
    assert replayed.broker_order_id == "B-7"
    assert replayed.filled_quantity == Decimal(10)
    assert replayed.avg_fill_price == order.avg_fill_price
    assert [f.fill_id for f in replayed.fills] == ["F1", "F2"]
    assert replayed.fills[1].price == Decimal("101.5") and replayed.fills[1].symbol == "AAPL"
    assert journal.open_orders() == []


def test_orders_lists_unknown_and_working_as_open(journal):
    unknown, working, rejected = make_order(), make_order(), make_order()
    for order in (unknown, working, rejected):
        journal.record_intent(order)
    unknown.transition(OrderStatus.UNKNOWN)
    journal.record_order("unknown", unknown)
    working.transition(OrderStatus.ACCEPTED)
    journal.record_order("ack", working)
    rejected.reject("BROKER_REJECTED", "no")
    journal.record_order("ack", rejected)
    open_ids = {o.client_order_id for o in journal.open_orders()}
    assert open_ids == {unknown.client_order_id, working.client_order_id}
    replayed = journal.orders()[rejected.client_order_id]
    assert (replayed.reject_code, replayed.reject_reason) == ("BROKER_REJECTED", "no")


def test_a_risk_rejection_then_a_resend_with_the_same_id(journal):
    order = make_order()
    order.reject("MAX_QUANTITY", "too big")
    journal.record(
        "risk_reject",
        client_order_id=order.client_order_id,
        account="us",
        data={
            "request": order.request.model_dump(mode="json"),
            "state": {"status": "REJECTED", "reject_code": "MAX_QUANTITY"},
        },
    )
    assert journal.orders()[order.client_order_id].status is OrderStatus.REJECTED
    resent = Order(request=order.request, account="us")
    journal.record_intent(resent)
    assert journal.orders()[order.client_order_id].status is OrderStatus.PENDING


def test_survives_reopening(tmp_path):
    path = tmp_path / "journal.sqlite"
    order = make_order()
    with Journal(path) as journal:
        journal.record_intent(order)
    with Journal(path) as journal:
        assert list(journal.orders()) == [order.client_order_id]


def test_rows_for_unknown_orders_are_kept_as_events_only(journal):
    journal.record("update", client_order_id="NOPE", account="us", data={"state": {"status": "FILLED"}})
    assert journal.orders() == {}
    assert journal.events(order="NOPE")[0].kind == "update"


def test_a_corrupt_row_is_skipped_not_fatal(journal):
    good = make_order()
    journal.record_intent(good)
    journal.record("intent", client_order_id="BAD", data={"request": {"symbol": ""}})
    assert list(journal.orders()) == [good.client_order_id]


def test_values_are_journaled_as_text(journal):
    journal.record(
        "risk",
        data={
            "amount": Decimal("1.10"),
            "when": datetime(2024, 1, 2, tzinfo=UTC),
            "status": OrderStatus.FILLED,
            "ids": {"a"},
        },
    )
    data = journal.events()[0].data
    assert data == {"amount": "1.10", "when": "2024-01-02T00:00:00+00:00", "status": "FILLED", "ids": ["a"]}
    with pytest.raises(TypeError):
        journal.record("risk", data={"x": object()})


def test_closed_journal_refuses_writes(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    journal.close()
    journal.close()  # twice is fine
    with pytest.raises(RuntimeError):
        journal.record("halt", data={})


def test_events_since_a_day_ago_includes_everything(journal):
    journal.record("halt", data={})
    assert len(journal.events(since=datetime.now(UTC) - timedelta(days=1))) == 1


def test_a_journal_written_by_another_process_is_read_whole(tmp_path):
    path = tmp_path / "j.sqlite"
    code = (
        "import sys; from brokers.journal import Journal; from brokers.models import Order, OrderRequest; "
        "j = Journal(sys.argv[1]); "
        "j.record_intent(Order(request=OrderRequest(symbol='AAPL', side='BUY', quantity=1, "
        "client_order_id='FROMCHILD'), account='us'))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    with Journal(path) as journal:
        assert list(journal.orders()) == ["FROMCHILD"]


def test_hand_written_order_rows_are_the_json_of_the_dicts():
    order = make_order()
    order.broker_order_id = 'B"7\\x'
    order.transition(OrderStatus.ACCEPTED)
    tricky = Fill(
        fill_id='F"1\n',
        account="us",
        symbol="AAPL",
        side="BUY",
        quantity=Decimal("1.5"),
        price=Decimal("1E+2"),
        commission=Decimal("0.01"),
        currency="USD",
    )
    order.apply_fill(tricky)
    order.reject_reason = 'a "quoted" reason, é and a\nnewline'
    assert json.loads(order_row(order, [tricky])) == {
        "state": order_state(order),
        "fills": [fill_data(tricky)],
    }
    assert json.loads(order_row(order)) == {"state": order_state(order)}


async def test_checkpoints_run_off_the_order_path(journal):
    assert journal._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] >= 10_000  # only a fallback
    assert journal._checkpointer is None  # nothing written yet: no thread
    for _ in range(50):
        journal.record_intent(make_order())
    checkpointer = journal._checkpointer
    assert checkpointer is not None
    deadline = time.monotonic() + 10
    while checkpointer.done == 0:
        assert time.monotonic() < deadline, "no checkpoint ran"
        await asyncio.sleep(0.05)
    other = sqlite3.connect(journal.path)
    busy, log_frames, checkpointed = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    other.close()
    assert busy == 0 and log_frames == checkpointed
    journal.close()
    assert not checkpointer._thread.is_alive()


def test_the_last_halt_or_resume_is_read_through_its_own_index(journal):
    assert journal.last_halt_or_resume() is None
    journal.record("halt", data={"reason": "first"})
    journal.record("resume", data={"reason": "back"})
    journal.record("halt", data={"reason": "again"})
    journal.record("reduce_only", data={"reason": "not a halt or resume"})
    for n in range(50):
        journal.record("intent", client_order_id=f"C{n}", data={"n": n})
    last = journal.last_halt_or_resume()
    assert last is not None and (last.kind, last.data["reason"]) == ("halt", "again")
    assert last == journal.events(kinds=["halt", "resume"])[-1]
    with sqlite3.connect(journal.path) as db:  # the read uses the index, not a scan of the table
        plan = db.execute("EXPLAIN QUERY PLAN " + _LAST_HALT).fetchall()
    assert "USING INDEX events_halts" in " ".join(str(step) for step in plan)


def test_a_journal_from_before_the_index_gets_it_on_opening(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, "
        "client_order_id TEXT, account TEXT, data TEXT NOT NULL)"
    )
    db.execute("INSERT INTO events (ts, kind, data) VALUES (1, 'resume', '{\"reason\": \"old\"}')")
    db.commit()
    db.close()
    with Journal(path) as journal:
        last = journal.last_halt_or_resume()
        assert last is not None and last.data == {"reason": "old"}
