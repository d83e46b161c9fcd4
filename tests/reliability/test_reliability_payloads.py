"""Bad broker payloads from each loopback peer: missing fields, wrong types, huge numbers and
unknown statuses. The account with the bad data shows a clear error and is marked DEGRADED (or
reads correctly); the other accounts keep trading; nothing crashes and no order goes backwards."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_rig import AlpacaSide, CountingSim, KiteSide, Rig, TwsSide, note, regressions
from support import until

from brokers.models import ConnectionState, OrderRequest, OrderStatus
from brokers.plausibility import MAX_AMOUNT, implausible

CATEGORY = "bad input: payloads"
# What a person should never have to read on an account's status line.
INTERNALS = re.compile(
    r"Traceback|object has no attribute|is not subscriptable|object is not|NoneType|"
    r"unsupported operand|invalid literal|KeyError|IndexError|decimal\.|InvalidOperation|"
    r"<class "
)


def generated(cases: int) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


json_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
huge = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "9" * 400,
        1e308,
        -1e308,
        10**40,
        "NaN",
        "Infinity",
        "-Infinity",
        "0.000000000000000000000000001",
        "-0",
        "1e-400",
    ]
)
strange_status = st.sampled_from(
    [
        "frobnicated",
        "",
        "NEW",
        "filled ",
        "partially-filled",
        "CANCELLED",
        None,
        7,
        "rejected\n",
        "OPEN PENDING",
        "Submitted",
        "PendingCancel",
    ]
)


@st.composite
def spoilt(draw, payload: Any, status_key: str | None = None, keys: list[str] | None = None) -> Any:
    """``payload`` with one to three things wrong with it (mostly in ``keys``, the fields that
    matter, when given); now and then not even the right shape."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.sampled_from([None, [], "", "<html>502</html>", 0, [payload]]))
    data = copy.deepcopy(payload)
    target = data[0] if isinstance(data, list) and data else data
    if not isinstance(target, dict) or not target:
        return draw(json_junk)
    for _ in range(draw(st.integers(1, 3))):
        wanted = [k for k in keys or () if k in target]
        key = draw(st.sampled_from(wanted if wanted and draw(st.integers(0, 4)) else sorted(target)))
        how = draw(
            st.sampled_from(
                ["missing", "type", "huge", "status"] if status_key else ["missing", "type", "huge"]
            )
        )
        if how == "missing":
            target.pop(key, None)
        elif how == "type":
            target[key] = draw(json_junk)
        elif how == "huge":
            target[key] = draw(huge)
        else:
            target[status_key] = draw(strange_status)
        if not target:
            break
    return data


class Harness:
    """A peer, its adapter and a paper account behind one manager, on a loop of their own so that
    generated cases (plain functions) can drive them one after another."""

    def __init__(self, side, tmp_path, label: str) -> None:
        self.label = label
        self.loop = asyncio.new_event_loop()
        self.side = side
        self.seen: Counter[ConnectionState] = Counter()
        self.paper = CountingSim("paper", prices={"AAPL": 100}, initial_cash=10**9)
        self.run(side.start())
        self.broker = side.broker("peer")
        self.rig = Rig(
            tmp_path, {"peer": self.broker, "paper": self.paper}, default="paper", manager_timeout=2.0
        )
        self.rig.manager.degraded_limit = 10**6  # one bad read after another stays DEGRADED
        self.run(self.rig.start())
        assert self.rig.manager.state("peer") is ConnectionState.CONNECTED

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        if self.seen:
            note(
                CATEGORY,
                f"{self.label}: {sum(self.seen.values())} reads after bad payloads: "
                f"{self.seen[ConnectionState.DEGRADED]} marked DEGRADED with a reason, "
                f"{self.seen[ConnectionState.CONNECTED]} read as valid; the paper account traded "
                f"after every one",
            )
        self.run(self.rig.stop())
        self.run(self.side.stop())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def refresh_and_check(self) -> ConnectionState:
        """One refresh: the account either read cleanly or is DEGRADED with a readable reason;
        the consolidated view still adds up; the paper account still trades."""
        manager = self.rig.manager
        self.run(manager.refresh())
        status = manager.status("peer")
        assert status.state in (ConnectionState.CONNECTED, ConnectionState.DEGRADED), status
        self.seen[status.state] += 1
        if status.state is ConnectionState.DEGRADED:
            assert status.last_error and len(status.last_error) <= 300, status.last_error
            assert not INTERNALS.search(status.last_error), status.last_error
            # Stale data, unless the reads worked and only the adapter's own feed is in trouble.
            assert (
                "peer" in manager.snapshot.stale or self.broker.connection_state is ConnectionState.DEGRADED
            )
        else:
            # Read cleanly: then every figure is one a real account could show.
            assert (
                implausible(manager.snapshot.balances["peer"], manager.snapshot.positions.get("peer", []))
                is None
            )
        manager.totals()
        manager.buying_power()
        manager.consolidated_positions()
        assert manager.state("paper") is ConnectionState.CONNECTED
        order = self.run(
            self.rig.service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1, account="paper"))
        )
        assert order.status is OrderStatus.FILLED
        return status.state

    def recover(self, within: float = 5.0) -> None:
        """Good data again: the account comes back by itself (an adapter repairing its own feed
        may take a poll or two)."""

        async def back() -> None:
            async with asyncio.timeout(within):
                while True:
                    await self.rig.manager.refresh()
                    if self.rig.manager.state("peer") is ConnectionState.CONNECTED:
                        return
                    await asyncio.sleep(0.05)

        self.run(back())


