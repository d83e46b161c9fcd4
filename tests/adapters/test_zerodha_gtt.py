"""Exits held by Kite: an OCO pair as one two-leg GTT trigger, through the real kiteconnect
client against the Kite peer (POST/PUT/DELETE/GET /gtt/triggers), and kiteconnect-mocks' own
GTT bodies read back."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
from peers.kite_peer import DEFAULT_PRICES, KitePeer, load_fixture, running_peer
from support import running, until

from brokers.adapters.zerodha import ZerodhaBroker
from brokers.errors import BrokerAPIError, OrderRejectedError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, RejectCode

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "zerodha"
FIRST_GTT = 105100  # the peer's first trigger id


def oco(**fields: object) -> OrderRequest:
    """Exits for the TCS the peer's account holds (4 shares and 1 still settling) at 3500."""
    return OrderRequest.model_validate(
        {
            "symbol": "TCS",
            "side": "SELL",
            "quantity": 3,
            "order_class": "OCO",
            "take_profit": "3600",
            "stop_loss": "3400",
            **fields,
        }
    )


@pytest.fixture
async def peer():
    async with running_peer(prices={**DEFAULT_PRICES, "NSE:TCS": D("3500")}) as peer:
        yield peer


def adapter_for(peer: KitePeer, monkeypatch: pytest.MonkeyPatch) -> ZerodhaBroker:
    monkeypatch.setenv("KITE_API_KEY", peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", peer.access_token)
    return ZerodhaBroker.from_config({"name": "kite", "root": peer.root, "poll_interval": 0.2, "timeout": 2})


@pytest.fixture
async def broker(peer, monkeypatch):
    adapter = adapter_for(peer, monkeypatch)
    await adapter.connect()
    yield adapter
    await adapter.disconnect()


def service_for(path: Path, broker: ZerodhaBroker) -> tuple[MultiBrokerManager, ExecutionService, Journal]:
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("kite", broker, default=True)
    journal = Journal(path / "journal.sqlite")
    switch = KillSwitch(path, journal=journal, env={})
    return manager, ExecutionService(manager, switch, journal=journal, halt_settings=HaltSettings()), journal


@pytest.fixture
async def service(tmp_path, broker):
    manager, service, journal = service_for(tmp_path, broker)
    async with running(manager, service):
        yield service
    journal.close()


def legs_of(service: ExecutionService, parent: Order) -> tuple[Order, Order]:
    stop = service.get_order(parent.client_order_id + "-SL")
    assert stop is not None, "the stop-loss leg was not taken up"
    return parent, stop


# -- what Kite can hold ----------------------------------------------------------------------
def test_capabilities_say_oco_is_native_and_brackets_are_not(broker):
    caps = broker.capabilities
    assert (caps.oco_orders, caps.bracket_orders, caps.oto_orders) == (True, False, False)
    bracket = OrderRequest(
        symbol="INFY",
        side="BUY",
        quantity=1,
        order_type="LIMIT",
        limit_price="1500",
        take_profit="1600",
        stop_loss="1400",
    )
    refusal = caps.legs_refusal(bracket) or ""
    assert "cannot hold BRACKET exits" in refusal and "(it holds OCO)" in refusal
    assert "then an OCO (take_profit and stop_loss) for the position once it has filled" in refusal
    assert caps.legs_refusal(oco()) is None


async def test_a_bracket_is_refused_before_risk_with_legs_unsupported(service, peer):
    order = await service.submit(
        OrderRequest(
            symbol="INFY",
            side="BUY",
            quantity=1,
            order_type="LIMIT",
            limit_price="1500",
            take_profit="1600",
            stop_loss="1400",
        )
    )
    assert order.status is OrderStatus.REJECTED and order.reject_code == RejectCode.LEGS_UNSUPPORTED
    assert "place the entry alone" in (order.reject_reason or "")
    assert peer.form_posts == [] and peer.gtt_posts == []


# -- placing ---------------------------------------------------------------------------------
async def test_oco_is_one_two_leg_gtt_in_the_form_kite_expects(broker, peer):
    events = broker.subscribe()
    order = await broker.place_order(oco(client_order_id="EXITS1"))
    form = peer.gtt_posts[-1]
    assert set(form) == {"type", "condition", "orders"}
    assert form["type"] == "two-leg"
    assert json.loads(form["condition"]) == {
        "exchange": "NSE",
        "tradingsymbol": "TCS",
        "trigger_values": [3400.0, 3600.0],
        "last_price": 3500.0,
    }
    leg = {"exchange": "NSE", "tradingsymbol": "TCS", "transaction_type": "SELL", "quantity": 3}
    assert json.loads(form["orders"]) == [
        {**leg, "order_type": "LIMIT", "product": "CNC", "price": 3400.0},
        {**leg, "order_type": "LIMIT", "product": "CNC", "price": 3600.0},
    ]
    # The take-profit is the order itself; the stop-loss is told as its leg.
    assert (order.client_order_id, order.broker_order_id) == ("EXITS1", f"gtt:{FIRST_GTT}:1")
    assert (order.status, order.order_type.value, order.limit_price) == (
        OrderStatus.ACCEPTED,
        "LIMIT",
        D(3600),
    )
    stop = events.get_nowait()
    assert isinstance(stop, Order)
    assert (stop.client_order_id, stop.broker_order_id) == ("EXITS1-SL", f"gtt:{FIRST_GTT}:0")
    assert (stop.status, stop.order_type.value, stop.stop_price, stop.quantity) == (
        OrderStatus.ACCEPTED,
        "STOP",
        D(3400),
        D(3),
    )
    assert peer.gtts[FIRST_GTT]["status"] == "active"
    assert peer.form_posts == []  # no regular order was placed


async def test_a_buy_pair_closing_a_short_puts_the_take_profit_below(broker, peer):
    # A short is held in MIS; the BUY pair's take-profit is the lower trigger.
    peer.plan("fill")
    short = await broker.place_order(
        OrderRequest(symbol="SBIN", side="SELL", quantity=10, order_type="MARKET", exchange="NSE")
    )
    assert short.status is not OrderStatus.REJECTED
    await until(lambda: peer.orders[short.broker_order_id].status == "COMPLETE")
    order = await broker.place_order(
        OrderRequest(
            symbol="SBIN", side="BUY", quantity=10, order_class="OCO", take_profit="780", stop_loss="820"
        )
    )
    condition = json.loads(peer.gtt_posts[-1]["condition"])
    assert condition["trigger_values"] == [780.0, 820.0]
    assert [o["price"] for o in json.loads(peer.gtt_posts[-1]["orders"])] == [780.0, 820.0]
    assert order.broker_order_id == f"gtt:{FIRST_GTT}:0"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"stop_loss": "3550"}, "stop_loss 3550 must be below the last price 3500"),
        ({"take_profit": "3450", "stop_loss": "3400"}, "take_profit 3450 must be above the last price 3500"),
        ({"quantity": 10}, "quantity 10 is more than the 5 of TCS held"),
        ({"time_in_force": "IOC"}, "time_in_force IOC: Kite holds an OCO as a GTT"),
        (
            {"symbol": "INFY", "take_profit": "1600", "stop_loss": "1400"},
            "quantity 3: there is no long position in INFY",
        ),
    ],
)
async def test_bad_exits_are_refused_naming_the_field_before_anything_is_sent(broker, peer, fields, words):
    with pytest.raises(OrderRejectedError, match=words):
        await broker.place_order(oco(**fields))
    assert peer.gtt_posts == [] and peer.gtts == {}


