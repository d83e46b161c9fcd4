from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pytest

from brokers.base import Broker
from brokers.book import Book
from brokers.fx import Money
from brokers.instruments import Instrument
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, Position, RejectCode, Side
from brokers.risk import CHECKS, Check, RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


@dataclass
class Context:
    """A RiskContext whose world the test writes by hand."""

    base_currency: str = "USD"
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    working: dict[tuple[str, str, Side], Decimal] = field(default_factory=dict)
    working_notional: dict[tuple[str, str, Side], Decimal] = field(default_factory=dict)
    open_counts: dict[str, int] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=lambda: {"AAPL": D(200), "INFY": D(1800)})
    currencies: dict[str, str] = field(default_factory=lambda: {"us": "USD", "in": "INR"})
    rates: dict[str, Decimal] = field(default_factory=lambda: {"INR": D("0.012")})
    pnl: dict[str, Decimal] = field(default_factory=dict)

    # Holdings are written by stock symbol; the checks ask by instrument.
    def position(self, account, instrument):
        symbol = instrument if isinstance(instrument, str) else instrument.symbol
        return self.positions.get((account, symbol), D(0))

    def pending(self, account, instrument, side):
        return self.working.get((account, instrument.symbol, side), D(0))

    def pending_notional(self, account, instrument, side):
        return self.working_notional.get((account, instrument.symbol, side), D(0))

    def open_orders(self, account):
        return self.open_counts.get(account, 0)

    # Prices are written by stock symbol too; only a stock has one here.
    def last_price(self, instrument, account):
        if instrument.asset_class is not AssetClass.STOCK:
            return None
        return self.prices.get(instrument.symbol)

    def order_currency(self, request, account):
        return request.currency or self.currencies.get(account, "USD")

    def to_base(self, amount, currency):
        if currency == self.base_currency:
            return amount
        rate = self.rates.get(currency)
        return None if rate is None else amount * rate

    def daily_pnl(self, account):
        return self.pnl.get(account)

    def is_reducing(self, request, account):
        current = self.position(account, request.symbol)
        return (
            current != 0 and (current > 0) != (request.side is Side.BUY) and request.quantity <= abs(current)
        )


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def order(**fields):
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "quantity": 10, **fields})


def engine(**limits):
    return RiskEngine(RiskLimits(**limits), clock=Clock())


def test_unset_limits_check_nothing():
    risk = RiskEngine()
    huge = order(quantity=999_999_999, order_type="LIMIT", limit_price=1)
    assert risk.check(huge, "us", Context(prices={})) is None


def test_max_quantity():
    risk = engine(max_order_quantity=100)
    assert risk.check(order(quantity=100), "us", Context()) is None
    rejection = risk.check(order(quantity=101), "us", Context())
    assert rejection.code == RejectCode.MAX_QUANTITY
    assert "101" in rejection.reason and "100" in rejection.reason


def test_max_notional_in_base_currency():
    risk = engine(max_order_notional=10_000)
    ctx = Context()
    assert risk.check(order(quantity=50), "us", ctx) is None  # 50 x 200 = 10,000
    rejection = risk.check(order(quantity=51), "us", ctx)
    assert rejection.code == RejectCode.MAX_NOTIONAL and "10,200.00 USD" in rejection.reason
    # 1,000 INFY x 1,800 INR x 0.012 = 21,600 USD
    rejection = risk.check(order(symbol="INFY", quantity=1000), "in", ctx)
    assert rejection.code == RejectCode.MAX_NOTIONAL
    assert "1,800,000.00 INR" in rejection.reason and "21,600.00 USD" in rejection.reason
    assert risk.check(order(symbol="INFY", quantity=400), "in", ctx) is None


def test_max_notional_uses_the_limit_price():
    risk = engine(max_order_notional=1_000)
    assert risk.check(order(quantity=10, order_type="LIMIT", limit_price=99), "us", Context()) is None