@pytest.fixture
def harness_for(tmp_path, request) -> Iterator[Any]:
    made: list[Harness] = []

    def make(side) -> Harness:
        label = request.node.name.removeprefix("test_").replace("_", " ")
        made.append(Harness(side, tmp_path, label))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


async def fetch(url: str, headers: dict[str, str]) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return json.loads(await response.text())


# -- Alpaca ----------------------------------------------------------------------------------------


ACCOUNT_KEYS = [
    "cash",
    "equity",
    "buying_power",
    "currency",
    "initial_margin",
    "maintenance_margin",
    "multiplier",
]
POSITION_KEYS = [
    "symbol",
    "qty",
    "avg_entry_price",
    "current_price",
    "side",
    "asset_class",
    "unrealized_pl",
    "exchange",
]


def alpaca_headers(side: AlpacaSide) -> dict[str, str]:
    return {"APCA-API-KEY-ID": side.peer.api_key, "APCA-API-SECRET-KEY": side.peer.secret_key}


@pytest.fixture
def alpaca(harness_for):
    side = AlpacaSide()
    harness = harness_for(side)
    harness.run(side.peer.place_external(symbol="MSFT", qty="5", side="buy"))
    harness.run(side.peer.fill(next(iter(side.peer.orders))))
    base = harness.run(fetch(f"{side.peer.base_url}/v2/account", alpaca_headers(side)))
    positions = harness.run(fetch(f"{side.peer.base_url}/v2/positions", alpaca_headers(side)))
    harness.recover()
    return harness, base, positions


@generated(120)
@given(data=st.data())
def test_alpaca_account_and_positions_payloads(data, alpaca, tally):
    harness, account, positions = alpaca
    with tally.case():
        if data.draw(st.booleans()):
            harness.side.peer.answer_next(
                "GET", "/v2/account", data.draw(spoilt(account, keys=ACCOUNT_KEYS)), times=3
            )
        else:
            harness.side.peer.answer_next(
                "GET", "/v2/positions", data.draw(spoilt(positions, keys=POSITION_KEYS)), times=6
            )
        try:
            harness.refresh_and_check()
        finally:
            harness.side.peer.faults.clear()
        harness.recover()


@generated(30)
@given(data=st.data())
def test_alpaca_order_updates_on_the_stream(data, alpaca, tally):
    harness, _, _ = alpaca
    peer = harness.side.peer
    with tally.case():
        order = harness.run(
            harness.rig.service.submit(
                OrderRequest(
                    symbol="AAPL",
                    side="BUY",
                    quantity=10,
                    order_type="LIMIT",
                    limit_price="150",
                    account="peer",
                )
            )
        )
        assert order.status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED), order
        original = next(
            m for m in peer.sent_updates if m["data"]["order"]["client_order_id"] == order.client_order_id
        )
        bad = {
            "stream": "trade_updates",
            "data": {**original["data"], "order": data.draw(spoilt(original["data"]["order"], "status"))},
        }
        if data.draw(st.booleans()):
            bad["data"] = data.draw(spoilt(bad["data"], "event"))
        harness.run(peer.replay(bad))
        harness.run(asyncio.sleep(0.05))
        broker_id = next(
            o["id"] for o in peer.orders.values() if o["client_order_id"] == order.client_order_id
        )
        harness.run(peer.fill(broker_id, "4", "149.5"))  # the stream still works after the bad update
        harness.run(until(lambda: order.filled_quantity == 4, within=3))
        # Whatever the bad update claimed, 4 of 10 filled is not FILLED. (A final status it
        # claimed, CANCELLED say, is believed: the broker is the authority on its orders.)
        assert order.status is not OrderStatus.FILLED
        harness.run(harness.rig.service.cancel("peer", broker_id))
        harness.run(until(lambda: order.is_terminal, within=3))
        assert regressions(harness.rig.history) == []
        assert order.filled_quantity == 4 and sum(f.quantity for f in order.fills) == 4
        harness.refresh_and_check()


