"""Each adapter's fills carry their trade date and settlement date, worked out from the broker's
own execution data (IB's Execution.time and the contract's exchange, Alpaca's trade update
timestamp or the order's filled_at, Kite's fill_timestamp) by the settlement table: through the
real client libraries, against the loopback peers serving the brokers' own payloads."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from peers.alpaca_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    alpaca_broker_fixture,
    alpaca_keys_fixture,
    alpaca_peer_fixture,
)
from peers.alpaca_peer import next_event as alpaca_event
from peers.kite_peer import KitePeer, kite_peer  # noqa: F401  (kite_peer is a fixture)
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    ibkr_fixture,
    next_event,
    tws_peer_fixture,
)
from support import until

from adapters.broker_payloads import payload
from brokers import settlement
from brokers.adapters.zerodha import ZerodhaBroker
from brokers.models import ConnectionState, Fill, OrderRequest

ALPACA_FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"


@pytest.fixture(autouse=True)
async def calendars():
    """Loaded, as they are a moment after start-up (before, fills go on undated)."""
    await settlement.loaded()


# Friday 29 August 2025, 21:30 in New York: already Saturday in UTC, and the Friday before
# Labor Day (Monday 1 September), so a US share trade of it settles on Tuesday 2 September.
FRIDAY_EVENING = datetime(2025, 8, 30, 1, 30, tzinfo=UTC)


# -- Interactive Brokers ----------------------------------------------------------------------


async def test_ib_fill_is_dated_by_the_execution_time_in_new_york(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=10, order_type="LIMIT", limit_price="140")
    )
    resting = tws_peer.order(order.client_order_id)
    execution = tws_peer.fill(resting, 10, "139.5", withhold=True)
    execution.time = FRIDAY_EVENING  # the execDetails TWS sends carry this time
    tws_peer.release_executions()
    fill = await next_event(updates, Fill)
    assert fill.timestamp == FRIDAY_EVENING
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 29), date(2025, 9, 2))


async def test_ib_fill_in_a_day_session_settles_the_next_business_day(tws_peer, ibkr):
    updates = ibkr.subscribe()
    order = await ibkr.place_order(
        OrderRequest(symbol="AAPL", side="SELL", quantity=5, order_type="LIMIT", limit_price="160")
    )
    execution = tws_peer.fill(tws_peer.order(order.client_order_id), 5, "160", withhold=True)
    execution.time = datetime(2025, 8, 20, 14, 0, tzinfo=UTC)  # a Wednesday morning in New York
    tws_peer.release_executions()
    fill = await next_event(updates, Fill)
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 20), date(2025, 8, 21))


# -- Alpaca -----------------------------------------------------------------------------------


async def test_alpaca_crypto_fill_from_its_trade_update_settles_at_once(broker, peer):
    # Alpaca's documented trade update of a crypto sale (from its API reference).
    await peer.replay(json.loads((ALPACA_FIXTURES / "trade_update_crypto_fill.json").read_text()))
    fill = await alpaca_event(broker, lambda e: isinstance(e, Fill))
    assert fill.timestamp == datetime(2022, 4, 19, 17, 45, 5, 24916, tzinfo=UTC)
    assert (fill.trade_date, fill.settlement_date) == (date(2022, 4, 19), date(2022, 4, 19))


async def test_alpaca_share_fill_is_dated_by_its_trade_update_timestamp(broker, peer):
    placed = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=3, order_type="LIMIT", limit_price="150")
    )
    order = peer.orders[placed.broker_order_id]
    update = {
        "stream": "trade_updates",
        "data": {
            "event": "fill",
            "execution_id": "7d2c6f55-6a43-4a30-9c42-1c1c5b0e2a11",
            "order": {
                **order,
                "status": "filled",
                "filled_qty": "3",
                "filled_avg_price": "149.5",
                "filled_at": "2025-08-30T01:30:00.000000123Z",
                "updated_at": "2025-08-30T01:30:00.000000123Z",
            },
            "price": "149.5",
            "qty": "3",
            "position_qty": "3",
            "timestamp": "2025-08-30T01:30:00.000000123Z",
        },
    }
    await peer.replay(update)
    fill = await alpaca_event(broker, lambda e: isinstance(e, Fill))
    assert fill.timestamp == FRIDAY_EVENING
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 29), date(2025, 9, 2))


async def test_alpaca_fill_seen_on_a_listing_is_dated_by_the_orders_filled_at(broker, peer):
    placed = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=2, order_type="LIMIT", limit_price="150")
    )
    peer.stream_online = False
    await peer.drop_streams()
    await until(lambda: broker.connection_state is ConnectionState.DEGRADED, within=3)
    await peer.fill(placed.broker_order_id, "2", "149")
    # Filled while the stream was down: the listing brought after it is all there is.
    peer.orders[placed.broker_order_id]["filled_at"] = "2025-08-20T14:00:00Z"
    peer.stream_online = True
    fill = await alpaca_event(
        broker, lambda e: isinstance(e, Fill) and e.broker_order_id == placed.broker_order_id, within=5
    )
    assert fill.timestamp == datetime(2025, 8, 20, 14, 0, tzinfo=UTC)
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 20), date(2025, 8, 21))


# -- Zerodha (Kite) ---------------------------------------------------------------------------


async def kite_fills(peer: KitePeer, monkeypatch, trades: dict) -> dict[str, Fill]:
    monkeypatch.setenv("KITE_API_KEY", peer.api_key)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", peer.access_token)
    adapter = ZerodhaBroker.from_config({"name": "kite", "root": peer.root, "timeout": 2})
    await adapter.connect()
    try:
        peer.serve_fixture("GET", "/trades", trades)
        return {fill.fill_id: fill for fill in await adapter.get_fills()}
    finally:
        await adapter.disconnect()


async def test_kite_trades_are_dated_by_their_fill_timestamp(kite_peer, monkeypatch):  # noqa: F811
    fills = await kite_fills(kite_peer, monkeypatch, payload("kite", "trades.json"))
    # SBIN on NSE, Monday 31 May 2021 09:16:39 IST: T+1.
    sbin = fills["200000000000000:10000000"]
    assert sbin.timestamp == datetime(2021, 5, 31, 3, 46, 39, tzinfo=UTC)
    assert (sbin.trade_date, sbin.settlement_date) == (date(2021, 5, 31), date(2021, 6, 1))
    # A gold future on MCX at 16:00 IST: India's futures row, T+1 too.
    gold = fills["800000000000000:70000000"]
    assert (gold.trade_date, gold.settlement_date) == (date(2021, 5, 31), date(2021, 6, 1))


async def test_kite_trade_before_an_exchange_holiday_settles_after_it(kite_peer, monkeypatch):  # noqa: F811
    trades = copy.deepcopy(payload("kite", "trades.json"))
    sbin = trades["data"][0]
    # Thursday 14 August 2025; Friday 15 August is Independence Day, an NSE holiday.
    sbin["fill_timestamp"] = sbin["exchange_timestamp"] = "2025-08-14 10:05:00"
    fills = await kite_fills(kite_peer, monkeypatch, trades)
    fill = fills["200000000000000:10000000"]
    assert (fill.trade_date, fill.settlement_date) == (date(2025, 8, 14), date(2025, 8, 18))
    assert fill.price == Decimal("420.65")


async def test_a_fill_reported_while_the_calendars_load_goes_on_undated(tws_peer, ibkr, monkeypatch):
    monkeypatch.setattr(settlement, "_LOADED", threading.Event())  # still loading
    updates = ibkr.subscribe()
    order = await ibkr.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    fill = await next_event(updates, Fill)
    # Reported at once, never held up: its dates are worked out from the table when needed.
    assert fill.client_order_id == order.client_order_id
    assert (fill.trade_date, fill.settlement_date) == (None, None)
