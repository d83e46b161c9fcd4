"""What build_runtime wires from the config: the demo's own journal beside a shared flag, and
the confirmation threshold of order previews."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.config import demo_config, parse_config
from brokers.journal import Journal
from brokers.models import OrderRequest, OrderStatus
from brokers.paths import state_dir
from brokers.runtime import build_runtime


def real_config(**changes: object):
    data: dict[str, object] = {
        "accounts": [{"name": "main", "type": "sim", "prices": {"AAPL": "200"}, "seed": 3}],
        **changes,
    }
    return parse_config(data)


def resting(account: str, price: str) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="BUY", quantity=3, order_type="LIMIT", limit_price=price, account=account
    )


async def test_the_demo_and_a_real_config_keep_their_orders_apart_but_share_the_halt():
    real = build_runtime(real_config())
    await real.start()
    real_order = await real.execution.submit(resting("main", "190"))
    assert real_order.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
    await real.stop()

    demo = build_runtime(demo_config(tick_interval=None))
    assert demo.state_dir == real.state_dir == state_dir()
    assert demo.journal.path == state_dir() / "demo-journal.sqlite"
    assert demo.journal.path != real.journal.path
    await demo.start()
    try:
        # The real configuration's working order is neither shown nor touched by the demo.
        assert real_order.client_order_id not in {o.client_order_id for o in demo.execution.orders()}
        demo_order = await demo.execution.submit(resting("paper-us", "210"))
        assert demo_order.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
        await demo.execution.halt("from the demo", source="test")
    finally:
        await demo.stop()

    with Journal(state_dir() / "journal.sqlite") as journal:
        orders = journal.orders()
        assert set(orders) == {real_order.client_order_id}
        assert orders[real_order.client_order_id].is_working
        # The halt is shared by every process, so its record is the state folder's main journal.
        assert [e.kind for e in journal.events(kinds=["halt"])] == ["halt"]
    with Journal(state_dir() / "demo-journal.sqlite") as journal:
        assert set(journal.orders()) == {demo_order.client_order_id}
        # ... and the demo's own history shows it as well.
        assert [e.kind for e in journal.events(kinds=["halt"])] == ["halt"]
    assert demo_config().halt_record_paths == (
        state_dir() / "journal.sqlite",
        state_dir() / "demo-journal.sqlite",
    )
    assert real_config().halt_record_paths == (state_dir() / "journal.sqlite",)

    again = build_runtime(real_config())
    await again.start()
    try:
        assert again.kill_switch.is_halted
        assert demo_order.client_order_id not in {o.client_order_id for o in again.execution.orders()}
        assert again.execution.get_order(real_order.client_order_id) is not None
    finally:
        await again.stop()


async def test_confirmation_threshold_comes_from_the_config():
    runtime = build_runtime(real_config(ui={"confirm_notional_above": 500}))
    try:
        assert runtime.execution.confirm_notional_above == Decimal(500)
        await runtime.start()
        order = OrderRequest(symbol="AAPL", side="BUY", quantity=2, account="main")
        assert not runtime.execution.preview(order).needs_confirmation
        bigger = OrderRequest(symbol="AAPL", side="BUY", quantity=30, account="main")
        assert runtime.execution.preview(bigger).needs_confirmation
    finally:
        await runtime.stop()
    never = build_runtime(real_config(ui={"confirm_notional_above": None}))
    assert never.execution.confirm_notional_above is None
    never.journal.close()


def test_a_halt_record_that_fails_in_one_journal_still_reaches_the_others(tmp_path):
    from brokers.runtime import HaltRecord

    class Broken:
        def record(self, kind: str, *, data: dict[str, object] | None = None) -> object:
            raise OSError("disk full")

    with Journal(tmp_path / "a.sqlite") as first, Journal(tmp_path / "b.sqlite") as second:
        record = HaltRecord(first, Broken(), second)
        with pytest.raises(OSError, match="disk full"):
            record.record("halt", data={"reason": "x"})
        assert [e.kind for e in first.events()] == [e.kind for e in second.events()] == ["halt"]