@generated(60)
@given(data=st.data())
def test_alpaca_unreadable_answer_to_a_submit(data, alpaca, tally):
    harness, _, _ = alpaca
    peer = harness.side.peer
    harness.broker.late_order_window = 0
    with tally.case():
        request = OrderRequest(
            symbol="AAPL", side="BUY", quantity=3, order_type="LIMIT", limit_price="150", account="peer"
        )
        template = next(iter(peer.orders.values()))
        answer = {
            **template,
            "id": str(uuid.uuid4()),
            "client_order_id": request.client_order_id,
            "qty": "3",
            "filled_qty": "0",
            "status": "accepted",
        }
        peer.answer_next("POST", "/v2/orders", data.draw(spoilt(answer, "status")))
        try:
            order = harness.run(harness.rig.service.submit(request))
        finally:
            peer.faults.clear()
        assert order.status is not OrderStatus.PENDING, order  # settled one way or another, no crash
        if order.status is OrderStatus.UNKNOWN:
            assert "UNKNOWN" in order.reject_reason
            harness.run(harness.rig.service.reconcile(["peer"]))
            assert order.status is OrderStatus.REJECTED  # the peer never took it
        assert peer.order_by_client_id(request.client_order_id) is None
        assert harness.rig.manager.state("paper") is ConnectionState.CONNECTED


# -- Kite ------------------------------------------------------------------------------------------


def kite_headers(side: KiteSide) -> dict[str, str]:
    return {"X-Kite-Version": "3", "Authorization": f"token {side.peer.api_key}:{side.peer.access_token}"}


@pytest.fixture
def kite(harness_for):
    side = KiteSide()
    harness = harness_for(side)
    order = harness.run(
        harness.rig.service.submit(OrderRequest(symbol="INFY", side="BUY", quantity=2, account="peer"))
    )
    harness.run(until(lambda: order.status is OrderStatus.FILLED, within=5))
    docs = {
        path: harness.run(fetch(side.peer.root + path, kite_headers(side)))
        for path in ("/user/margins", "/portfolio/positions", "/orders")
    }
    harness.recover()
    return harness, docs


@generated(30)
@given(data=st.data())
def test_kite_margins_and_positions_payloads(data, kite, tally):
    harness, docs = kite
    peer = harness.side.peer
    with tally.case():
        path = data.draw(st.sampled_from(["/user/margins", "/portfolio/positions"]))
        document = copy.deepcopy(docs[path])
        if path == "/user/margins":
            document["data"]["equity"] = data.draw(spoilt(document["data"]["equity"]))
        else:
            document["data"]["net"] = data.draw(spoilt(document["data"]["net"]))
        if data.draw(st.integers(0, 5)) == 0:
            document = data.draw(spoilt(document, "status"))
        peer.serve_fixture("GET", path, document)
        try:
            harness.refresh_and_check()
        finally:
            peer.fixtures.clear()
        harness.recover()


@generated(5)
@given(data=st.data())
def test_kite_order_book_payloads(data, kite, tally):
    """The order book is polled in the background: a bad one marks the account DEGRADED with the
    reason, holds orders to it back, and clears on the next good poll."""
    harness, docs = kite
    peer = harness.side.peer
    with tally.case():
        document = copy.deepcopy(docs["/orders"])
        document["data"] = data.draw(spoilt(document["data"], "status"))
        if data.draw(st.integers(0, 3)) == 0:
            document = data.draw(spoilt(document, "status"))
        peer.serve_fixture("GET", "/orders", document)
        try:
            harness.run(asyncio.sleep(0.5))  # two polls see it
            harness.refresh_and_check()
            if not harness.broker.is_connected():
                held = harness.run(
                    harness.rig.service.submit(
                        OrderRequest(symbol="INFY", side="BUY", quantity=1, account="peer")
                    )
                )
                assert held.reject_code == "BROKER_UNAVAILABLE", held
        finally:
            peer.fixtures.clear()
        harness.recover()
        assert regressions(harness.rig.history) == []


