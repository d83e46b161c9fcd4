"""What a coin held at a crypto venue cost, from the account's trades there (the real ccxt client
against the loopback Kraken and Binance.US): the average cost when the trades account for the
holding, unknown otherwise, so that unrealised P&L is never the whole value."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from peers.ccxt_peer import (  # noqa: F401  (fixtures)
    crypto_broker_fixture,
    crypto_peer_fixture,
)

from brokers.adapters.ccxt.account import average_cost
from brokers.consolidation import Snapshot, account_totals
from brokers.fx import FxRates, FxSettings
from brokers.models import AccountStatus, Order, OrderRequest, OrderStatus, utcnow

D = Decimal


def limit(side: str, quantity: str, price: str) -> OrderRequest:
    return OrderRequest(
        symbol="BTC/USD",
        side=side,
        quantity=quantity,
        asset_class="CRYPTO",
        time_in_force="GTC",
        order_type="LIMIT",
        limit_price=price,
    )


async def filled(broker, peer, side: str, quantity: str, price: str, fee: str) -> None:
    events = broker.subscribe()
    placed = await broker.place_order(limit(side, quantity, price))
    peer.fill(placed.broker_order_id, D(quantity), D(price), fee=D(fee))
    async with asyncio.timeout(5):
        while True:
            event = await events.get()
            if isinstance(event, Order) and event.broker_order_id == placed.broker_order_id:
                if event.status is OrderStatus.FILLED:
                    return


async def test_coins_the_trades_do_not_account_for_have_no_known_cost(crypto, crypto_peer):
    # 0.5 BTC and 2 ETH were there before any trade the venue lists (deposited).
    positions = {p.symbol: p for p in await crypto.get_positions()}
    btc = positions["BTC/USD"]
    assert btc.avg_price is None and btc.unrealized_pnl is None and btc.cost_basis is None
    assert btc.market_value == D(30000)
    # One buy on top does not account for the rest either.
    await filled(crypto, crypto_peer, "BUY", "0.01", "59000", "0.61")
    positions = {p.symbol: p for p in await crypto.get_positions()}
    assert positions["BTC/USD"].quantity == D("0.51") and positions["BTC/USD"].avg_price is None
    # The account's unrealised P&L says it is partial rather than counting the coins as profit.
    balance = await crypto.get_balance()
    snapshot = Snapshot(
        taken_at=utcnow(),
        balances={"crypto": balance},
        positions={"crypto": list(positions.values())},
        statuses={"crypto": AccountStatus(name="crypto")},
        as_of={},
    )
    totals = account_totals(
        "crypto", "USD", snapshot, FxRates("USD", FxSettings()), lambda position: position.last_price
    )
    assert totals.native.unrealized_pnl.missing and totals.native.unrealized_pnl.amount is None


async def test_the_cost_of_coins_bought_here_is_their_average_with_fees(crypto, crypto_peer):
    crypto_peer.balances["BTC"] = D(0)
    await filled(crypto, crypto_peer, "BUY", "0.01", "59000", "0.61")
    await filled(crypto, crypto_peer, "BUY", "0.02", "60000", "1.20")
    await filled(crypto, crypto_peer, "SELL", "0.01", "61000", "0.70")
    positions = {p.symbol: p for p in await crypto.get_positions()}
    btc = positions["BTC/USD"]
    # Bought 0.03 for 1,791.81 with fees; a third sold at average cost leaves 1,194.54 for 0.02.
    assert btc.quantity == D("0.02")
    assert btc.avg_price == D("59727")
    assert btc.unrealized_pnl == (D(60000) - D(59727)) * D("0.02")
    # Worked out once per holding: an unchanged holding reads no trades again.
    reads = len(crypto_peer.calls)
    await crypto.get_positions()
    trade_paths = ("/0/private/TradesHistory", "/api/v3/myTrades")
    assert not [c for c in crypto_peer.calls[reads:] if c[1] in trade_paths]


def test_average_cost_rules():
    buy = {
        "side": "buy",
        "amount": 1.0,
        "price": 100.0,
        "timestamp": 1,
        "fee": {"cost": 1.0, "currency": "USD"},
    }
    sell = {
        "side": "sell",
        "amount": 0.5,
        "price": 120.0,
        "timestamp": 2,
        "fee": {"cost": 0.6, "currency": "USD"},
    }
    assert average_cost([sell, buy], D("0.5"), "BTC", "USD") == D("101")  # oldest first
    assert average_cost([buy], D("2"), "BTC", "USD") is None  # more held than bought here
    assert average_cost([sell], D("0"), "BTC", "USD") is None  # sold what was never bought here
    in_coin = {**buy, "fee": {"cost": 0.01, "currency": "BTC"}}
    assert average_cost([in_coin], D("0.99"), "BTC", "USD") == D(100) / D("0.99")
    assert average_cost([{**buy, "price": None}], D("1"), "BTC", "USD") is None


async def test_a_key_that_may_not_read_trades_still_shows_the_holdings(crypto, crypto_peer):
    crypto_peer.balances["ETH"] = D(0)
    if crypto_peer.venue == "kraken":
        crypto_peer.fail_next("/0/private/TradesHistory", 200, {"error": ["EGeneral:Permission denied"]})
    else:
        crypto_peer.fail_next(
            "/api/v3/myTrades", 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        )
    (btc,) = await crypto.get_positions()
    assert (btc.symbol, btc.quantity, btc.avg_price) == ("BTC/USD", D("0.5"), None)
    assert crypto.is_connected()
