"""Modifying a working order through the execution layer, against the paper broker: the new terms
pass the same gates as a new order, the broker changes the order in place (never a second
working order), and the journal holds the old terms and the new."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from support import running, until

from brokers.amend import MODIFIED, MODIFY, MODIFY_REJECT
from brokers.errors import OrderNotFoundError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode, TimeInForce
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


class Rig:
    def __init__(self, root):
        self.broker = SimBroker(
            "paper",
            prices={"AAPL": 200, "MSFT": 400},
            initial_cash=1_000_000,
            initial_positions={"AAPL": ("50", "190")},
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("paper", self.broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager, self.switch, journal=self.journal, halt_settings=HaltSettings()
        )

    async def resting_buy(self, quantity=10, limit="150", **fields):
        order = await self.service.submit(
            OrderRequest(
                symbol="AAPL", side="BUY", quantity=quantity, order_type="LIMIT", limit_price=limit, **fields
            )
        )
        assert order.status is OrderStatus.ACCEPTED, order.reject_reason
        return order

    def kinds(self, order):
        return [event.kind for event in self.journal.events(order=order.client_order_id)]


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


async def test_modify_changes_quantity_and_price_in_place(rig):
    order = await rig.resting_buy()
    result = await rig.service.modify(order.client_order_id, quantity=D(20), limit_price=D("155"))
    assert result is order
    assert order.status is OrderStatus.ACCEPTED
    assert order.quantity == 20 and order.limit_price == D("155")
    # Still one working order at the broker, with the same ids and the new terms.
    open_orders = await rig.broker.get_open_orders()
    assert [(o.broker_order_id, o.quantity, o.limit_price) for o in open_orders] == [
        (order.broker_order_id, 20, D("155"))
    ]
    assert rig.service.working_orders() == [order]
    assert rig.service.book.pending("paper", "AAPL", order.side) == 20


async def test_modify_is_journaled_old_to_new_and_replays(rig):
    order = await rig.resting_buy()
    await rig.service.modify(order.client_order_id, limit_price=D("151.5"))
    assert rig.kinds(order)[-2:] == [MODIFY, MODIFIED]
    asked = [e for e in rig.journal.events(order=order.client_order_id) if e.kind == MODIFY][0]
    assert asked.data["from"]["limit_price"] == "150"
    assert asked.data["to"]["limit_price"] == "151.5"
    replayed = rig.journal.orders()[order.client_order_id]
    assert replayed.limit_price == D("151.5") and replayed.status is OrderStatus.ACCEPTED


async def test_modified_price_that_crosses_fills(rig):
    order = await rig.resting_buy()
    await rig.service.modify(order.client_order_id, limit_price=D("201"))
    await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_quantity == 10


async def test_modify_refused_while_halted_leaves_the_order_alone(rig):
    rig.service.halt_settings = HaltSettings(cancel_open_orders=False)
    order = await rig.resting_buy()
    rig.switch.halt("test", "test")
    report = await rig.service.modify(order.client_order_id, quantity=D(5))
    assert report is not order
    assert report.status is OrderStatus.REJECTED
    assert report.reject_code == RejectCode.SYSTEM_HALTED
    assert order.status is OrderStatus.ACCEPTED and order.quantity == 10
    assert (await rig.broker.get_order(order.broker_order_id)).quantity == 10
    assert rig.kinds(order)[-1] == MODIFY_REJECT


async def test_modify_passes_the_risk_checks_on_the_new_values(rig):
    order = await rig.resting_buy()
    rig.service.risk = RiskEngine(RiskLimits(max_order_quantity=D(15), max_open_orders=1))
    # The order itself does not count against the open-order limit it already fills.
    assert (await rig.service.modify(order.client_order_id, quantity=D(12))).quantity == 12
    report = await rig.service.modify(order.client_order_id, quantity=D(16))
    assert report.reject_code == RejectCode.MAX_QUANTITY
    assert order.quantity == 12


async def test_reducing_allows_a_smaller_sell_but_not_a_bigger_one(rig):
    sell = await rig.service.submit(
        OrderRequest(symbol="AAPL", side="SELL", quantity=30, order_type="LIMIT", limit_price="250")
    )
    assert sell.status is OrderStatus.ACCEPTED
    rig.switch.reduce_only("test", "test")
    assert (await rig.service.modify(sell.client_order_id, quantity=D(40))).quantity == 40
    report = await rig.service.modify(sell.client_order_id, quantity=D(60))
    assert report.reject_code == RejectCode.REDUCE_ONLY
    assert sell.quantity == 40


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({}, "nothing to change"),
        ({"quantity": D(0)}, "quantity"),
        ({"stop_price": D(10)}, "stop_price is only allowed"),
        ({"limit_price": D(150)}, "already has these terms"),
    ],
)
async def test_bad_modifications_name_the_problem(rig, fields, words):
    order = await rig.resting_buy()
    report = await rig.service.modify(order.client_order_id, **fields)
    assert report.status is OrderStatus.REJECTED
    assert report.reject_code == RejectCode.INVALID_ORDER
    assert words in (report.reject_reason or "")
    assert order.quantity == 10 and order.limit_price == 150


async def test_a_filled_order_cannot_be_modified(rig):
    order = await rig.service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert order.status is OrderStatus.FILLED
    report = await rig.service.modify(order.client_order_id, quantity=D(2))
    assert report.reject_code == RejectCode.INVALID_ORDER
    assert "FILLED" in (report.reject_reason or "")


async def test_quantity_below_the_filled_part_is_refused(rig):
    rig.broker.liquidity_per_tick = D(4)
    order = await rig.service.submit(
        OrderRequest(symbol="AAPL", side="BUY", quantity=10, order_type="LIMIT", limit_price="201")
    )
    await until(lambda: order.filled_quantity == 4)
    report = await rig.service.modify(order.client_order_id, quantity=D(4))
    assert "already filled" in (report.reject_reason or "")


async def test_time_in_force_change(rig):
    order = await rig.resting_buy()
    await rig.service.modify(order.client_order_id, time_in_force=TimeInForce.GTC)
    assert order.time_in_force is TimeInForce.GTC
    assert rig.journal.orders()[order.client_order_id].time_in_force is TimeInForce.GTC


async def test_broker_refusal_is_reported_and_journaled(rig):
    order = await rig.resting_buy()
    report = await rig.service.modify(order.client_order_id, quantity=D(100_000))
    assert report.reject_code == RejectCode.INSUFFICIENT_FUNDS
    assert order.quantity == 10
    assert rig.kinds(order)[-2:] == [MODIFY, MODIFY_REJECT]


async def test_unknown_id_raises(rig):
    with pytest.raises(OrderNotFoundError, match="NOPE"):
        await rig.service.modify("NOPE", quantity=D(1))


async def test_one_change_at_a_time_per_order(rig):
    order = await rig.resting_buy()
    rig.broker.latency = 0.05
    first = asyncio.create_task(rig.service.modify(order.client_order_id, quantity=D(11)))
    await asyncio.sleep(0.01)
    second = await rig.service.modify(order.client_order_id, quantity=D(12))
    assert second.reject_code == RejectCode.INVALID_ORDER
    assert "on its way to the broker" in (second.reject_reason or "")
    assert (await first) is order and order.quantity == 11


async def test_an_echo_of_our_own_change_before_its_answer_is_not_a_change_at_the_broker(rig, caplog):
    order = await rig.resting_buy()
    original = rig.broker.modify_order

    async def echo_first(broker_order_id, request):
        answer = await original(broker_order_id, request)
        # The venue's echo of the change is on its way to the tracker: let it be applied
        # before the answer is returned, as a stream update can overtake a reply.
        for _ in range(5):
            await asyncio.sleep(0)
        return answer

    rig.broker.modify_order = echo_first
    caplog.set_level("INFO", logger="brokers")
    result = await rig.service.modify(order.client_order_id, limit_price=D("152"))
    assert result is order and order.limit_price == D("152")
    assert "modified at the broker" not in caplog.text
    kinds = rig.kinds(order)
    assert kinds.count(MODIFIED) == 1
    assert kinds[kinds.index(MODIFY) :] == [MODIFY, MODIFIED]


async def test_a_change_made_at_the_broker_is_still_taken_up(rig, caplog):
    order = await rig.resting_buy()
    caplog.set_level("INFO", logger="brokers")
    await rig.broker.modify_order(
        order.broker_order_id, order.request.model_copy(update={"limit_price": D("149")})
    )
    await until(lambda: order.limit_price == D("149"))
    assert "modified at the broker" in caplog.text
