"""Faults injected through the paper broker and the loopback peers: lost answers, timeouts,
refusals, partial, doubled and reordered fills, a broker down for a long time, reconnect storms,
and a halt while orders are in flight. Nothing is lost, nothing is doubled, nothing goes
backwards, and nothing routes when it should not."""

from __future__ import annotations

import asyncio
import math
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_rig import (
    PEER_SIDES,
    CountingSim,
    Rig,
    broker_positions,
    journal_positions,
    note,
    regressions,
)
from support import until

from brokers.events import FillEvent, OrderEvent
from brokers.health import Backoff
from brokers.journal import Journal
from brokers.killswitch import HaltSettings
from brokers.models import ConnectionState, Fill, Order, OrderRequest, OrderStatus
from brokers.sim import SimFaults

CATEGORY = "faults"
D = Decimal


def buy(symbol: str = "AAPL", quantity: int | str = 1, **fields) -> OrderRequest:
    return OrderRequest(symbol=symbol, side="BUY", quantity=quantity, **fields)


def resting(symbol: str = "AAPL", side: str = "BUY", quantity: int | str = 1, price: str = "50", **fields):
    return OrderRequest(
        symbol=symbol, side=side, quantity=quantity, order_type="LIMIT", limit_price=price, **fields
    )


def sim(name: str, **options) -> CountingSim:
    options.setdefault("prices", {"AAPL": 100, "MSFT": 200})
    options.setdefault("initial_cash", 10**9)
    return CountingSim(name, **options)


async def settled_status(rig: Rig, client_order_id: str, within: float = 5.0) -> OrderStatus:
    """Reconcile until the order is no longer UNKNOWN or PENDING (the account may be reconnecting)."""
    async with asyncio.timeout(within):
        while True:
            order = rig.service.get_order(client_order_id)
            if order is not None and order.status not in (OrderStatus.UNKNOWN, OrderStatus.PENDING):
                return order.status
            await rig.manager.refresh()
            await rig.service.reconcile()
            await asyncio.sleep(0.02)


def last_journaled(root, client_order_id: str):
    with Journal(root / "journal.sqlite") as journal:
        return journal.orders()[client_order_id]


# -- a connection lost in the middle of a submit ---------------------------------------------------


async def test_connection_lost_before_the_order_reached_the_broker(tmp_path):
    broker = sim("a", latency=0.05)
    async with Rig(tmp_path, {"a": broker}, default="a", backoff=Backoff(initial=0.01, maximum=0.05)) as rig:
        request = buy()
        submit = asyncio.create_task(rig.service.submit(request))
        await until(lambda: request.client_order_id in broker.placed)
        await broker.disconnect()  # the line drops while the order is on its way
        order = await submit
        assert order.status is OrderStatus.UNKNOWN and "not retried" in order.reject_reason

        assert await settled_status(rig, request.client_order_id) is OrderStatus.REJECTED
        await until(lambda: rig.manager.state("a") is ConnectionState.CONNECTED)  # reconnected on its own
        assert await broker.get_order_by_client_id(request.client_order_id) is None
        again = await rig.service.submit(request)
        assert again.reject_code == "DUPLICATE_ORDER"
        assert broker.placed.count(request.client_order_id) == 1
        assert regressions(rig.history) == []
    assert last_journaled(tmp_path, request.client_order_id).status is OrderStatus.REJECTED


@pytest.mark.parametrize("how", ["drop", "timeout"])
@pytest.mark.parametrize("kind", sorted(PEER_SIDES))
async def test_answer_lost_after_the_peer_took_the_order(tmp_path, kind, how):
    side = await PEER_SIDES[kind]().start()
    try:
        broker = side.broker("acct")
        async with Rig(
            tmp_path,
            {"acct": broker},
            default="acct",
            submit_timeout=5,
            backoff=Backoff(initial=0.05, maximum=0.2),
        ) as rig:
            assert rig.manager.state("acct") is ConnectionState.CONNECTED
            request = side.request(order_type="LIMIT", limit_price="100")
            side.lose_next_answer(how)
            order = await rig.service.submit(request)
            assert order.status is OrderStatus.UNKNOWN, order.reject_reason

            status = await settled_status(rig, request.client_order_id, within=8)
            assert status is OrderStatus.ACCEPTED
            assert side.orders_with(request.client_order_id) == 1
            submits = side.submits()
            again = await rig.service.submit(request)
            assert again.reject_code == "DUPLICATE_ORDER"
            assert side.submits() == submits == 1
            assert regressions(rig.history) == []
        assert last_journaled(tmp_path, request.client_order_id).status is OrderStatus.ACCEPTED
    finally:
        await side.stop()