# -- TWS -------------------------------------------------------------------------------------------

WIRE = json.loads(
    (Path(__file__).parents[1] / "adapters" / "fixtures" / "ibkr" / "wire_messages.json").read_text()
)


@pytest.fixture
def tws(harness_for):
    side = TwsSide()
    side.timeout = 0.5
    harness = harness_for(side)
    return harness


def spoilt_fields(draw, message: list[str], hot: tuple[int, ...] = ()) -> list[Any]:
    """``message`` with one to three fields wrong, mostly the ``hot`` ones (the figures) if given."""
    fields = list(message)
    for _ in range(draw(st.integers(1, 3))):
        usable = [i for i in hot if i < len(fields)]
        index = draw(
            st.sampled_from(usable) if usable and draw(st.booleans()) else st.integers(2, len(fields) - 1)
        )
        how = draw(st.sampled_from(["missing", "type", "huge"]))
        if how == "missing":
            del fields[index]
        elif how == "type":
            fields[index] = draw(st.sampled_from(["abc", "", "1.2.3", "-", "None", "[]", "\u00e9"]))
        else:
            fields[index] = draw(huge)
        if len(fields) <= 3:
            break
    return fields


SUMMARY_TAGS = [
    "NetLiquidation",
    "TotalCashValue",
    "BuyingPower",
    "AvailableFunds",
    "UnrealizedPnL",
    "RealizedPnL",
    "InitMarginReq",
]
# The tags a balance is read from (the others feed margins, or arrive again per currency).
BALANCE_TAGS = {"NetLiquidation", "TotalCashValue", "BuyingPower"}


def unusable(value: Any) -> bool:
    """Not a figure any account could have: not a number, or absurdly large. (TWS sends an empty
    value for a figure it does not have; that reads as 0.)"""
    if value == "":
        return False
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return True
    return not number.is_finite() or abs(number) > MAX_AMOUNT


bad_field = st.one_of(st.sampled_from(["abc", "", "1.2.3", "-", "None", "[]", "\u00e9", "1,000"]), huge)


@generated(20)
@given(tag=st.sampled_from(SUMMARY_TAGS), value=bad_field)
def test_tws_account_summary_values(tag, value, tws, tally):
    peer = tws.side.peer
    with tally.case():
        assert peer.send_summary_value(tag, value) >= 1
        tws.run(asyncio.sleep(0.05))
        try:
            state = tws.refresh_and_check()
            if tag in BALANCE_TAGS and unusable(value):
                assert state is ConnectionState.DEGRADED
        finally:
            peer.send_account_summary()
            tws.run(asyncio.sleep(0.05))
        tws.recover()


@generated(30)
@given(data=st.data())
def test_tws_position_messages(data, tws, tally):
    from peers.tws_peer import REQ_POSITIONS

    peer = tws.side.peer
    with tally.case():
        positions = [list(m) for m in WIRE["positions"]]
        index = data.draw(st.integers(0, len(positions) - 2))
        positions[index] = spoilt_fields(data.draw, positions[index], hot=(14, 15))  # quantity, average cost
        peer.replies[REQ_POSITIONS] = positions
        try:
            tws.refresh_and_check()
        finally:
            peer.replies.clear()
        tws.recover()


@generated(20)
@given(data=st.data())
def test_tws_unsolicited_messages_with_bad_fields(data, tws, tally):
    peer = tws.side.peer
    with tally.case():
        order = tws.run(
            tws.rig.service.submit(
                OrderRequest(
                    symbol="AAPL",
                    side="BUY",
                    quantity=5,
                    order_type="LIMIT",
                    limit_price="100",
                    account="peer",
                )
            )
        )
        assert order.status is OrderStatus.ACCEPTED, order
        sent = peer.order(order.client_order_id)
        status = [
            "3",
            sent.order_id,
            data.draw(strange_status.map(lambda s: "" if s is None else str(s))),
            "0",
            "5",
            "0",
            sent.perm_id,
            "0",
            "0",
            sent.client_id,
            "",
            "0",
        ]
        peer.send_raw(*spoilt_fields(data.draw, status))
        tws.run(asyncio.sleep(0.05))
        peer.fill(sent, 2)
        tws.run(until(lambda: order.filled_quantity == 2, within=3))
        assert order.status is not OrderStatus.FILLED
        tws.run(tws.rig.service.cancel("peer", order.broker_order_id))
        tws.run(until(lambda: order.status is OrderStatus.CANCELLED, within=3))
        assert regressions(tws.rig.history) == [] and order.filled_quantity == 2
        tws.refresh_and_check()


