"""The blotter shows an order of an account not in this configuration as orphaned, says what
to do, and does not offer to cancel it."""

from __future__ import annotations

from console_support import console, demo, settled, wait_for

from brokers.journal import Journal
from brokers.models import Order, OrderRequest, OrderStatus

SIZE = (160, 48)


async def test_an_orphaned_order_is_shown_as_such_and_not_cancelled():
    config = demo()
    with Journal(config.journal_path) as journal:
        request = OrderRequest(
            symbol="AAPL", side="BUY", quantity=5, order_type="LIMIT", limit_price=150, account="ib-live"
        )
        order = Order(request=request, account="ib-live")
        journal.record_intent(order)
        order.broker_order_id = "B-7"
        order.transition(OrderStatus.ACCEPTED)
        journal.record_order("ack", order)
    key = order.client_order_id

    app = console(config)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await wait_for(lambda: key in app.blotter.orders, pilot)
        blotter = app.blotter
        assert blotter.table.shown(key, "status").plain == "ORPHANED"
        assert "ib-live" in blotter.table.shown(key, "result").plain
        assert blotter.border_subtitle.startswith("0 working · 1 orphaned")

        said: list[str] = []
        notify = app.notify
        app.notify = lambda message, **options: (said.append(str(message)), notify(message, **options))[1]
        await pilot.press("ctrl+b")
        assert blotter.selected_order() is app.runtime.execution.get_order(key)
        await pilot.press("ctrl+x")
        await pilot.pause()
        assert any("not in this configuration" in text and "Add the account back" in text for text in said)
        assert app.runtime.execution.get_order(key).status is OrderStatus.ACCEPTED
