"""Message sequences the TWS API documents and real sessions show, played by the TWS peer through
the real client library: informational codes about a working order, execution corrections,
orderStatus(Filled) before its executions, CFDs and security types nothing here models, and
orders modified in TWS."""

from __future__ import annotations

from decimal import Decimal

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    CANCEL_ORDER,
    REQ_EXECUTIONS,
    REQ_POSITIONS,
    drain,
    fill_status_first,
    ibkr_fixture,
    next_event,
    notice,
    tws_peer_fixture,
)
from support import until

from brokers.adapters.ibkr import IBKRBroker
from brokers.book import Book
from brokers.execution import ExecutionService
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, RejectCode
from brokers.risk import RiskEngine, RiskLimits

TIF_PRESET = (10349, "Order TIF was set to DAY based on order preset.")


def request(**fields) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 5, **fields})


def resting(**fields) -> OrderRequest:
    return request(order_type="LIMIT", limit_price="140", **fields)


def fills(events: list) -> list[Fill]:
    return [event for event in events if isinstance(event, Fill)]


async def status_of(queue, order: Order, status: OrderStatus) -> Order:
    return await next_event(
        queue, Order, lambda o: o.client_order_id == order.client_order_id and o.status is status
    )


# -- informational codes ------------------------------------------------------------------------


def test_informational_codes_are_one_table():
    from brokers.adapters.ibkr.codes import INFORMATIONAL

    assert {399, 404, 10349, 2104, 2106, 2158, 2109} <= set(INFORMATIONAL)
    assert not {201, 202, 103, 110, 200, 161, 10147, 10148} & set(INFORMATIONAL)


async def test_tif_preset_notice_leaves_a_new_order_working_and_its_fills_complete_it(tws_peer, ibkr):
    updates = ibkr.subscribe()
    tws_peer.react(notice(*TIF_PRESET, alone=True))
    order = await ibkr.place_order(resting(time_in_force="GTC"))

    assert order.status is OrderStatus.ACCEPTED and order.reject_code is None
    assert [o.client_order_id for o in await ibkr.get_open_orders()] == [order.client_order_id]
    tws_peer.fill(tws_peer.order(order.client_order_id), 2, "139.5")
    await status_of(updates, order, OrderStatus.PARTIALLY_FILLED)
    tws_peer.fill(tws_peer.order(order.client_order_id), 3, "139.5")
    done = await status_of(updates, order, OrderStatus.FILLED)
    assert (done.filled_quantity, done.avg_fill_price, len(done.fills)) == (5, Decimal("139.5"), 2)
    assert (await ibkr.get_order(order.broker_order_id)).status is OrderStatus.FILLED


