"""Kite's documented response shapes, kept as fixtures, read through the real client and adapter."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from peers.kite_peer import KitePeer, kite_peer, load_fixture  # noqa: F401  (kite_peer is a fixture)

from brokers.adapters.zerodha import ZerodhaBroker, map_status
from brokers.errors import (
    AuthenticationError,
    BrokerAPIError,
    BrokerConnectionError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderRejectedError,
)
from brokers.instruments import Instrument
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, OrderType, Side

FIXTURES = Path(__file__).parent / "fixtures" / "zerodha"


def fixture(name: str):
    return load_fixture(FIXTURES / name)


@pytest.fixture
async def broker(kite_peer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KITE_API_KEY", kite_peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", kite_peer.access_token)
    adapter = ZerodhaBroker.from_config(
        {"name": "kite", "root": kite_peer.root, "poll_interval": 0.2, "timeout": 2}
    )
    await adapter.connect()
    yield adapter
    await adapter.disconnect()


async def collect(queue: asyncio.Queue, wanted: int, wait: float = 3.0) -> list:
    events: list = []
    async with asyncio.timeout(wait):
        while len(events) < wanted:
            events.append(await queue.get())
    return events


async def test_order_book_fixture(broker, kite_peer):  # noqa: F811
    events = broker.subscribe()
    kite_peer.serve_fixture("GET", "/orders", fixture("orders.json"))
    kite_peer.serve_fixture("GET", "/trades", fixture("trades.json"))
    got = await collect(events, 4 + 5)
    fills = [e for e in got if isinstance(e, Fill)]
    orders = {e.broker_order_id: e for e in got if isinstance(e, Order)}
    assert len(fills) == 4 and len(orders) == 5
    assert got.index(fills[-1]) < got.index(next(e for e in got if isinstance(e, Order)))  # fills first

    complete = orders["241210000123401"]
    assert complete.status is OrderStatus.FILLED
    assert (complete.filled_quantity, complete.avg_fill_price) == (Decimal(12), Decimal("1794.875"))
    assert complete.client_order_id == "TC00112233445566AABB"
    assert (complete.symbol, complete.order_type, complete.limit_price) == (
        "HDFCBANK",
        OrderType.LIMIT,
        Decimal("1795.5"),
    )
    assert complete.request.exchange == "NSE" and complete.request.currency == "INR"
    assert complete.created_at == datetime(2024, 12, 10, 3, 50, 14, tzinfo=UTC)

    cancelled = orders["241210000123402"]
    assert (cancelled.status, cancelled.filled_quantity, cancelled.side) == (
        OrderStatus.CANCELLED,
        3,
        Side.SELL,
    )
    assert cancelled.client_order_id == "KITE-241210000123402"

    rejected = orders["241210000123403"]
    assert (rejected.status, rejected.reject_code) == (OrderStatus.REJECTED, "INSUFFICIENT_FUNDS")
    assert rejected.reject_reason.startswith("Insufficient funds. Required margin is 182450.00")

    stop_limit = orders["241210000123404"]
    assert stop_limit.status is OrderStatus.ACCEPTED
    assert (stop_limit.order_type, stop_limit.stop_price, stop_limit.limit_price) == (
        OrderType.STOP_LIMIT,
        Decimal(24400),
        Decimal(24380),
    )
    assert stop_limit.request.asset_class is AssetClass.FUTURE and stop_limit.request.exchange == "NFO"
    assert stop_limit.client_order_id == "KITE-241210000123404"  # "hedge leg" is not one of our ids

    partial = orders["241210000123405"]
    assert (partial.status, partial.filled_quantity, partial.symbol) == (
        OrderStatus.PARTIALLY_FILLED,
        5,
        "M&M",
    )

    hdfc = sorted((f for f in fills if f.broker_order_id == "241210000123401"), key=lambda f: f.quantity)
    assert [(f.quantity, f.price) for f in hdfc] == [(4, Decimal("1795.25")), (8, Decimal("1794.7"))]
    assert hdfc[0].fill_id == "241210000123401:70112233"
    assert hdfc[0].client_order_id == "TC00112233445566AABB" and hdfc[0].currency == "INR"
    assert hdfc[0].timestamp == datetime(2024, 12, 10, 3, 50, 15, tzinfo=UTC)

    working = {o.broker_order_id for o in await broker.get_open_orders()}
    assert working == {"241210000123404", "241210000123405"}
    found = await broker.get_order_by_client_id("TC99887766554433CCDD")
    assert found is not None and found.status is OrderStatus.REJECTED


async def test_order_history_fixture_walks_the_state_machine(broker, kite_peer, caplog):  # noqa: F811
    document = fixture("order_history.json")
    statuses = [map_status(row["status"], Decimal(row["filled_quantity"])) for row in document["data"]]
    assert statuses == [OrderStatus.SUBMITTED] * 3 + [OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED]
    for cut in range(1, len(document["data"]) + 1):
        kite_peer.serve_fixture(
            "GET", "/orders/241211000555001", {"status": "success", "data": document["data"][:cut]}
        )
        with caplog.at_level(logging.WARNING):
            order = await broker.get_order("241211000555001")
        assert order.status is statuses[cut - 1]
    assert "illegal" not in caplog.text
    assert (order.filled_quantity, order.avg_fill_price) == (Decimal(6), Decimal("4119.95"))
    assert order.client_order_id == "TCHIST0000000000AAAA" and order.limit_price == Decimal("4120.5")


async def test_positions_holdings_margins_and_ltp_fixtures(broker, kite_peer):  # noqa: F811
    kite_peer.serve_fixture("GET", "/portfolio/positions", fixture("positions.json"))
    kite_peer.serve_fixture("GET", "/portfolio/holdings", fixture("holdings.json"))
    kite_peer.serve_fixture("GET", "/user/margins", fixture("margins.json"))
    kite_peer.serve_fixture("GET", "/quote/ltp", fixture("ltp.json"))

    positions = {p.symbol: p for p in await broker.get_positions()}
    assert set(positions) == {"NIFTY24DECFUT", "ITC", "HDFCBANK", "GOLDBEES"}  # flat SBIN is left out
    future = positions["NIFTY24DECFUT"]
    assert (future.quantity, future.avg_price, future.asset_class, future.exchange) == (
        Decimal(75),
        Decimal("24210.4"),
        AssetClass.FUTURE,
        "NFO",
    )
    assert positions["ITC"].quantity == -3 and positions["ITC"].last_price == Decimal("469.8")
    # 20 held at 1650.25 and 12 bought today at 1794.875
    hdfc = positions["HDFCBANK"]
    assert hdfc.quantity == 32 and hdfc.avg_price == Decimal("1704.484375")
    assert positions["GOLDBEES"].quantity == 50  # T1 shares count

    balance = await broker.get_balance()
    assert (balance.cash, balance.buying_power) == (Decimal("210000.5"), Decimal("151873.35"))
    assert balance.equity == Decimal("258455.25")
    assert (balance.realized_pnl, balance.unrealized_pnl) == (Decimal(38), Decimal("12357.75"))

    margin = await broker.get_margin()
    assert margin.initial_margin == Decimal("55296.75")
    assert margin.maintenance_margin == Decimal("41566.25")
    assert margin.available_funds == Decimal("151873.35")

    assert await broker.get_last_price(Instrument.stock("HDFCBANK")) == Decimal("1801.1")


ERROR_CASES = [
    ("token_exception", AuthenticationError),
    ("margin_exception", InsufficientFundsError),
    ("holding_exception", OrderRejectedError),
    ("input_exception", InvalidSymbolError),
    ("order_exception", OrderRejectedError),
    ("network_exception", BrokerConnectionError),
    ("general_exception", BrokerConnectionError),
]


@pytest.mark.parametrize(("name", "expected"), ERROR_CASES)
async def test_error_envelope_fixtures(broker, kite_peer, name, expected):  # noqa: F811
    case = fixture("errors.json")[name]
    kite_peer.serve_fixture("POST", "/orders/regular", case["body"], http_status=case["http_status"])
    with pytest.raises(expected) as caught:
        await broker.place_order(OrderRequest(symbol="INFY", side="BUY", quantity=1))
    assert type(caught.value) is expected
    assert case["body"]["message"] in str(caught.value)


async def test_error_envelope_on_a_read(broker, kite_peer):  # noqa: F811
    case = fixture("errors.json")["network_exception"]
    kite_peer.serve_fixture("GET", "/portfolio/holdings", case["body"], http_status=case["http_status"])
    with pytest.raises(BrokerAPIError) as caught:
        await broker.get_positions()
    assert caught.value.retryable and caught.value.code == "NetworkException"
    assert kite_peer.count("GET", "/portfolio/holdings") == 3  # the default three attempts