def test_max_notional_fails_closed_without_price_or_rate():
    risk = engine(max_order_notional=1_000)
    assert risk.check(order(symbol="XYZ", quantity=1), "us", Context()).code == RejectCode.MAX_NOTIONAL
    no_rate = Context(rates={})
    rejection = risk.check(order(symbol="INFY", quantity=1), "in", no_rate)
    assert rejection.code == RejectCode.MAX_NOTIONAL and "exchange rate" in rejection.reason


def test_max_position_counts_working_orders():
    risk = engine(max_position=100)
    ctx = Context(positions={("us", "AAPL"): D(60)}, working={("us", "AAPL", Side.BUY): D(30)})
    assert risk.check(order(quantity=10), "us", ctx) is None
    rejection = risk.check(order(quantity=11), "us", ctx)
    assert rejection.code == RejectCode.MAX_POSITION and "101" in rejection.reason


def test_max_position_short_side_and_reducing_an_oversized_position():
    risk = engine(max_position=100)
    ctx = Context(positions={("us", "AAPL"): D(-95)})
    assert risk.check(order(side="SELL", quantity=6), "us", ctx).code == RejectCode.MAX_POSITION
    over = Context(positions={("us", "AAPL"): D(150)})
    # Already over the limit (limit lowered): selling some is allowed, buying more is not.
    assert risk.check(order(side="SELL", quantity=10), "us", over) is None
    assert risk.check(order(quantity=1), "us", over).code == RejectCode.MAX_POSITION


@pytest.mark.parametrize(
    ("fields", "passes"),
    [
        ({"order_type": "LIMIT", "limit_price": 219}, True),
        ({"order_type": "LIMIT", "limit_price": 221}, False),
        ({"order_type": "LIMIT", "limit_price": 179}, False),
        ({"order_type": "STOP", "stop_price": 181}, True),
        ({"order_type": "STOP_LIMIT", "stop_price": 200, "limit_price": 2000}, False),
        ({}, True),  # market orders have no price to check
    ],
)
def test_price_band(fields, passes):
    risk = engine(price_band_percent=10)
    rejection = risk.check(order(**fields), "us", Context())
    assert (rejection is None) is passes
    if not passes:
        assert rejection.code == RejectCode.PRICE_BAND and "%" in rejection.reason


def test_price_band_without_a_last_price_fails_closed():
    risk = engine(price_band_percent=10)
    rejection = risk.check(order(symbol="NEW", order_type="LIMIT", limit_price=5), "us", Context())
    assert rejection.code == RejectCode.PRICE_BAND and "no last price" in rejection.reason


def test_rate_limit_token_bucket():
    clock = Clock()
    risk = RiskEngine(RiskLimits(max_orders_per_second=2, burst=3), clock=clock)
    ctx = Context()
    results = [risk.check(order(quantity=i + 1), "us", ctx) for i in range(4)]
    assert results[:3] == [None, None, None]
    assert results[3].code == RejectCode.RATE_LIMIT
    # Another account has its own bucket.
    assert risk.check(order(), "in", ctx) is None
    clock.now += 0.5  # refills one token at 2 per second
    assert risk.check(order(quantity=50), "us", ctx) is None
    assert risk.check(order(quantity=51), "us", ctx).code == RejectCode.RATE_LIMIT


def test_rejected_orders_do_not_use_up_the_rate():
    clock = Clock()
    risk = RiskEngine(RiskLimits(max_orders_per_second=1, max_order_quantity=5), clock=clock)
    ctx = Context()
    for _ in range(5):
        assert risk.check(order(quantity=10), "us", ctx).code == RejectCode.MAX_QUANTITY
    assert risk.check(order(quantity=1), "us", ctx) is None


def test_max_open_orders():
    risk = engine(max_open_orders=3)
    assert risk.check(order(), "us", Context(open_counts={"us": 2})) is None
    rejection = risk.check(order(), "us", Context(open_counts={"us": 3}))
    assert rejection.code == RejectCode.MAX_OPEN_ORDERS and "3" in rejection.reason


