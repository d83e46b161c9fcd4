"""Risk state kept in the state folder: one rate limit for every process, and a daily P&L that
counts from where it was after a restart."""

from __future__ import annotations

import os
from datetime import date, timedelta
from decimal import Decimal

from brokers.book import Book
from brokers.models import Fill, OrderRequest, Position, Side
from brokers.risk import RiskEngine, RiskLimits
from brokers.riskstate import RISK_DB, DayStore, SharedBuckets

D = Decimal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Prices:
    def __init__(self, prices: dict[str, Decimal]) -> None:
        self.prices = prices

    def last_price(self, instrument, account=None):
        return self.prices.get(instrument.symbol)

    def get(self, name):
        raise KeyError(name)


class EmptyBook:
    base_currency = "USD"


def _request() -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="BUY", quantity=1)


def _passes(engine: RiskEngine, book) -> bool:
    return engine.check(_request(), "acct", book) is None


def test_engines_on_one_folder_share_one_bucket(tmp_path):
    clock = Clock()
    limits = RiskLimits(max_orders_per_second=5, burst=5)
    engines = [RiskEngine(limits, clock=clock, state_dir=tmp_path) for _ in range(3)]
    book = Book(Prices({}), None, "USD")
    passed = sum(_passes(engine, book) for _ in range(5) for engine in engines)
    assert passed == 5
    clock.now += 0.2  # one token back at 5 per second
    assert [_passes(engine, book) for engine in engines] == [True, False, False]


def test_engines_without_a_folder_count_alone(tmp_path):
    limits = RiskLimits(max_orders_per_second=5, burst=5)
    engines = [RiskEngine(limits, clock=Clock()) for _ in range(2)]
    book = Book(Prices({}), None, "USD")
    assert sum(_passes(engine, book) for _ in range(5) for engine in engines) == 10


def test_an_unusable_folder_still_limits_in_this_process(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    buckets = SharedBuckets(blocker / "rate")
    taken = [buckets.take("acct", 1.0, 2.0, 0.0) for _ in range(4)]
    assert taken == [True, True, False, False]


def test_a_damaged_bucket_file_starts_afresh(tmp_path):
    buckets = SharedBuckets(tmp_path / "rate")
    assert buckets.take("acct", 1.0, 1.0, 0.0)
    [path] = list((tmp_path / "rate").iterdir())
    path.write_bytes(b"\xff" * 16)  # NaN tokens
    assert buckets.take("acct", 1.0, 1.0, 0.0)
    assert not buckets.take("acct", 1.0, 1.0, 0.0)
    buckets.close()


def _fill(fill_id: str, side: Side, quantity: str, price: str) -> Fill:
    return Fill(
        fill_id=fill_id, account="acct", symbol="AAPL", side=side, quantity=D(quantity), price=D(price)
    )


def test_a_restart_the_same_day_keeps_the_days_pnl(tmp_path):
    today = date(2026, 3, 2)
    prices = Prices({"AAPL": D(200), "MSFT": D(400)})
    store = DayStore(tmp_path / RISK_DB)
    book = Book(prices, None, "USD", today=lambda: today)
    book.store = store
    book.seed("acct", [Position(symbol="MSFT", quantity=D(10), avg_price=D(350))])  # marked at 400
    book.add_fill("acct", _fill("f1", Side.BUY, "10", "200"))
    book.add_fill("acct", _fill("f2", Side.SELL, "5", "190"))  # 50 lost
    prices.prices.update({"AAPL": D(180), "MSFT": D(390)})
    before = book.daily_pnl("acct")
    assert before == D(-50) + D(-100) + D(-100)
    book.save_baseline()
    store.close()

    # Restarted: the broker reports what is held; the day's P&L is where it was.
    again = Book(prices, None, "USD", today=lambda: today)
    again.store = DayStore(tmp_path / RISK_DB)
    again.seed(
        "acct",
        [
            Position(symbol="AAPL", quantity=D(5), avg_price=D(200)),
            Position(symbol="MSFT", quantity=D(10), avg_price=D(350)),
        ],
    )
    assert again.daily_pnl("acct") == before

    # The next day counts from nothing.
    tomorrow = Book(prices, None, "USD", today=lambda: today + timedelta(days=1))
    tomorrow.store = DayStore(tmp_path / RISK_DB)
    tomorrow.seed("acct", [Position(symbol="AAPL", quantity=D(5), avg_price=D(200))])
    assert tomorrow.daily_pnl("acct") == 0


def test_an_unwritable_store_is_logged_not_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = DayStore(blocker / RISK_DB)
    assert store.load("acct", date(2026, 3, 2)) == {}
    assert os.path.exists(blocker)