async def test_exits_already_at_kite_count_against_the_position(broker, peer):
    await broker.place_order(oco(quantity=3))
    with pytest.raises(OrderRejectedError, match="quantity 3 is more than the 2 of TCS not already covered"):
        await broker.place_order(oco(quantity=3, take_profit="3650"))
    assert len(peer.gtts) == 1
    second = await broker.place_order(oco(quantity=2, take_profit="3650"))
    assert second.status is OrderStatus.ACCEPTED and len(peer.gtts) == 2


async def test_wrong_side_is_refused_by_the_execution_layer_as_a_clear_rejection(service, peer):
    order = await service.submit(oco(stop_loss="3550"))
    assert order.status is OrderStatus.REJECTED
    assert "stop_loss 3550 must be below the last price 3500" in (order.reject_reason or "")
    assert peer.gtts == {}


async def test_a_lost_answer_finds_the_trigger_kite_made(broker, peer):
    peer.gtt_lose_answer = True
    order = await broker.place_order(oco(client_order_id="LOST1"))
    assert (order.client_order_id, order.broker_order_id, order.status) == (
        "LOST1",
        f"gtt:{FIRST_GTT}:1",
        OrderStatus.ACCEPTED,
    )
    assert len(peer.gtts) == 1


# -- through the execution layer: journal, halt, modify, triggers ------------------------------
async def test_oco_legs_are_journaled_with_the_trigger_id(service, peer):
    order = await service.submit(oco())
    assert order.status is OrderStatus.ACCEPTED, order.reject_reason
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    journaled = service.journal.orders()
    assert journaled[parent.client_order_id].broker_order_id == f"gtt:{FIRST_GTT}:1"
    assert journaled[stop.client_order_id].broker_order_id == f"gtt:{FIRST_GTT}:0"
    assert journaled[stop.client_order_id].request.order_type.value == "STOP"