def test_daily_loss_refuses_all_but_reducing_orders():
    risk = engine(daily_loss_limit=1_000)
    ctx = Context(positions={("us", "AAPL"): D(50)}, pnl={"us": D(-1000)})
    rejection = risk.check(order(side="BUY"), "us", ctx)
    assert rejection.code == RejectCode.DAILY_LOSS
    assert "1,000.00 USD" in rejection.reason and "reduce" in rejection.reason
    assert risk.check(order(side="SELL", quantity=50), "us", ctx) is None
    assert risk.check(order(side="BUY"), "us", Context(pnl={"us": D(-999.99)})) is None
    assert risk.daily_loss_breach(["us"], ctx).startswith("daily loss limit reached at us")
    assert risk.daily_loss_breach(["us"], Context(pnl={"us": D(500)})) is None


def test_symbol_allow_and_deny_lists():
    risk = engine(allowed_symbols=["AAPL", "*.NS"], denied_symbols=["GME", "BAD*"])
    ctx = Context()
    assert risk.check(order(symbol="AAPL"), "us", ctx) is None
    assert risk.check(order(symbol="INFY.NS"), "us", ctx) is None
    assert risk.check(order(symbol="MSFT"), "us", ctx).code == RejectCode.SYMBOL_NOT_ALLOWED
    deny_only = engine(denied_symbols=["gme"])
    rejection = deny_only.check(order(symbol="GME"), "us", ctx)
    assert rejection.code == RejectCode.SYMBOL_NOT_ALLOWED and "deny list" in rejection.reason
    assert deny_only.check(order(symbol="MSFT"), "us", ctx) is None


def test_symbol_lists_name_instruments_not_bare_symbols():
    ctx = Context()
    shares_only = engine(allowed_symbols=["AAPL"])
    assert shares_only.check(order(symbol="AAPL"), "us", ctx) is None
    for other in ({"asset_class": "CFD"}, {"symbol": "AAPL270115C00190000", "asset_class": "OPTION"}):
        rejection = shares_only.check(order(**other), "us", ctx)
        assert rejection.code == RejectCode.SYMBOL_NOT_ALLOWED and "allow list" in rejection.reason
    assert engine(allowed_symbols=["AAPL CFD"]).check(order(asset_class="CFD"), "us", ctx) is None
    assert (
        engine(allowed_symbols=["* OPTION"]).check(
            order(symbol="AAPL270115C00190000", asset_class="OPTION"), "us", ctx
        )
        is None
    )
    # Denying a symbol denies what is derived from it too; denying its CFD leaves the shares.
    never_aapl = engine(denied_symbols=["AAPL"])
    for fields in ({}, {"asset_class": "CFD"}, {"symbol": "AAPL270115C00190000", "asset_class": "OPTION"}):
        assert never_aapl.check(order(**fields), "us", ctx).code == RejectCode.SYMBOL_NOT_ALLOWED
    no_cfds = engine(denied_symbols=["* CFD"])
    assert no_cfds.check(order(asset_class="CFD"), "us", ctx).code == RejectCode.SYMBOL_NOT_ALLOWED
    assert no_cfds.check(order(), "us", ctx) is None


def test_empty_allow_list_allows_nothing():
    assert engine(allowed_symbols=[]).check(order(), "us", Context()).code == RejectCode.SYMBOL_NOT_ALLOWED


def test_duplicate_order_guard():
    clock = Clock()
    risk = RiskEngine(RiskLimits(duplicate_window_seconds=2), clock=clock)
    ctx = Context()
    limit = {"order_type": "LIMIT", "limit_price": 200}
    assert risk.check(order(**limit), "us", ctx) is None
    clock.now += 1
    rejection = risk.check(order(**limit), "us", ctx)
    assert rejection.code == RejectCode.DUPLICATE_ORDER and "1.0s ago" in rejection.reason
    # Differs in price, side, quantity or account: not a duplicate.
    assert risk.check(order(order_type="LIMIT", limit_price=201), "us", ctx) is None
    assert risk.check(order(side="SELL", **limit), "us", ctx) is None
    assert risk.check(order(quantity=11, **limit), "us", ctx) is None
    assert risk.check(order(**limit), "in", ctx) is None
    clock.now += 1.5
    assert risk.check(order(**limit), "us", ctx) is None


