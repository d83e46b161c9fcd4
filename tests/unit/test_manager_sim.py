"""MultiBrokerManager over paper brokers with latency and injected faults."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from support import until

from brokers.events import ConnectionEvent, OrderEvent, PositionDiffEvent
from brokers.execution import ExecutionService
from brokers.fx import FxRates, FxSettings, Money
from brokers.health import Backoff
from brokers.killswitch import KillSwitch
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState, OrderRequest
from brokers.sim import SimBroker, SimFaults

CS = ConnectionState
D = Decimal
LATENCY = 0.05


def sim(name: str, **kwargs) -> SimBroker:
    kwargs.setdefault("prices", {"AAPL": 200})
    kwargs.setdefault("seed", 1)
    return SimBroker(name, **kwargs)


async def wait_for_state(
    m: MultiBrokerManager, name: str, state: ConnectionState, limit: float = 2.0
) -> None:
    await until(
        lambda: m.state(name) is state,
        within=limit,
        failure=lambda: f"{name} is {m.state(name)}, expected {state}",
    )


async def test_refresh_fans_out_concurrently_against_the_sum_of_latencies():
    brokers = [sim(f"s{i}", latency=LATENCY) for i in range(4)]
    m = MultiBrokerManager(timeout=1)
    for broker in brokers:
        m.add_broker(broker.name, broker)
    await m.connect_all()

    # The same reads, one broker after another, in this run.
    started = time.perf_counter()
    for broker in brokers:
        await asyncio.gather(broker.get_balance(), broker.get_positions(), broker.get_fx_rates())
    sequential = time.perf_counter() - started

    started = time.perf_counter()
    snapshot = await m.refresh()
    fan_out = time.perf_counter() - started

    assert sequential >= 4 * LATENCY
    assert fan_out < sequential / 2
    assert set(snapshot.balances) == {"s0", "s1", "s2", "s3"} and not snapshot.stale
    assert all(s.latency_ms >= LATENCY * 1000 * 0.9 for s in snapshot.statuses.values())


async def test_connect_failures_and_a_hang_do_not_block_the_others():
    m = MultiBrokerManager(timeout=0.2)
    m.add_broker("refused", sim("refused", faults=SimFaults(fail_connects=1)))
    m.add_broker(
        "hangs", sim("hangs", faults=SimFaults(hang_next=1, hang_seconds=math.inf, hang_methods={"connect"}))
    )
    m.add_broker("times-out", sim("times-out", faults=SimFaults(timeout_next=1, timeout_methods={"connect"})))
    m.add_broker("good", sim("good", latency=LATENCY))
    started = time.perf_counter()
    statuses = await m.connect_all()
    elapsed = time.perf_counter() - started

    assert elapsed < 1.5  # bounded by the hang's timeout, not by the hang
    assert statuses["good"].state is CS.CONNECTED and m.is_available("good")
    assert statuses["refused"].state is CS.FAILED and "connection refused" in statuses["refused"].last_error
    assert (
        statuses["hangs"].state is CS.FAILED
        and "did not connect within 0.2 s" in statuses["hangs"].last_error
    )
    assert statuses["times-out"].state is CS.FAILED and "timed out" in statuses["times-out"].last_error
    snapshot = await m.refresh()
    assert list(snapshot.balances) == ["good"]
    await m.stop()


async def test_a_broker_hanging_mid_session_is_degraded_and_keeps_stale_data():
    hangs = sim("hangs", initial_positions={"AAPL": (10, 150)})
    m = MultiBrokerManager(timeout=0.1)
    m.add_broker("hangs", hangs)
    m.add_broker("good", sim("good", latency=LATENCY))
    await m.connect_all()
    hangs.faults.hang_next = 1
    hangs.faults.hang_seconds = math.inf
    hangs.faults.hang_methods = frozenset({"get_positions"})

    started = time.perf_counter()
    snapshot = await m.refresh()
    assert time.perf_counter() - started < 1
    assert snapshot.statuses["hangs"].state is CS.DEGRADED
    assert snapshot.statuses["good"].state is CS.CONNECTED
    assert snapshot.stale == frozenset({"hangs"})
    assert snapshot.positions["hangs"][0].quantity == D(10)
    row = m.consolidated_positions()[0]
    assert row.stale and row.quantity == D(10)

    snapshot = await m.refresh()  # the hang was one call: the broker answers again
    assert snapshot.statuses["hangs"].state is CS.CONNECTED and not snapshot.stale
    await m.stop()


async def test_drop_mid_session_reconnects_on_the_backoff_schedule_and_resyncs():
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    drops = sim("drops")
    steady = sim("steady")
    m = MultiBrokerManager(
        timeout=0.5,
        heartbeat_interval=60,
        sleep=fake_sleep,
        backoff=Backoff(initial=0.25, maximum=1, multiplier=2, jitter=0),
    )
    m.add_broker("drops", drops)
    m.add_broker("steady", steady)
    await m.connect_all()
    await m.start()
    events = m.subscribe()

    drops.faults.disconnect_after = 0
    drops.faults.fail_connects = 3
    await m.refresh()
    await wait_for_state(m, "drops", CS.CONNECTED)

    assert sleeps == [0.25, 0.5, 1, 1]
    assert m.state("steady") is CS.CONNECTED
    drops_states = []
    while not events.empty():
        event = events.get_nowait()
        if isinstance(event, ConnectionEvent):
            assert event.account == "drops"
            drops_states.append(event.state)
    assert drops_states[0] is CS.DISCONNECTED
    assert drops_states.count(CS.FAILED) == 3 and drops_states[-2:] == [CS.RESYNCING, CS.CONNECTED]
    await m.stop()


async def test_resyncing_blocks_orders_to_that_broker_only():
    slow = sim("slow")
    m = MultiBrokerManager(timeout=1, heartbeat_interval=60, backoff=Backoff(initial=0.01, jitter=0))
    m.add_broker("slow", slow)
    m.add_broker("other", sim("other"))
    await m.connect_all()
    await m.start()
    # The reconnect succeeds, then reading orders back takes a while.
    slow.faults.disconnect_after = 0
    slow.faults.hang_next = 1
    slow.faults.hang_seconds = 0.2
    slow.faults.hang_methods = frozenset({"get_open_orders"})
    await m.refresh()
    await wait_for_state(m, "slow", CS.RESYNCING)
    assert not m.is_available("slow") and m.is_available("other")
    assert "re-reading" in m.unavailable_reason("slow")
    await wait_for_state(m, "slow", CS.CONNECTED)
    assert m.is_available("slow")
    await m.stop()


async def test_position_sync_after_reconnect_reports_what_the_book_missed():
    book = {("drops", "AAPL"): D(10)}
    drops = sim("drops", initial_positions={"AAPL": (10, 150)})
    m = MultiBrokerManager(
        timeout=0.5,
        heartbeat_interval=60,
        book_provider=lambda: book,
        backoff=Backoff(initial=0.01, jitter=0),
    )
    m.add_broker("drops", drops)
    queue = m.subscribe()
    await m.connect_all()
    first = [e for e in drain(queue) if isinstance(e, PositionDiffEvent)]
    assert first and first[0].diffs == ()

    await m.start()
    # While the connection is down an order fills that the book never heard of.
    order = await drops.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=5))
    drops.faults.disconnect_after = 0
    await m.refresh()
    await wait_for_state(m, "drops", CS.CONNECTED)
    diffs = [e for e in drain(queue) if isinstance(e, PositionDiffEvent)][-1].diffs
    assert [(d.symbol, d.book, d.broker, d.difference) for d in diffs] == [("AAPL", D(10), D(15), D(5))]
    assert order.broker_order_id
    await m.stop()


async def test_order_and_fill_events_flow_from_every_broker():
    a, b = sim("a"), sim("b")
    m = MultiBrokerManager(timeout=0.5)
    m.add_broker("a", a)
    m.add_broker("b", b)
    await m.connect_all()
    await m.start()
    queue = m.subscribe()
    await a.place_order(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
    await b.place_order(
        OrderRequest(symbol="AAPL", side="SELL", quantity=2, order_type="LIMIT", limit_price=500)
    )
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(queue.get(), 0.1))
        except TimeoutError:
            break
    kinds_a = [type(e).__name__ for e in got if e.account == "a"]
    assert "FillEvent" in kinds_a and kinds_a[0] == "OrderEvent"
    orders_b = [e.order for e in got if e.account == "b" and isinstance(e, OrderEvent)]
    assert orders_b and orders_b[-1].quantity == D(2)
    results = await m.cancel_all_orders()
    assert results["b"].ok and results["b"].cancelled == 1 and results["a"].cancelled == 0
    await m.stop()


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


async def test_usd_and_inr_paper_accounts_hand_checked():
    now = [T0]
    fx = FxRates(
        "USD", FxSettings(rates={"USDINR": 80}, as_of=T0, stale_after_seconds=3600), clock=lambda: now[0]
    )
    m = MultiBrokerManager(timeout=0.5, fx=fx, clock=lambda: now[0])
    m.add_broker(
        "us", sim("us", initial_cash=10_000, account_type="cash", initial_positions={"AAPL": (100, 150)})
    )
    m.add_broker(
        "in",
        sim(
            "in",
            currency="INR",
            initial_cash=800_000,
            account_type="cash",
            prices={"RELIANCE": 2900},
            initial_positions={"RELIANCE": (10, 2500)},
        ),
    )
    await m.connect_all()

    # us: cash 10,000 + 100 AAPL at 200 = 30,000 USD; in: 800,000 + 10 * 2,900 = 829,000 INR.
    totals = m.totals()
    assert totals.per_account["in"].native.equity == Money(D(829_000), "INR")
    assert totals.total.equity == Money(D("40362.5"), "USD")  # 30,000 + 829,000 / 80
    assert totals.total.market_value == Money(D("20362.5"), "USD")  # 20,000 + 29,000 / 80
    assert totals.total.unrealized_pnl == Money(D(5050), "USD")  # 5,000 + 4,000 / 80
    bp = m.buying_power()
    assert bp.per_account == {"us": Money(D(10_000), "USD"), "in": Money(D(800_000), "INR")}
    assert bp.total == Money(D(20_000), "USD")
    rows = {row.symbol: row for row in m.consolidated_positions()}
    assert rows["RELIANCE"].market_value_base == Money(D("362.5"), "USD")
    assert rows["AAPL"].unrealized_pnl_base == Money(D(5000), "USD")

    now[0] = T0 + timedelta(hours=2)  # the configured rate is now older than an hour
    bp = m.buying_power()
    assert bp.total == Money(D(20_000), "USD", stale=True)
    assert bp.per_account_base["us"] == Money(D(10_000), "USD")
    rows = {row.symbol: row for row in m.consolidated_positions()}
    assert rows["RELIANCE"].market_value_base.stale and not rows["AAPL"].market_value_base.stale
    assert m.equity() == Money(D("40362.5"), "USD", stale=True)


async def test_execution_refuses_orders_to_a_resyncing_broker_and_only_to_it(tmp_path):
    slow, other = sim("slow"), sim("other")
    m = MultiBrokerManager(timeout=1, heartbeat_interval=60, backoff=Backoff(initial=0.01, jitter=0))
    m.add_broker("slow", slow)
    m.add_broker("other", other)
    await m.connect_all()
    execution = ExecutionService(m, KillSwitch(tmp_path))
    await m.start()
    await execution.start()
    slow.faults.disconnect_after = 0
    slow.faults.hang_next = 1
    slow.faults.hang_seconds = 0.3
    slow.faults.hang_methods = frozenset({"get_open_orders"})
    await m.refresh()
    await wait_for_state(m, "slow", CS.RESYNCING)

    refused = await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="slow"))
    placed = await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="other"))
    assert refused.reject_code == "BROKER_UNAVAILABLE" and "re-reading" in refused.reject_reason
    assert placed.reject_code is None and placed.status.value in {"ACCEPTED", "FILLED"}

    await wait_for_state(m, "slow", CS.CONNECTED)
    again = await execution.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="slow"))
    assert again.reject_code is None
    await execution.stop()
    await m.stop()
