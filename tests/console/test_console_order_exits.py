"""Take-profit and stop-loss on the order ticket: typed like any field, checked by the library
with the message under the field, and sent as a bracket whose legs the blotter shows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from console_support import console, settled, submit, wait_for

from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from brokers.models import OrderClass, OrderStatus
from console.tui.widgets.order_entry import FieldBox, build_request

BASE = {"symbol": "AAPL", "side": "BUY", "quantity": "5", "type": "LIMIT", "limit": "100", "tif": "DAY"}


def test_exits_make_a_bracket_or_an_oto():
    request, errors = build_request({**BASE, "take_profit": "110", "stop_loss": "95.5"})
    assert errors == {} and request is not None
    assert (request.legs, request.take_profit, request.stop_loss) == (
        OrderClass.BRACKET,
        110,
        Decimal("95.5"),
    )
    request, errors = build_request({**BASE, "take_profit": " ", "stop_loss": "95"})
    assert errors == {} and request is not None and request.legs is OrderClass.OTO
    request, errors = build_request({**BASE, "take_profit": "", "stop_loss": ""})
    assert errors == {} and request is not None and request.legs is OrderClass.SIMPLE


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"take_profit": "99"}, "take_profit", "take-profit 99 must be above the entry price 100"),
        ({"stop_loss": "101"}, "stop_loss", "stop-loss 101 must be below the entry price 100"),
        ({"take_profit": "abc"}, "take_profit", "take-profit"),
        ({"stop_loss": "1,5"}, "stop_loss", "comma"),
    ],
)
def test_a_bad_exit_is_named_under_its_field(changes, field, words):
    request, errors = build_request({**BASE, **changes})
    assert request is None
    assert words in errors[field]


async def test_a_bracket_from_the_ticket_reaches_the_broker_with_its_legs():
    app = console()
    async with app.run_test(size=(200, 50)) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="AAPL", quantity="2", take_profit="240", stop_loss="215")
        await wait_for(lambda: any(o.request.has_legs for o in app.blotter.orders.values()), pilot)
        parent = next(o for o in app.blotter.orders.values() if o.request.has_legs)
        coid = parent.client_order_id
        await wait_for(
            lambda: {coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX} <= set(app.blotter.orders), pilot
        )
        assert parent.status is OrderStatus.FILLED
        legs = [app.blotter.orders[coid + suffix] for suffix in (TAKE_PROFIT_SUFFIX, STOP_LOSS_SUFFIX)]
        assert [(leg.limit_price, leg.stop_price) for leg in legs] == [(240, None), (None, 215)]


async def test_a_bad_exit_shows_under_the_field_and_sends_nothing():
    app = console()
    async with app.run_test(size=(200, 50)) as pilot:
        await settled(app, pilot)
        await submit(app, pilot, symbol="AAPL", quantity="2", type="LIMIT", limit="100", take_profit="90")
        await pilot.pause()
        box = app.order_entry.query_one("#field-take_profit", FieldBox)
        assert box.message is not None and "above the entry price 100" in box.message
        assert not app.blotter.orders
