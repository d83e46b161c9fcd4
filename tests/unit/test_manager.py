"""MultiBrokerManager against a small controllable broker: accounts, health, events, views."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.base import Broker
from brokers.consolidation import average_price, compare_positions
from brokers.errors import AuthenticationError, BrokerAPIError, BrokerConnectionError, UnknownAccountError
from brokers.events import ConnectionEvent, FillEvent, OrderEvent, PositionDiff, PositionDiffEvent
from brokers.fx import FxRates, FxSettings, Money
from brokers.health import Backoff
from brokers.instruments import Instrument
from brokers.manager import MultiBrokerManager
from brokers.models import (
    AssetClass,
    Balance,
    BrokerCapabilities,
    ConnectionState,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    Side,
)

CS = ConnectionState
D = Decimal


class FakeBroker(Broker):
    broker_type = "fake"

    def __init__(
        self,
        name: str,
        *,
        currency: str = "USD",
        latency: float = 0.0,
        cash: str = "1000",
        equity: str = "1000",
        buying_power: str = "2000",
        positions: list[Position] | None = None,
    ) -> None:
        super().__init__(name, currency=currency)
        self.latency = latency
        self.connected = False
        self.connect_failures: list[Exception] = []
        self.read_error: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.ignore_cancel = False
        self.calls: list[str] = []
        self.balance = Balance(
            account=name, currency=currency, cash=D(cash), equity=D(equity), buying_power=D(buying_power)
        )
        self.positions = list(positions or [])
        self.open_orders: list[Order] = []
        self.prices: dict[str, Decimal] = {}
        self.fx: dict[str, Decimal] = {}
        self.expires_at: datetime | None = None

    async def _call(self, method: str) -> None:
        self.calls.append(method)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.gate is not None:
            if self.ignore_cancel:
                while not self.gate.is_set():
                    try:
                        await self.gate.wait()
                    except asyncio.CancelledError:
                        continue
            else:
                await self.gate.wait()
        if method != "connect":
            if not self.connected:
                raise BrokerConnectionError("connection lost", broker=self.name)
            if self.read_error is not None:
                raise self.read_error

    @property
    def session_expires_at(self) -> datetime | None:
        return self.expires_at

    async def connect(self) -> None:
        await self._call("connect")
        if self.connect_failures:
            raise self.connect_failures.pop(0)
        self.connected = True

    async def disconnect(self) -> None:
        self.calls.append("disconnect")
        self.connected = False

    def is_connected(self) -> bool:
        return self.connected

    async def place_order(self, request: OrderRequest) -> Order:
        raise NotImplementedError

    async def cancel_order(self, broker_order_id: str) -> Order:
        raise NotImplementedError

    async def cancel_all_orders(self) -> list[str]:
        await self._call("cancel_all_orders")
        ids = [o.broker_order_id or "" for o in self.open_orders]
        self.open_orders = []
        return ids

    async def get_order(self, broker_order_id: str) -> Order:
        raise NotImplementedError

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return None

    async def get_open_orders(self) -> list[Order]:
        await self._call("get_open_orders")
        return list(self.open_orders)

    async def get_balance(self) -> Balance:
        await self._call("get_balance")
        return self.balance

    async def get_positions(self) -> list[Position]:
        await self._call("get_positions")
        return list(self.positions)

    async def get_margin(self) -> MarginInfo:
        return MarginInfo(account=self.name)

    async def get_fx_rates(self) -> dict[str, Decimal]:
        await self._call("get_fx_rates")
        return dict(self.fx)

    @property
    def capabilities(self) -> BrokerCapabilities:
        return BrokerCapabilities()

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        # Keyed by symbol, for shares: what the fake's tests set.
        if instrument.asset_class is not AssetClass.STOCK:
            return None
        return self.prices.get(instrument.symbol)


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def manager(**kwargs) -> MultiBrokerManager:
    kwargs.setdefault("timeout", 0.5)
    return MultiBrokerManager(**kwargs)


def order(symbol: str = "AAPL", broker_order_id: str = "B1") -> Order:
    request = OrderRequest(symbol=symbol, side="BUY", quantity=1, order_type="LIMIT", limit_price=10)
    return Order(request=request, broker_order_id=broker_order_id, status=OrderStatus.ACCEPTED)


# -- accounts -------------------------------------------------------------------------------


def test_accounts_by_name_default_and_weights():
    m = manager()
    a, b, c = FakeBroker("a"), FakeBroker("b"), FakeBroker("c")
    m.add_broker("alpaca-1", a, weight=2)
    assert m.default_account == "alpaca-1"  # a lone account is the default
    m.add_broker("alpaca-2", b, weight=0.5)
    assert m.default_account is None  # several, none marked: no silent choice
    m.add_broker("ib", c, default=True)
    assert m.default_account == "ib"
    assert m.names() == ["alpaca-1", "alpaca-2", "ib"]
    assert m.weights() == {"alpaca-1": 2.0, "alpaca-2": 0.5, "ib": 1.0}
    assert m.get("alpaca-2") is b and m.brokers == {"alpaca-1": a, "alpaca-2": b, "ib": c}
    assert m.statuses()["alpaca-1"].broker_type == "fake"

    with pytest.raises(ValueError, match="already exists"):
        m.add_broker("ib", FakeBroker("x"))
    with pytest.raises(ValueError, match="weight"):
        m.add_broker("w", FakeBroker("w"), weight=-1)
    with pytest.raises(ValueError, match="account name"):
        m.add_broker("bad name!", FakeBroker("x"))

    assert m.remove_broker("ib") is c
    assert m.default_account is None and "ib" not in m.statuses()
    with pytest.raises(UnknownAccountError, match="unknown account 'ib'; accounts: alpaca-1, alpaca-2"):
        m.get("ib")
    with pytest.raises(KeyError):
        m.get("nope")


def test_a_broker_that_reports_nothing_of_its_own_health_follows_is_connected():
    broker = FakeBroker("plain")
    assert broker.connection_state is ConnectionState.DISCONNECTED
    broker.connected = True
    assert broker.connection_state is ConnectionState.CONNECTED
    assert broker.last_error is None and broker.late_order_window == 0.0
    built = FakeBroker.from_config({"name": "built", "currency": "EUR", "cash": "5"})
    assert (built.name, built.currency, built.balance.cash) == ("built", "EUR", Decimal(5))


async def test_remove_broker_disconnects_it_and_drops_its_data():
    m = manager()
    broker = FakeBroker("a", positions=[Position(symbol="AAPL", quantity=D(1), avg_price=D(1))])
    m.add_broker("a", broker)
    m.add_broker("b", FakeBroker("b"))
    await m.connect_all()
    assert "a" in m.snapshot.positions
    events = m.subscribe()
    m.remove_broker("a")
    await m.stop()  # waits for the background disconnect
    assert not broker.connected
    assert "a" not in m.snapshot.positions and m.consolidated_positions() == []
    assert ConnectionEvent in {type(e) for e in drain(events)}


# -- connect, refresh, health ----------------------------------------------------------------


async def test_connect_all_resyncs_and_marks_failures_without_raising():
    m = manager()
    good, bad = FakeBroker("good"), FakeBroker("bad")
    bad.connect_failures = [BrokerConnectionError("refused", broker="bad")]
    m.add_broker("good", good)
    m.add_broker("bad", bad)
    statuses = await m.connect_all()
    assert statuses["good"].state is CS.CONNECTED and statuses["good"].last_refresh is not None
    assert {"get_open_orders", "get_positions", "get_balance"} <= set(good.calls)
    assert statuses["bad"].state is CS.FAILED and statuses["bad"].last_error == "bad: refused"
    assert m.is_available("good") and not m.is_available("bad") and not m.is_available("nope")
    assert "refused" in m.unavailable_reason("bad")


async def test_already_connected_broker_is_resynced_not_reconnected():
    m = manager()
    broker = FakeBroker("a")
    broker.connected = True
    m.add_broker("a", broker)
    assert m.state("a") is CS.DISCONNECTED and not m.is_available("a")
    await m.connect_all()
    assert "connect" not in broker.calls and m.state("a") is CS.CONNECTED


async def test_connect_timeout_marks_failed():
    m = manager(connect_timeout=0.05)
    slow = FakeBroker("slow")
    slow.gate = asyncio.Event()
    m.add_broker("slow", slow)
    m.add_broker("ok", FakeBroker("ok"))
    started = time.perf_counter()
    statuses = await m.connect_all()
    assert time.perf_counter() - started < 1
    assert statuses["slow"].state is CS.FAILED and "0.05 s" in statuses["slow"].last_error
    assert statuses["ok"].state is CS.CONNECTED


async def test_refresh_fans_out_concurrently():
    m = manager()
    for i in range(8):
        m.add_broker(f"b{i}", FakeBroker(f"b{i}", latency=0.05))
    await m.connect_all()
    started = time.perf_counter()
    snapshot = await m.refresh()
    elapsed = time.perf_counter() - started
    assert len(snapshot.balances) == 8 and not snapshot.stale
    # Eight brokers of 50 ms each: one after another would take 400 ms.
    assert elapsed < 0.2
    assert all(0 < s.latency_ms < 200 for s in snapshot.statuses.values())


async def test_a_broker_that_ignores_cancellation_is_abandoned_on_time():
    m = manager(timeout=0.05)
    stubborn, ok = FakeBroker("stubborn"), FakeBroker("ok")
    m.add_broker("stubborn", stubborn)
    m.add_broker("ok", ok)
    await m.connect_all()
    stubborn.gate = asyncio.Event()
    stubborn.ignore_cancel = True
    started = time.perf_counter()
    snapshot = await m.refresh()
    assert time.perf_counter() - started < 1
    assert snapshot.statuses["stubborn"].state is CS.DEGRADED
    assert "no answer within 0.05 s" in snapshot.statuses["stubborn"].last_error
    assert snapshot.stale == frozenset({"stubborn"}) and "stubborn" in snapshot.balances
    assert snapshot.statuses["ok"].state is CS.CONNECTED
    # Still placeable: slow reads alone do not stop orders.
    assert m.is_available("stubborn")
    stubborn.gate.set()
    await m.stop()


async def test_degraded_recovers_and_repeated_failures_count_as_a_drop():
    m = manager(degraded_limit=2)
    broker = FakeBroker("a")
    m.add_broker("a", broker)
    await m.connect_all()
    broker.read_error = BrokerAPIError("500 internal error", broker="a")
    await m.refresh()
    assert m.state("a") is CS.DEGRADED and m.statuses()["a"].last_error == "a: 500 internal error"
    broker.read_error = None
    await m.refresh()
    assert m.state("a") is CS.CONNECTED and m.statuses()["a"].last_error is None
    broker.read_error = BrokerAPIError("500", broker="a")
    await m.refresh()
    await m.refresh()
    assert m.state("a") is CS.DISCONNECTED and "2 times in a row" in m.statuses()["a"].last_error


async def test_dropped_connection_is_disconnected_and_credentials_refused_is_not_retried():
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    m = manager(backoff=Backoff(initial=1, jitter=0), sleep=fake_sleep, heartbeat_interval=60)
    broker = FakeBroker("a")
    m.add_broker("a", broker)
    await m.connect_all()
    await m.start()
    broker.connected = False
    broker.connect_failures = [AuthenticationError("invalid api key", broker="a")]
    await m.refresh()
    for _ in range(20):
        await asyncio.sleep(0)
    status = m.statuses()["a"]
    assert status.state is CS.FAILED and status.last_error == "a: invalid api key"
    assert sleeps == [1]  # one attempt, then it stops: retrying refused credentials is futile
    await m.stop()


async def test_expired_session_shows_time_left_and_blocks_orders():
    now = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
    m = manager(clock=lambda: now)
    kite = FakeBroker("kite", currency="INR")
    kite.expires_at = now + timedelta(hours=2)
    m.add_broker("kite", kite)
    await m.connect_all()
    assert m.status("kite").session_expires_at == now + timedelta(hours=2)
    assert m.is_available("kite")
    kite.expires_at = now - timedelta(seconds=1)
    assert not m.is_available("kite")
    assert "session has expired" in m.unavailable_reason("kite")
    await m.refresh()
    assert m.state("kite") is CS.FAILED and "log in again" in m.status("kite").last_error


async def test_concurrent_refreshes_share_one_call_per_broker():
    m = manager()
    broker = FakeBroker("a", latency=0.05)
    m.add_broker("a", broker)
    await m.connect_all()
    broker.calls.clear()
    await asyncio.gather(m.refresh(), m.refresh(), m.refresh())
    assert broker.calls.count("get_balance") == 1


async def test_broker_reported_fx_rates_are_used():
    m = manager()
    broker = FakeBroker("ib")
    broker.fx = {"EURUSD": D("1.25")}
    m.add_broker("ib", broker)
    await m.connect_all()
    await m.refresh()
    assert m.fx.get("EURUSD").source == "ib"
    assert m.fx.convert(D(4), "EUR") == Money(D(5), "USD")


# -- reconnect ------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered_downwards():
    exact = Backoff(initial=0.5, maximum=4, multiplier=2, jitter=0)
    assert [exact.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert exact.delay(10_000) == 4
    jittered = Backoff(initial=1, maximum=8, jitter=0.5, rng=random.Random(7))
    for attempt in range(8):
        base = jittered.base_delay(attempt)
        delays = {jittered.delay(attempt) for _ in range(20)}
        assert all(base * 0.5 <= d <= base for d in delays) and len(delays) > 1
    for bad in ({"initial": 0}, {"maximum": 0.1, "initial": 1}, {"jitter": 1}, {"multiplier": 0.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)


async def test_reconnect_waits_on_the_backoff_schedule_then_resyncs():
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    m = manager(backoff=Backoff(initial=0.5, maximum=2, jitter=0), sleep=fake_sleep, heartbeat_interval=60)
    broker = FakeBroker("a")
    m.add_broker("a", broker)
    await m.connect_all()
    await m.start()
    events = m.subscribe()
    broker.connected = False
    broker.connect_failures = [BrokerConnectionError("refused") for _ in range(4)]
    broker.calls.clear()
    await m.refresh()
    for _ in range(200):
        if m.state("a") is CS.CONNECTED:
            break
        await asyncio.sleep(0)
    assert m.state("a") is CS.CONNECTED
    assert sleeps == [0.5, 1, 2, 2, 2]
    assert broker.calls.count("connect") == 5 and "get_open_orders" in broker.calls
    states = [e.state for e in drain(events) if isinstance(e, ConnectionEvent)]
    assert states[0] is CS.DISCONNECTED
    assert states[-2:] == [CS.RESYNCING, CS.CONNECTED]
    assert states.count(CS.FAILED) == 4
    await m.stop()


async def test_heartbeat_notices_a_drop_and_reconnects():
    m = manager(backoff=Backoff(initial=0.01, maximum=0.01, jitter=0), heartbeat_interval=0.02)
    broker, other = FakeBroker("a"), FakeBroker("b")
    m.add_broker("a", broker)
    m.add_broker("b", other)
    await m.connect_all()
    await m.start()
    broker.connected = False
    for _ in range(100):
        await asyncio.sleep(0.01)
        if broker.calls.count("connect") >= 2 and m.state("a") is CS.CONNECTED:
            break
    assert m.state("a") is CS.CONNECTED and broker.calls.count("connect") == 2
    assert m.state("b") is CS.CONNECTED and other.calls.count("connect") == 1
    await m.stop()


async def test_disconnect_all_stops_reconnecting():
    m = manager(backoff=Backoff(initial=0.01, maximum=0.01, jitter=0), heartbeat_interval=0.01)
    broker = FakeBroker("a")
    m.add_broker("a", broker)
    await m.connect_all()
    await m.start()
    await m.disconnect_all()
    await asyncio.sleep(0.1)
    assert m.state("a") is CS.DISCONNECTED and broker.calls.count("connect") == 1
    await m.stop()


# -- resync and position sync ---------------------------------------------------------------


async def test_resyncing_blocks_only_that_account_until_hooks_finish():
    m = manager()
    a, b = FakeBroker("a"), FakeBroker("b")
    m.add_broker("a", a)
    m.add_broker("b", b)
    await m.connect_all()
    release = asyncio.Event()
    seen: list[tuple[str, bool, bool]] = []

    async def reconcile(account: str) -> None:
        seen.append((account, m.is_available("a"), m.is_available("b")))
        await release.wait()

    m.add_resync_hook(reconcile)
    task = asyncio.create_task(m.resync("a"))
    await asyncio.sleep(0.01)
    assert m.state("a") is CS.RESYNCING
    assert not m.is_available("a") and m.is_available("b")
    assert "re-reading" in m.unavailable_reason("a")
    release.set()
    await task
    assert seen == [("a", False, True)] and m.is_available("a")


async def test_failing_resync_hook_keeps_orders_blocked():
    m = manager()
    m.add_broker("a", FakeBroker("a"))

    async def broken(account: str) -> None:
        raise RuntimeError("journal locked")

    m.add_resync_hook(broken)
    await m.connect_all()
    assert m.state("a") is CS.FAILED and "journal locked" in m.status("a").last_error


async def test_resync_reports_open_orders_and_position_differences():
    book = {("a", "AAPL"): D(100), ("a", "MSFT"): D(5), ("b", "AAPL"): D(7)}
    m = manager(book_provider=lambda: book)
    a = FakeBroker(
        "a",
        positions=[
            Position(symbol="AAPL", quantity=D(100), avg_price=D(1)),
            Position(symbol="TSLA", quantity=D(-3), avg_price=D(1)),
        ],
    )
    a.open_orders = [order()]
    m.add_broker("a", a)
    events = m.subscribe()
    await m.connect_all()
    got = drain(events)
    assert [type(e) for e in got if not isinstance(e, ConnectionEvent)] == [OrderEvent, PositionDiffEvent]
    diff_event = next(e for e in got if isinstance(e, PositionDiffEvent))
    assert diff_event.diffs == (
        PositionDiff("a", "MSFT", book=D(5), broker=D(0)),
        PositionDiff("a", "TSLA", book=D(0), broker=D(-3)),
    )
    assert diff_event.diffs[1].difference == D(-3)
    assert m.position_diffs()["a"] == diff_event.diffs


def test_compare_positions_sums_legs_and_ignores_other_accounts():
    positions = [Position(symbol="X", quantity=D(2)), Position(symbol="X", quantity=D(3))]
    assert compare_positions("a", {("a", "X"): D(5), ("b", "Y"): D(1)}, positions) == ()


# -- events ---------------------------------------------------------------------------------


async def test_events_keep_arrival_order_per_broker():
    m = manager()
    a, b = FakeBroker("a"), FakeBroker("b")
    m.add_broker("a", a)
    m.add_broker("b", b)
    await m.connect_all()
    await m.start()
    queue = m.subscribe()
    for i in range(20):
        a._emit(order(broker_order_id=f"A{i}"))
        b._emit(Fill(fill_id=f"F{i}", account="b", symbol="AAPL", side=Side.BUY, quantity=D(1), price=D(1)))
    events = [await asyncio.wait_for(queue.get(), 1) for _ in range(40)]
    from_a = [e.order.broker_order_id for e in events if isinstance(e, OrderEvent)]
    from_b = [e.fill.fill_id for e in events if isinstance(e, FillEvent)]
    assert from_a == [f"A{i}" for i in range(20)]
    assert from_b == [f"F{i}" for i in range(20)]
    assert {e.account for e in events if isinstance(e, FillEvent)} == {"b"}
    m.unsubscribe(queue)
    await m.stop()


async def test_events_emitted_before_start_are_delivered_after():
    m = manager()
    a = FakeBroker("a")
    m.add_broker("a", a)
    a._emit(order(broker_order_id="early"))
    queue = m.subscribe()
    await m.start()
    event = await asyncio.wait_for(queue.get(), 1)
    assert isinstance(event, OrderEvent) and event.order.broker_order_id == "early"
    await m.stop()


async def test_events_iterator_yields_what_subscribers_get():
    m = manager()
    a = FakeBroker("a")
    m.add_broker("a", a)
    await m.start()
    stream = m.events()
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # let the iterator subscribe
    a._emit(order(broker_order_id="later"))
    event = await asyncio.wait_for(pending, 1)
    assert isinstance(event, OrderEvent) and event.order.broker_order_id == "later"
    await stream.aclose()
    assert not m._hub.queues
    await m.stop()


# -- cancel-all and other fan-outs ----------------------------------------------------------


async def test_cancel_all_reaches_every_connected_broker_whatever_its_state():
    m = manager(timeout=0.05)
    a, b, hung, down = FakeBroker("a"), FakeBroker("b"), FakeBroker("hung"), FakeBroker("down")
    a.open_orders = [order(broker_order_id="A1"), order(broker_order_id="A2")]
    for name, broker in (("a", a), ("b", b), ("hung", hung), ("down", down)):
        m.add_broker(name, broker)
    await m.connect_all()
    down.connected = False
    hung.gate = asyncio.Event()
    task = asyncio.create_task(m.resync("b"))  # RESYNCING must not stop a cancel
    results = await m.cancel_all_orders()
    await task
    assert results["a"].ok and results["a"].order_ids == ("A1", "A2") and results["a"].cancelled == 2
    assert results["b"].ok
    assert not results["hung"].ok and "no answer" in results["hung"].error
    assert not results["down"].ok and results["down"].error == "not connected"
    hung.gate.set()


async def test_call_each_reports_each_error_without_raising():
    m = manager()
    m.add_broker("a", FakeBroker("a"))
    m.add_broker("b", FakeBroker("b"))
    await m.connect_all()

    async def call(broker: Broker) -> str:
        if broker.name == "b":
            raise BrokerAPIError("boom", broker="b")
        return broker.name.upper()

    results = await m.call_each(call)
    assert results["a"].ok and results["a"].value == "A"
    assert not results["b"].ok and results["b"].error == "b: boom"
    with pytest.raises(UnknownAccountError):
        await m.call_each(call, ["zzz"])


# -- consolidation --------------------------------------------------------------------------


def test_average_price_of_the_side_that_remains():
    long_a = Position(symbol="X", quantity=D(100), avg_price=D(150))
    long_b = Position(symbol="X", quantity=D(300), avg_price=D(170))
    short = Position(symbol="X", quantity=D(-40), avg_price=D(120))
    assert average_price([long_a, long_b]) == D(165)
    assert average_price([long_a, short]) == D(150)
    assert average_price([Position(symbol="X", quantity=D(-100), avg_price=D(9)), long_a]) is None
    assert average_price([short, Position(symbol="X", quantity=D(-60), avg_price=D(130))]) == D(126)


async def test_long_and_short_net_out_and_stay_visible_per_account():
    m = manager()
    m.add_broker(
        "a",
        FakeBroker(
            "a", positions=[Position(symbol="AAPL", quantity=D(100), avg_price=D(150), last_price=D(160))]
        ),
    )
    m.add_broker(
        "b",
        FakeBroker(
            "b",
            positions=[
                Position(symbol="AAPL", quantity=D(-40), avg_price=D(170), last_price=D(160)),
                Position(
                    symbol="AAPL",
                    quantity=D(5),
                    avg_price=D(1),
                    asset_class=AssetClass.OPTION,
                    multiplier=D(100),
                    last_price=D(2),
                ),
            ],
        ),
    )
    await m.connect_all()
    rows = m.consolidated_positions()
    assert [(r.symbol, r.asset_class) for r in rows] == [
        ("AAPL", AssetClass.OPTION),
        ("AAPL", AssetClass.STOCK),
    ]
    option, stock = rows
    assert stock.quantity == D(60) and stock.avg_price == D(150) and stock.last_price == D(160)
    assert [(leg.account, leg.quantity) for leg in stock.legs] == [("a", D(100)), ("b", D(-40))]
    assert stock.market_value_base == Money(D(9600), "USD")
    # (160 - 150) * 100 + (160 - 170) * -40
    assert stock.unrealized_pnl_base == Money(D(1400), "USD")
    assert option.market_value_base == Money(D(1000), "USD")  # 5 contracts * 100 * 2
    assert option.unrealized_pnl_base == Money(D(500), "USD")


async def test_live_price_beats_snapshot_and_missing_price_is_marked():
    m = manager()
    broker = FakeBroker(
        "a",
        positions=[
            Position(symbol="AAPL", quantity=D(10), avg_price=D(100), last_price=D(110)),
            Position(symbol="ZZZ", quantity=D(1), avg_price=D(5)),
        ],
    )
    m.add_broker("a", broker)
    await m.connect_all()
    broker.prices["AAPL"] = D(120)
    aapl, zzz = m.consolidated_positions()
    assert aapl.market_value_base == Money(D(1200), "USD")
    assert zzz.market_value_base == Money(None, "USD", missing=True)
    assert m.totals().total.market_value == Money(D(1200), "USD", missing=True)
    assert m.last_price("aapl") == D(120) and m.last_price("ZZZ") is None
    broker.prices.clear()
    assert m.last_price("AAPL", account="a") == D(110)
    with pytest.raises(UnknownAccountError):
        m.last_price("AAPL", account="nope")


T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def usd_inr_manager(
    clock: Clock, rates: dict[str, int] | None = None
) -> tuple[MultiBrokerManager, FakeBroker]:
    fx = FxRates(
        "USD",
        FxSettings(rates=rates if rates is not None else {"USDINR": 80}, as_of=T0, stale_after_seconds=3600),
        clock=clock,
    )
    m = manager(fx=fx, clock=clock)
    m.add_broker(
        "us",
        FakeBroker(
            "us",
            cash="10000",
            equity="30000",
            buying_power="20000",
            positions=[Position(symbol="AAPL", quantity=D(100), avg_price=D(150), last_price=D(200))],
        ),
    )
    india = FakeBroker(
        "in",
        currency="INR",
        cash="800000",
        equity="1600000",
        buying_power="1200000",
        positions=[
            Position(symbol="RELIANCE", quantity=D(10), avg_price=D(2500), last_price=D(2900), currency="INR")
        ],
    )
    m.add_broker("in", india)
    return m, india


async def test_usd_and_inr_accounts_in_the_base_currency():
    clock = Clock()
    m, _ = usd_inr_manager(clock)
    await m.connect_all()
    reliance = next(r for r in m.consolidated_positions() if r.symbol == "RELIANCE")
    assert reliance.market_value == Money(D(29000), "INR")
    assert reliance.market_value_base == Money(D("362.5"), "USD")  # 29,000 / 80
    assert reliance.unrealized_pnl_base == Money(D(50), "USD")  # 4,000 / 80

    bp = m.buying_power()
    assert bp.per_account == {"us": Money(D(20000), "USD"), "in": Money(D(1200000), "INR")}
    assert bp.per_account_base["in"] == Money(D(15000), "USD")
    assert bp.total == Money(D(35000), "USD")

    totals = m.totals()
    assert totals.total.equity == Money(D(50000), "USD") == m.equity()
    assert totals.total.cash == Money(D(20000), "USD")
    assert totals.total.market_value == Money(D("20362.5"), "USD")
    assert totals.total.unrealized_pnl == Money(D(5050), "USD")
    assert totals.per_account["in"].native.market_value == Money(D(29000), "INR")


async def test_stale_rate_marks_every_figure_built_on_it_and_only_those():
    clock = Clock()
    m, _ = usd_inr_manager(clock)
    await m.connect_all()
    clock.now = T0 + timedelta(hours=2)
    bp = m.buying_power()
    assert bp.per_account["in"] == Money(D(1200000), "INR")  # native figures need no rate
    assert bp.per_account_base["in"] == Money(D(15000), "USD", stale=True)
    assert bp.per_account_base["us"] == Money(D(20000), "USD")
    assert bp.total == Money(D(35000), "USD", stale=True)
    rows = {r.symbol: r for r in m.consolidated_positions()}
    assert rows["RELIANCE"].market_value_base.stale and not rows["AAPL"].market_value_base.stale


async def test_missing_rate_is_never_mixed_into_a_total_unmarked():
    clock = Clock()
    m, _ = usd_inr_manager(clock, rates={})
    await m.connect_all()
    bp = m.buying_power()
    assert bp.per_account_base["in"] == Money(None, "USD", missing=True)
    assert bp.total == Money(D(20000), "USD", missing=True)
    assert not bp.total.is_exact


async def test_account_that_fails_keeps_last_figures_marked_stale():
    clock = Clock()
    m, india = usd_inr_manager(clock)
    await m.connect_all()
    india.read_error = BrokerAPIError("503", broker="in")
    snapshot = await m.refresh()
    assert snapshot.stale == frozenset({"in"}) and snapshot.errors == {"in": "in: 503"}
    assert m.buying_power().total == Money(D(35000), "USD", stale=True)
    assert m.buying_power().per_account["us"].is_exact


async def test_account_never_read_makes_totals_partial():
    m = manager()
    m.add_broker("ok", FakeBroker("ok", buying_power="5"))
    down = FakeBroker("down")
    down.connect_failures = [BrokerConnectionError("refused")]
    m.add_broker("down", down)
    await m.connect_all()
    bp = m.buying_power()
    assert bp.per_account["down"] == Money(None, "USD", missing=True)
    assert bp.total == Money(D(5), "USD", missing=True)


def test_fx_base_must_match_base_currency():
    with pytest.raises(ValueError, match="must match"):
        MultiBrokerManager(fx=FxRates("EUR"), base_currency="USD")


async def test_accounts_added_and_removed_while_running():
    m = manager()
    await m.start()
    late = FakeBroker("late")
    m.add_broker("late", late)
    await m.connect_all()
    queue = m.subscribe()
    late._emit(order(broker_order_id="L1"))
    event = await asyncio.wait_for(queue.get(), 1)
    assert isinstance(event, OrderEvent) and event.account == "late"
    m.remove_broker("late")
    late._emit(order(broker_order_id="L2"))
    await asyncio.sleep(0.01)
    remaining = drain(queue)
    assert [type(e) for e in remaining] == [ConnectionEvent]
    assert remaining[0].error == "account removed"
    await m.stop()


async def test_next_retry_is_known_while_waiting_to_reconnect():
    gate = asyncio.Event()

    async def held_sleep(delay: float) -> None:
        await gate.wait()

    now = datetime(2024, 5, 1, tzinfo=UTC)
    m = manager(
        backoff=Backoff(initial=4, jitter=0), sleep=held_sleep, clock=lambda: now, heartbeat_interval=60
    )
    broker = FakeBroker("a")
    broker.connect_failures = [BrokerConnectionError("refused")]
    m.add_broker("a", broker)
    await m.start()
    await m.connect_all()
    await asyncio.sleep(0)
    assert m.state("a") is CS.FAILED and m.next_retry("a") == now + timedelta(seconds=4)
    gate.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert m.state("a") is CS.CONNECTED and m.next_retry("a") is None
    await m.stop()


async def test_stop_does_not_wait_forever_for_a_call_that_ignores_cancellation():
    m = manager(timeout=0.05)
    stubborn = FakeBroker("stubborn")
    m.add_broker("stubborn", stubborn)
    await m.connect_all()
    await m.start()
    stubborn.gate = asyncio.Event()
    stubborn.ignore_cancel = True
    await m.refresh()
    started = time.perf_counter()
    await m.stop()
    assert time.perf_counter() - started < 1
    stubborn.gate.set()
    await asyncio.sleep(0.01)