def test_account_limits_replace_global_ones_field_by_field():
    risk = RiskEngine(
        RiskLimits(max_order_quantity=100, max_open_orders=5),
        {"big": RiskLimits(max_order_quantity=10_000)},
        clock=Clock(),
    )
    ctx = Context(open_counts={"big": 5})
    assert risk.limits_for("big").max_order_quantity == 10_000
    assert risk.limits_for("big").max_open_orders == 5
    assert risk.check(order(quantity=5000), "small", Context()).code == RejectCode.MAX_QUANTITY
    assert risk.check(order(quantity=5000), "big", ctx).code == RejectCode.MAX_OPEN_ORDERS
    assert risk.check(order(quantity=5000), "big", Context()) is None


def test_parent_order_checked_against_global_limits_without_counting():
    clock = Clock()
    risk = RiskEngine(
        RiskLimits(max_order_quantity=50, max_orders_per_second=1, max_open_orders=1),
        {"us": RiskLimits(max_order_quantity=500)},
        clock=clock,
    )
    busy = Context(open_counts={"us": 5, "in": 5})
    for _ in range(3):
        assert risk.check_parent(order(quantity=50), busy) is None  # account state is the children's
    rejection = risk.check_parent(order(quantity=100), busy)
    assert rejection.code == RejectCode.MAX_QUANTITY and "all accounts together" in rejection.reason
    assert risk.check(order(), "us", Context()) is None  # the rate was not used up by the parents


def test_set_limits_takes_effect():
    risk = engine(max_order_quantity=10)
    assert risk.check(order(quantity=20), "us", Context()) is not None
    risk.set_limits(RiskLimits(max_order_quantity=100))
    assert risk.check(order(quantity=20), "us", Context()) is None


def test_a_new_check_is_one_class_and_one_list_entry():
    class NoFridays(Check):
        code = RejectCode.SYMBOL_NOT_ALLOWED
        limit = "max_order_quantity"

        def check(self, request, account, limits, ctx):
            return "not today" if request.quantity == 13 else None

    risk = RiskEngine(RiskLimits(max_order_quantity=100), checks=(*CHECKS, NoFridays))
    assert risk.check(order(quantity=13), "us", Context()).reason == "not today"


def test_limits_validation():
    with pytest.raises(ValueError):
        RiskLimits(max_order_quantity=0)
    with pytest.raises(ValueError):
        RiskLimits(price_band_percent=150)
    assert RiskLimits(allowed_symbols=[" aapl ", ""]).allowed_symbols == ["AAPL"]


class FakeManager:
    """The book's ``PriceSource``: prices the test sets, and real paper brokers for currencies."""

    def __init__(self, prices: dict[str, Decimal], currencies: dict[str, str]) -> None:
        self.prices = prices
        self.brokers = {name: SimBroker(name, currency=currency) for name, currency in currencies.items()}

    def last_price(self, instrument: Instrument | str, account: str | None = None) -> Decimal | None:
        if isinstance(instrument, str):
            return self.prices.get(instrument)
        if instrument.asset_class is not AssetClass.STOCK:
            return None
        return self.prices.get(instrument.symbol)

    def get(self, name: str) -> Broker:
        return self.brokers[name]  # a KeyError for an unknown account, as the manager's


class Rates:
    """The book's ``FxSource``: fixed rates into USD; a currency without one has no figure."""

    def __init__(self, rates: dict[str, Decimal]) -> None:
        self.rates = rates

    def convert(self, amount: Decimal | None, currency: str, to: str | None = None) -> Money:
        rate = self.rates.get(currency)
        if amount is None or rate is None:
            return Money(None, to or "USD", missing=True)
        return Money(amount * rate, to or "USD")


def fill(fill_id, side, quantity, price, account="us", symbol="AAPL", commission=0):
    return Fill(
        fill_id=fill_id,
        account=account,
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=price,
        commission=commission,
    )


