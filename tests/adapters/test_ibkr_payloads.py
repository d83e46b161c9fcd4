"""Documented IB messages, fed through TWS's socket protocol and the real client library."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from peers.tws_peer import (  # noqa: F401  (the *_fixture names are fixtures)
    REQ_ACCOUNT_SUMMARY,
    REQ_POSITIONS,
    ibkr_fixture,
    next_event,
    notice,
    reject,
    tws_peer_fixture,
)
from support import until

from brokers import errors
from brokers.adapters.ibkr import error_for
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, OrderType, Side

FIXTURES = Path(__file__).parent / "fixtures" / "ibkr"
CODES = json.loads((FIXTURES / "message_codes.json").read_text())
WIRE = json.loads((FIXTURES / "wire_messages.json").read_text())


def label(entry: dict) -> str:
    return f"{entry['code']}-{entry['text'][:30]}"


def resting_order() -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="BUY", quantity=100, order_type="LIMIT", limit_price="100")


@pytest.mark.parametrize("entry", CODES["order_errors"] + CODES["cancel_errors"], ids=label)
def test_documented_errors_map_to_our_exceptions(entry):
    error = error_for(entry["code"], entry["text"], "ib")
    assert type(error).__name__ == entry["error"] and error.definite and error.code == entry["code"]


@pytest.mark.parametrize("entry", CODES["order_errors"], ids=label)
async def test_documented_order_errors_reject_a_new_order(tws_peer, ibkr, entry):
    tws_peer.react(reject(entry["code"], entry["text"]))
    with pytest.raises(getattr(errors, entry["error"])) as caught:
        await ibkr.place_order(resting_order())
    assert type(caught.value).__name__ == entry["error"] and caught.value.code == entry["code"]
    assert entry["text"] in str(caught.value)


@pytest.mark.parametrize("entry", CODES["order_notices"], ids=label)
async def test_documented_notices_about_a_new_order(tws_peer, ibkr, entry):
    status = OrderStatus(entry["status"])
    tws_peer.react(
        reject(entry["code"], entry["text"])
        if status is OrderStatus.CANCELLED
        else notice(entry["code"], entry["text"], alone=True)
    )
    order = await ibkr.place_order(resting_order())
    assert order.status is status


@pytest.mark.parametrize("entry", CODES["system"], ids=label)
async def test_documented_system_messages_set_the_connection_state(tws_peer, ibkr, entry):
    if entry["state"] == "CONNECTED" and entry["code"] in (1101, 1102):
        tws_peer.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
        await until(lambda: ibkr.status().state.value == "DEGRADED")
    tws_peer.send_error(entry["code"], entry["text"])
    await until(lambda: ibkr.status().state.value == entry["state"])
    await ibkr.ping()  # answered on the same socket after the message: the message has been read
    assert ibkr.status().state.value == entry["state"] and ibkr.is_connected()


async def test_an_order_entered_in_tws_and_its_fill(tws_peer, ibkr):
    updates = ibkr.subscribe()
    manual = WIRE["manual_order"]
    tws_peer.send_raw(*manual["open_order"])
    shown = await next_event(updates, Order)
    assert (shown.client_order_id, shown.broker_order_id, shown.account) == (
        "IB1791224376",
        "P1791224376",
        "ib-paper",
    )
    assert (shown.symbol, shown.side, shown.quantity, shown.order_type, shown.limit_price, shown.status) == (
        "AAPL",
        Side.BUY,
        50,
        OrderType.LIMIT,
        Decimal("148.5"),
        OrderStatus.ACCEPTED,
    )

    for name in ("order_status", "exec_details", "commission_report"):
        tws_peer.send_raw(*manual[name])
    fill = await next_event(updates, Fill)
    partial = await next_event(updates, Order, lambda o: o.status is OrderStatus.PARTIALLY_FILLED)

    assert fill.fill_id == "0000e0d5.6596a4e1.01.01" and fill.broker_order_id == "P1791224376"
    assert fill.timestamp == datetime(2024, 1, 19, 15, 15, 3, tzinfo=UTC)  # 10:15:03 New York, winter
    assert (fill.side, fill.quantity, fill.price, fill.commission, fill.currency) == (
        Side.BUY,
        20,
        Decimal("148.45"),
        1,
        "USD",
    )
    assert (partial.filled_quantity, partial.avg_fill_price) == (20, Decimal("148.45"))


async def test_documented_positions(tws_peer, ibkr):
    tws_peer.replies[REQ_POSITIONS] = WIRE["positions"]
    positions = {p.symbol: p for p in await ibkr.get_positions()}
    assert set(positions) == {"AAPL", "AAPL240119C00150000", "EUR.USD"}  # DU7654321 is another account
    stock, option, pair = positions["AAPL"], positions["AAPL240119C00150000"], positions["EUR.USD"]
    assert (stock.quantity, stock.avg_price, stock.exchange, stock.asset_class) == (
        100,
        Decimal("150.25"),
        "NASDAQ",
        AssetClass.STOCK,
    )
    assert (option.quantity, option.avg_price, option.multiplier) == (-2, Decimal("5.205"), 100)
    assert option.cost_basis == Decimal("-1041")
    assert (pair.quantity, pair.avg_price, pair.currency, pair.asset_class) == (
        20000,
        Decimal("1.0845"),
        "USD",
        AssetClass.FOREX,
    )


async def test_documented_account_summary(tws_peer, ibkr):
    tws_peer.replies[REQ_ACCOUNT_SUMMARY] = WIRE["account_summary"]
    balance = await ibkr.get_balance()
    margin = await ibkr.get_margin()
    assert (balance.cash, balance.equity, balance.buying_power, balance.currency) == (
        Decimal("85230.10"),
        Decimal("100250.75"),
        Decimal("370000"),
        "USD",
    )
    assert (balance.realized_pnl, balance.unrealized_pnl) == (Decimal("120.5"), Decimal("-35"))
    assert (margin.initial_margin, margin.maintenance_margin) == (Decimal("7750.25"), Decimal("3875.15"))
    assert (margin.available_funds, margin.excess_liquidity, margin.leverage) == (
        Decimal("92500.5"),
        Decimal("96375.6"),
        Decimal("0.15"),
    )
