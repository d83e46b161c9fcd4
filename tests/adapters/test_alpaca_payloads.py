"""Alpaca's own payloads (from alpaca-py's test suite) through the real client and the adapter.

The bodies live in ``../shared/fixtures/broker-payloads/alpaca`` and are served unchanged by the
loopback peer; each test asserts what the adapter makes of every field it maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderStatus as AlpacaOrderStatus
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
    next_event,
)

from adapters.broker_payloads import payload
from brokers.adapters.alpaca.wire import map_status
from brokers.errors import BrokerAPIError, OrderRejectedError
from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, Fill, OrderRequest, OrderStatus, OrderType, Side
from brokers.registry import BrokerFactory

ACCOUNT = "alpaca-test"


def alpaca(name: str):
    return payload("alpaca", name)


async def fill_of(broker, broker_order_id: str) -> Fill:
    return await next_event(broker, lambda e: isinstance(e, Fill) and e.broker_order_id == broker_order_id)


# -- account ------------------------------------------------------------------------------


async def test_account_body_through_balance_and_margin(broker, peer):
    body = alpaca("account.json")
    peer.answer_next("GET", "/v2/account", body, times=2)
    peer.answer_next("GET", "/v2/positions", [])
    balance = await broker.get_balance()
    assert (balance.cash, balance.equity, balance.buying_power) == (
        Decimal("-23140.2"),
        Decimal("103820.56"),
        Decimal("262113.632"),
    )
    assert balance.currency == "USD" and balance.unrealized_pnl == 0 and balance.account == ACCOUNT
    assert balance.margin_used == Decimal("63480.38")  # the account's initial margin
    margin = await broker.get_margin()
    assert (margin.initial_margin, margin.maintenance_margin, margin.leverage) == (
        Decimal("63480.38"),
        Decimal("38088.228"),
        Decimal(4),
    )
    assert margin.available_funds == Decimal("103820.56") - Decimal("63480.38")
    assert margin.excess_liquidity == Decimal("103820.56") - Decimal("38088.228")


# -- positions ----------------------------------------------------------------------------


async def test_position_bodies_long_short_fractional_crypto_options_and_null_prices(broker, peer):
    rows = [
        *alpaca("positions_sdk.json"),
        alpaca("position_fractional_sdk.json"),
        *alpaca("positions_derived.json"),
    ]
    peer.answer_next("GET", "/v2/positions", rows)
    positions = await broker.get_positions()
    by_symbol = {p.symbol: p for p in positions}
    assert len(positions) == len(by_symbol) == len(rows)

    aapl = by_symbol["AAPL"]
    assert (aapl.quantity, aapl.asset_class, aapl.multiplier, aapl.currency) == (
        5,
        AssetClass.STOCK,
        1,
        "USD",
    )

    tsla = by_symbol["TSLA"]
    assert tsla.quantity == Decimal("0.173011547") and tsla.exchange == "NASDAQ"
    assert tsla.avg_price == Decimal("286.9749783265074366") and tsla.last_price == Decimal("189.19")

    sqqq = by_symbol["SQQQ"]
    assert (sqqq.quantity, sqqq.avg_price, sqqq.last_price) == (-1000, Decimal("9.5"), Decimal("9.8"))
    assert sqqq.market_value == Decimal(-9800)

    btc = by_symbol["BTC/USD"]  # Alpaca's positions write BTCUSD; its orders write BTC/USD
    assert (btc.quantity, btc.asset_class, btc.avg_price) == (
        Decimal("0.0283"),
        AssetClass.CRYPTO,
        Decimal("23850.5"),
    )

    put = by_symbol["SPY240304P00480000"]
    assert (put.quantity, put.asset_class, put.multiplier, put.exchange) == (2, AssetClass.OPTION, 100, None)
    assert put.market_value == Decimal(300) and put.cost_basis == Decimal(250)
    call = by_symbol["SPY240304C00500000"]
    assert (call.quantity, call.multiplier) == (-3, 100)
    assert call.market_value == Decimal(-450) and call.unrealized_pnl == Decimal(150)

    gme = by_symbol["GME"]  # no price today: nothing is made up
    assert gme.quantity == 3 and gme.last_price is None and gme.market_value is None
    assert gme.unrealized_pnl is None


async def test_position_bodies_carry_alpacas_day(broker, peer):
    peer.answer_next(
        "GET", "/v2/positions", [*alpaca("positions_sdk.json"), *alpaca("positions_derived.json")]
    )
    by_symbol = {p.symbol: p for p in await broker.get_positions()}
    aapl = by_symbol["AAPL"]
    # lastday_price and unrealized_intraday_pl, as Alpaca sent them.
    assert (aapl.previous_close, aapl.day_pnl, aapl.realized_today) == (119, 10, None)
    gme = by_symbol["GME"]  # null prices: no previous close, no day figure, nothing made up
    assert gme.previous_close is None and gme.day_pnl is None


async def test_balance_sums_the_unrealized_pnl_of_positions_with_and_without_prices(broker, peer):
    peer.answer_next("GET", "/v2/account", alpaca("account.json"))
    peer.answer_next("GET", "/v2/positions", alpaca("positions_derived.json"))
    balance = await broker.get_balance()
    assert balance.unrealized_pnl == Decimal("-300") + Decimal("0.03085") + 50 + 150


# -- orders -------------------------------------------------------------------------------


async def test_open_order_bodies(broker, peer):
    bodies = alpaca("orders_open_sdk.json")
    peer.answer_next("GET", "/v2/orders", bodies)
    listed = {o.broker_order_id: o for o in await broker.get_open_orders()}

    crypto = listed[bodies[0]["id"]]
    assert (crypto.symbol, crypto.side, crypto.quantity) == ("BTC/USD", Side.SELL, Decimal("0.0283"))
    assert crypto.request.asset_class is AssetClass.CRYPTO and crypto.status is OrderStatus.SUBMITTED
    assert crypto.client_order_id == bodies[0]["client_order_id"]

    limit = listed[bodies[1]["id"]]  # quantity and price as JSON numbers
    assert (limit.symbol, limit.order_type, limit.quantity, limit.limit_price) == (
        "AAPL",
        OrderType.LIMIT,
        1,
        Decimal(300),
    )
    assert limit.status is OrderStatus.SUBMITTED and limit.filled_quantity == 0

    partial = listed[bodies[2]["id"]]
    assert partial.status is OrderStatus.PARTIALLY_FILLED and partial.client_order_id == "ext-partial-1"
    assert (partial.filled_quantity, partial.avg_fill_price, partial.remaining_quantity) == (
        4,
        Decimal("99.5"),
        6,
    )

    review = listed[bodies[3]["id"]]
    assert review.status is OrderStatus.SUBMITTED and review.is_working

    # A dollar amount is a notional order of ours: its money, never a made-up quantity.
    dollars = listed[bodies[4]["id"]]
    assert (dollars.symbol, dollars.side, dollars.quantity, dollars.notional) == (
        "AAPL",
        Side.BUY,
        None,
        Decimal(500),
    )
    assert dollars.remaining_quantity is None and dollars.remaining_notional == Decimal(500)
    assert dollars.status is OrderStatus.SUBMITTED and dollars.is_working
    assert len(listed) == 5


async def test_pending_review_is_a_working_order_not_unknown(broker, peer):
    body = copy.deepcopy(alpaca("orders_open_sdk.json")[3])
    assert body["status"] == "pending_review"
    peer.answer_next("GET", f"/v2/orders/{body['id']}", body)
    order = await broker.get_order(body["id"])
    assert order.status is OrderStatus.SUBMITTED and order.is_working
    assert (order.symbol, order.quantity, order.order_type) == ("SPY", 1, OrderType.MARKET)


@pytest.mark.parametrize("status", [s.value for s in AlpacaOrderStatus])
async def test_every_status_alpaca_py_knows_is_ours_too(broker, peer, status):
    body = copy.deepcopy(alpaca("orders_open_sdk.json")[1])
    body["status"] = status
    if status == "filled":  # "filled" with nothing filled contradicts itself, and is not believed
        body["filled_qty"], body["filled_avg_price"] = "1", "300"
    peer.answer_next("GET", f"/v2/orders/{body['id']}", body)
    order = await broker.get_order(body["id"])
    assert order.status is not OrderStatus.UNKNOWN, status
    assert map_status(status, Decimal(body["filled_qty"]), Decimal(1)) is order.status


# -- fills of orders placed elsewhere -----------------------------------------------------


async def test_fill_of_an_outside_order_for_nine_decimals_reaches_the_stream(broker, peer):
    theirs = await peer.place_external(symbol="AAPL", qty="0.173011547", side="buy")
    await peer.fill(theirs["id"], price="189.19")
    fill = await fill_of(broker, theirs["id"])
    assert (fill.symbol, fill.side, fill.quantity, fill.price) == (
        "AAPL",
        Side.BUY,
        Decimal("0.173011547"),
        Decimal("189.19"),
    )
    order = await broker.get_order(theirs["id"])
    assert order.quantity == Decimal("0.173011547") and order.status is OrderStatus.FILLED


async def test_fills_of_an_outside_notional_order_reach_the_stream_once_each(broker, peer):
    theirs = await peer.place_external(symbol="AAPL", notional="500", side="buy")
    assert theirs["qty"] is None and theirs["notional"] == "500"
    await peer.fill(theirs["id"], qty="1.5", price="190")
    first = await fill_of(broker, theirs["id"])
    await peer.fill(theirs["id"], price="200")  # the rest: 500 / 200, less what filled already
    second = await fill_of(broker, theirs["id"])
    assert (first.quantity, first.price, first.side, first.symbol) == (Decimal("1.5"), 190, Side.BUY, "AAPL")
    assert (second.quantity, second.price) == (Decimal("1"), 200)
    assert first.fill_id != second.fill_id and first.account == ACCOUNT

    # A listing of the same order afterwards brings nothing twice.
    await broker.get_open_orders()
    peer.answer_next("GET", "/v2/orders", [theirs])
    await broker.get_open_orders()
    await asyncio.sleep(0.1)
    assert not [e for e in drain(broker) if isinstance(e, Fill)]


async def test_a_notional_order_that_gets_a_quantity_later_reports_nothing_twice(broker, peer):
    theirs = await peer.place_external(symbol="AAPL", notional="500", side="buy")
    await peer.fill(theirs["id"], qty="1.5", price="190")
    first = await fill_of(broker, theirs["id"])
    peer.orders[theirs["id"]]["qty"] = "2.5"  # the order now says how many shares it is for
    await peer.fill(theirs["id"], price="200")
    second = await fill_of(broker, theirs["id"])
    assert (first.quantity, second.quantity) == (Decimal("1.5"), 1)
    order = await broker.get_order(theirs["id"])
    # Still the order for 500 dollars it was placed as; what it came to is its filled quantity.
    assert (order.notional, order.filled_quantity, order.status) == (
        Decimal(500),
        Decimal("2.5"),
        OrderStatus.FILLED,
    )
    await asyncio.sleep(0.1)
    assert not [e for e in drain(broker) if isinstance(e, Fill)]


@contextlib.asynccontextmanager
async def execution_stack(peer, tmp_path) -> AsyncIterator[tuple[ExecutionService, Journal]]:
    """The peer's account behind a running manager and ExecutionService, journaling to
    ``tmp_path``; all of it stopped and closed on leaving."""
    adapter = BrokerFactory.create(peer.settings())
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker(ACCOUNT, adapter, default=True)
    await manager.connect_all()
    await manager.start()
    journal = Journal(tmp_path / "journal.sqlite")
    service = ExecutionService(manager, KillSwitch(tmp_path, journal=journal, env={}), journal=journal)
    await service.start()
    try:
        yield service, journal
    finally:
        await service.stop()
        await manager.stop()
        await manager.disconnect_all()
        journal.close()


async def test_outside_fills_reach_the_book_and_journal(peer, keys, tmp_path):
    async with execution_stack(peer, tmp_path) as (service, journal):
        fractional = await peer.place_external(symbol="AAPL", qty="0.123456789", side="buy")
        notional = await peer.place_external(symbol="MSFT", notional="820", side="buy")
        await peer.fill(fractional["id"], price="190")
        await peer.fill(notional["id"], price="410")
        wanted = (Decimal("0.123456789"), Decimal(2))
        for _ in range(150):
            held = (service.book.position(ACCOUNT, "AAPL"), service.book.position(ACCOUNT, "MSFT"))
            if held == wanted:
                break
            await asyncio.sleep(0.02)
        assert held == wanted
        fills = [e for e in journal.events() if e.kind == "fill"]
        assert len(fills) == 2


def drain(broker) -> list:
    events = []
    while not broker.events.empty():
        events.append(broker.events.get_nowait())
    return events


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [1, 2])
async def test_refusal_bodies_become_rejections(broker, peer, index):
    answer = alpaca("close_all_positions_sdk.json")[index]
    peer.fail_next("POST", "/v2/orders", answer["status"], answer["body"])
    with pytest.raises(OrderRejectedError) as caught:
        await broker.place_order(OrderRequest(symbol="AAPL", side="SELL", quantity=1000))
    assert answer["body"]["message"] in str(caught.value)
    assert caught.value.code == 40310000
    assert not isinstance(caught.value, BrokerAPIError)


def test_a_missing_payload_folder_fails_the_test_and_says_where_it_was_looked_for(monkeypatch, tmp_path):
    from adapters import broker_payloads

    monkeypatch.setattr(broker_payloads, "PAYLOADS", tmp_path / "nowhere")
    with pytest.raises(pytest.fail.Exception, match="shared/fixtures/broker-payloads"):
        broker_payloads.payload("alpaca", "account.json")


async def test_an_outside_notional_order_reads_as_one(broker, peer):
    body = alpaca("orders_open_sdk.json")[4]
    peer.answer_next("GET", f"/v2/orders/{body['id']}", body)
    order = await broker.get_order(body["id"])
    assert (order.quantity, order.notional, order.order_type) == (None, Decimal(500), OrderType.MARKET)


async def test_a_nine_decimal_order_of_ours_is_journaled_and_booked_to_the_last_digit(peer, keys, tmp_path):
    peer.auto_fill = True
    async with execution_stack(peer, tmp_path) as (service, journal):
        request = OrderRequest(symbol="AAPL", side="BUY", quantity="0.173011547")
        placed = await service.submit(request)
        assert placed.reject_code is None, placed.reject_reason
        assert peer.bodies[-1]["qty"] == "0.173011547"
        for _ in range(150):
            if service.book.position(ACCOUNT, "AAPL") == Decimal("0.173011547"):
                break
            await asyncio.sleep(0.02)
        assert service.book.position(ACCOUNT, "AAPL") == Decimal("0.173011547")
        kept = journal.orders()[request.client_order_id]
        assert kept.quantity == Decimal("0.173011547")
    again = Journal(tmp_path / "journal.sqlite")
    reopened = again.orders()[request.client_order_id]
    again.close()
    assert reopened.quantity == Decimal("0.173011547") and reopened.filled_quantity == Decimal("0.173011547")


async def test_a_notional_order_of_ours_goes_as_dollars_and_reaches_book_and_journal(peer, keys, tmp_path):
    async with execution_stack(peer, tmp_path) as (service, journal):
        request = OrderRequest(symbol="AAPL", side="BUY", notional="500")
        placed = await service.submit(request)
        assert placed.reject_code is None, placed.reject_reason
        body = peer.bodies[-1]
        assert body["notional"] == "500" and "qty" not in body  # Alpaca refuses a body with both
        assert service.book.pending_notional(ACCOUNT, "AAPL", Side.BUY) == Decimal(500)
        await peer.fill(placed.broker_order_id, price="200")
        for _ in range(150):
            if service.book.position(ACCOUNT, "AAPL") == Decimal("2.5"):
                break
            await asyncio.sleep(0.02)
        assert service.book.position(ACCOUNT, "AAPL") == Decimal("2.5")
        for _ in range(150):
            done = service.get_order(request.client_order_id)
            if done is not None and done.status is OrderStatus.FILLED:
                break
            await asyncio.sleep(0.02)
        assert done is not None
        assert (done.status, done.filled_quantity, done.notional) == (
            OrderStatus.FILLED,
            Decimal("2.5"),
            Decimal(500),
        )
        assert service.book.pending_notional(ACCOUNT, "AAPL", Side.BUY) == 0
    again = Journal(tmp_path / "journal.sqlite")
    reopened = again.orders()[request.client_order_id]
    again.close()
    assert (reopened.quantity, reopened.notional, reopened.filled_quantity) == (None, 500, Decimal("2.5"))


async def test_a_notional_order_outside_the_day_is_refused_before_the_network(peer, keys, tmp_path):
    async with execution_stack(peer, tmp_path) as (service, _journal):
        sent = len(peer.bodies)
        order = await service.submit(
            OrderRequest(symbol="AAPL", side="BUY", notional="500", time_in_force="GTC")
        )
        assert order.status is OrderStatus.REJECTED and "DAY" in (order.reject_reason or "")
        assert len(peer.bodies) == sent
