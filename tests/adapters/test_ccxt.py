"""The ccxt adapter with the real ccxt client against a loopback venue speaking Kraken's and
Binance.US's REST formats: balances, holdings valued in the account's currency, orders and their
fills with fees by polling, the market's limits checked before the venue, cancels, and Kraken's
cancel-all-after timer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal

import pytest
from peers.ccxt_peer import (  # noqa: F401  (fixtures)
    API_KEY,
    SECRET,
    CryptoPeer,
    crypto_broker_fixture,
    crypto_peer_fixture,
)
from support import until

from brokers.credentials import set_secret
from brokers.errors import (
    AuthenticationError,
    BrokerConnectionError,
    ConfigError,
    InsufficientFundsError,
    OrderRejectedError,
)
from brokers.instruments import Instrument
from brokers.models import AssetClass, ConnectionState, Fill, Order, OrderRequest, OrderStatus
from brokers.registry import BrokerFactory

D = Decimal


def crypto_order(**fields) -> OrderRequest:
    values = {
        "symbol": "BTC/USD",
        "side": "BUY",
        "quantity": "0.01",
        "asset_class": "CRYPTO",
        "time_in_force": "GTC",
    }
    values.update(fields)
    return OrderRequest(**values)


async def test_balance_and_holdings_valued_in_the_account_currency(crypto):
    balance = await crypto.get_balance()
    assert (balance.currency, balance.cash, balance.buying_power) == ("USD", D(50000), D(50000))
    # 0.5 BTC at 60,000 and 2 ETH at 3,000 on top of the cash.
    assert balance.equity == D(50000) + D("0.5") * 60000 + 2 * 3000
    positions = {p.symbol: p for p in await crypto.get_positions()}
    assert set(positions) == {"BTC/USD", "ETH/USD"}
    btc = positions["BTC/USD"]
    assert (btc.quantity, btc.last_price, btc.currency, btc.asset_class.value) == (
        D("0.5"),
        D(60000),
        "USD",
        "CRYPTO",
    )
    assert btc.market_value == D(30000)
    assert crypto.last_price_nowait(Instrument("BTCUSD", AssetClass.CRYPTO)) == D(60000)


async def test_a_limit_order_fills_later_and_its_fill_carries_the_fee(crypto, crypto_peer):
    events = crypto.subscribe()
    placed = await crypto.place_order(crypto_order(order_type="LIMIT", limit_price="59000"))
    assert placed.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED)
    venue_order = crypto_peer.orders[placed.broker_order_id]
    assert (venue_order.client_id, venue_order.kind, venue_order.price) == (
        placed.client_order_id,
        "limit",
        D(59000),
    )
    crypto_peer.fill(placed.broker_order_id, D("0.004"), D(59000), fee=D("0.61"))
    crypto_peer.fill(placed.broker_order_id, D("0.006"), D(58990), fee=D("0.92"))
    fills: list[Fill] = []
    final: Order | None = None
    async with asyncio.timeout(5):
        while final is None:
            event = await events.get()
            if isinstance(event, Fill):
                fills.append(event)
            elif event.status is OrderStatus.FILLED:
                final = event
    assert sorted((f.quantity, f.price, f.commission) for f in fills) == [
        (D("0.004"), D(59000), D("0.61")),
        (D("0.006"), D(58990), D("0.92")),
    ]
    assert final.filled_quantity == D("0.01")
    assert final.avg_fill_price == (D("0.004") * 59000 + D("0.006") * 58990) / D("0.01")
    # Seen again by a later poll or a look-up, the same trades are not counted twice.
    again = await crypto.get_order(placed.broker_order_id)
    assert [f.fill_id for f in again.fills] == [f.fill_id for f in final.fills]


async def test_a_market_order_fills_at_once(crypto, crypto_peer):
    crypto_peer.auto_fill = True
    placed = await crypto.place_order(crypto_order(side="SELL", quantity="0.1"))
    await until(lambda: crypto_peer.orders[placed.broker_order_id].status == "closed")
    order = await crypto.get_order(placed.broker_order_id)
    async with asyncio.timeout(5):
        while order.status is not OrderStatus.FILLED:
            await asyncio.sleep(0.05)
            order = await crypto.get_order(placed.broker_order_id)
    assert order.fills[0].commission == (D("0.1") * 60000 * D("0.0026")).quantize(D("0.000001"))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"quantity": "0.00001"}, "below the minimum amount 0.0001"),
        ({"order_type": "LIMIT", "limit_price": "59000.123"}, "steps of 0.1"),
        ({"symbol": "DOGE/USD"}, "has no market DOGE/USD"),
        ({"symbol": "LTC/USDT", "quantity": "1"}, "quoted in USDT"),
        ({"time_in_force": "DAY"}, "time in force DAY"),
    ],
)
async def test_what_the_market_would_refuse_is_refused_before_it_is_sent(crypto, crypto_peer, fields, named):
    before = len(crypto_peer.calls)
    with pytest.raises(OrderRejectedError) as refused:
        await crypto.place_order(crypto_order(**fields))
    assert named in str(refused.value)
    assert not [c for c in crypto_peer.calls[before:] if c[0] != "GET" or c[1].endswith("/order")]


async def test_the_venue_refusing_for_funds_is_a_definite_refusal(crypto):
    with pytest.raises(InsufficientFundsError):
        await crypto.place_order(crypto_order(quantity="5", order_type="LIMIT", limit_price="59000"))


async def test_cancel_and_cancel_all(crypto, crypto_peer):
    first = await crypto.place_order(crypto_order(order_type="LIMIT", limit_price="50000"))
    second = await crypto.place_order(crypto_order(order_type="LIMIT", limit_price="51000"))
    third = await crypto.place_order(crypto_order(symbol="ETH/USD", order_type="LIMIT", limit_price="2000"))
    cancelled = await crypto.cancel_order(first.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    asked = await crypto.cancel_all_orders()
    assert set(asked) == {second.broker_order_id, third.broker_order_id}
    assert {o.status for o in crypto_peer.orders.values()} == {"canceled"}
    assert await crypto.get_open_orders() == []


async def test_an_order_is_found_by_its_client_id(crypto):
    placed = await crypto.place_order(crypto_order(order_type="LIMIT", limit_price="50000"))
    found = await crypto.get_order_by_client_id(placed.client_order_id)
    assert found is not None and found.broker_order_id == placed.broker_order_id
    assert await crypto.get_order_by_client_id("TCNEVERSENT000000001") is None


async def test_stop_orders_go_as_each_venue_takes_them(crypto, crypto_peer):
    # Left working: the disconnect that follows meets a poll under way and must still finish.
    if crypto_peer.venue == "kraken":
        placed = await crypto.place_order(crypto_order(side="SELL", order_type="STOP", stop_price="55000"))
        order = crypto_peer.orders[placed.broker_order_id]
        assert (order.kind, order.stop) == ("stop-loss", D(55000))
    else:
        with pytest.raises(OrderRejectedError, match="does not take STOP orders"):
            await crypto.place_order(crypto_order(side="SELL", order_type="STOP", stop_price="55000"))
        placed = await crypto.place_order(
            crypto_order(side="SELL", order_type="STOP_LIMIT", stop_price="55000", limit_price="54900")
        )
        order = crypto_peer.orders[placed.broker_order_id]
        assert (order.kind, order.stop, order.price) == ("stop-loss-limit", D(55000), D(54900))


async def test_kraken_cancel_all_after_timer_is_armed_while_orders_work(memory_keyring):
    peer = CryptoPeer("kraken")
    await peer.start()
    set_secret("crypto", "api_key", API_KEY)
    set_secret("crypto", "secret_key", SECRET)
    broker = BrokerFactory.create(peer.settings(live=True, cancel_after_seconds=60))
    try:
        await broker.connect()
        assert peer.cancel_after is None
        placed = await broker.place_order(crypto_order(order_type="LIMIT", limit_price="50000"))
        await until(lambda: peer.cancel_after == 60)
        await broker.cancel_order(placed.broker_order_id)
        await until(lambda: peer.cancel_after == 0)
    finally:
        await broker.disconnect()
        await peer.stop()


def test_settings_are_checked_with_the_key_and_what_is_allowed():
    with pytest.raises(ConfigError, match="'exchange' must be one of binanceus, coinbase, kraken"):
        BrokerFactory.create({"type": "ccxt", "name": "c", "exchange": "mtgox", "live": True})
    with pytest.raises(ConfigError, match="Kraken has no paper-trading sandbox"):
        BrokerFactory.create({"type": "ccxt", "name": "c", "exchange": "kraken"})
    with pytest.raises(ConfigError, match="secrets belong in the keyring"):
        BrokerFactory.create(
            {"type": "ccxt", "name": "c", "exchange": "kraken", "live": True, "api_key": "x"}
        )
    with pytest.raises(ConfigError, match="'currency' must be one of USD at Binance.US"):
        BrokerFactory.create(
            {"type": "ccxt", "name": "c", "exchange": "binanceus", "live": True, "currency": "EUR"}
        )
    coinbase = BrokerFactory.create({"type": "ccxt", "name": "c", "exchange": "coinbase"})
    assert not coinbase.live  # paper at Coinbase's sandbox
    caps = coinbase.capabilities
    assert "DAY" not in {t.value for t in caps.time_in_force}


def test_reading_a_ccxt_account_does_not_import_ccxt():
    code = (
        "import sys\nfrom brokers.registry import BrokerFactory\n"
        "BrokerFactory.create({'type': 'ccxt', 'name': 'c', 'exchange': 'kraken', 'live': True})\n"
        "assert not [m for m in sys.modules if m == 'ccxt' or m.startswith('ccxt.')], 'ccxt imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def submit_path(peer: CryptoPeer) -> str:
    return "/0/private/AddOrder" if peer.venue == "kraken" else "/api/v3/order"


async def test_a_lost_answer_leaves_the_order_in_doubt_and_it_is_found_by_its_client_id(crypto, crypto_peer):
    request = crypto_order(order_type="LIMIT", limit_price="50000")
    crypto_peer.lose_next(submit_path(crypto_peer))
    with pytest.raises(BrokerConnectionError, match="may or may not have been placed"):
        await crypto.place_order(request)
    found = await crypto.get_order_by_client_id(request.client_order_id)
    assert found is not None and found.request == request  # matched to the request that was sent
    assert crypto_peer.orders[found.broker_order_id].client_id == request.client_order_id


async def test_a_refused_answer_is_definite_and_never_found_later(crypto, crypto_peer):
    request = crypto_order(order_type="LIMIT", limit_price="50000")
    body = (
        {"error": ["EOrder:Invalid price"]}
        if crypto_peer.venue == "kraken"
        else {"code": -1013, "msg": "Invalid price."}
    )
    crypto_peer.fail_next(submit_path(crypto_peer), 200 if crypto_peer.venue == "kraken" else 400, body)
    with pytest.raises(OrderRejectedError) as refused:
        await crypto.place_order(request)
    assert refused.value.definite
    assert await crypto.get_order_by_client_id(request.client_order_id) is None


async def test_polls_that_keep_failing_mark_the_link_degraded_until_one_succeeds(crypto, crypto_peer):
    await crypto.place_order(crypto_order(order_type="LIMIT", limit_price="50000"))
    path = "/0/private/OpenOrders" if crypto_peer.venue == "kraken" else "/api/v3/openOrders"
    for _ in range(3):
        crypto_peer.fail_next(path, 503, {"error": ["EService:Unavailable"]})
    await until(lambda: crypto.connection_state is ConnectionState.DEGRADED)
    assert "could not list open orders" in crypto.last_error
    await until(lambda: crypto.connection_state is ConnectionState.CONNECTED, within=10)


async def test_keys_never_reach_an_error_or_the_log(crypto_peer, memory_keyring, caplog):
    set_secret("crypto", "api_key", "wrong-key-but-secret-0001")
    set_secret("crypto", "secret_key", SECRET)
    broker = BrokerFactory.create(crypto_peer.settings(live=True))
    with pytest.raises(AuthenticationError) as refused:
        await broker.connect()
    text = str(refused.value) + (broker.last_error or "") + caplog.text
    assert "wrong-key-but-secret-0001" not in text and SECRET not in text