# -- timeouts --------------------------------------------------------------------------------------


async def test_timeout_with_the_order_never_placed(tmp_path):
    broker = sim("a")
    async with Rig(tmp_path, {"a": broker}, default="a", submit_timeout=0.1) as rig:
        broker.faults.hang_next, broker.faults.hang_seconds = 1, math.inf
        broker.faults.hang_methods = frozenset({"place_order"})
        lost = buy()
        order = await rig.service.submit(lost)
        assert order.status is OrderStatus.UNKNOWN and "within 0.1s" in order.reject_reason

        report = await rig.service.reconcile()
        assert report.clean and rig.service.get_order(lost.client_order_id).status is OrderStatus.REJECTED
        assert await broker.get_order_by_client_id(lost.client_order_id) is None
        fresh = await rig.service.submit(buy())
        assert fresh.status is OrderStatus.FILLED
        assert broker.placed.count(lost.client_order_id) == 1
        assert await broker_positions(broker) == {"AAPL": 1}
        assert rig.service.book_positions()[("a", "AAPL")] == 1


async def test_timeout_with_the_order_placed_and_filled(tmp_path):
    broker = sim("a")
    async with Rig(tmp_path, {"a": broker}, default="a") as rig:
        broker.faults.timeout_next, broker.faults.timeout_after_accept = 1, True
        broker.faults.timeout_methods = frozenset({"place_order"})
        request = buy(quantity=7)
        order = await rig.service.submit(request)
        assert order.status is OrderStatus.UNKNOWN

        report = await rig.service.reconcile()
        assert [o.client_order_id for o in report.resolved] == [request.client_order_id]
        settled = rig.service.get_order(request.client_order_id)
        assert (settled.status, settled.filled_quantity) == (OrderStatus.FILLED, 7)
        assert await broker_positions(broker) == {"AAPL": 7}
        assert rig.service.book_positions()[("a", "AAPL")] == 7
        assert broker.placed.count(request.client_order_id) == 1
        assert (await rig.service.reconcile()).resolved == []  # settled once, never again
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert journal_positions(journal) == {("a", "AAPL"): 7}


# -- refusals --------------------------------------------------------------------------------------


async def test_refusals_are_final_and_never_retried(tmp_path):
    broker = sim("a", faults=SimFaults(reject_reason="venue says no"))
    async with Rig(tmp_path, {"a": broker}, default="a") as rig:
        outcomes = []
        for n in range(30):
            if n % 3 == 0:
                broker.faults.reject_next = 1
            outcomes.append(await rig.service.submit(buy()))
        refused = [o for o in outcomes if o.status is OrderStatus.REJECTED]
        assert len(refused) == 10
        assert all(o.reject_code == "BROKER_REJECTED" and "venue says no" in o.reject_reason for o in refused)
        assert all(o.status is OrderStatus.FILLED for o in outcomes if o not in refused)
        assert len(broker.placed) == 30 == len(set(broker.placed))
        assert await broker_positions(broker) == {"AAPL": 20}
        assert rig.manager.state("a") is ConnectionState.CONNECTED


@pytest.mark.parametrize("kind", sorted(PEER_SIDES))
async def test_peer_refusals_are_rejections_with_a_reason(tmp_path, kind):
    side = await PEER_SIDES[kind]().start()
    try:
        async with Rig(tmp_path, {"acct": side.broker("acct")}, default="acct") as rig:
            side.refuse_next()
            order = await rig.service.submit(side.request(order_type="LIMIT", limit_price="100"))
            if order.status is not OrderStatus.REJECTED:  # Kite refuses after taking the order
                await until(
                    lambda: rig.service.get_order(order.client_order_id).status is OrderStatus.REJECTED
                )
            assert order.reject_code in ("INSUFFICIENT_FUNDS", "BROKER_REJECTED")
            assert order.reject_reason and len(order.reject_reason) < 400
            assert side.submits() == 1
            assert rig.manager.state("acct") is ConnectionState.CONNECTED
            assert regressions(rig.history) == []
    finally:
        await side.stop()


