"""Paper account bookkeeping: average price, realised and unrealised P&L, cash, buying power.

Every expected number is worked out by hand in the comment next to it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.errors import InsufficientFundsError, OrderRejectedError
from brokers.instruments import Instrument
from brokers.models import OrderRequest, OrderType
from brokers.sim import SimBroker

D = Decimal


def market(side: str, quantity, symbol: str = "AAPL") -> OrderRequest:
    return OrderRequest(symbol=symbol, side=side, quantity=quantity)


async def connected(**kwargs) -> SimBroker:
    kwargs.setdefault("prices", {"AAPL": 200})
    broker = SimBroker(**kwargs)
    await broker.connect()
    return broker


async def trade(broker: SimBroker, side: str, quantity, price) -> None:
    broker.set_price("AAPL", price)
    order = await broker.place_order(market(side, quantity))
    assert order.status.value == "FILLED"


async def position(broker: SimBroker, symbol: str = "AAPL"):
    positions = {p.symbol: p for p in await broker.get_positions()}
    return positions.get(symbol)


async def test_average_price_realised_and_unrealised_pnl():
    broker = await connected()
    await trade(broker, "BUY", 10, 200)
    await trade(broker, "BUY", 10, 210)
    held = await position(broker)
    assert (held.quantity, held.avg_price) == (D(20), D(205))  # (2000 + 2100) / 20

    await trade(broker, "SELL", 5, 220)
    held = await position(broker)
    assert (held.quantity, held.avg_price) == (D(15), D(205))  # a reduction keeps the average
    assert held.realized_pnl == D(75)  # (220 - 205) * 5

    balance = await broker.get_balance()
    assert balance.cash == D(97_000)  # 100,000 - 2,000 - 2,100 + 1,100
    assert balance.realized_pnl == D(75)
    assert balance.unrealized_pnl == D(225)  # (220 - 205) * 15
    assert balance.equity == D(100_300)  # 97,000 + 15 * 220 = 100,000 + 75 + 225
    assert held.market_value == D(3300)


async def test_selling_through_zero_opens_a_short_at_the_trade_price():
    broker = await connected()
    await trade(broker, "BUY", 10, 200)
    await trade(broker, "SELL", 25, 220)
    held = await position(broker)
    assert (held.quantity, held.avg_price) == (D(-15), D(220))
    assert (await broker.get_balance()).realized_pnl == D(200)  # (220 - 200) * 10

    await trade(broker, "BUY", 20, 210)  # covers 15 and goes long 5
    held = await position(broker)
    assert (held.quantity, held.avg_price) == (D(5), D(210))
    balance = await broker.get_balance()
    assert balance.realized_pnl == D(350)  # 200 + (220 - 210) * 15
    assert balance.cash == D(99_300)  # 100,000 - 2,000 + 5,500 - 4,200
    assert balance.equity == D(100_350)  # 99,300 + 5 * 210 = 100,000 + 350 realised


async def test_short_and_cover():
    broker = await connected(prices={"AAPL": 100})
    await trade(broker, "SELL", 10, 100)
    held = await position(broker)
    assert (held.quantity, held.avg_price) == (D(-10), D(100))
    balance = await broker.get_balance()
    assert balance.cash == D(101_000)  # short sale proceeds are credited
    broker.set_price("AAPL", 95)
    balance = await broker.get_balance()
    assert balance.unrealized_pnl == D(50)  # (95 - 100) * -10
    assert balance.equity == D(100_050)  # 101,000 - 10 * 95

    await trade(broker, "BUY", 10, 90)
    assert await position(broker) is None  # flat positions are not listed
    balance = await broker.get_balance()
    assert balance.realized_pnl == D(100)  # (100 - 90) * 10
    assert balance.cash == D(100_100)
    assert balance.unrealized_pnl == D(0)


async def test_a_losing_short_realises_a_loss():
    broker = await connected(prices={"AAPL": 100})
    await trade(broker, "SELL", 4, 100)
    await trade(broker, "BUY", 4, 112.5)
    assert (await broker.get_balance()).realized_pnl == D(-50)  # (100 - 112.5) * 4


async def test_per_share_commission_with_minimum_comes_out_of_cash():
    broker = await connected(commission_per_share="0.01", commission_min=1)
    first = await broker.place_order(market("BUY", 50))
    assert first.fills[0].commission == D("1.00")  # 50 * 0.01 = 0.50, raised to the minimum
    second = await broker.place_order(market("BUY", 300))
    assert second.fills[0].commission == D("3.00")  # 300 * 0.01
    balance = await broker.get_balance()
    assert balance.cash == D(30_000 - 4)  # 100,000 - 350 * 200 - 1 - 3
    assert balance.realized_pnl == D(0)  # commissions are not trading P&L
    assert balance.equity == D(99_996)


async def test_percent_commission():
    broker = await connected(commission_percent="0.1")
    order = await broker.place_order(market("BUY", 10))
    assert order.fills[0].commission == D("2.00")  # 0.1 % of 2,000
    assert (await broker.get_balance()).cash == D(97_998)


async def test_minimum_commission_is_charged_once_per_order_across_partial_fills():
    broker = await connected(commission_per_share="0.005", commission_min=1, liquidity_per_tick=100)
    order = await broker.place_order(market("BUY", 250))
    broker.set_price("AAPL", 200)
    broker.set_price("AAPL", 200)
    order = await broker.get_order(order.broker_order_id)
    # Totals after each fill: max(1, 0.50) = 1.00, max(1, 1.00) = 1.00, max(1, 1.25) = 1.25.
    assert [f.commission for f in order.fills] == [D("1.00"), D("0.00"), D("0.25")]
    assert (await broker.get_balance()).cash == D(100_000 - 50_000) - D("1.25")


async def test_slippage_moves_the_price_against_the_trader():
    broker = await connected(slippage_bps=10)
    bought = await broker.place_order(market("BUY", 1))
    sold = await broker.place_order(market("SELL", 1))
    assert bought.avg_fill_price == D("200.20")  # 200 * 1.001
    assert sold.avg_fill_price == D("199.80")  # 200 * 0.999
    assert (await broker.get_balance()).realized_pnl == D("-0.40")


async def test_slippage_below_a_tick_still_costs_a_tick():
    broker = await connected(prices={"AAPL": "10.00"}, slippage_bps=1)  # 0.001 on 10.00
    bought = await broker.place_order(market("BUY", 1))
    sold = await broker.place_order(market("SELL", 1))
    assert (bought.avg_fill_price, sold.avg_fill_price) == (D("10.01"), D("9.99"))


async def test_margin_buying_power_is_leverage_times_equity_less_gross_exposure():
    broker = await connected(leverage=2)
    assert (await broker.get_balance()).buying_power == D(200_000)
    await trade(broker, "BUY", 100, 200)
    balance = await broker.get_balance()
    assert balance.cash == D(80_000)
    assert balance.equity == D(100_000)
    assert balance.buying_power == D(180_000)  # 2 * 100,000 - 20,000

    margin = await broker.get_margin()
    assert margin.leverage == D(2)
    assert margin.initial_margin == D(10_000)  # 20,000 / 2
    assert margin.maintenance_margin == D(5_000)
    assert margin.available_funds == D(90_000)
    assert margin.excess_liquidity == D(95_000)

    with pytest.raises(InsufficientFundsError) as refused:
        await broker.place_order(market("BUY", 901))  # 180,200 > 180,000
    assert refused.value.code == "INSUFFICIENT_FUNDS"
    assert "180,000.00" in str(refused.value)
    order = await broker.place_order(market("BUY", 900))  # exactly 180,000
    assert order.filled_quantity == D(900)
    assert (await broker.get_balance()).buying_power == D(0)


async def test_a_short_counts_against_margin_buying_power_and_covering_frees_it():
    broker = await connected(leverage=2)
    await trade(broker, "SELL", 100, 200)
    balance = await broker.get_balance()
    assert balance.cash == D(120_000)
    assert balance.equity == D(100_000)
    assert balance.buying_power == D(180_000)  # gross exposure counts a short too
    await trade(broker, "BUY", 100, 200)
    assert (await broker.get_balance()).buying_power == D(200_000)


async def test_buying_power_never_goes_negative():
    broker = await connected(leverage=2)
    await trade(broker, "BUY", 1000, 200)  # 200,000: all of it
    broker.set_price("AAPL", 150)
    balance = await broker.get_balance()
    # equity 0 + 150,000 - 200,000 + 100,000 = 50,000; 2 * 50,000 - 150,000 < 0
    assert balance.equity == D(50_000)
    assert balance.buying_power == D(0)


async def test_cash_account_buying_power_is_cash_and_it_cannot_short():
    broker = await connected(account_type="cash")
    assert (await broker.get_balance()).buying_power == D(100_000)
    await trade(broker, "BUY", 100, 200)
    assert (await broker.get_balance()).buying_power == D(80_000)
    margin = await broker.get_margin()
    assert (margin.leverage, margin.initial_margin, margin.available_funds) == (D(1), D(0), D(80_000))

    with pytest.raises(InsufficientFundsError):
        await broker.place_order(market("BUY", 401))  # 80,200 > 80,000
    with pytest.raises(OrderRejectedError) as refused:
        await broker.place_order(market("SELL", 101))
    assert refused.value.code == "SHORT_NOT_ALLOWED"
    assert not isinstance(refused.value, InsufficientFundsError)
    assert "cash account" in str(refused.value)
    assert not broker.capabilities.short_selling
    sold = await broker.place_order(market("SELL", 100))  # selling what is held is fine
    assert sold.filled_quantity == D(100)


async def test_short_selling_switched_off_on_a_margin_account():
    broker = await connected(allow_short=False)
    assert broker.capabilities.short_selling is False
    with pytest.raises(OrderRejectedError) as refused:
        await broker.place_order(market("SELL", 1))
    assert refused.value.code == "SHORT_NOT_ALLOWED"
    assert await broker.get_positions() == []


async def test_a_resting_order_that_cannot_be_afforded_when_it_triggers_is_rejected():
    broker = await connected(account_type="cash", initial_cash=10_000)
    resting = await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=40, order_type=OrderType.LIMIT, limit_price=190)
    )  # 7,600 fits now
    await broker.place_order(market("BUY", 20))  # spends 4,000 of the 10,000
    broker.set_price("AAPL", 190)
    order = await broker.get_order(resting.broker_order_id)
    assert order.status.value == "REJECTED"
    assert order.reject_code == "INSUFFICIENT_FUNDS"
    assert (await broker.get_balance()).cash == D(6_000)


async def test_initial_positions_and_reset_account():
    broker = await connected(prices={"AAPL": 200}, initial_positions={"AAPL": (10, 150), "MSFT": (-5, 400)})
    held = {p.symbol: p for p in await broker.get_positions()}
    assert (held["AAPL"].quantity, held["AAPL"].avg_price, held["AAPL"].last_price) == (D(10), D(150), D(200))
    assert held["MSFT"].last_price == D(400)  # a seeded symbol without a price is priced at its cost
    balance = await broker.get_balance()
    assert balance.cash == D(100_000)  # seeded holdings cost nothing
    assert balance.unrealized_pnl == D(500)  # (200 - 150) * 10
    assert balance.equity == D(100_000 + 2_000 - 2_000)  # 10 * 200 - 5 * 400

    await trade(broker, "SELL", 10, 210)
    await broker.place_order(
        OrderRequest(symbol="AAPL", side="BUY", quantity=1, order_type=OrderType.LIMIT, limit_price=100)
    )
    broker.reset_account()
    assert await broker.get_positions() == []
    assert await broker.get_open_orders() == []
    balance = await broker.get_balance()
    assert (balance.cash, balance.equity, balance.realized_pnl) == (D(100_000), D(100_000), D(0))
    assert broker.last_price_nowait(Instrument.stock("AAPL")) == D(210)  # the market is not reset
    again = await broker.place_order(market("BUY", 1))
    assert again.broker_order_id == "SIM-000003"  # ids are never reused


async def test_fractional_quantities():
    broker = await connected(prices={"BTCUSD": 60_000})
    order = await broker.place_order(market("BUY", "0.015", "BTCUSD"))
    assert order.filled_quantity == D("0.015")
    assert (await broker.get_balance()).cash == D(99_100)  # 100,000 - 900


async def test_slippage_and_liquidity_can_change_while_running():
    broker = await connected()
    broker.slippage_bps = 50  # 1.00 on 200
    broker.liquidity_per_tick = 3
    order = await broker.place_order(market("BUY", 5))
    assert (order.filled_quantity, order.avg_fill_price) == (D(3), D(201))
    broker.liquidity_per_tick = None
    broker.slippage_bps = 0
    broker.set_price("AAPL", 200)
    done = await broker.get_order(order.broker_order_id)
    assert done.filled_quantity == D(5)
    assert done.avg_fill_price == D("200.6")  # (3 * 201 + 2 * 200) / 5
