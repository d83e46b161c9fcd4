"""The IB adapter's order life cycle, driven through the real client library against the TWS peer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    CANCEL_ORDER,
    PLACE_ORDER,
    REQ_GLOBAL_CANCEL,
    drain,
    drop,
    ibkr_fixture,
    next_event,
    reject,
    silent,
    tws_peer_fixture,
)
from support import until

from brokers.adapters.ibkr import IBKRBroker
from brokers.errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from brokers.models import ConnectionState, Fill, Order, OrderRequest, OrderStatus, OrderType


def request(**fields) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 100, **fields})


async def final(queue, order: Order, status: OrderStatus) -> Order:
    return await next_event(
        queue, Order, lambda o: o.client_order_id == order.client_order_id and o.status is status
    )


# -- life cycle per order type ----------------------------------------------------------------


async def test_market_order_fills_once_with_its_commission(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request())

    assert order.broker_order_id == str(tws_peer.order(order.client_order_id).order_id)
    fill = await next_event(updates, Fill)
    done = await final(updates, order, OrderStatus.FILLED)
    sent = tws_peer.order(order.client_order_id)
    assert (sent.order_type, sent.quantity, sent.tif, sent.account) == ("MKT", 100, "DAY", "DU1234567")
    assert fill.fill_id == tws_peer.executions[0].exec_id
    assert (fill.quantity, fill.price, fill.commission, fill.side.value) == (100, 150, Decimal("1"), "BUY")
    assert fill.client_order_id == order.client_order_id and fill.broker_order_id == order.broker_order_id
    assert fill.timestamp.tzinfo is not None and abs(fill.timestamp - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    assert (done.filled_quantity, done.avg_fill_price, [f.fill_id for f in done.fills]) == (
        100,
        150,
        [fill.fill_id],
    )
    await asyncio.sleep(0.4)
    assert not [e for e in drain(updates) if isinstance(e, Fill)]


async def test_resting_limit_order_fills_in_parts(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="140"))
    assert order.status is OrderStatus.ACCEPTED
    resting = tws_peer.order(order.client_order_id)
    assert (resting.order_type, resting.limit, resting.status) == ("LMT", 140, "Submitted")

    tws_peer.fill(resting, 30, "139.5")
    partial = await final(updates, order, OrderStatus.PARTIALLY_FILLED)
    assert partial.filled_quantity == 30 and partial.avg_fill_price == Decimal("139.5")
    tws_peer.fill(resting, 70, "139")
    done = await final(updates, order, OrderStatus.FILLED)

    assert done.filled_quantity == 100 and done.avg_fill_price == Decimal("139.15")
    assert len({fill.fill_id for fill in done.fills}) == 2
    assert (await ibkr.get_order(order.broker_order_id)).status is OrderStatus.FILLED


async def test_marketable_limit_order_fills_at_once(ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="155"))
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.avg_fill_price == 150


async def test_stop_order_waits_for_its_trigger(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="STOP", stop_price="160"))
    sent = tws_peer.order(order.client_order_id)
    assert order.status is OrderStatus.ACCEPTED and sent.status == "PreSubmitted"
    assert (sent.order_type, sent.aux, sent.limit) == ("STP", 160, None)

    tws_peer.set_price("AAPL", "161")
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.avg_fill_price == 161


async def test_stop_limit_order_sends_both_prices_and_fills_within_the_limit(tws_peer, ibkr):
    updates = ibkr.subscribe()
    await ibkr.place_order(request(quantity=200))  # something to sell
    order = await ibkr.place_order(
        request(side="SELL", order_type="STOP_LIMIT", stop_price="140", limit_price="139")
    )
    sent = tws_peer.order(order.client_order_id)
    assert (sent.order_type, sent.aux, sent.limit) == ("STP LMT", 140, 139)

    tws_peer.set_price("AAPL", "139.5")
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.avg_fill_price == Decimal("139.5")


async def test_trailing_stop_by_percent_follows_the_price(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(side="SELL", order_type="TRAILING_STOP", trail_percent="2"))
    sent = tws_peer.order(order.client_order_id)
    assert (sent.order_type, sent.trailing_percent, sent.aux) == ("TRAIL", 2, None)

    tws_peer.set_price("AAPL", "160")  # the stop moves up to 156.80
    tws_peer.set_price("AAPL", "157")
    assert sent.status == "PreSubmitted"
    tws_peer.set_price("AAPL", "156")
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.avg_fill_price == 156


async def test_trailing_stop_by_amount_goes_as_the_aux_price(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="TRAILING_STOP", trail_amount="5"))
    sent = tws_peer.order(order.client_order_id)
    assert (sent.order_type, sent.aux, sent.trailing_percent) == ("TRAIL", 5, None)

    tws_peer.set_price("AAPL", "140")  # the stop moves down to 145
    tws_peer.set_price("AAPL", "146")
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.avg_fill_price == 146


@pytest.mark.parametrize("tif", ["DAY", "GTC", "IOC", "FOK"])
async def test_time_in_force_is_sent_as_is(tws_peer, ibkr, tif):
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100", time_in_force=tif))
    assert tws_peer.order(order.client_order_id).tif == tif


# -- instruments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "sec_type", "local_symbol"),
    [
        ({"symbol": "AAPL  240119C00150000", "asset_class": "OPTION"}, "OPT", "AAPL  240119C00150000"),
        ({"symbol": "AAPL240119C00150000", "asset_class": "OPTION"}, "OPT", "AAPL  240119C00150000"),
        ({"symbol": "AAPL 20240119 150 C", "asset_class": "OPTION"}, "OPT", "AAPL  240119C00150000"),
        ({"symbol": "ES 202503", "asset_class": "FUTURE", "exchange": "CME"}, "FUT", "ESH5"),
        ({"symbol": "ESH5", "asset_class": "FUTURE", "exchange": "CME"}, "FUT", "ESH5"),
        ({"symbol": "EUR.USD", "asset_class": "FOREX", "quantity": 20000}, "CASH", "EUR.USD"),
        ({"symbol": "EURUSD", "asset_class": "FOREX", "quantity": 20000}, "CASH", "EUR.USD"),
    ],
)
async def test_contracts_are_built_from_the_request(tws_peer, ibkr, fields, sec_type, local_symbol):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(**{"quantity": 2, **fields}))
    sent = tws_peer.order(order.client_order_id)
    assert (sent.instrument.sec_type, sent.instrument.local_symbol) == (sec_type, local_symbol)
    done = await final(updates, order, OrderStatus.FILLED)
    assert done.symbol == fields["symbol"]


async def test_option_contract_fields_on_the_wire(tws_peer, ibkr):
    order = await ibkr.place_order(request(symbol="AAPL 20240119 150 C", asset_class="OPTION", quantity=1))
    fields = tws_peer.order(order.client_order_id).fields
    # conId, symbol, secType, expiry, strike, right, multiplier, exchange, primaryExchange, currency
    assert fields[2:12] == ["0", "AAPL", "OPT", "20240119", "150.0", "C", "100", "SMART", "", "USD"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"symbol": "AAPL CALL", "asset_class": "OPTION"}, InvalidSymbolError),
        ({"symbol": "ES 202503", "asset_class": "FUTURE"}, InvalidSymbolError),
        ({"symbol": "EURO", "asset_class": "FOREX"}, InvalidSymbolError),
        ({"symbol": "EUR.USD", "asset_class": "FOREX", "currency": "GBP"}, InvalidSymbolError),
        ({"symbol": "BTC/USD", "asset_class": "CRYPTO"}, OrderRejectedError),
        ({"quantity": "1.5"}, OrderRejectedError),
    ],
)
async def test_requests_it_cannot_route_are_refused_before_the_network(tws_peer, ibkr, fields, error):
    with pytest.raises(error):
        await ibkr.place_order(request(**fields))
    assert tws_peer.requests(PLACE_ORDER) == []


async def test_read_only_connection_refuses_orders_without_sending(tws_peer):
    broker = IBKRBroker("ib-ro", port=tws_peer.port, timeout=2, readonly=True)
    await broker.connect()
    try:
        with pytest.raises(OrderRejectedError, match="read-only"):
            await broker.place_order(request())
        with pytest.raises(BrokerAPIError, match="read-only"):
            await broker.cancel_all_orders()
    finally:
        await broker.disconnect()
    assert tws_peer.requests(PLACE_ORDER) == []


# -- rejections -----------------------------------------------------------------------------


async def test_unknown_symbol_is_error_200_and_a_rejected_order(tws_peer, ibkr):
    updates = ibkr.subscribe()
    with pytest.raises(InvalidSymbolError) as caught:
        await ibkr.place_order(request(symbol="ZZZZ"))
    assert caught.value.code == 200 and caught.value.definite
    rejected = await next_event(updates, Order, lambda o: o.status is OrderStatus.REJECTED)
    assert rejected.reject_code == "BROKER_REJECTED" and "No security definition" in rejected.reject_reason


async def test_margin_rejection_is_insufficient_funds(tws_peer, ibkr):
    with pytest.raises(InsufficientFundsError) as caught:
        await ibkr.place_order(request(quantity=2000))
    assert caught.value.code == 201 and "EQUITY WITH LOAN VALUE" in str(caught.value)
    assert tws_peer.orders == []


async def test_other_201_rejection_is_a_plain_rejection(tws_peer, ibkr):
    tws_peer.react(reject(201, "Order rejected - reason:The contract is not available for short sale."))
    with pytest.raises(OrderRejectedError) as caught:
        await ibkr.place_order(request(side="SELL"))
    assert not isinstance(caught.value, InsufficientFundsError) and caught.value.code == 201


async def test_price_increment_error_rejects_a_new_order(tws_peer, ibkr):
    tws_peer.react(
        reject(110, "The price does not conform to the minimum price variation for this contract.")
    )
    with pytest.raises(OrderRejectedError) as caught:
        await ibkr.place_order(request(order_type="LIMIT", limit_price="100.001"))
    assert caught.value.code == 110


async def test_new_order_cancelled_by_ib_comes_back_cancelled(tws_peer, ibkr):
    tws_peer.react(reject(202, "Order Canceled - reason:"))
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100", time_in_force="IOC"))
    assert order.status is OrderStatus.CANCELLED


async def test_margin_error_on_a_working_order_rejects_it(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.send_error(
        201, "Order rejected - reason:Available funds are insufficient", int(order.broker_order_id)
    )
    rejected = await final(updates, order, OrderStatus.REJECTED)
    assert "201" in rejected.reject_reason


async def test_order_deactivated_by_ib_is_rejected(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.set_status(tws_peer.order(order.client_order_id), "Inactive")
    rejected = await final(updates, order, OrderStatus.REJECTED)
    assert rejected.reject_code == "BROKER_REJECTED"


async def test_server_side_cancel_reaches_the_stream(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100", time_in_force="DAY"))
    tws_peer.cancel(tws_peer.order(order.client_order_id), "end of day")
    await final(updates, order, OrderStatus.CANCELLED)


# -- lost answers are never retried ---------------------------------------------------------


@pytest.fixture
async def impatient(tws_peer):
    broker = IBKRBroker("ib-paper", port=tws_peer.port, timeout=0.5)
    await broker.connect()
    yield broker
    await broker.disconnect()


async def test_timeout_makes_the_order_unknown_and_the_broker_still_knows_it(tws_peer, impatient):
    updates = impatient.subscribe()
    tws_peer.react(silent())
    wanted = request(order_type="LIMIT", limit_price="100")
    with pytest.raises(BrokerTimeoutError):
        await impatient.place_order(wanted)
    unknown = await next_event(updates, Order, lambda o: o.status is OrderStatus.UNKNOWN)
    assert unknown.client_order_id == wanted.client_order_id

    found = await impatient.get_order_by_client_id(wanted.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert found.broker_order_id == unknown.broker_order_id
    assert len(tws_peer.requests(PLACE_ORDER)) == 1


async def test_connection_dropped_before_the_order_reached_tws(tws_peer, impatient):
    tws_peer.react(drop())
    wanted = request()
    with pytest.raises(BrokerConnectionError, match="unknown"):
        await impatient.place_order(wanted)
    assert not impatient.is_connected()

    await impatient.connect()
    assert await impatient.get_order_by_client_id(wanted.client_order_id) is None
    assert tws_peer.orders == [] and len(tws_peer.requests(PLACE_ORDER)) == 1


async def test_connection_dropped_after_tws_took_the_order(tws_peer, impatient):
    tws_peer.react(drop(after=True))
    wanted = request(order_type="LIMIT", limit_price="100")
    with pytest.raises(BrokerConnectionError):
        await impatient.place_order(wanted)

    await impatient.connect()
    found = await impatient.get_order_by_client_id(wanted.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert len(tws_peer.orders) == 1 and len(tws_peer.requests(PLACE_ORDER)) == 1


async def test_the_same_client_order_id_twice_places_one_order(tws_peer, ibkr):
    wanted = request(order_type="LIMIT", limit_price="100")
    first = await ibkr.place_order(wanted)
    second = await ibkr.place_order(wanted)
    assert first.broker_order_id == second.broker_order_id
    assert len(tws_peer.requests(PLACE_ORDER)) == 1


async def test_order_refused_while_tws_has_lost_ib(tws_peer, ibkr):
    tws_peer.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    await until(lambda: ibkr.status().state is ConnectionState.DEGRADED)
    with pytest.raises(BrokerConnectionError, match="not sent"):
        await ibkr.place_order(request())
    assert tws_peer.requests(PLACE_ORDER) == []


# -- cancel ---------------------------------------------------------------------------------


async def test_cancel_a_resting_order(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    cancelled = await ibkr.cancel_order(order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert tws_peer.order(order.client_order_id).status == "Cancelled"
    await final(updates, order, OrderStatus.CANCELLED)


async def test_cancel_after_a_partial_fill_keeps_the_fill(tws_peer, ibkr):
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.fill(tws_peer.order(order.client_order_id), 40, "100")
    cancelled = await ibkr.cancel_order(order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 40


async def test_cancel_of_a_filled_order_does_not_ask_tws(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request())
    await final(updates, order, OrderStatus.FILLED)
    assert (await ibkr.cancel_order(order.broker_order_id)).status is OrderStatus.FILLED
    assert tws_peer.requests(CANCEL_ORDER) == []


async def test_cancel_refused_because_it_just_filled_reports_the_fill(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    execution = tws_peer.fill(tws_peer.order(order.client_order_id), notify=False)  # we have not heard yet

    result = await ibkr.cancel_order(order.broker_order_id)
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 100
    fill = await next_event(updates, Fill)
    assert fill.fill_id == execution.exec_id


async def test_cancel_of_an_order_tws_does_not_know(tws_peer, ibkr):
    order = await ibkr.place_order(request(order_type="LIMIT", limit_price="100"))
    tws_peer.orders.clear()  # TWS lost it
    with pytest.raises(OrderNotFoundError) as caught:
        await ibkr.cancel_order(order.broker_order_id)
    assert caught.value.code == 10147
    with pytest.raises(OrderNotFoundError):
        await ibkr.cancel_order("987654")


async def test_cancel_all_uses_one_global_cancel(tws_peer, ibkr):
    updates = ibkr.subscribe()
    other = IBKRBroker("ib-other", port=tws_peer.port, client_id=7, timeout=2)
    await other.connect()
    try:
        theirs = await other.place_order(request(order_type="LIMIT", limit_price="90"))
        mine = [await ibkr.place_order(request(order_type="LIMIT", limit_price=str(p))) for p in (100, 101)]
        filled = await ibkr.place_order(request())
        await final(updates, filled, OrderStatus.FILLED)
        listed = await ibkr.get_open_orders()
        assert {o.client_order_id for o in listed} == {o.client_order_id for o in [*mine, theirs]}

        asked = await ibkr.cancel_all_orders()

        assert set(asked) == {o.broker_order_id for o in mine} | {
            f"P{tws_peer.order(theirs.client_order_id).perm_id}"
        }
        await until(lambda: tws_peer.requests(REQ_GLOBAL_CANCEL))
        cancelled: set[str] = set()
        while cancelled != {o.client_order_id for o in mine}:
            event = await next_event(updates, Order, lambda o: o.status is OrderStatus.CANCELLED)
            cancelled.add(event.client_order_id)
        assert all(o.status in ("Cancelled", "Filled") for o in tws_peer.orders)
        assert await ibkr.get_open_orders() == []
        assert len(tws_peer.requests(REQ_GLOBAL_CANCEL)) == 1 and tws_peer.requests(CANCEL_ORDER) == []
    finally:
        await other.disconnect()


# -- lookups --------------------------------------------------------------------------------


async def test_orders_placed_elsewhere_are_listed_with_our_symbols(tws_peer, ibkr):
    other = IBKRBroker("ib-other", port=tws_peer.port, client_id=9, timeout=2)
    await other.connect()
    try:
        placed = await other.place_order(
            request(
                symbol="AAPL 20240119 150 C",
                asset_class="OPTION",
                quantity=3,
                order_type="LIMIT",
                limit_price="4.5",
            )
        )
    finally:
        await other.disconnect()
    [listed] = await ibkr.get_open_orders()
    assert listed.client_order_id == placed.client_order_id
    assert (listed.symbol, listed.request.asset_class.value, listed.quantity) == (
        "AAPL240119C00150000",
        "OPTION",
        3,
    )
    assert (listed.order_type, listed.limit_price, listed.status) == (
        OrderType.LIMIT,
        Decimal("4.5"),
        OrderStatus.ACCEPTED,
    )
    assert listed.broker_order_id.startswith("P")
    with pytest.raises(BrokerAPIError, match="another API client"):
        await ibkr.cancel_order(listed.broker_order_id)


async def test_a_restarted_adapter_finds_its_orders_and_fills_by_client_order_id(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(request())
    await final(updates, order, OrderStatus.FILLED)
    await ibkr.disconnect()

    restarted = IBKRBroker("ib-paper", port=tws_peer.port, timeout=2)
    await restarted.connect()
    try:
        found = await restarted.get_order_by_client_id(order.client_order_id)
        assert found is not None and found.status is OrderStatus.FILLED
        assert found.filled_quantity == 100 and found.fills[0].commission == 1
        assert await restarted.get_order_by_client_id("TCNEVERPLACED0000000") is None
        with pytest.raises(OrderNotFoundError):
            await restarted.get_order("424242")
    finally:
        await restarted.disconnect()