# -- partial, doubled and reordered fills ----------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"duplicate_fills": True},
        {"out_of_order_fills": True},
        {"duplicate_fills": True, "out_of_order_fills": True},
    ],
    ids=["plain", "duplicated", "reordered", "duplicated-and-reordered"],
)
async def test_partial_fills_count_once_whatever_order_they_arrive_in(tmp_path, faults):
    rng = random.Random(8)
    broker = sim("a", liquidity_per_tick=3, faults=SimFaults(**faults), prices={"AAPL": 100, "MSFT": 200})
    async with Rig(tmp_path, {"a": broker}, default="a") as rig:
        orders = []
        for _ in range(40):
            symbol = rng.choice(["AAPL", "MSFT"])
            side = rng.choice(["BUY", "SELL"])
            quantity = rng.randint(1, 12)
            if rng.random() < 0.5:
                orders.append(
                    await rig.service.submit(OrderRequest(symbol=symbol, side=side, quantity=quantity))
                )
            else:
                price = broker.prices[symbol] * (D("1.01") if side == "BUY" else D("0.99"))
                orders.append(
                    await rig.service.submit(resting(symbol, side, quantity, str(price.quantize(D("0.01")))))
                )
        for _ in range(8):  # the market moves: each tick fills up to 3 more of every order
            broker.step()
            await rig.settle()
        for symbol in ("AAPL", "MSFT"):
            broker.set_price(symbol, broker.prices[symbol])
        await rig.settle()
        await asyncio.sleep(0.05)

        for order in orders:
            at_broker = await broker.get_order_by_client_id(order.client_order_id)
            ours = rig.service.get_order(order.client_order_id)
            assert ours.filled_quantity == at_broker.filled_quantity, order.client_order_id
            assert ours.filled_quantity == sum(f.quantity for f in ours.fills)
            assert len({f.fill_id for f in ours.fills}) == len(ours.fills)
            assert ours.status is at_broker.status
        assert any(len(o.fills) > 1 for o in orders)  # partial fills did happen
        book = {symbol: qty for (account, symbol), qty in rig.service.book_positions().items() if qty}
        assert book == await broker_positions(broker)
        assert regressions(rig.history) == []
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert journal_positions(journal) == {("a", symbol): qty for symbol, qty in book.items()}


# -- one broker down for a long stretch ------------------------------------------------------------


async def test_one_broker_down_for_a_long_stretch_while_the_others_trade(tmp_path):
    waits: list[float] = []

    async def quick_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0.001)

    brokers = {name: sim(name) for name in ("a", "b", "c", "d")}
    backoff = Backoff(initial=0.5, maximum=30.0, jitter=0.2)
    async with Rig(tmp_path, brokers, default="a", backoff=backoff, sleep=quick_sleep) as rig:
        down = brokers["d"]
        down.faults.fail_connects = math.inf
        await down.disconnect()
        await rig.manager.refresh()  # the heartbeat notices: reconnecting starts
        states = []
        queue = rig.manager.subscribe()

        outcomes = []
        for n in range(300):
            outcomes.append(await rig.service.submit(buy(account="abcd"[n % 4])))
            if n % 25 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: len(waits) >= 40)
        while not queue.empty():
            event = queue.get_nowait()
            if hasattr(event, "state"):
                states.append((event.account, event.state))

        for order in outcomes:
            if order.account == "d":
                assert order.reject_code == "BROKER_UNAVAILABLE", order
            else:
                assert order.status is OrderStatus.FILLED, order
        assert down.placed == []
        assert {account for account, _ in states} <= {"d"}  # the others never wavered
        for name in "abc":
            assert rig.manager.state(name) is ConnectionState.CONNECTED
            assert await broker_positions(brokers[name]) == {"AAPL": 75}
        # The backoff held: each wait within its step's bounds, growing to the cap and staying there.
        for attempt, wait in enumerate(waits):
            ceiling = backoff.base_delay(attempt)
            assert ceiling * (1 - backoff.jitter) <= wait <= ceiling, (attempt, wait)
        assert max(waits) <= 30 and waits[-1] >= 30 * 0.8
        # One connect at start-up, then one per wait: the last wait may still be running.
        reconnects = down.connects - 1
        assert reconnects in (len(waits), len(waits) - 1), (down.connects, len(waits))
        assert down.most_connecting == 1

        note(
            CATEGORY,
            f"one broker down for {len(waits)} reconnect attempts (waits {min(waits):.2f}-"
            f"{max(waits):.1f} s, capped at 30 s) while 3 others filled 225 of 225 orders; "
            f"75 orders to it refused BROKER_UNAVAILABLE, 0 reached it",
        )
        down.faults.fail_connects = 0
        await until(lambda: rig.manager.state("d") is ConnectionState.CONNECTED)
        assert (await rig.service.submit(buy(account="d"))).status is OrderStatus.FILLED