# -- an adapter's own trouble shows on the account ---------------------------------------------------


async def test_a_broken_order_book_marks_the_account_degraded_with_the_reason(tmp_path):
    side = await KiteSide().start()
    try:
        paper = CountingSim("paper", prices={"AAPL": 100}, initial_cash=10**9)
        async with Rig(tmp_path, {"kite": side.broker("kite"), "paper": paper}, default="paper") as rig:
            side.peer.serve_fixture("GET", "/orders", {"status": "success", "data": {"not": "a list"}})
            await until(
                lambda: rig.manager.get("kite").connection_state is ConnectionState.DEGRADED, within=5
            )
            await rig.manager.refresh()
            status = rig.manager.status("kite")
            assert status.state is ConnectionState.DEGRADED and "Kite" in status.last_error
            assert not INTERNALS.search(status.last_error), status.last_error
            held = await rig.service.submit(side.request(account="kite"))
            assert held.reject_code == "BROKER_UNAVAILABLE" and "degraded" in held.reject_reason
            traded = await rig.service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
            assert traded.status is OrderStatus.FILLED
            assert side.submits() == 0
            side.peer.fixtures.clear()
            await until(
                lambda: rig.manager.get("kite").connection_state is ConnectionState.CONNECTED, within=5
            )
            await rig.manager.refresh()
            assert rig.manager.status("kite").state is ConnectionState.CONNECTED
    finally:
        await side.stop()


async def test_a_dropped_update_stream_marks_the_account_degraded_with_the_reason(tmp_path):
    side = await AlpacaSide().start()
    try:
        paper = CountingSim("paper", prices={"AAPL": 100}, initial_cash=10**9)
        async with Rig(tmp_path, {"alpaca": side.broker("alpaca"), "paper": paper}, default="paper") as rig:
            side.peer.stream_online = False
            await side.peer.drop_streams()
            await until(
                lambda: rig.manager.get("alpaca").connection_state is ConnectionState.DEGRADED, within=5
            )
            await rig.manager.refresh()
            status = rig.manager.status("alpaca")
            assert status.state is ConnectionState.DEGRADED and "stream" in status.last_error
            assert (
                await rig.service.submit(OrderRequest(symbol="AAPL", side="BUY", quantity=1))
            ).status is OrderStatus.FILLED
            side.peer.stream_online = True
            await until(
                lambda: rig.manager.get("alpaca").connection_state is ConnectionState.CONNECTED, within=5
            )
            await rig.manager.refresh()
            assert rig.manager.status("alpaca").state is ConnectionState.CONNECTED
    finally:
        await side.stop()


# -- the console carries on ----------------------------------------------------------------------


async def test_the_console_carries_on_through_bad_payloads(tmp_path):
    import console.tui.app as app_module
    from brokers.config import parse_config

    side = await AlpacaSide().start()
    try:
        side.store_keys("alpaca")
        config = parse_config(
            {
                "accounts": [
                    {"name": "paper", "type": "sim", "default": True, "prices": {"AAPL": 100}},
                    {"name": "alpaca", "type": "alpaca", "base_url": side.peer.base_url, "timeout": 2},
                ]
            },
            where="payload test",
        )
        app = app_module.make_app(config, start_feed=False, cursor_blink=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await app.wait_until_ready()
            for bad in (
                {"cash": "lots", "equity": "1e400", "currency": "USD"},
                None,
                ["not", "an", "account"],
                {"cash": "1e308", "equity": "1", "buying_power": "1", "currency": "USD"},
            ):
                side.peer.answer_next("GET", "/v2/account", bad, times=3)
                await app.refresh_now()
                side.peer.faults.clear()
                await pilot.pause(0.05)
                assert app.is_running
                status = app.runtime.manager.status("alpaca")
                assert status.state is ConnectionState.DEGRADED and not INTERNALS.search(status.last_error)
                order = await app.runtime.execution.submit(
                    OrderRequest(symbol="AAPL", side="BUY", quantity=1)
                )
                assert order.status is OrderStatus.FILLED  # the paper account trades on
                await pilot.pause(0.1)
                screen = app.export_screenshot()
                assert "DEGRADED" in screen and app.is_running
                await app.refresh_now()  # good data again
                assert app.runtime.manager.status("alpaca").state is ConnectionState.CONNECTED
    finally:
        await side.stop()
