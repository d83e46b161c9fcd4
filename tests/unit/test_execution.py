from __future__ import annotations

import asyncio
import math
import sys
from decimal import Decimal

import pytest
from support import running, until

from brokers.events import ConnectionEvent
from brokers.execution import DAILY_LOSS_SOURCE, ExecutionService
from brokers.fx import FxRates
from brokers.instruments import Instrument
from brokers.journal import Journal
from brokers.killswitch import FLAG_NAME, HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState, OrderRequest, OrderStatus, RejectCode, Side, TradingState
from brokers.risk import RiskEngine, RiskLimits
from brokers.routing import Router, RoutingRule
from brokers.sim import SimBroker

D = Decimal


class RecordingSim(SimBroker):
    """A paper broker that counts the calls that reach it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.placed: list[str] = []
        self.cancel_alls = 0
        self.cancel_all_in_flight = 0
        self.cancel_all_overlap = 0

    async def place_order(self, request):
        self.placed.append(request.client_order_id)
        return await super().place_order(request)

    async def cancel_all_orders(self):
        self.cancel_alls += 1
        self.cancel_all_in_flight += 1
        self.cancel_all_overlap = max(self.cancel_all_overlap, Rig.cancel_all_in_flight())
        try:
            return await super().cancel_all_orders()
        finally:
            self.cancel_all_in_flight -= 1


class WholeSharesSim(RecordingSim):
    @property
    def capabilities(self):
        return super().capabilities.model_copy(update={"fractional_quantities": False})


class Rig:
    brokers: dict[str, RecordingSim] = {}

    def __init__(self, root):
        usd = {"AAPL": 200, "MSFT": 400}
        Rig.brokers = self.brokers = {
            "us": RecordingSim(
                "us", prices=usd, initial_cash=1_000_000, initial_positions={"AAPL": ("50", "190")}
            ),
            "us2": RecordingSim("us2", prices=usd, initial_cash=1_000_000),
            "us3": WholeSharesSim("us3", prices=usd, initial_cash=1_000_000),
            "in": RecordingSim("in", currency="INR", prices={"INFY": 1800}, initial_cash=100_000_000),
        }
        self.fx = FxRates("USD")
        self.fx.set_rate("USDINR", D(84), source="config")
        self.manager = MultiBrokerManager(fx=self.fx, heartbeat_interval=3600)
        for name, broker in self.brokers.items():
            self.manager.add_broker(name, broker, default=(name == "us"))
        self.root = root
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = self.make_service()

    def make_service(self, **kwargs):
        options = {
            "journal": self.journal,
            "router": Router([RoutingRule(account="in", currency="INR")], "us"),
            "fx": self.fx,
            "halt_settings": HaltSettings(),
            **kwargs,
        }
        return ExecutionService(self.manager, self.switch, **options)

    @staticmethod
    def cancel_all_in_flight():
        return sum(b.cancel_all_in_flight for b in Rig.brokers.values())

    def placed(self):
        return sum(len(b.placed) for b in self.brokers.values())

    async def submit(self, **fields):
        return await self.service.submit(
            OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 1, **fields})
        )

    def risk(self, **limits):
        self.service.risk = RiskEngine(RiskLimits(**limits))


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


def kinds(journal, order):
    return [event.kind for event in journal.events(order=order.client_order_id)]


# -- the happy path ---------------------------------------------------------------------


async def test_market_order_fills_and_is_journaled_intent_first(rig):
    order = await rig.submit(quantity=10)
    assert order.status is OrderStatus.FILLED
    assert order.account == "us"
    assert order.filled_quantity == 10 and order.avg_fill_price == 200
    assert order.broker_order_id is not None
    assert kinds(rig.journal, order) == ["intent", "ack"]
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.FILLED
    assert rig.service.get_order(order.client_order_id) is order
    assert rig.service.orders()[-1] is order
    await until(lambda: rig.service.book.position("us", "AAPL") == 60)


async def test_routing_by_rule_and_explicit_account(rig):
    assert (await rig.submit(symbol="INFY", currency="INR")).account == "in"
    assert (await rig.submit(account="us2")).account == "us2"


async def test_subscribers_hear_every_change(rig):
    seen = []
    rig.service.subscribe(lambda order: seen.append((order.client_order_id, order.status)))
    filled = await rig.submit()
    refused = await rig.submit(account="nowhere")
    resting = await rig.submit(order_type="LIMIT", limit_price=150)
    await rig.service.cancel("us", resting.broker_order_id)
    assert (filled.client_order_id, OrderStatus.FILLED) in seen
    assert (refused.client_order_id, OrderStatus.REJECTED) in seen
    assert (resting.client_order_id, OrderStatus.ACCEPTED) in seen
    assert (resting.client_order_id, OrderStatus.CANCELLED) in seen


async def test_broker_events_update_resting_orders(rig):
    order = await rig.submit(order_type="LIMIT", limit_price=199, quantity=5)
    assert order.status is OrderStatus.ACCEPTED
    rig.brokers["us"].set_price("AAPL", 198)
    await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_quantity == 5 and order.avg_fill_price == 199
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.FILLED
    assert rig.journal.orders()[order.client_order_id].fills[0].price == 199
    assert rig.service.book.position("us", "AAPL") == 55


# -- every reject code ------------------------------------------------------------------


def assert_refused(order, code, *words):
    assert order.status is OrderStatus.REJECTED, order
    assert order.reject_code == code
    for word in words:
        assert word in order.reject_reason


async def test_system_halted(rig):
    rig.switch.halt("lunch", source="test")
    order = await rig.submit()
    assert_refused(order, "SYSTEM_HALTED", "halted", "lunch")
    assert rig.placed() == 0
    # Refused before any intent, and the refusal is in the audit trail.
    assert kinds(rig.journal, order) == ["risk_reject"]
    [row] = rig.journal.events(order=order.client_order_id)
    assert row.data["state"]["reject_code"] == "SYSTEM_HALTED"
    assert row.data["request"]["symbol"] == order.request.symbol


async def test_reduce_only_lets_a_reducing_sell_through_and_refuses_a_buy(rig):
    await rig.service.reduce_only("testing", source="test")
    assert rig.switch.state is TradingState.REDUCING
    sell = await rig.submit(side="SELL", quantity=10)
    assert sell.status is OrderStatus.FILLED
    assert_refused(await rig.submit(side="BUY"), "REDUCE_ONLY", "reduce-only", "testing")
    # 40 left: selling 41 would flip the position short.
    assert_refused(await rig.submit(side="SELL", quantity=41), "REDUCE_ONLY")
    # Nothing held at us2: nothing to reduce there.
    assert_refused(await rig.submit(side="SELL", account="us2"), "REDUCE_ONLY")
    assert (await rig.submit(side="SELL", quantity=40)).status is OrderStatus.FILLED


async def test_reduce_only_counts_working_orders(rig):
    await rig.service.reduce_only("testing")
    resting = await rig.submit(side="SELL", quantity=30, order_type="LIMIT", limit_price=250)
    assert resting.status is OrderStatus.ACCEPTED
    assert_refused(await rig.submit(side="SELL", quantity=21), "REDUCE_ONLY")
    assert (await rig.submit(side="SELL", quantity=20)).status is OrderStatus.FILLED


async def test_max_quantity(rig):
    rig.risk(max_order_quantity=100)
    assert_refused(await rig.submit(quantity=101), "MAX_QUANTITY", "101")
    assert rig.placed() == 0
    refused = rig.service.orders()[-1]
    assert kinds(rig.journal, refused) == ["risk_reject"]
    assert rig.journal.orders()[refused.client_order_id].reject_code == "MAX_QUANTITY"


async def test_max_notional_in_base_currency(rig):
    rig.risk(max_order_notional=10_000)
    # 500 x 1,800 INR = 900,000 INR = 10,714 USD
    assert_refused(
        await rig.submit(symbol="INFY", currency="INR", quantity=500), "MAX_NOTIONAL", "INR", "USD"
    )
    assert (await rig.submit(symbol="INFY", currency="INR", quantity=400)).status is OrderStatus.FILLED


async def test_max_position(rig):
    rig.risk(max_position=60)
    assert_refused(await rig.submit(quantity=11), "MAX_POSITION", "61")
    assert (await rig.submit(quantity=10)).status is OrderStatus.FILLED


async def test_price_band(rig):
    rig.risk(price_band_percent=5)
    assert_refused(await rig.submit(order_type="LIMIT", limit_price=250), "PRICE_BAND", "25.0%")
    assert (await rig.submit(order_type="LIMIT", limit_price=205)).status is OrderStatus.FILLED


async def test_rate_limit(rig):
    rig.risk(max_orders_per_second=1, burst=2)
    assert (await rig.submit(quantity=1)).status is OrderStatus.FILLED
    assert (await rig.submit(quantity=2)).status is OrderStatus.FILLED
    assert_refused(await rig.submit(quantity=3), "RATE_LIMIT", "per second")
    assert (await rig.submit(quantity=3, account="us2")).status is OrderStatus.FILLED


async def test_max_open_orders(rig):
    rig.risk(max_open_orders=2)
    for price in (150, 151):
        assert (await rig.submit(order_type="LIMIT", limit_price=price)).status is OrderStatus.ACCEPTED
    assert_refused(await rig.submit(order_type="LIMIT", limit_price=152), "MAX_OPEN_ORDERS", "2")


async def test_daily_loss_moves_to_reducing_and_says_so(rig):
    heard = []
    rig.switch.subscribe(lambda state, info: heard.append((state, info.reason if info else "")))
    rig.risk(daily_loss_limit=100)
    rig.brokers["us"].set_price("AAPL", 197)  # 50 held, marked at 200 at start: -150 today
    assert_refused(await rig.submit(side="BUY"), "DAILY_LOSS", "daily loss limit", "150.00 USD")
    assert rig.switch.state is TradingState.REDUCING
    assert rig.switch.info.source == DAILY_LOSS_SOURCE
    assert heard and heard[-1][0] is TradingState.REDUCING and "daily loss limit" in heard[-1][1]
    risk_rows = [e for e in rig.journal.events(kinds=["risk"]) if e.data.get("event") == "daily_loss"]
    assert len(risk_rows) == 1 and "reduce-only" in risk_rows[0].data["message"]
    assert (await rig.submit(side="SELL", quantity=10)).status is OrderStatus.FILLED
    assert_refused(await rig.submit(side="BUY", account="us2"), "DAILY_LOSS")


async def test_daily_loss_is_watched_without_any_order(rig):
    rig.risk(daily_loss_limit=100)
    rig.brokers["us"].set_price("AAPL", 190)
    assert "daily loss limit reached at us" in rig.service.check_daily_loss()
    assert rig.switch.state is TradingState.REDUCING


async def test_symbol_not_allowed(rig):
    rig.risk(denied_symbols=["MSFT"])
    assert_refused(await rig.submit(symbol="MSFT"), "SYMBOL_NOT_ALLOWED", "MSFT")


async def test_duplicate_order_guard_and_duplicate_client_id(rig):
    rig.risk(duplicate_window_seconds=5)
    first = await rig.submit(order_type="LIMIT", limit_price=190, quantity=3)
    assert first.status is OrderStatus.ACCEPTED
    assert_refused(await rig.submit(order_type="LIMIT", limit_price=190, quantity=3), "DUPLICATE_ORDER")
    again = await rig.service.submit(first.request)
    assert_refused(again, "DUPLICATE_ORDER", first.client_order_id)
    assert rig.service.get_order(first.client_order_id) is first  # the original is not displaced
    assert len(rig.brokers["us"].placed) == 1


async def test_broker_unavailable(rig):
    await rig.brokers["us2"].disconnect()
    assert_refused(await rig.submit(account="us2"), "BROKER_UNAVAILABLE", "us2")
    assert rig.placed() == 0


async def test_no_route(tmp_path):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    for name in ("a", "b"):
        manager.add_broker(name, SimBroker(name, prices={"AAPL": 1}))
    await manager.connect_all()
    service = ExecutionService(manager, KillSwitch(tmp_path, env={}), router=Router([], None))
    order = await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert_refused(order, "NO_ROUTE", "AAPL")
    await manager.disconnect_all()


async def test_unknown_account(rig):
    assert_refused(await rig.submit(account="nowhere"), "UNKNOWN_ACCOUNT", "nowhere", "us2")


async def test_unsupported(rig):
    assert_refused(await rig.submit(account="us3", quantity="1.5"), "UNSUPPORTED", "whole")


async def test_invalid_order_from_a_mapping(rig):
    order = await rig.service.submit({"symbol": "AAPL", "side": "BUY", "quantity": "-5"})
    assert_refused(order, "INVALID_ORDER", "quantity")
    with pytest.raises(TypeError):
        await rig.service.submit("buy 5 AAPL")  # type: ignore[arg-type]
    assert (
        await rig.service.submit({"symbol": "aapl", "side": "buy", "quantity": "2"})
    ).status is OrderStatus.FILLED


async def test_invalid_order_built_without_validation(rig):
    unchecked = OrderRequest.model_construct(symbol="AAPL", side=Side.BUY, quantity=D(-1))
    assert_refused(await rig.service.submit(unchecked), "INVALID_ORDER", "quantity")
    assert rig.placed() == 0


async def test_broker_rejected(rig):
    rig.brokers["us"].faults.reject_next = 1
    order = await rig.submit()
    assert_refused(order, "BROKER_REJECTED", "rejected by the simulated venue")
    assert kinds(rig.journal, order) == ["intent", "ack"]


async def test_insufficient_funds(rig):
    assert_refused(await rig.submit(account="us2", quantity=100_000), "INSUFFICIENT_FUNDS", "buying power")


async def test_invalid_symbol(rig):
    assert_refused(await rig.submit(symbol="ZZZZ"), "INVALID_SYMBOL", "ZZZZ")


async def test_journal_error_sends_nothing(rig):
    rig.journal.close()
    assert_refused(await rig.submit(), "JOURNAL_ERROR", "journal")
    assert rig.placed() == 0


async def test_every_reject_code_is_listed():
    expected = {
        "SYSTEM_HALTED",
        "REDUCE_ONLY",
        "MAX_QUANTITY",
        "MAX_NOTIONAL",
        "MAX_POSITION",
        "PRICE_BAND",
        "RATE_LIMIT",
        "MAX_OPEN_ORDERS",
        "DAILY_LOSS",
        "SYMBOL_NOT_ALLOWED",
        "DUPLICATE_ORDER",
        "BROKER_UNAVAILABLE",
        "NO_ROUTE",
        "UNKNOWN_ACCOUNT",
        "UNSUPPORTED",
        "CURRENCY_MISMATCH",
        "INVALID_ORDER",
        "BROKER_REJECTED",
        "INSUFFICIENT_FUNDS",
        "UNSETTLED_FUNDS",
        "INVALID_SYMBOL",
        "JOURNAL_ERROR",
        "LEGS_UNSUPPORTED",
    }
    assert {code.value for code in RejectCode} == expected  # a new code needs its test above


# -- the kill switch --------------------------------------------------------------------


async def test_final_check_catches_a_halt_after_the_intent(rig, monkeypatch):
    original = rig.journal.record_intent

    def halt_while_writing(order):
        row = original(order)
        rig.switch.halt("mid-path", source="test")
        return row

    monkeypatch.setattr(rig.journal, "record_intent", halt_while_writing)
    order = await rig.submit()
    assert_refused(order, "SYSTEM_HALTED", "mid-path")
    assert rig.placed() == 0
    assert kinds(rig.journal, order) == ["intent", "reject"]
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.REJECTED


async def test_halt_written_by_a_subprocess_blocks_the_next_submit(rig):
    assert (await rig.submit()).status is OrderStatus.FILLED
    code = (
        "import sys; from pathlib import Path; from brokers.killswitch import KillSwitch; "
        "KillSwitch(Path(sys.argv[1]), env={}).halt('from another shell', source='cli')"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(rig.root))
    assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    assert_refused(await rig.submit(), "SYSTEM_HALTED", "from another shell")
    assert rig.placed() == 1


async def test_restart_while_halted_starts_halted(rig):
    rig.switch.halt("end of day", source="console")
    restarted = KillSwitch(rig.root, env={})
    service = ExecutionService(rig.manager, restarted, journal=rig.journal)
    assert restarted.state is TradingState.HALTED
    assert_refused(await service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1)), "SYSTEM_HALTED")
    assert rig.placed() == 0


async def test_cancels_succeed_while_halted(rig):
    resting = await rig.submit(order_type="LIMIT", limit_price=150)
    rig.service.halt_settings = HaltSettings(cancel_open_orders=False)
    assert await rig.service.halt("manual", source="test") == {}
    assert resting.status is OrderStatus.ACCEPTED
    cancelled = await rig.service.cancel("us", resting.broker_order_id)
    assert cancelled is resting
    assert resting.status is OrderStatus.CANCELLED
    assert "cancel" in kinds(rig.journal, resting)
    assert rig.journal.orders()[resting.client_order_id].status is OrderStatus.CANCELLED


async def test_halt_cancels_every_working_order_concurrently(rig):
    orders = [await rig.submit(order_type="LIMIT", limit_price=150, account=name) for name in ("us", "us2")]
    await rig.brokers["in"].disconnect()
    for name in ("us", "us2"):
        faults = rig.brokers[name].faults
        faults.hang_next, faults.hang_seconds, faults.hang_methods = 1, 0.05, frozenset({"cancel_all_orders"})
    outcome = await rig.service.halt("panic", source="test")
    assert rig.switch.state is TradingState.HALTED
    assert outcome["us"].ok and outcome["us"].cancelled == 1
    assert outcome["us2"].ok and outcome["us2"].cancelled == 1
    assert outcome["us3"].ok and outcome["us3"].cancelled == 0
    assert not outcome["in"].ok and outcome["in"].error == "not connected"
    assert max(b.cancel_all_overlap for b in rig.brokers.values()) >= 2  # both were in flight at once
    await until(lambda: all(order.status is OrderStatus.CANCELLED for order in orders))
    cancel_rows = [e for e in rig.journal.events(kinds=["cancel"]) if "cancel_all" in e.data]
    assert cancel_rows and cancel_rows[-1].data["cancel_all"]["in"]["ok"] is False


async def test_a_halt_from_elsewhere_also_cancels_working_orders(rig):
    resting = await rig.submit(order_type="LIMIT", limit_price=150)
    KillSwitch(rig.root, env={}).halt("other console", source="cli")
    await until(lambda: resting.status is OrderStatus.CANCELLED)


async def test_resume_needs_a_reason_and_reopens_trading(rig):
    await rig.service.halt("x")
    with pytest.raises(ValueError):
        await rig.service.resume("  ")
    await rig.service.resume("checked", source="trader")
    assert (await rig.submit()).status is OrderStatus.FILLED
    resume = rig.journal.events(kinds=["resume"])[-1]
    assert resume.data["reason"] == "checked" and resume.data["source"] == "trader"


# -- several accounts -------------------------------------------------------------------


async def test_distributed_one_one_one_of_one_hundred(rig):
    parent = OrderRequest(symbol="AAPL", side="BUY", quantity=100)
    children = await rig.service.submit_distributed(parent, {"us": 1, "us2": 1, "us3": 1})
    assert [(c.account, c.quantity) for c in children] == [("us", 34), ("us2", 33), ("us3", 33)]
    assert all(c.status is OrderStatus.FILLED for c in children)
    assert len({c.client_order_id for c in children} | {parent.client_order_id}) == 4
    split = rig.journal.events(order=parent.client_order_id)[0]
    assert split.data["event"] == "split" and len(split.data["children"]) == 3


async def test_distributed_uses_the_account_weights_by_default(rig):
    children = await rig.service.submit_distributed(OrderRequest(symbol="AAPL", side="BUY", quantity=8))
    outcome = {c.account: (c.quantity, c.status, c.reject_code) for c in children}
    assert outcome == {
        "us": (2, OrderStatus.FILLED, None),
        "us2": (2, OrderStatus.FILLED, None),
        "us3": (2, OrderStatus.FILLED, None),
        "in": (2, OrderStatus.REJECTED, "INVALID_SYMBOL"),  # the INR account has no AAPL
    }


async def test_distributed_whole_shares_where_fractions_are_not_allowed(rig):
    children = await rig.service.submit_distributed(
        OrderRequest(symbol="AAPL", side="BUY", quantity="10.5"), {"us": 1, "us3": 1}
    )
    by_account = {c.account: c.quantity for c in children}
    assert by_account == {"us3": D(5), "us": D("5.5")}


async def test_distributed_checks_the_parent_total_first(rig):
    rig.service.risk = RiskEngine(
        RiskLimits(max_order_quantity=50), {name: RiskLimits(max_order_quantity=1000) for name in rig.brokers}
    )
    result = await rig.service.submit_distributed(
        OrderRequest(symbol="AAPL", side="BUY", quantity=100), {"us": 1, "us2": 1, "us3": 1}
    )
    assert len(result) == 1
    assert_refused(result[0], "MAX_QUANTITY", "all accounts together")
    assert rig.placed() == 0


async def test_distributed_returns_every_child_with_its_outcome(rig):
    await rig.brokers["us3"].disconnect()
    children = await rig.service.submit_distributed(
        OrderRequest(symbol="AAPL", side="BUY", quantity=9), {"us": 1, "us2": 1, "us3": 1}
    )
    assert [c.status for c in children] == [OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.REJECTED]
    assert children[2].reject_code == "BROKER_UNAVAILABLE"


async def test_distributed_refusals_before_the_split(rig):
    request = OrderRequest(symbol="AAPL", side="BUY", quantity=10)
    (unknown,) = await rig.service.submit_distributed(request, {"nowhere": 1})
    assert_refused(unknown, "UNKNOWN_ACCOUNT")
    (whole,) = await rig.service.submit_distributed(
        OrderRequest(symbol="AAPL", side="BUY", quantity="0.5"), {"us3": 1}
    )
    assert_refused(whole, "UNSUPPORTED", "whole units")
    rig.switch.halt("x")
    (halted,) = await rig.service.submit_distributed(request)
    assert_refused(halted, "SYSTEM_HALTED")


# -- lost answers -----------------------------------------------------------------------


async def test_timeout_after_accept_is_unknown_then_reconciled(rig):
    faults = rig.brokers["us"].faults
    faults.timeout_next, faults.timeout_after_accept = 1, True
    order = await rig.submit(quantity=2)
    assert order.status is OrderStatus.UNKNOWN
    assert "UNKNOWN" in order.reject_reason and order.reject_code is None
    assert len(rig.brokers["us"].placed) == 1  # never retried
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.UNKNOWN
    report = await rig.service.reconcile()
    assert order in report.resolved
    assert order.status is OrderStatus.FILLED and order.filled_quantity == 2
    assert order.reject_reason is None
    assert len(rig.brokers["us"].placed) == 1
    assert kinds(rig.journal, order)[-1] == "reconcile"
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.FILLED


async def test_timeout_before_accept_reconciles_as_never_placed(rig):
    rig.brokers["us"].faults.timeout_next = 1
    order = await rig.submit()
    assert order.status is OrderStatus.UNKNOWN
    await rig.service.reconcile()
    assert_refused(order, "BROKER_REJECTED", "never reached")


async def test_a_hanging_broker_times_out_to_unknown(rig):
    rig.service.submit_timeout = 0.05
    faults = rig.brokers["us"].faults
    faults.hang_next, faults.hang_seconds, faults.hang_methods = 1, math.inf, frozenset({"place_order"})
    order = await asyncio.wait_for(rig.submit(), timeout=5)
    assert order.status is OrderStatus.UNKNOWN
    assert "within 0.05s" in order.reject_reason
    # The service's own task is not left cancelled: it goes on working.
    assert (await rig.submit()).status is OrderStatus.FILLED
    await rig.service.reconcile()
    assert order.status is OrderStatus.REJECTED


async def test_connection_lost_on_submit_is_unknown(rig):
    rig.brokers["us"].faults.disconnect_after = 0
    order = await rig.submit()
    assert order.status is OrderStatus.UNKNOWN and "connection lost" in order.reject_reason
    report = await rig.service.reconcile(["us"])
    assert report.errors == {"us": "not connected"}
    assert order.client_order_id in report.unresolved
    await rig.brokers["us"].connect()
    await rig.service.reconcile(["us"])
    assert order.status is OrderStatus.REJECTED


async def test_a_cancelled_submit_leaves_the_order_unknown(rig):
    faults = rig.brokers["us"].faults
    faults.hang_next, faults.hang_seconds, faults.hang_methods = 1, math.inf, frozenset({"place_order"})
    task = asyncio.create_task(rig.submit())
    await until(lambda: rig.brokers["us"].placed)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    order = rig.service.orders()[-1]
    assert order.status is OrderStatus.UNKNOWN and "interrupted" in order.reject_reason


async def test_reconcile_leaves_an_order_in_flight_alone(rig):
    faults = rig.brokers["us"].faults
    faults.hang_next, faults.hang_seconds, faults.hang_methods = 1, 0.2, frozenset({"place_order"})
    task = asyncio.create_task(rig.submit())
    await until(lambda: rig.brokers["us"].placed)
    order = rig.service.orders()[-1]
    report = await rig.service.reconcile(["us"])
    assert order not in report.resolved and order.status is OrderStatus.PENDING
    assert (await task).status is OrderStatus.FILLED


async def test_restart_reloads_open_orders_and_reconciles(rig):
    faults = rig.brokers["us"].faults
    faults.timeout_next, faults.timeout_after_accept = 1, True
    lost = await rig.submit(quantity=3)
    await rig.service.stop()
    fresh = rig.make_service()
    await fresh.start()
    try:
        reloaded = fresh.get_order(lost.client_order_id)
        assert reloaded is not None and reloaded.status is OrderStatus.UNKNOWN
        assert_refused(await fresh.submit(lost.request), "DUPLICATE_ORDER")
        await fresh.reconcile()
        assert reloaded.status is OrderStatus.FILLED
    finally:
        await fresh.stop()


async def test_broker_events_settle_an_unknown_order_too(rig):
    faults = rig.brokers["us"].faults
    faults.timeout_next, faults.timeout_after_accept = 1, True
    order = await rig.submit(quantity=4)
    assert order.status is OrderStatus.UNKNOWN
    await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_quantity == 4 and len(rig.brokers["us"].placed) == 1
    assert rig.journal.orders()[order.client_order_id].status is OrderStatus.FILLED


async def test_a_resync_after_reconnect_settles_unknown_orders(rig):
    rig.brokers["us"].faults.timeout_next = 1  # lost before it reached the venue
    order = await rig.submit(quantity=4)
    await asyncio.sleep(0.01)
    assert order.status is OrderStatus.UNKNOWN
    await rig.manager.resync("us")  # what the manager does after every (re)connect
    assert_refused(order, "BROKER_REJECTED", "never reached")
    reconnect = rig.journal.events(kinds=["reconnect"])[-1]
    assert reconnect.account == "us" and reconnect.data["resolved"] == [order.client_order_id]


async def test_reconcile_reports_position_differences(rig):
    rig.service.book.holdings[("us", Instrument.stock("AAPL"))].quantity = D(45)
    report = await rig.service.reconcile(["us"])
    assert [(m.symbol, m.book, m.broker) for m in report.positions] == [("AAPL", D(45), D(50))]
    assert rig.service.book.position("us", "AAPL") == 50
    assert rig.service.book_positions()[("us", "AAPL")] == 50


# -- the halt key -----------------------------------------------------------------------


async def test_halt_now_writes_the_flag_and_starts_cancel_all_entering_the_switch_once(rig, monkeypatch):
    resting = await rig.submit(order_type="LIMIT", limit_price=150)
    entered = []
    real_halt = rig.switch.halt

    def counting_halt(reason="", source="api"):
        entered.append(reason)
        return real_halt(reason, source)

    monkeypatch.setattr(rig.switch, "halt", counting_halt)
    started = rig.service.halt_now("halt key", source="console")
    # Synchronous: the flag is on disk and the cancel-all is under way before any await.
    assert (rig.root / FLAG_NAME).exists()
    assert started.info.reason == "halt key" and started.info.source == "console"
    assert started.cancel_all is not None and not started.cancel_all.done()
    assert entered == ["halt key"]
    outcome = await started.cancel_all
    assert outcome["us"].ok and outcome["us"].cancelled == 1
    await until(lambda: resting.status is OrderStatus.CANCELLED)
    assert len(rig.journal.events(kinds=["halt"])) == 1
    assert [b.cancel_alls for b in rig.brokers.values()] == [1, 1, 1, 1]  # once at each broker
    assert_refused(await rig.submit(), "SYSTEM_HALTED", "halt key")


async def test_halt_now_again_while_halted_keeps_the_halt_and_cancels_again(rig):
    first = rig.service.halt_now("first", source="console")
    await first.cancel_all
    resting_elsewhere = await rig.brokers["us2"].place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type="LIMIT", limit_price=150)
    )
    again = rig.service.halt_now("second", source="console")
    assert again.info == first.info  # the halt in force, not a new one
    assert again.cancel_all is not None and again.cancel_all is not first.cancel_all
    assert (await again.cancel_all)["us2"].cancelled == 1
    assert (
        await rig.brokers["us2"].get_order(resting_elsewhere.broker_order_id)
    ).status is OrderStatus.CANCELLED
    assert len(rig.journal.events(kinds=["halt"])) == 1


async def test_halt_now_without_cancel_open_orders_starts_nothing(rig):
    rig.service.halt_settings = HaltSettings(cancel_open_orders=False)
    started = rig.service.halt_now("quiet", source="test")
    assert started.cancel_all is None and rig.switch.state is TradingState.HALTED


async def test_a_halt_seen_by_the_poll_starts_cancel_all_through_the_same_task(rig):
    KillSwitch(rig.root, env={}).halt("other console", source="cli")
    await until(lambda: [b.cancel_alls for b in rig.brokers.values()] == [1, 1, 1, 1])
    # Pressing halt here while that cancel-all runs or after it joins or repeats it; the
    # switch is not halted a second time.
    started = rig.service.halt_now("halt key", source="console")
    assert started.info.reason == "other console"
    await started.cancel_all


# -- preview ----------------------------------------------------------------------------


async def test_preview_names_the_routed_account_and_the_notional_in_base_currency(rig):
    preview = rig.service.preview(OrderRequest(symbol="INFY", side="BUY", quantity=10, currency="INR"))
    assert preview.targets == {"in": D(10)} and preview.accounts == ["in"]
    assert preview.notional == D(18_000) / 84 and preview.notional_note is None
    assert not preview.needs_confirmation and preview.reasons == () and preview.problem is None
    explicit = rig.service.preview(OrderRequest(symbol="AAPL", side="BUY", quantity=5, account="us2"))
    assert explicit.targets == {"us2": D(5)} and explicit.notional == D(1000)


async def test_preview_asks_for_confirmation_above_the_threshold_and_for_live_accounts(rig):
    big = OrderRequest(symbol="AAPL", side="BUY", quantity=300)  # 60,000 USD at 200
    preview = rig.service.preview(big)
    assert preview.needs_confirmation and preview.reasons == ("notional above 50,000.00 USD",)
    priced = OrderRequest(symbol="AAPL", side="BUY", quantity=300, order_type="LIMIT", limit_price=100)
    assert not rig.service.preview(priced).needs_confirmation  # valued at its own price
    rig.brokers["us2"].live = True
    live = rig.service.preview(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="us2"))
    assert live.live_accounts == ("us2",) and live.reasons == ("LIVE account",)
    unlimited = rig.make_service(confirm_notional_above=None)
    assert not unlimited.preview(big).needs_confirmation


async def test_preview_of_a_split_order_lists_each_account_and_its_part(rig):
    rig.manager.set_weight("in", 0)
    rig.manager.set_weight("us2", 2)
    preview = rig.service.preview(OrderRequest(symbol="AAPL", side="BUY", quantity=9), distributed=True)
    assert preview.targets == {"us": D(2), "us2": D(5), "us3": D(2)}  # "in" has no weight: left out
    assert preview.distributed and preview.notional == D(1800)
    children = await rig.service.submit_distributed(OrderRequest(symbol="AAPL", side="BUY", quantity=9))
    assert {c.account: c.quantity for c in children} == preview.targets


async def test_preview_says_why_there_is_no_notional_or_no_account(rig):
    no_price = rig.service.preview(OrderRequest(symbol="ZZZZ", side="BUY", quantity=1))
    assert no_price.notional is None and "no price for ZZZZ" in no_price.notional_note
    assert not no_price.needs_confirmation
    rig.fx = FxRates("USD")
    no_rate = rig.make_service().preview(OrderRequest(symbol="INFY", side="BUY", quantity=1, currency="INR"))
    assert no_rate.notional is None and "exchange rate" in no_rate.notional_note
    unknown = rig.service.preview(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="nowhere"))
    assert unknown.targets == {} and "unknown account 'nowhere'" in unknown.problem
    unrouted = rig.make_service(router=Router([], None))
    rig.manager.set_default(None)
    lost = unrouted.preview(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    assert lost.targets == {} and "no account takes AAPL" in lost.problem


# -- subscribers and events -------------------------------------------------------------


async def test_a_failing_order_subscriber_does_not_stop_the_others(rig):
    seen = []
    rig.service.subscribe(lambda order: 1 / 0)
    rig.service.subscribe(lambda order: seen.append(order.status))
    assert (await rig.submit()).status is OrderStatus.FILLED
    assert seen and seen[-1] is OrderStatus.FILLED


async def test_events_that_are_not_about_orders_are_ignored(rig):
    before = rig.service.orders()
    rig.service.apply_event(ConnectionEvent("us", ConnectionState.CONNECTED))
    assert rig.service.orders() == before