# -- reconnect storms ------------------------------------------------------------------------------


async def test_reconnect_storm_keeps_one_reconnect_per_account_and_the_backoff(tmp_path):
    waits: dict[str, list[float]] = {name: [] for name in "abcd"}
    sleeping: dict[str, int] = dict.fromkeys("abcd", 0)
    most_sleeping = dict.fromkeys("abcd", 0)

    async def sleep(seconds: float) -> None:
        name = asyncio.current_task().get_name().removeprefix("reconnect:")
        waits[name].append(seconds)
        sleeping[name] += 1
        most_sleeping[name] = max(most_sleeping[name], sleeping[name])
        try:
            await asyncio.sleep(0.002)
        finally:
            sleeping[name] -= 1

    brokers = {name: sim(name) for name in "abcd"}
    backoff = Backoff(initial=0.1, maximum=1.6, jitter=0.0)
    async with Rig(tmp_path, brokers, default="a", backoff=backoff, sleep=sleep) as rig:
        outcomes = []
        for storm in range(15):
            for name, broker in brokers.items():
                broker.faults.fail_connects = 1 + (storm + ord(name)) % 5
                await broker.disconnect()
            # Everything that might notice a drop notices it at once, many times over.
            await asyncio.gather(*(rig.manager.refresh() for _ in range(10)))
            outcomes.extend(await asyncio.gather(*(rig.service.submit(buy(account=name)) for name in "abcd")))
            await until(lambda: all(rig.manager.state(n) is ConnectionState.CONNECTED for n in "abcd"))
            outcomes.extend(await asyncio.gather(*(rig.service.submit(buy(account=name)) for name in "abcd")))

        for name, broker in brokers.items():
            assert broker.most_connecting == 1 and most_sleeping[name] == 1
            # Every failed attempt and the one that worked, each after exactly one wait.
            expected = sum(1 + (storm + ord(name)) % 5 + 1 for storm in range(15))
            assert broker.connects - 1 == len(waits[name]) == expected  # 1: connect_all at the start
        # Within each storm the waits double from the first step up to the cap.
        for name in "abcd":
            schedule = iter(waits[name])
            for storm in range(15):
                steps = [next(schedule) for _ in range(1 + (storm + ord(name)) % 5 + 1)]
                assert steps == [backoff.base_delay(n) for n in range(len(steps))]
        for order in outcomes:
            assert order.status is OrderStatus.FILLED or order.reject_code == "BROKER_UNAVAILABLE", order
        assert sum(o.status is OrderStatus.FILLED for o in outcomes) >= 60
        for name, broker in brokers.items():
            filled = sum(1 for o in outcomes if o.account == name and o.status is OrderStatus.FILLED)
            assert await broker_positions(broker) == ({"AAPL": filled} if filled else {})
            assert len(broker.placed) == filled
        note(
            CATEGORY,
            f"reconnect storm: 15 drops of 4 brokers at once, each noticed 10 times over: "
            f"{sum(b.connects - 1 for b in brokers.values())} connects, each after one backoff wait, "
            f"never two at once per broker; {len(outcomes)} orders filled or refused, none lost",
        )


# -- a halt while orders are in flight -------------------------------------------------------------


