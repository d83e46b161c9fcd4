"""Zerodha's own payloads (kiteconnect-mocks, which pykiteconnect tests against) through the real
client and the adapter, and Kite's behaviour around them: a demat holding and the day's position
in the same share net, and orders modified outside the console are followed.

The bodies live in ``../shared/fixtures/broker-payloads/kite`` and are served unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)

from adapters.broker_payloads import payload
from brokers.adapters.zerodha import ZerodhaBroker
from brokers.execution import ExecutionService
from brokers.instruments import Instrument
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, OrderType, Side


def kite(name: str):
    return payload("kite", name)


def rows(name: str):
    return kite(name)["data"]


def envelope(data) -> dict:
    return {"status": "success", "data": data}


def account(peer: KitePeer, monkeypatch, **settings) -> ZerodhaBroker:
    monkeypatch.setenv("KITE_API_KEY", peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", peer.access_token)
    return ZerodhaBroker.from_config(
        {"name": "kite", "root": peer.root, "poll_interval": 0.2, "timeout": 2, **settings}
    )


async def connected(peer: KitePeer, monkeypatch, **settings) -> ZerodhaBroker:
    adapter = account(peer, monkeypatch, **settings)
    await adapter.connect()
    return adapter


@pytest.fixture
async def broker(kite_peer, monkeypatch):  # noqa: F811
    adapter = await connected(kite_peer, monkeypatch)
    yield adapter
    await adapter.disconnect()


async def collect(queue: asyncio.Queue, want, wait: float = 3.0) -> list:
    """Events until ``want(events)`` holds."""
    events: list = []
    async with asyncio.timeout(wait):
        while not want(events):
            events.append(await queue.get())
    return events


def orders_in(events: list) -> dict[str, Order]:
    return {e.broker_order_id: e for e in events if isinstance(e, Order)}


# -- one share, two exchanges -------------------------------------------------------------


def sbin_on_bse() -> dict:
    [holding] = [h for h in rows("holdings.json") if h["tradingsymbol"] == "SBIN"]
    assert (holding["exchange"], holding["quantity"]) == ("BSE", 16)
    return holding


async def test_selling_the_bse_holding_on_nse_leaves_the_account_flat(broker, kite_peer):  # noqa: F811
    kite_peer.holdings = [sbin_on_bse()]
    sold = await broker.place_order(OrderRequest(symbol="SBIN", side="SELL", quantity=16, exchange="NSE"))
    assert sold.status is OrderStatus.FILLED
    # Kite still lists the 16 shares under BSE and the day's sale as NSE -16: one share, now flat.
    assert await broker.get_positions() == []


async def test_buying_on_nse_adds_to_the_bse_holding(broker, kite_peer):  # noqa: F811
    holding = sbin_on_bse()
    kite_peer.holdings = [holding]
    kite_peer.prices["NSE:SBIN"] = Decimal(800)
    bought = await broker.place_order(OrderRequest(symbol="SBIN", side="BUY", quantity=5, exchange="NSE"))
    assert bought.status is OrderStatus.FILLED
    [position] = await broker.get_positions()
    assert (position.symbol, position.quantity, position.asset_class) == ("SBIN", 21, AssetClass.STOCK)
    assert position.avg_price == ((Decimal("801.78125") * 16 + 800 * 5) / 21).quantize(Decimal("1e-6"))


async def test_a_partial_sale_keeps_one_row_with_what_is_left(broker, kite_peer):  # noqa: F811
    kite_peer.holdings = [sbin_on_bse()]
    await broker.place_order(OrderRequest(symbol="SBIN", side="SELL", quantity=6, exchange="NSE"))
    [position] = await broker.get_positions()
    assert (position.symbol, position.quantity) == ("SBIN", 10)


@pytest.mark.parametrize(("side", "quantity", "held"), [("SELL", 16, 0), ("BUY", 5, 21)])
async def test_the_execution_book_holds_what_the_account_holds(
    kite_peer,  # noqa: F811
    monkeypatch,
    tmp_path,
    side,
    quantity,
    held,
):
    kite_peer.holdings = [sbin_on_bse()]
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("kite", account(kite_peer, monkeypatch), default=True)
    await manager.connect_all()
    await manager.start()
    service = ExecutionService(manager, KillSwitch(tmp_path, env={}))
    await service.start()
    try:
        assert service.book.position("kite", "SBIN") == 16
        order = await service.submit(
            OrderRequest(symbol="SBIN", side=side, quantity=quantity, exchange="NSE")
        )
        assert order.status is OrderStatus.FILLED, order.reject_reason
        # Read back from Kite (as after a reconnect): BSE and NSE rows, one share.
        await service.reconciler.seed_positions()
        assert service.book.position("kite", "SBIN") == held
    finally:
        await service.stop()
        await manager.stop()
        await manager.disconnect_all()


# -- orders modified outside the console --------------------------------------------------


async def test_a_price_modified_in_kite_is_followed(broker, kite_peer):  # noqa: F811
    history = rows("order_info.json")
    opened, modified = history[3], history[-1]
    assert (opened["status"], opened["price"], modified["status"], modified["price"]) == (
        "OPEN",
        300,
        "OPEN",
        300.1,
    )
    events = broker.subscribe()
    kite_peer.serve_fixture("GET", "/orders", envelope([opened]))
    first = orders_in(await collect(events, lambda got: orders_in(got)))[opened["order_id"]]
    assert (first.status, first.order_type, first.limit_price) == (OrderStatus.ACCEPTED, OrderType.LIMIT, 300)

    for step in history[4:]:  # MODIFY VALIDATION PENDING, MODIFY PENDING, MODIFIED, OPEN at 300.1
        kite_peer.serve_fixture("GET", "/orders", envelope([step]))
        [working] = await broker.get_open_orders()
        assert working.status is OrderStatus.ACCEPTED and working.broker_order_id == opened["order_id"]
    assert working.limit_price == Decimal("300.1") and working.client_order_id == first.client_order_id
    assert (working.quantity, working.order_type) == (1, OrderType.LIMIT)
    # The stream says so too, for whoever follows the order there.
    await collect(
        events,
        lambda got: any(isinstance(e, Order) and e.limit_price == Decimal("300.1") for e in got),
    )


async def test_a_quantity_modified_in_kite_is_followed(broker, kite_peer):  # noqa: F811
    kite_peer.plan("rest")
    placed = await broker.place_order(
        OrderRequest(symbol="INFY", side="BUY", quantity=10, order_type="LIMIT", limit_price="1400")
    )
    assert placed.status is OrderStatus.ACCEPTED
    kite_peer.modify(placed.broker_order_id, quantity=20)
    kite_peer.fill(placed.broker_order_id, quantity=10, price=Decimal(1400))

    order = await broker.get_order(placed.broker_order_id)
    assert (order.quantity, order.filled_quantity, order.remaining_quantity) == (20, 10, 10)
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.client_order_id == placed.client_order_id
    assert placed.broker_order_id in {o.broker_order_id for o in await broker.get_open_orders()}

    cancelled = await broker.cancel_order(placed.broker_order_id)
    assert kite_peer.count("DELETE", "/orders/") == 1
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 10


# -- every read path on the mocks ---------------------------------------------------------


async def test_margins_body_through_balance_and_margin(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/user/margins", kite("margins.json"))
    kite_peer.serve_fixture("GET", "/portfolio/holdings", kite("holdings.json"))
    kite_peer.serve_fixture("GET", "/portfolio/positions", kite("positions.json"))
    margin = await broker.get_margin()
    assert (margin.currency, margin.available_funds, margin.excess_liquidity) == (
        "INR",
        Decimal("99725.05"),
        Decimal("99725.05"),
    )
    assert margin.initial_margin == Decimal("101989") + Decimal("38981.25")
    assert margin.maintenance_margin == 101989

    balance = await broker.get_balance()
    held = sum(
        (
            Decimal(str(h["quantity"] + h["t1_quantity"])) * Decimal(str(h["last_price"]))
            for h in rows("holdings.json")
        ),
        Decimal(0),
    )
    assert (balance.cash, balance.buying_power) == (Decimal("245431.6"), Decimal("99725.05"))
    assert balance.margin_used == margin.initial_margin  # SPAN, exposure and option premium
    net = rows("positions.json")["net"]
    day_pnl = sum((Decimal(str(p["pnl"])) for p in net), Decimal(0))  # 801 - 2 on the mock
    assert balance.equity == (Decimal("245431.6") + held + day_pnl).quantize(Decimal("0.01"))
    unrealised = sum((Decimal(str(p["unrealised"])) for p in net), Decimal(0)) + sum(
        (Decimal(str(h["pnl"])) for h in rows("holdings.json")), Decimal(0)
    )
    assert balance.unrealized_pnl == unrealised.quantize(Decimal("0.01")) and balance.realized_pnl == 0


async def test_commodity_margins_for_an_mcx_account(kite_peer, monkeypatch):  # noqa: F811
    adapter = await connected(kite_peer, monkeypatch, exchange="MCX")
    try:
        kite_peer.serve_fixture("GET", "/user/margins", kite("margins.json"))
        margin = await adapter.get_margin()
        assert margin.available_funds == Decimal("100661.7") and margin.initial_margin == 0
    finally:
        await adapter.disconnect()


async def test_holdings_and_positions_bodies(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/portfolio/holdings", kite("holdings.json"))
    kite_peer.serve_fixture("GET", "/portfolio/positions", kite("positions.json"))
    positions = {p.symbol: p for p in await broker.get_positions()}
    # GOLDGUINEA17DECFUT and SBIN's CO row are flat; SBIN's flat NSE row joins its BSE holding.
    assert set(positions) == {"AARON", "SBIN", "LEADMINI17DECFUT"}

    aaron = positions["AARON"]
    assert (aaron.quantity, aaron.avg_price, aaron.last_price, aaron.exchange) == (
        1,
        161,
        Decimal("352.95"),
        "NSE",
    )
    assert (aaron.asset_class, aaron.currency, aaron.multiplier) == (AssetClass.STOCK, "INR", 1)

    sbin = positions["SBIN"]
    assert (sbin.quantity, sbin.avg_price, sbin.exchange) == (16, Decimal("801.78125"), "BSE")

    lead = positions["LEADMINI17DECFUT"]  # an MCX lot of 1000 kg: money is multiplied, quantity is lots
    assert (lead.quantity, lead.multiplier, lead.asset_class, lead.exchange) == (
        1,
        1000,
        AssetClass.FUTURE,
        "MCX",
    )
    assert lead.market_value == Decimal("161.05") * 1000 and lead.cost_basis == Decimal("161050")
    assert broker.last_price_nowait(
        Instrument("LEADMINI17DECFUT", AssetClass.FUTURE, exchange="MCX")
    ) == Decimal("161.05")


async def test_holdings_and_positions_carry_kites_day(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/portfolio/holdings", kite("holdings.json"))
    kite_peer.serve_fixture("GET", "/portfolio/positions", kite("positions.json"))
    positions = {p.symbol: p for p in await broker.get_positions()}
    aaron = positions["AARON"]  # a holding: close_price, and day_change a share
    [holding] = [h for h in rows("holdings.json") if h["tradingsymbol"] == "AARON"]
    assert aaron.previous_close == Decimal(str(holding["close_price"]))
    assert aaron.day_pnl == round(Decimal(repr(holding["day_change"])) * aaron.quantity, 2)
    assert aaron.realized_today is None
    lead = positions["LEADMINI17DECFUT"]  # opened today: Kite's close_price 0 is no close at all
    assert (lead.previous_close, lead.day_pnl, lead.realized_today) == (None, 0, 0)


async def test_order_book_body(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    kite_peer.serve_fixture("GET", "/orders", kite("orders.json"))
    kite_peer.serve_fixture("GET", "/trades", kite("trades.json"))
    book = rows("orders.json")
    got = await collect(events, lambda seen: len(orders_in(seen)) == len(book))
    orders = orders_in(got)

    currency = orders["100000000000000"]
    assert (currency.status, currency.symbol, currency.limit_price) == (
        OrderStatus.CANCELLED,
        "USDINR21JUNFUT",
        72,
    )
    assert currency.request.exchange == "CDS" and currency.request.asset_class is AssetClass.FUTURE
    assert currency.created_at == datetime(2021, 5, 31, 3, 48, 57, tzinfo=UTC)  # 09:18:57 IST

    bought = orders["300000000000000"]
    assert (bought.status, bought.filled_quantity, bought.avg_fill_price) == (
        OrderStatus.FILLED,
        1,
        Decimal("109.4"),
    )
    market = orders["500000000000000"]
    assert (market.order_type, market.side, market.limit_price, market.avg_fill_price) == (
        OrderType.MARKET,
        Side.SELL,
        None,
        Decimal("109.35"),
    )

    rms = orders["220524001859672"]
    assert (rms.status, rms.reject_code, rms.client_order_id) == (
        OrderStatus.REJECTED,
        "INSUFFICIENT_FUNDS",
        "icebergord",
    )
    assert rms.reject_reason.startswith("Insufficient funds. Required margin is 95417.84")
    assert rms.quantity == 200

    gold = orders["700000000000000"]
    assert gold.request.asset_class is AssetClass.FUTURE and gold.request.exchange == "MCX"
    assert gold.client_order_id == "KITE-700000000000000"  # "connect test order1" is no id of ours

    option = orders["1953367517686685697"]
    assert (option.request.asset_class, option.quantity, option.filled_quantity, option.avg_fill_price) == (
        AssetClass.OPTION,
        150,
        150,
        Decimal("12.3"),
    )
    assert orders["98000000000000000"].status is OrderStatus.CANCELLED  # an auction order
    assert orders["1953341975595868160"].avg_fill_price == Decimal("156.7")
    assert await broker.get_open_orders() == []


async def test_trade_book_body(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/trades", kite("trades.json"))
    fills = {f.fill_id: f for f in await broker.get_fills()}
    assert len(fills) == len(rows("trades.json")) == 4
    usd_inr = fills["500000000000000:40000000"]
    assert (usd_inr.symbol, usd_inr.side, usd_inr.quantity, usd_inr.price, usd_inr.currency) == (
        "USDINR21JUNFUT",
        Side.BUY,
        1,
        Decimal("72.755"),
        "INR",
    )
    gold = fills["800000000000000:70000000"]
    assert (gold.symbol, gold.quantity, gold.price) == ("GOLDPETAL21JUNFUT", 1, 4852)
    assert all(isinstance(f, Fill) and f.account == "kite" for f in fills.values())


async def test_ltp_body(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/quote/ltp", kite("ltp.json"))
    assert await broker.get_last_price(Instrument.stock("INFY")) == Decimal("1074.35")
    assert broker.last_price_nowait(Instrument.stock("NSE:INFY")) == Decimal("1074.35")


async def test_placement_and_cancel_answers(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("POST", "/orders/regular", kite("order_response.json"))
    placed = await broker.place_order(
        OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", limit_price="1000")
    )
    assert placed.broker_order_id == "151220000000000" and placed.status is OrderStatus.SUBMITTED
    kite_peer.serve_fixture("DELETE", "/orders/regular/151220000000000", kite("order_cancel.json"))
    await broker.cancel_order("151220000000000")
    assert kite_peer.count("DELETE", "/orders/regular/151220000000000") == 1
