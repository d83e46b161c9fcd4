"""The risk checks on a bracket's exits: each exit's price against the market and the price band,
each exit's value against the per-order limit (never added to the entry's), room for every order
the bracket leaves working, and a stop-loss leg moved through the market on its own. Each
refusal names the field; nothing reaches the broker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import running, until

from brokers.execution import ExecutionService
from brokers.journal import Journal
from brokers.killswitch import HaltSettings, KillSwitch
from brokers.legs import STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX
from brokers.manager import MultiBrokerManager
from brokers.models import OrderRequest, OrderStatus, RejectCode, Side
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


class Rig:
    def __init__(self, root):
        self.root = root
        self.broker = SimBroker(
            "paper", prices={"AAPL": 100}, initial_cash=1_000_000, initial_positions={"AAPL": ("10", "90")}
        )
        self.manager = MultiBrokerManager(heartbeat_interval=3600)
        self.manager.add_broker("paper", self.broker, default=True)
        self.journal = Journal(root / "journal.sqlite")
        self.switch = KillSwitch(root, journal=self.journal, env={})
        self.service = ExecutionService(
            self.manager, self.switch, risk=RiskEngine(), journal=self.journal, halt_settings=HaltSettings()
        )

    def limits(self, **values):
        self.service.risk.set_limits(RiskLimits(**values))

    async def refused(self, code, **fields):
        before = await self.broker.get_open_orders()
        order = await self.service.submit(OrderRequest(symbol="AAPL", **fields))
        assert order.status is OrderStatus.REJECTED, fields
        assert order.reject_code == code, order.reject_reason
        assert len(await self.broker.get_open_orders()) == len(before)
        return order.reject_reason or ""

    async def accepted(self, **fields):
        order = await self.service.submit(OrderRequest(symbol="AAPL", **fields))
        assert order.status in (OrderStatus.ACCEPTED, OrderStatus.FILLED), order.reject_reason
        return order


@pytest.fixture
async def rig(tmp_path):
    setup = Rig(tmp_path / "state")
    async with running(setup.manager, setup.service):
        yield setup
    setup.journal.close()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"side": "BUY", "quantity": 1, "take_profit": 110, "stop_loss": 101},
            "stop_loss 101 is at or above the last price 100 of AAPL: it would trigger at once",
        ),
        (
            {"side": "BUY", "quantity": 1, "take_profit": 100, "stop_loss": 90},
            "take_profit 100 is at or below the last price 100 of AAPL: it would fill at once",
        ),
        (
            {"side": "SELL", "quantity": 1, "take_profit": 90, "stop_loss": 99},
            "stop_loss 99 is at or below the last price 100 of AAPL: it would trigger at once",
        ),
        (
            {"side": "BUY", "quantity": 1, "stop_loss": 100},
            "stop_loss 100 is at or above the last price 100",
        ),
        # A buy limit the market has reached fills now, at the market, not at its limit.
        (
            {
                "side": "BUY",
                "quantity": 1,
                "order_type": "LIMIT",
                "limit_price": 105,
                "take_profit": 110,
                "stop_loss": 102,
            },
            "stop_loss 102 is at or above the last price 100",
        ),
        # An OCO pair protects a position held now: its stop is judged against the market.
        (
            {"side": "SELL", "quantity": 10, "order_class": "OCO", "take_profit": 110, "stop_loss": 100.5},
            "stop_loss 100.5 is at or above the last price 100",
        ),
    ],
)
async def test_an_exit_already_through_the_market_is_refused_naming_the_field(rig, fields, words):
    reason = await rig.refused(RejectCode.PRICE_BAND, **fields)
    assert words in reason


async def test_exits_of_an_entry_that_rests_start_from_the_entry_price(rig):
    # A buy limit under the market: its exits start at 90, where the take-profit at 95 is sound
    # although it is under today's price.
    await rig.accepted(
        side="BUY", quantity=1, order_type="LIMIT", limit_price=90, take_profit=95, stop_loss=85
    )
    # A buy stop over the market (a breakout): the stop-loss at 105 sits under its entry at 110.
    await rig.accepted(
        side="BUY", quantity=1, order_type="STOP", stop_price=110, take_profit=120, stop_loss=105
    )


async def test_each_exit_is_held_to_the_price_band(rig):
    rig.limits(price_band_percent=D(5))
    reason = await rig.refused(RejectCode.PRICE_BAND, side="BUY", quantity=1, take_profit=110, stop_loss=96)
    assert reason == "take_profit 110 is 10.0% away from the last price 100 of AAPL; the band is 5%"
    reason = await rig.refused(RejectCode.PRICE_BAND, side="BUY", quantity=1, take_profit=104, stop_loss=90)
    assert reason.startswith("stop_loss 90 is 10.0% away")
    entry = await rig.accepted(side="BUY", quantity=1, take_profit=104, stop_loss=96)
    assert entry.status is OrderStatus.FILLED


class NoPrices:
    """A book that has no price for anything (a symbol no quote has come in for)."""

    base_currency = "USD"

    def position(self, account, instrument):
        return D(0)

    def pending(self, account, instrument, side):
        return D(0)

    def pending_notional(self, account, instrument, side):
        return D(0)

    def open_orders(self, account):
        return 0

    def last_price(self, instrument, account):
        return None

    def order_currency(self, request, account):
        return "USD"

    def to_base(self, amount, currency):
        return amount

    def daily_pnl(self, account):
        return None

    def is_reducing(self, request, account):
        return False


def test_without_a_price_the_band_refuses_exits_it_cannot_judge():
    bracket = OrderRequest(symbol="AAPL", side="BUY", quantity=1, take_profit=110, stop_loss=90)
    banded = RiskEngine(RiskLimits(price_band_percent=D(5)))
    rejection = banded.check(bracket, "paper", NoPrices())
    assert rejection is not None and rejection.code == "PRICE_BAND"
    assert rejection.reason == (
        "no last price for AAPL to check take_profit against, so the order is refused (price band 5%)"
    )
    # Without a band there is nothing to hold a market entry's exits to: the broker judges them.
    assert RiskEngine().check(bracket, "paper", NoPrices()) is None


async def test_each_exit_is_valued_on_its_own_and_never_added_to_the_entry(rig):
    rig.limits(max_order_notional=D(1000))
    # 9 at 100 = 900; the take-profit's 9 at 120 = 1,080 is an order of that value at the broker.
    reason = await rig.refused(RejectCode.MAX_NOTIONAL, side="BUY", quantity=9, take_profit=120, stop_loss=95)
    assert reason == (
        "take_profit exit value 1,080.00 USD (9 at 120) is above the limit of 1,000.00 USD per order for paper"
    )
    # Entry 900, take-profit 990, stop-loss 855: each within the limit, their sum is not, and
    # they are not summed (the exits close what the entry opens; one of them cancels the other).
    entry = await rig.accepted(side="BUY", quantity=9, take_profit=110, stop_loss=95)
    await until(lambda: entry.client_order_id + STOP_LOSS_SUFFIX in rig.service.tracker.orders)


async def test_exits_do_not_count_as_new_exposure_against_the_position_limit(rig):
    # Holding 10, a limit of 15: a bracket buying 5 reaches it; its exits sell, they do not add.
    rig.limits(max_position=D(15))
    entry = await rig.accepted(side="BUY", quantity=5, take_profit=110, stop_loss=95)
    assert entry.status is OrderStatus.FILLED
    await rig.refused(RejectCode.MAX_POSITION, side="BUY", quantity=1, take_profit=110, stop_loss=95)


async def test_a_bracket_needs_room_for_every_order_it_leaves_working(rig):
    rig.limits(max_open_orders=3)
    await rig.accepted(side="BUY", quantity=1, order_type="LIMIT", limit_price=50)
    reason = await rig.refused(
        RejectCode.MAX_OPEN_ORDERS, side="BUY", quantity=1, take_profit=110, stop_loss=95
    )
    assert reason == (
        "paper has 1 working orders and this BRACKET order needs room for 3 (the entry and its "
        "take_profit and stop_loss); the limit is 3"
    )
    # An OTO leaves two: it fits.
    await rig.accepted(side="BUY", quantity=1, stop_loss=95)


async def test_a_refused_bracket_spends_no_rate_token(rig):
    rig.limits(max_orders_per_second=D("0.001"), burst=1)
    await rig.refused(RejectCode.PRICE_BAND, side="BUY", quantity=1, take_profit=110, stop_loss=101)
    await rig.accepted(side="BUY", quantity=1, take_profit=110, stop_loss=95)
    await rig.refused(RejectCode.RATE_LIMIT, side="BUY", quantity=1)


async def test_a_parent_to_distribute_has_its_exits_checked_before_it_is_split(rig):
    orders = await rig.service.submit_distributed(
        OrderRequest(symbol="AAPL", side="BUY", quantity=2, take_profit=110, stop_loss=100)
    )
    assert [o.reject_code for o in orders] == [RejectCode.PRICE_BAND]
    assert "stop_loss 100 is at or above the last price 100" in (orders[0].reject_reason or "")
    assert await rig.broker.get_open_orders() == []


async def test_a_stop_loss_leg_moved_through_the_market_is_refused(rig):
    entry = await rig.accepted(side="BUY", quantity=2, take_profit=120, stop_loss=80)
    sl_id = entry.client_order_id + STOP_LOSS_SUFFIX
    tp_id = entry.client_order_id + TAKE_PROFIT_SUFFIX
    await until(lambda: {sl_id, tp_id} <= set(rig.service.tracker.orders))
    report = await rig.service.modify(sl_id, stop_price=D(100))
    assert report.reject_code == RejectCode.PRICE_BAND
    assert (
        report.reject_reason
        == "stop_loss 100 is at or above the last price 100 of AAPL: it would trigger at once"
    )
    leg = rig.service.tracker.get(sl_id)
    assert leg.is_working and leg.request.stop_price == 80
    moved = await rig.service.modify(sl_id, stop_price=D(97))
    assert moved.status is not OrderStatus.REJECTED, moved.reject_reason
    assert (await rig.broker.get_order(leg.broker_order_id)).request.stop_price == 97


async def test_a_plain_stop_order_is_not_taken_for_a_leg(rig):
    # A sell stop over the market is the trader's business when it is not a bracket's exit.
    order = await rig.accepted(side="SELL", quantity=1, order_type="STOP", stop_price=101)
    assert order.status is OrderStatus.FILLED or order.is_working


async def test_a_brackets_exits_changed_at_the_paper_broker_still_cancel_each_other(rig):
    entry = await rig.accepted(side="BUY", quantity=2, take_profit=120, stop_loss=80)
    tp_id, sl_id = entry.client_order_id + TAKE_PROFIT_SUFFIX, entry.client_order_id + STOP_LOSS_SUFFIX
    await until(lambda: {sl_id, tp_id} <= set(rig.service.tracker.orders))
    take_profit, stop_loss = rig.service.tracker.get(tp_id), rig.service.tracker.get(sl_id)
    ids = (take_profit.broker_order_id, stop_loss.broker_order_id)
    assert (await rig.service.modify(tp_id, limit_price=D(104))).status is not OrderStatus.REJECTED
    assert (await rig.service.modify(sl_id, stop_price=D(97))).status is not OrderStatus.REJECTED
    # Changed in place: the same orders at the venue, with the new prices.
    assert (take_profit.broker_order_id, stop_loss.broker_order_id) == ids
    venue_tp = await rig.broker.get_order(take_profit.broker_order_id)
    venue_sl = await rig.broker.get_order(stop_loss.broker_order_id)
    assert (venue_tp.request.limit_price, venue_sl.request.stop_price) == (104, 97)
    kinds = [event.kind for event in rig.journal.events(order=sl_id)]
    assert "modify" in kinds and "modified" in kinds
    rig.broker.set_price("AAPL", 105)
    await until(
        lambda: take_profit.status is OrderStatus.FILLED and stop_loss.status is OrderStatus.CANCELLED
    )
    assert take_profit.avg_fill_price is not None and take_profit.avg_fill_price >= 104


async def test_a_pairs_exits_count_once_as_working_orders_on_their_side(rig):
    # Holding 10, then 5 more with a bracket: its take-profit and stop-loss sell 5 each, but
    # only one of them can fill, so 5 are working on the sell side, not 10.
    entry = await rig.accepted(side="BUY", quantity=5, take_profit=120, stop_loss=80)
    coid = entry.client_order_id
    await until(
        lambda: {coid + TAKE_PROFIT_SUFFIX, coid + STOP_LOSS_SUFFIX} <= set(rig.service.tracker.orders)
    )
    instrument = OrderRequest(symbol="AAPL", side="SELL", quantity=1).instrument
    assert rig.service.book.pending("paper", instrument, Side.SELL) == 5
    # Reduce-only: selling the other 10 still shrinks the position of 15 with those 5 working.
    await rig.service.reduce_only("test", "test")
    sell = await rig.accepted(side="SELL", quantity=10)
    assert sell.status is OrderStatus.FILLED
    await rig.refused(RejectCode.REDUCE_ONLY, side="SELL", quantity=1)


async def test_an_oco_pair_counts_once_against_the_position_limit(rig):
    rig.limits(max_position=D(10))
    pair = await rig.accepted(side="SELL", quantity=10, order_class="OCO", take_profit=110, stop_loss=95)
    await until(lambda: pair.client_order_id + STOP_LOSS_SUFFIX in rig.service.tracker.orders)
    # 10 held, the pair may sell 10: flat at worst. Selling 10 more would be short 10, at the
    # limit; counted twice, the pair would have made it short 20.
    await rig.accepted(side="SELL", quantity=10, order_type="LIMIT", limit_price=105)
    await rig.refused(RejectCode.MAX_POSITION, side="SELL", quantity=1, order_type="LIMIT", limit_price=105)


async def test_an_oco_pair_is_not_split_across_accounts(rig):
    orders = await rig.service.submit_distributed(
        OrderRequest(
            symbol="AAPL", side="SELL", quantity=10, order_class="OCO", take_profit=110, stop_loss=95
        )
    )
    assert [o.reject_code for o in orders] == [RejectCode.INVALID_ORDER]
    assert "send one OCO pair per account" in (orders[0].reject_reason or "")
    assert await rig.broker.get_open_orders() == []