async def test_halt_while_100_orders_are_in_flight_across_4_brokers(tmp_path):
    log: list = []
    brokers = {}
    for index, name in enumerate("abcd"):
        # Orders travel slower than cancels, and every broker at its own pace.
        broker = sim(
            name,
            latency=0.01 * (index + 1),
            log=log,
            faults=SimFaults(
                hang_next=math.inf, hang_seconds=0.02 * (index + 1), hang_methods={"place_order"}
            ),
        )
        brokers[name] = broker
    async with Rig(tmp_path, brokers, default="a") as rig:
        rng = random.Random(100)
        requests = []
        for n in range(100):
            name = "abcd"[n % 4]
            if rng.random() < 0.7:
                requests.append(
                    resting(account=name, side=rng.choice(["BUY", "SELL"]), price=rng.choice(["50", "150"]))
                )
            else:
                requests.append(buy(account=name))

        async def staggered(index: int, request: OrderRequest):
            await asyncio.sleep(0.001 * index)
            return await rig.service.submit(request)

        submits = [asyncio.create_task(staggered(i, r)) for i, r in enumerate(requests)]
        # Halt once a few answers are back (resting orders for the cancel-all) and many are not.
        await until(
            lambda: (
                sum(kind == "place" for kind, _, _ in log) >= 50 and sum(task.done() for task in submits) >= 3
            )
        )
        outcome = await rig.service.halt("risk desk", source="test")
        halted_at = len(log)
        results = await asyncio.gather(*submits)

        assert all(result.ok for result in outcome.values()), outcome
        assert not any(kind == "place" for kind, _, _ in log[halted_at:])
        placed = {coid for kind, coid, _ in log if kind == "place"}
        for request, order in zip(requests, results, strict=True):
            at_broker = await brokers[request.account].get_order_by_client_id(request.client_order_id)
            if request.client_order_id in placed:
                assert at_broker is not None
                assert order.status is not OrderStatus.UNKNOWN
            else:
                assert order.reject_code == "SYSTEM_HALTED" and at_broker is None
        assert sum(order.reject_code == "SYSTEM_HALTED" for order in results) >= 10
        await rig.settle()
        for name, broker in brokers.items():
            assert await broker.get_open_orders() == [], f"{name} still has working orders"
        for order in results:
            assert not rig.service.get_order(order.client_order_id).is_working, order
        assert regressions(rig.history) == []
        late = {
            e.client_order_id
            for e in rig.journal.events(kinds=["cancel"])
            if e.client_order_id and e.data.get("requested")
        }
        note(
            CATEGORY,
            f"halt with 100 orders on their way to 4 brokers: {len(placed)} reached a broker "
            f"before halt() returned, {100 - len(placed)} refused SYSTEM_HALTED, "
            f"{sum(o.status is OrderStatus.CANCELLED for o in results)} cancelled "
            f"({len(late)} of them acknowledged after the cancel-all and cancelled then), "
            f"0 left working",
        )


# -- lost answers settle on their own -------------------------------------------------------------


async def test_an_order_lost_on_its_way_settles_without_a_reconnect(tmp_path):
    broker = sim("a")
    async with Rig(
        tmp_path, {"a": broker}, default="a", halt_settings=HaltSettings(poll_interval_ms=10)
    ) as rig:
        broker.faults.timeout_next, broker.faults.timeout_methods = 1, frozenset({"place_order"})
        order = await rig.service.submit(buy())
        assert order.status is OrderStatus.UNKNOWN
        await until(lambda: order.status is not OrderStatus.UNKNOWN, within=3)
        assert order.reject_code == "BROKER_REJECTED" and "never reached" in order.reject_reason
        assert broker.placed == [order.client_order_id]
        assert rig.manager.state("a") is ConnectionState.CONNECTED


async def test_a_network_broker_is_given_time_before_an_order_counts_as_never_placed(tmp_path):
    side = await PEER_SIDES["zerodha"]().start()
    try:
        broker = side.broker("kite")
        broker.late_order_window = 0.6
        async with Rig(
            tmp_path, {"kite": broker}, default="kite", halt_settings=HaltSettings(poll_interval_ms=10)
        ) as rig:
            side.peer.plan("drop")  # the connection is cut before Kite reads the order
            order = await rig.service.submit(side.request(order_type="LIMIT", limit_price="1400"))
            assert order.status is OrderStatus.UNKNOWN
            report = await rig.service.reconcile()
            assert "asked again" in report.unresolved[order.client_order_id]
            assert order.status is OrderStatus.UNKNOWN
            await until(lambda: order.status is not OrderStatus.UNKNOWN, within=5)
            assert order.status is OrderStatus.REJECTED and "never reached" in order.reject_reason
            assert side.orders_with(order.client_order_id) == 0 and side.submits() == 1
    finally:
        await side.stop()


