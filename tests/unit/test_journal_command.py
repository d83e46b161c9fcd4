"""``trading-console journal`` over a journal with archived days: --stats, --archive, and --since
and --order reading the archive as well."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from typer.testing import CliRunner

from brokers.config import demo_config
from brokers.journal import Journal
from brokers.journal_archive import archived_days
from brokers.models import Order, OrderRequest, OrderStatus
from console.cli.bench.journal import write_history
from console.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _journal_with_old_days() -> tuple[Journal, list[str]]:
    """The demo's journal with 40 filled orders over the last ten days and one order today."""
    path = demo_config().journal_path
    now = datetime.now(UTC)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=10)
    write_history(path, 40, start=start, end=start + timedelta(days=8), open_every=0)
    journal = Journal(path)
    order = Order(request=OrderRequest(symbol="AAPL", side="BUY", quantity=1), account="sim")
    journal.record_intent(order)
    order.transition(OrderStatus.ACCEPTED)
    journal.record_order("ack", order)
    return journal, [order.client_order_id]


def test_stats_archive_and_reading_archived_days():
    journal, today_ids = _journal_with_old_days()
    try:
        before = journal.events()
    finally:
        journal.close()
    stats = json.loads(invoke("journal", "--stats", "--json").stdout)
    assert (stats["events"], stats["open_orders"], stats["archived_days"]) == (82, 1, 0)
    assert stats["database_bytes"] > 0 and stats["total_bytes"] >= stats["database_bytes"]

    archived = invoke("journal", "--archive", "--keep-days", "400", "--json")
    assert archived.exit_code == 0, archived.output
    result = json.loads(archived.stdout)
    assert len(result["archived"]) >= 8 and result["rows"] == 80
    assert result["held_back_from"] == datetime.now(UTC).date().isoformat()
    folder = demo_config().journal_path.with_name("demo-journal-archive")
    assert [day.isoformat() for day in archived_days(folder)] == result["archived"]

    after = json.loads(invoke("journal", "--stats", "--json").stdout)
    assert (after["events"], after["open_orders"], after["archived_days"]) == (2, 1, len(result["archived"]))
    assert after["archive_bytes"] > 0

    # Read back: every row, archived or not, as it was.
    rows = json.loads(invoke("journal", "--since", "30d", "--limit", "0", "--json").stdout)
    assert [(r["id"], r["kind"], r["client_order_id"], r["data"]) for r in rows] == [
        (e.id, e.kind, e.client_order_id, e.data) for e in before
    ]
    last = json.loads(invoke("journal", "--since", "30d", "--limit", "3", "--json").stdout)
    assert [r["id"] for r in last] == [e.id for e in before[-3:]]
    table = invoke("journal", "--since", "30d", "--limit", "5")
    assert "77 earlier event(s) not shown" in table.stdout
    old = before[0].client_order_id
    assert old is not None
    history = json.loads(invoke("journal", "--order", old, "--json").stdout)
    assert [r["kind"] for r in history] == ["intent", "fill"]
    assert today_ids[0] in {r["client_order_id"] for r in last}


def test_archive_without_a_journal_and_bad_combinations():
    nothing = invoke("journal", "--archive")
    assert nothing.exit_code == 0 and "No journal" in nothing.stdout
    assert invoke("journal", "--keep-days", "3").exit_code == 2
    assert invoke("journal", "--stats", "--archive").exit_code == 2
    assert invoke("journal", "--archive", "--keep-days", "-1").exit_code == 2


def test_archive_never_moves_a_day_with_an_open_order():
    path = demo_config().journal_path
    now = datetime.now(UTC)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=6)
    # An order every 3 hours for four days, one in eight of them still open.
    write_history(path, 32, start=start, end=start + timedelta(days=4), open_every=8)
    result = json.loads(invoke("journal", "--archive", "--json").stdout)
    assert result["archived"] == [] and result["held_back_from"] == start.date().isoformat()
    with Journal(path) as journal:
        assert len(journal.open_orders()) == 4
        assert journal.stats().archived_days == 0
        assert date.fromisoformat(result["held_back_from"]) == start.date()