def test_book_realised_and_unrealised_pnl_through_a_flip():
    manager = FakeManager({"AAPL": D(95)}, {"us": "USD"})
    book = Book(manager, None, "USD")
    assert book.add_fill("us", fill("1", "BUY", 10, 100))
    assert not book.add_fill("us", fill("1", "BUY", 10, 100))  # same fill twice counts once
    book.add_fill("us", fill("2", "SELL", 4, 110, commission=1))
    assert book.position("us", "AAPL") == 6
    assert book.daily_pnl("us") == D(40) - 1 + (95 - 100) * 6
    book.add_fill("us", fill("3", "SELL", 10, 90))  # closes 6 at -10 each, then 4 short at 90
    assert book.position("us", "AAPL") == -4
    assert book.daily_pnl("us") == D(39) - 60 + (90 - 95) * 4


def test_book_pnl_in_base_currency_and_missing_rates():
    manager = FakeManager({"INFY": D(1700)}, {"in": "INR"})
    book = Book(manager, Rates({"INR": D("0.01")}), "USD")
    book.seed(
        "in", [Position(symbol="INFY", quantity=D(10), avg_price=D(1500), account="in", currency="INR")]
    )
    manager.prices["INFY"] = D(1650)  # marked at 1,700 when first seen: -500 INR today
    assert book.daily_pnl("in") == D(-5)
    assert book.daily_pnl(None) == D(-5)
    assert Book(manager, None, "USD").daily_pnl("in") == 0  # nothing held there
    no_rates = Book(manager, Rates({}), "USD")
    no_rates.seed("in", [Position(symbol="INFY", quantity=D(10), account="in", currency="INR")])
    manager.prices["INFY"] = D(1600)
    assert no_rates.daily_pnl("in") is None


def test_book_starts_a_new_day():
    manager = FakeManager({"AAPL": D(100)}, {"us": "USD"})
    today = [date(2024, 1, 2)]
    book = Book(manager, None, "USD", today=lambda: today[0])
    book.add_fill("us", fill("1", "BUY", 10, 100))
    book.add_fill("us", fill("2", "SELL", 5, 90))
    assert book.daily_pnl("us") == D(-50)
    today[0] = date(2024, 1, 3)
    manager.prices["AAPL"] = D(80)
    assert book.daily_pnl("us") == 0  # re-marked at the first price of the day, nothing realised yet
    manager.prices["AAPL"] = D(82)
    assert book.daily_pnl("us") == D(10)


def test_book_seed_takes_the_brokers_word_and_reports_differences():
    book = Book(FakeManager({}, {"us": "USD"}), None, "USD")
    book.add_fill("us", fill("1", "BUY", 10, 100))
    book.add_fill("us", fill("2", "BUY", 3, 50, symbol="MSFT"))
    mismatches = book.seed(
        "us",
        [
            Position(symbol="AAPL", quantity=D(12), account="us"),
            Position(symbol="TSLA", quantity=D(-1), account="us"),
        ],
    )
    assert {(m.symbol, m.book, m.broker) for m in mismatches} == {
        ("AAPL", D(10), D(12)),
        ("MSFT", D(3), D(0)),
    }
    assert book.positions() == {("us", "AAPL"): D(12), ("us", "TSLA"): D(-1)}


def test_book_reducing_counts_working_orders_on_the_same_side():
    book = Book(FakeManager({}, {"us": "USD"}), None, "USD")
    book.add_fill("us", fill("1", "BUY", 10, 100))
    working = Order(
        request=OrderRequest(symbol="AAPL", side="SELL", quantity=6, order_type="LIMIT", limit_price=120),
        account="us",
        status=OrderStatus.ACCEPTED,
    )
    book.track(working)
    assert book.open_orders("us") == 1 and book.pending("us", "AAPL", Side.SELL) == 6
    assert book.is_reducing(order(side="SELL", quantity=4), "us")
    assert not book.is_reducing(order(side="SELL", quantity=5), "us")
    assert not book.is_reducing(order(side="BUY", quantity=1), "us")
    working.transition(OrderStatus.CANCELLED)
    book.track(working)
    assert book.open_orders("us") == 0 and book.is_reducing(order(side="SELL", quantity=10), "us")