# -- any arrival order of an order's events ------------------------------------------------------


def true_events(order, quantities: list[int], prices: list[Decimal], cancel_after: int | None):
    """The events a broker sends for ``order``: each fill, then a snapshot of the order after it;
    with ``cancel_after`` the rest is cancelled after that many fills."""
    events, fills, done = [], [], D(0)
    count = len(quantities) if cancel_after is None else cancel_after
    for index in range(count):
        fill = Fill(
            fill_id=f"{order.broker_order_id}-{index + 1}",
            account="a",
            symbol=order.symbol,
            side=order.side,
            quantity=quantities[index],
            price=prices[index],
            broker_order_id=order.broker_order_id,
            client_order_id=order.client_order_id,
        )
        fills.append(fill)
        done += fill.quantity
        status = OrderStatus.FILLED if done == order.quantity else OrderStatus.PARTIALLY_FILLED
        cost = sum((f.quantity * f.price for f in fills), D(0))
        events.append(FillEvent("a", fill))
        events.append(
            OrderEvent(
                "a",
                Order(
                    request=order.request,
                    account="a",
                    status=status,
                    broker_order_id=order.broker_order_id,
                    filled_quantity=done,
                    avg_fill_price=cost / done,
                    fills=list(fills),
                ),
            )
        )
    if cancel_after is not None:
        events.append(
            OrderEvent(
                "a",
                Order(
                    request=order.request,
                    account="a",
                    status=OrderStatus.CANCELLED,
                    broker_order_id=order.broker_order_id,
                    filled_quantity=done,
                    avg_fill_price=(sum((f.quantity * f.price for f in fills), D(0)) / done)
                    if done
                    else None,
                    fills=list(fills),
                ),
            )
        )
    return events, fills


async def replay(root, quantities, prices, cancel_after, arrange):
    broker = sim("a")
    rig = Rig(root, {"a": broker}, default="a")
    await rig.manager.connect_all()
    try:
        order = await rig.service.submit(resting(quantity=sum(quantities)))
        assert order.status is OrderStatus.ACCEPTED
        events, fills = true_events(order, quantities, prices, cancel_after)
        for event in arrange(events):
            rig.service.apply_event(event)
        return order, fills, rig.history[order.client_order_id], rig.service.book_positions()
    finally:
        await rig.manager.disconnect_all()
        rig.journal.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    quantities=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    cents=st.lists(st.integers(9_000, 11_000), min_size=6, max_size=6),
    cancel=st.booleans(),
    data=st.data(),
)
def test_fill_events_in_any_order_and_any_number_of_times_count_once(
    quantities, cents, cancel, data, tally, tmp_path_factory
):
    with tally.case():
        prices = [D(c) / 100 for c in cents]
        cancel_after = (
            data.draw(st.integers(0, len(quantities) - 1)) if cancel and len(quantities) > 1 else None
        )

        def arrange(events):
            shuffled = data.draw(st.permutations(events))
            repeats = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
            return list(shuffled) + repeats

        order, fills, seen, book = asyncio.run(
            replay(tmp_path_factory.mktemp("replay"), quantities, prices, cancel_after, arrange)
        )
        expected = sum((f.quantity for f in fills), D(0))
        assert order.filled_quantity == expected
        assert sorted(f.fill_id for f in order.fills) == sorted(f.fill_id for f in fills)
        if fills:
            cost = sum((f.quantity * f.price for f in fills), D(0))
            assert order.avg_fill_price == cost / expected
        assert order.status is (OrderStatus.CANCELLED if cancel_after is not None else OrderStatus.FILLED)
        assert book.get(("a", "AAPL"), D(0)) == expected
        assert regressions({order.client_order_id: seen}) == []