async def test_a_halt_deletes_the_trigger_and_ends_both_legs(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    outcome = await service.halt("test")
    assert outcome["kite"].ok, outcome
    assert peer.gtt_deletes == [FIRST_GTT] and peer.gtts[FIRST_GTT]["status"] == "deleted"
    await until(lambda: parent.status is OrderStatus.CANCELLED and stop.status is OrderStatus.CANCELLED)
    # Nothing is left to fire: a later cross places nothing.
    peer.set_price("NSE:TCS", "3300")
    assert peer.form_posts == [] and not peer.orders


async def test_cancelling_the_pair_deletes_its_trigger(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    await service.cancel("kite", str(parent.broker_order_id))
    assert peer.gtt_deletes == [FIRST_GTT]
    await until(lambda: parent.status is OrderStatus.CANCELLED and stop.status is OrderStatus.CANCELLED)


async def test_modifying_an_exit_price_modifies_the_trigger(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    result = await service.modify(stop.client_order_id, stop_price=D("3420"))
    assert result.status is not OrderStatus.REJECTED, result.reject_reason
    put = peer.gtt_puts[-1]
    assert put["trigger_id"] == str(FIRST_GTT) and put["type"] == "two-leg"
    assert json.loads(put["condition"])["trigger_values"] == [3420.0, 3600.0]
    assert [o["price"] for o in json.loads(put["orders"])] == [3420.0, 3600.0]
    assert stop.stop_price == D("3420")
    assert peer.gtts[FIRST_GTT]["condition"]["trigger_values"] == [3420.0, 3600.0]
    # The new stop fires at its new price, not the old one.
    peer.set_price("NSE:TCS", "3420")
    await until(lambda: stop.status is OrderStatus.FILLED)
    await until(lambda: parent.status is OrderStatus.CANCELLED)


async def test_a_new_take_profit_through_the_service_moves_the_upper_trigger(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, _stop = legs_of(service, order)
    result = await service.modify(parent.client_order_id, limit_price=D("3650"))
    assert result.status is not OrderStatus.REJECTED, result.reject_reason
    assert json.loads(peer.gtt_puts[-1]["condition"])["trigger_values"] == [3400.0, 3650.0]
    assert (parent.limit_price, parent.request.take_profit) == (D(3650), D(3650))


async def test_a_new_take_profit_moves_the_upper_trigger(broker, peer):
    order = await broker.place_order(oco(client_order_id="MOVE1"))
    changed = await broker.modify_order(
        str(order.broker_order_id), oco(client_order_id="MOVE1", take_profit="3650")
    )
    put = peer.gtt_puts[-1]
    assert json.loads(put["condition"])["trigger_values"] == [3400.0, 3650.0]
    assert [(o["price"], o["quantity"]) for o in json.loads(put["orders"])] == [(3400.0, 3), (3650.0, 3)]
    assert (changed.limit_price, changed.status, changed.broker_order_id) == (
        D(3650),
        OrderStatus.ACCEPTED,
        order.broker_order_id,
    )


async def test_a_leg_may_not_grow_beyond_the_position(broker, peer):
    order = await broker.place_order(oco(client_order_id="GROW1"))
    with pytest.raises(OrderRejectedError, match="quantity 6 is more than the 5 of TCS held"):
        await broker.modify_order(str(order.broker_order_id), oco(client_order_id="GROW1", quantity=6))
    assert peer.gtt_puts == []
    grown = await broker.modify_order(str(order.broker_order_id), oco(client_order_id="GROW1", quantity=5))
    assert grown.quantity == D(5)
    assert [o["quantity"] for o in json.loads(peer.gtt_puts[-1]["orders"])] == [3, 5]


async def test_a_modify_on_the_wrong_side_is_refused_and_nothing_is_sent(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    _, stop = legs_of(service, order)
    report = await service.modify(stop.client_order_id, stop_price=D("3510"))
    assert report.status is OrderStatus.REJECTED
    assert "stop_loss 3510 must be below the last price 3500" in (report.reject_reason or "")
    assert peer.gtt_puts == [] and stop.stop_price == D(3400)


async def test_a_triggered_take_profit_fills_and_cancels_the_stop(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    peer.set_price("NSE:TCS", "3600")
    assert peer.gtts[FIRST_GTT]["status"] == "triggered"
    await until(lambda: parent.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELLED)
    assert (parent.filled_quantity, parent.avg_fill_price) == (D(3), D(3600))
    assert parent.broker_order_id == f"gtt:{FIRST_GTT}:1"  # the leg keeps the name the journal knows
    assert [f.quantity for f in parent.fills] == [D(3)]
    assert stop.filled_quantity == 0


async def test_a_stop_the_price_gapped_through_rests_and_a_halt_cancels_its_order(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    peer.set_price("NSE:TCS", "3390")  # through the stop: its LIMIT SELL at 3400 rests
    placed = [o for o in peer.orders.values() if o.tag is None]
    assert len(placed) == 1 and (placed[0].price, placed[0].status) == (D(3400), "OPEN")
    await until(lambda: parent.status is OrderStatus.CANCELLED)
    assert stop.status is OrderStatus.ACCEPTED and stop.broker_order_id == f"gtt:{FIRST_GTT}:0"
    outcome = await service.halt("gap")
    assert outcome["kite"].ok, outcome
    assert placed[0].status == "CANCELLED"
    await until(lambda: stop.status is OrderStatus.CANCELLED)
    assert peer.gtt_deletes == []  # the trigger had already fired: its order is what was cancelled


async def test_a_triggered_leg_kite_could_not_place_is_rejected_with_kites_reason(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    peer.gtt_failure = "Your order price is lower than the current lower circuit limit of 3150.00."
    peer.set_price("NSE:TCS", "3390")
    await until(lambda: stop.status is OrderStatus.REJECTED and parent.status is OrderStatus.CANCELLED)
    assert "lower circuit limit" in (stop.reject_reason or "")


# -- kiteconnect-mocks' own bodies ----------------------------------------------------------
async def test_kites_own_trigger_list_is_read_leg_by_leg(broker, peer):
    peer.serve_fixture("GET", "/gtt/triggers", load_fixture(FIXTURES / "gtt_get_orders.json"))
    peer.serve_fixture(
        "GET",
        "/gtt/triggers/105099",
        {"status": "success", "data": load_fixture(FIXTURES / "gtt_get_orders.json")["data"][1]},
    )
    working = [o for o in await broker.get_open_orders() if o.broker_order_id.startswith("gtt:")]
    # The single trigger is active: one working LIMIT BUY; the triggered pair is not working.
    assert [
        (o.broker_order_id, o.side.value, o.order_type.value, o.limit_price, o.quantity, o.symbol)
        for o in working
    ] == [("gtt:112127:0", "BUY", "LIMIT", D("702.5"), D(1), "INFY")]
    # The triggered pair: its second leg fired and Kite could not place the order; the first is void.
    fired = await broker.get_order("gtt:105099:1")
    assert fired.status is OrderStatus.REJECTED
    assert "lower than the current lower circuit limit of 70.65" in (fired.reject_reason or "")
    void = await broker.get_order("gtt:105099:0")
    assert void.status is OrderStatus.CANCELLED


async def test_kites_own_single_trigger_answer_is_read(broker, peer):
    peer.serve_fixture("GET", "/gtt/triggers/123", load_fixture(FIXTURES / "gtt_get_order.json"))
    leg = await broker.get_order("gtt:123:1")
    assert (leg.status, leg.symbol, leg.side.value, leg.quantity) == (
        OrderStatus.REJECTED,
        "RAIN",
        "SELL",
        D(1),
    )
    assert (await broker.get_order("gtt:123:0")).status is OrderStatus.CANCELLED


@pytest.mark.parametrize(("where", "value"), [("quantity", None), ("price", 0), ("trigger_values", [None])])
async def test_a_trigger_with_a_missing_number_is_skipped_not_read_as_zero(broker, peer, where, value):
    listed = load_fixture(FIXTURES / "gtt_get_orders.json")
    damaged = copy.deepcopy(listed["data"][0])
    if where == "trigger_values":
        damaged["condition"]["trigger_values"] = value
    else:
        damaged["orders"][0][where] = value
    peer.serve_fixture("GET", "/gtt/triggers", {"status": "success", "data": [damaged, listed["data"][1]]})
    legs = [o.broker_order_id for o in await broker.get_open_orders() if o.broker_order_id.startswith("gtt:")]
    assert f"gtt:{damaged['id']}:0" not in legs
    with pytest.raises(BrokerAPIError, match="could not be read"):
        peer.serve_fixture("GET", f"/gtt/triggers/{damaged['id']}", {"status": "success", "data": damaged})
        await broker.get_order(f"gtt:{damaged['id']}:0")


# -- statuses --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kite_status", "ours"),
    [
        ("active", OrderStatus.ACCEPTED),
        ("disabled", OrderStatus.CANCELLED),
        ("expired", OrderStatus.EXPIRED),
        ("cancelled", OrderStatus.CANCELLED),
        ("rejected", OrderStatus.REJECTED),
        ("deleted", OrderStatus.CANCELLED),
        ("paused", OrderStatus.UNKNOWN),  # not a status Kite documents: fails closed
    ],
)
async def test_trigger_statuses_map_to_leg_statuses(broker, peer, kite_status, ours):
    order = await broker.place_order(oco())
    peer.set_gtt_status(FIRST_GTT, kite_status)
    take_profit = await broker.get_order(str(order.broker_order_id))
    stop = await broker.get_order(f"gtt:{FIRST_GTT}:0")
    assert (take_profit.status, stop.status) == (ours, ours)
    if ours is OrderStatus.UNKNOWN:
        # Still counted as working: a halt still deletes it, risk still counts it.
        assert take_profit.is_working
        assert str(order.broker_order_id) in [o.broker_order_id for o in await broker.get_open_orders()]
        assert f"gtt:{FIRST_GTT}:1" in await broker.cancel_all_orders()
        assert peer.gtt_deletes == [FIRST_GTT]


async def test_an_unknown_status_still_counts_and_is_deleted_by_a_halt(service, peer):
    order = await service.submit(oco())
    await until(lambda: service.get_order(order.client_order_id + "-SL") is not None)
    parent, stop = legs_of(service, order)
    peer.set_gtt_status(FIRST_GTT, "paused")
    await until(lambda: parent.status is OrderStatus.UNKNOWN and stop.status is OrderStatus.UNKNOWN)
    assert parent.is_working and stop.is_working


# -- a restart -------------------------------------------------------------------------------
async def test_a_restart_finds_the_trigger_and_a_halt_then_deletes_it(tmp_path, peer, monkeypatch):
    first = adapter_for(peer, monkeypatch)
    await first.connect()
    manager, service, journal = service_for(tmp_path, first)
    async with running(manager, service):
        order = await service.submit(oco(client_order_id="KEEP1"))
        await until(lambda: service.get_order("KEEP1-SL") is not None)
    journal.close()

    second = adapter_for(peer, monkeypatch)
    await second.connect()
    manager, service, journal = service_for(tmp_path, second)
    async with running(manager, service):
        report = await service.reconcile()
        assert report.unresolved == {}
        parent, stop = service.get_order("KEEP1"), service.get_order("KEEP1-SL")
        assert parent is not None and stop is not None
        assert (parent.status, stop.status) == (OrderStatus.ACCEPTED, OrderStatus.ACCEPTED)
        assert (parent.broker_order_id, stop.broker_order_id) == (f"gtt:{FIRST_GTT}:1", f"gtt:{FIRST_GTT}:0")
        await service.halt("after a restart")
        assert peer.gtt_deletes == [FIRST_GTT]
        await until(lambda: parent.status is OrderStatus.CANCELLED and stop.status is OrderStatus.CANCELLED)
    journal.close()
    assert order.client_order_id == "KEEP1"


async def test_a_trigger_that_fired_while_the_program_was_down_is_settled_at_the_restart(
    tmp_path, peer, monkeypatch
):
    first = adapter_for(peer, monkeypatch)
    await first.connect()
    manager, service, journal = service_for(tmp_path, first)
    async with running(manager, service):
        await service.submit(oco(client_order_id="AWAY1"))
        await until(lambda: service.get_order("AWAY1-SL") is not None)
    journal.close()

    peer.set_price("NSE:TCS", "3400")  # the stop fires and fills while nothing here runs

    second = adapter_for(peer, monkeypatch)
    await second.connect()
    manager, service, journal = service_for(tmp_path, second)
    async with running(manager, service):
        await service.reconcile()
        parent, stop = service.get_order("AWAY1"), service.get_order("AWAY1-SL")
        assert parent is not None and stop is not None
        await until(lambda: stop.status is OrderStatus.FILLED and parent.status is OrderStatus.CANCELLED)
        assert stop.filled_quantity == D(3)
        assert service.journal.orders()["AWAY1-SL"].status is OrderStatus.FILLED
    journal.close()


async def test_an_account_whose_triggers_cannot_be_read_still_connects_and_trades(peer, monkeypatch):
    peer.fail("GET", "/gtt/triggers", times=20)
    adapter = adapter_for(peer, monkeypatch)
    await adapter.connect()
    try:
        order = await adapter.place_order(
            OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", limit_price="1490")
        )
        assert order.status is OrderStatus.ACCEPTED
        assert [o.broker_order_id for o in await adapter.get_open_orders()] == [order.broker_order_id]
    finally:
        await adapter.disconnect()
