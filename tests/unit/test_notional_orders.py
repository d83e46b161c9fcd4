"""Orders for an amount of money (``OrderRequest.notional``): the model, the journal, the risk
checks, the book, and brokers that do not take them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError
from test_risk import Clock, Context

from brokers.book import Book
from brokers.execution import ExecutionService
from brokers.journal import Journal, request_json
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import Order, OrderRequest, OrderStatus, RejectCode, Side
from brokers.risk import RiskEngine, RiskLimits
from brokers.sim import SimBroker

D = Decimal


def dollars(amount: object = 500, **fields: object) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "BUY", "notional": amount, **fields})


def engine(**limits: object) -> RiskEngine:
    return RiskEngine(RiskLimits(**limits), clock=Clock())


# -- the model ------------------------------------------------------------------------------


def test_a_notional_order_has_money_and_no_quantity() -> None:
    request = dollars("500.25")
    assert (request.quantity, request.notional) == (None, D("500.25"))
    assert request.size_text == "500.25 notional"
    with pytest.raises(ValueError, match="notional order"):
        request.units  # noqa: B018  (never a guessed quantity)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"notional": None}, "quantity is required"),
        ({"quantity": 2}, "either quantity or notional"),
        ({"order_type": "LIMIT", "limit_price": 190}, "MARKET order"),
        ({"notional": -5}, "notional"),
        ({"notional": "1e12"}, "notional"),
    ],
)
def test_bad_notional_orders_are_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        dollars(**fields)


def test_the_journal_writes_a_notional_order_as_the_model_does() -> None:
    request = dollars("500")
    written = json.loads(request_json(request))
    assert written == json.loads(request.model_dump_json(exclude_none=True))
    assert "quantity" not in written and written["notional"] == "500"
    assert OrderRequest.model_validate(written) == request


def test_a_notional_order_is_done_when_its_broker_says_so() -> None:
    order = Order.for_request(dollars(500), "a")
    order.transition(OrderStatus.ACCEPTED)
    from brokers.models import Fill

    order.apply_fill(
        Fill(fill_id="1", account="a", symbol="AAPL", side=Side.BUY, quantity=D(2), price=D(200))
    )
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.remaining_quantity is None and order.remaining_notional == D(100)


# -- the risk checks ------------------------------------------------------------------------


def test_the_notional_limit_takes_the_orders_own_money_without_a_price() -> None:
    risk = engine(max_order_notional=400)
    rejection = risk.check(dollars(500, symbol="XYZ"), "us", Context())
    assert rejection is not None and rejection.code == RejectCode.MAX_NOTIONAL
    assert "500.00 USD" in rejection.reason
    assert risk.check(dollars(400, symbol="XYZ"), "us", Context()) is None
    # Valued in the account's currency: 40,000 INR at 0.012 is 480 USD.
    inr = risk.check(dollars(40_000, symbol="INFY"), "in", Context())
    assert inr is not None and "40,000.00 INR (480.00 USD)" in inr.reason


def test_quantity_and_position_limits_size_a_notional_order_at_the_last_price() -> None:
    # AAPL at 200: 2,400 dollars is 12 shares.
    assert engine(max_order_quantity=12).check(dollars(2_400), "us", Context()) is None
    over = engine(max_order_quantity=11).check(dollars(2_400), "us", Context())
    assert over is not None and over.code == RejectCode.MAX_QUANTITY and "12" in over.reason
    held = Context(positions={("us", "AAPL"): D(90)})
    assert engine(max_position=100).check(dollars(2_000), "us", held) is None
    rejection = engine(max_position=100).check(dollars(2_200), "us", held)
    assert rejection is not None and rejection.code == RejectCode.MAX_POSITION


def test_working_notional_orders_count_against_the_position_limit() -> None:
    ctx = Context(positions={("us", "AAPL"): D(90)}, working_notional={("us", "AAPL", Side.BUY): D(1_000)})
    # 90 held + 5 working (1,000 at 200) + 6 more is 101.
    rejection = engine(max_position=100).check(OrderRequest(symbol="AAPL", side="BUY", quantity=6), "us", ctx)
    assert rejection is not None and rejection.code == RejectCode.MAX_POSITION
    assert (
        engine(max_position=100).check(OrderRequest(symbol="AAPL", side="BUY", quantity=5), "us", ctx) is None
    )


def test_without_a_price_a_notional_order_is_refused_where_it_must_be_sized() -> None:
    no_price = Context(prices={})
    quantity = engine(max_order_quantity=10).check(dollars(500), "us", no_price)
    position = engine(max_position=10).check(dollars(500), "us", no_price)
    assert quantity is not None and quantity.code == RejectCode.MAX_QUANTITY and "no price" in quantity.reason
    assert position is not None and position.code == RejectCode.MAX_POSITION and "no price" in position.reason


def test_the_same_notional_order_twice_is_a_duplicate_and_another_amount_is_not() -> None:
    risk = engine(duplicate_window_seconds=5)
    assert risk.check(dollars(500), "us", Context()) is None
    again = risk.check(dollars(500), "us", Context())
    assert again is not None and again.code == RejectCode.DUPLICATE_ORDER and "500 notional" in again.reason
    assert risk.check(dollars(501), "us", Context()) is None


def test_a_cfd_order_is_no_duplicate_of_the_same_order_in_shares() -> None:
    risk = engine(duplicate_window_seconds=5)
    shares = OrderRequest(symbol="AAPL", side="BUY", quantity=10)
    assert risk.check(shares, "us", Context()) is None
    cfd = OrderRequest(symbol="AAPL", side="BUY", quantity=10, asset_class="CFD")
    assert risk.check(cfd, "us", Context()) is None
    assert risk.check(OrderRequest(symbol="AAPL", side="BUY", quantity=10), "us", Context()) is not None


# -- the book -------------------------------------------------------------------------------


class _Prices:
    def __init__(self) -> None:
        self.broker = SimBroker("us")

    def last_price(self, instrument: object, account: str | None = None) -> Decimal | None:
        return D(200)

    def get(self, name: str) -> SimBroker:
        return self.broker


def test_a_notional_sell_never_counts_as_reducing() -> None:
    book = Book(_Prices(), None, "USD")
    book.seed("us", [])
    from brokers.models import Position

    book.seed("us", [Position(symbol="AAPL", quantity=D(10), account="us")])
    assert book.is_reducing(OrderRequest(symbol="AAPL", side="SELL", quantity=5), "us")
    assert not book.is_reducing(dollars(100, side="SELL"), "us")


def test_the_book_counts_working_notional_orders_as_money() -> None:
    book = Book(_Prices(), None, "USD")
    order = Order.for_request(dollars(500), "us")
    order.transition(OrderStatus.ACCEPTED)
    book.track(order)
    assert book.pending("us", "AAPL", Side.BUY) == 0
    assert book.pending_notional("us", "AAPL", Side.BUY) == D(500)
    assert book.pending_notional(None, "AAPL", Side.BUY) == D(500)


# -- through the execution layer ------------------------------------------------------------


async def test_a_broker_that_takes_no_notional_orders_refuses_before_sending(tmp_path) -> None:
    sim = SimBroker("paper")
    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("paper", sim, default=True)
    await manager.connect_all()
    journal = Journal(tmp_path / "journal.sqlite")
    service = ExecutionService(manager, KillSwitch(tmp_path, journal=journal, env={}), journal=journal)
    await service.start()
    try:
        order = await service.submit(dollars(500, account="paper"))
        assert order.status is OrderStatus.REJECTED
        assert order.reject_code == RejectCode.UNSUPPORTED
        assert "notional" in (order.reject_reason or "")
        assert await sim.get_open_orders() == [] and sim._venue.by_client == {}
    finally:
        await service.stop()
        await manager.disconnect_all()
        journal.close()