async def test_tif_preset_notice_about_a_working_order_does_not_end_it(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(resting())
    tws_peer.send_error(*TIF_PRESET, req_id=int(order.broker_order_id))
    await ibkr.ping()  # answered after the notice on the same socket: the notice has been read
    assert (await ibkr.get_order(order.broker_order_id)).status is OrderStatus.ACCEPTED

    tws_peer.fill(tws_peer.order(order.client_order_id))
    done = await status_of(updates, order, OrderStatus.FILLED)
    assert done.filled_quantity == 5 and not [
        o for o in drain(updates) if isinstance(o, Order) and o.status is OrderStatus.REJECTED
    ]


# -- execution corrections ----------------------------------------------------------------------


async def test_a_correction_replaces_the_execution_it_corrects(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(resting())
    sent = tws_peer.order(order.client_order_id)
    first = tws_peer.fill(sent, price="139.8")
    fill = await next_event(updates, Fill)
    await status_of(updates, order, OrderStatus.FILLED)

    same = tws_peer.correct(first)  # identical but for the execId
    moved = tws_peer.correct(same, price="139.6")  # then the price is corrected
    assert (first.exec_id[-3:], same.exec_id[-3:], moved.exec_id[-3:]) == (".01", ".02", ".03")
    corrected = await next_event(
        updates, Order, lambda o: o.client_order_id == order.client_order_id and o.avg_fill_price != 139.8
    )

    assert fill.fill_id == first.exec_id and fills(drain(updates)) == []
    assert (corrected.filled_quantity, corrected.avg_fill_price) == (5, Decimal("139.6"))
    assert [(f.fill_id, f.quantity, f.price) for f in corrected.fills] == [
        (first.exec_id, 5, Decimal("139.6"))
    ]
    known = await ibkr.get_order(order.broker_order_id)
    assert (known.status, known.filled_quantity, len(known.fills)) == (OrderStatus.FILLED, 5, 1)


async def test_a_restarted_adapter_counts_a_corrected_execution_once(tws_peer, ibkr):
    order = await ibkr.place_order(resting())
    tws_peer.correct(tws_peer.fill(tws_peer.order(order.client_order_id)), price="139.5")
    await until(lambda: len(tws_peer.executions) == 2)
    await ibkr.disconnect()

    again = IBKRBroker("ib-paper", port=tws_peer.port, timeout=2.0)
    again.commission_grace = 0.3
    await again.connect()
    try:
        found = await again.get_order_by_client_id(order.client_order_id)
        assert found is not None
        assert (found.status, found.filled_quantity, found.avg_fill_price) == (
            OrderStatus.FILLED,
            5,
            Decimal("139.5"),
        )
        assert [f.fill_id for f in found.fills] == [tws_peer.executions[0].exec_id]
    finally:
        await again.disconnect()


# -- orderStatus(Filled) before execDetails ---------------------------------------------------


async def test_filled_status_before_its_execution_keeps_the_order_working(tws_peer, ibkr):
    updates = ibkr.subscribe()
    tws_peer.react(fill_status_first())
    order = await ibkr.place_order(request())

    assert tws_peer.order(order.client_order_id).status == "Filled"
    assert order.status is OrderStatus.ACCEPTED and order.is_working
    assert order.filled_quantity == 0 and order.remaining_quantity == 5

    tws_peer.release_executions()
    fill = await next_event(updates, Fill)
    done = await status_of(updates, order, OrderStatus.FILLED)
    assert (fill.quantity, fill.price) == (5, 150)
    assert (done.filled_quantity, done.avg_fill_price, [f.fill_id for f in done.fills]) == (
        5,
        150,
        [fill.fill_id],
    )


async def test_overdue_executions_are_asked_for_and_counted_once(tws_peer, ibkr):
    ibkr.execution_grace = 0.2
    updates = ibkr.subscribe()
    tws_peer.react(fill_status_first())
    order = await ibkr.place_order(request())
    assert order.status is OrderStatus.ACCEPTED

    fill = await next_event(updates, Fill)  # from the executions the adapter asked TWS for
    done = await status_of(updates, order, OrderStatus.FILLED)
    assert tws_peer.requests(REQ_EXECUTIONS)
    assert (done.filled_quantity, done.avg_fill_price, len(done.fills)) == (5, 150, 1)
    tws_peer.release_executions()  # the live execution, late: already counted
    await ibkr.ping()
    known = await ibkr.get_order(order.broker_order_id)
    assert (known.filled_quantity, len(known.fills)) == (5, 1) and fill.quantity == 5


async def test_filled_status_without_any_execution_takes_the_status_figures(tws_peer, ibkr):
    ibkr.execution_grace = 0.2
    updates = ibkr.subscribe()
    tws_peer.react(fill_status_first())
    order = await ibkr.place_order(request())
    tws_peer.executions.clear()  # TWS lists no execution for it (filled on an earlier day)

    done = await status_of(updates, order, OrderStatus.FILLED)
    assert (done.filled_quantity, done.avg_fill_price) == (5, 150)


async def test_an_order_filled_on_an_earlier_day_is_filled_after_a_restart(tws_peer, ibkr):
    order = await ibkr.place_order(request())
    await until(lambda: tws_peer.order(order.client_order_id).status == "Filled")
    await ibkr.disconnect()
    tws_peer.executions.clear()  # TWS lists the executions of the current day only

    again = IBKRBroker("ib-paper", port=tws_peer.port, timeout=2.0)
    await again.connect()
    try:
        found = await again.get_order_by_client_id(order.client_order_id)
        assert found is not None and found.status is OrderStatus.FILLED and found.filled_quantity == 5
    finally:
        await again.disconnect()


async def test_cancel_of_an_order_tws_filled_unseen_answers_filled(tws_peer, ibkr):
    tws_peer.react(fill_status_first())
    order = await ibkr.place_order(request())
    tws_peer.executions.clear()

    done = await ibkr.cancel_order(order.broker_order_id)
    assert tws_peer.requests(CANCEL_ORDER) and tws_peer.requests(REQ_EXECUTIONS)
    assert (done.status, done.filled_quantity, done.avg_fill_price) == (OrderStatus.FILLED, 5, 150)


async def test_execution_layer_sees_a_working_order_until_the_execution_arrives(tws_peer, ibkr, tmp_path):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib-paper", ibkr, default=True)
    await manager.connect_all()
    await manager.start()
    service = ExecutionService(
        manager, KillSwitch(tmp_path, env={}), risk=RiskEngine(RiskLimits(max_position=5))
    )
    await service.start()
    try:
        tws_peer.react(fill_status_first())
        first = await service.submit(request())
        assert first.status is OrderStatus.ACCEPTED and first.filled_quantity == 0, first.reject_reason
        second = await service.submit(request())
        assert second.status is OrderStatus.REJECTED and second.reject_code == RejectCode.MAX_POSITION.value
        assert len(tws_peer.orders) == 1

        tws_peer.release_executions()
        await until(lambda: service.book.position("ib-paper", "AAPL") == 5)
        assert service.book.pending("ib-paper", "AAPL", first.side) == 0
    finally:
        await service.stop()
        await manager.stop()


# -- security types ----------------------------------------------------------------------------


async def test_a_cfd_beside_the_stock_is_two_positions_that_never_net(tws_peer, ibkr):
    await ibkr.place_order(request(quantity=100))
    cfd = await ibkr.place_order(request(symbol="AAPL", asset_class="CFD", side="SELL", quantity=100))
    sent = tws_peer.order(cfd.client_order_id)
    assert sent.instrument.sec_type == "CFD" and sent.status == "Filled"

    positions = {(p.symbol, p.asset_class): p.quantity for p in await ibkr.get_positions()}
    assert positions == {("AAPL", AssetClass.STOCK): 100, ("AAPL CFD", AssetClass.CFD): -100}

    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib-paper", ibkr, default=True)
    book = Book(manager, None, "USD")
    assert book.seed("ib-paper", await ibkr.get_positions()) == []
    assert book.positions() == {("ib-paper", "AAPL"): 100, ("ib-paper", "AAPL CFD"): -100}


async def test_a_cfd_position_can_be_closed_by_its_symbol(tws_peer, ibkr):
    await ibkr.place_order(request(asset_class="CFD", side="SELL", quantity=10))
    (held,) = await ibkr.get_positions()
    closing = await ibkr.place_order(
        request(symbol=held.symbol, asset_class=held.asset_class, side="BUY", quantity=10)
    )
    assert tws_peer.order(closing.client_order_id).instrument.sec_type == "CFD"
    await until(lambda: not tws_peer.accounts["DU1234567"].positions)


async def test_unknown_security_types_are_shown_as_what_they_are(tws_peer, ibkr):
    tws_peer.replies[REQ_POSITIONS] = [
        ["61", "3", "DU1234567", "265598", "AAPL", "STK", "", "0", "", "", "NASDAQ", "USD", "AAPL", "NMS", "100", "150"],
        ["61", "3", "DU1234567", "143631496", "AAPL", "CFD", "", "0", "", "", "SMART", "USD", "AAPL", "AAPL", "-100", "151"],
        ["61", "3", "DU1234567", "500123", "XYZ", "WAR", "20261218", "50", "C", "1", "FWB", "EUR", "XYZ WAR", "XYZ", "1000", "0.35"],
        ["62", "1"],
    ]  # fmt: skip
    shown = {p.symbol: (p.asset_class, p.quantity) for p in await ibkr.get_positions()}
    assert shown == {
        "AAPL": (AssetClass.STOCK, 100),
        "AAPL CFD": (AssetClass.CFD, -100),
        "XYZ WAR": (AssetClass.OTHER, 1000),
    }


# -- orders modified in TWS ---------------------------------------------------------------------


async def test_an_order_enlarged_in_tws_is_followed(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(resting(quantity=10))
    sent = tws_peer.order(order.client_order_id)
    tws_peer.modify(sent, quantity=20)
    enlarged = await next_event(updates, Order, lambda o: o.quantity == 20)
    assert (enlarged.client_order_id, enlarged.status, enlarged.remaining_quantity) == (
        order.client_order_id,
        OrderStatus.ACCEPTED,
        20,
    )

    tws_peer.fill(sent, 10)
    half = await status_of(updates, order, OrderStatus.PARTIALLY_FILLED)
    assert (half.filled_quantity, half.quantity, half.remaining_quantity) == (10, 20, 10)
    listed = {o.client_order_id: o for o in await ibkr.get_open_orders()}
    assert listed[order.client_order_id].status is OrderStatus.PARTIALLY_FILLED

    cancelled = await ibkr.cancel_order(order.broker_order_id)
    assert tws_peer.requests(CANCEL_ORDER) and sent.status == "Cancelled"
    assert (cancelled.status, cancelled.filled_quantity, cancelled.quantity) == (
        OrderStatus.CANCELLED,
        10,
        20,
    )


async def test_a_limit_price_changed_in_tws_is_followed(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(resting())
    tws_peer.modify(tws_peer.order(order.client_order_id), limit="140.5")
    moved = await next_event(updates, Order, lambda o: o.limit_price == Decimal("140.5"))
    assert moved.client_order_id == order.client_order_id and moved.status is OrderStatus.ACCEPTED
    assert (await ibkr.get_order(order.broker_order_id)).limit_price == Decimal("140.5")


@pytest.mark.parametrize("code", sorted({399, 404, 10311, 10349, 2109}))
async def test_informational_codes_about_a_new_order_leave_it_working(tws_peer, ibkr, code):
    tws_peer.react(notice(code, f"notice {code}", alone=True))
    order = await ibkr.place_order(resting())
    assert order.status is OrderStatus.ACCEPTED


async def test_execution_layer_follows_an_order_enlarged_in_tws(tws_peer, ibkr, tmp_path):
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib-paper", ibkr, default=True)
    await manager.connect_all()
    await manager.start()
    service = ExecutionService(manager, KillSwitch(tmp_path, env={}))
    await service.start()
    try:
        order = await service.submit(resting(quantity=10))
        sent = tws_peer.order(order.client_order_id)
        tws_peer.modify(sent, quantity=20)
        tws_peer.fill(sent, 10)
        await until(lambda: service.book.position("ib-paper", "AAPL") == 10)
        await ibkr.ping()
        tracked = service.tracker.get(order.client_order_id)
        assert tracked is not None
        assert (tracked.status, tracked.quantity, tracked.filled_quantity) == (
            OrderStatus.PARTIALLY_FILLED,
            20,
            10,
        )
        assert service.book.pending("ib-paper", "AAPL", tracked.side) == 10
    finally:
        await service.stop()
        await manager.stop()


async def test_option_future_and_forex_contracts_keep_their_identity_from_fill_to_book(tws_peer, ibkr):
    from datetime import date

    from brokers.instruments import Instrument

    updates = ibkr.subscribe()
    await ibkr.place_order(request(quantity=100))
    await ibkr.place_order(request(symbol="AAPL 20240119 150 C", asset_class="OPTION", quantity=2))
    await ibkr.place_order(request(symbol="ES 202503", asset_class="FUTURE", exchange="CME", quantity=1))
    await ibkr.place_order(request(symbol="EUR.USD", asset_class="FOREX", quantity=20000))
    got: list[Fill] = []
    while len(got) < 4:
        got.append(await next_event(updates, Fill))
    option_fill = next(f for f in got if f.asset_class is AssetClass.OPTION)
    future_fill = next(f for f in got if f.asset_class is AssetClass.FUTURE)
    assert option_fill.multiplier == 100 and future_fill.multiplier == 50
    call = Instrument("AAPL", AssetClass.OPTION, expiry=date(2024, 1, 19), strike=Decimal(150), right="C")
    assert option_fill.instrument == call

    positions = {p.instrument: p for p in await ibkr.get_positions()}
    # Four instruments, none of them AAPL shares but the shares themselves.
    assert set(positions) == {
        Instrument.stock("AAPL"),
        call,
        Instrument("ES 202503", AssetClass.FUTURE),
        Instrument("EUR/USD", AssetClass.FOREX),
    }
    held_call = positions[call]
    assert (held_call.quantity, held_call.multiplier, held_call.instrument.expiry) == (
        2,
        100,
        date(2024, 1, 19),
    )
    assert held_call.market_value == 2 * 5 * 100
    # Each is priced as itself: the call's mark is 5, the shares' 150.
    assert ibkr.last_price_nowait(Instrument.stock("AAPL")) == 150
    assert ibkr.last_price_nowait(call) == 5
    assert ibkr.last_price_nowait(Instrument("AAPL", AssetClass.CFD)) is None

    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib-paper", ibkr, default=True)
    book = Book(manager, None, "USD")
    assert book.seed("ib-paper", await ibkr.get_positions()) == []
    assert book.position("ib-paper", call) == 2 and book.position("ib-paper", "AAPL") == 100
