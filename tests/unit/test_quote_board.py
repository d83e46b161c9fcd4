"""The quote board: wants added up, accounts chosen, limits kept, stale quotes marked, bursts
coalesced, and a failing broker never taking the board down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support import until

from brokers.config import parse_config
from brokers.instruments import Instrument
from brokers.manager import MultiBrokerManager
from brokers.models import ConnectionState
from brokers.quote_board import QuoteBoard
from brokers.quotes import Quote, QuoteLimits, QuoteSettings, QuoteState
from brokers.runtime import build_runtime
from brokers.sim import SimBroker

CS = ConnectionState
D = Decimal
AAPL, MSFT, SPY, INFY = (Instrument.stock(s) for s in ("AAPL", "MSFT", "SPY", "INFY"))


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Limited(SimBroker):
    """A paper account that streams at most ``limit`` instruments and records what it is told."""

    def __init__(self, name: str, limit: int | None, **kwargs: object) -> None:
        super().__init__(name, **kwargs)
        self.limit = limit
        self.told: list[frozenset[Instrument]] = []
        self.fail_streaming = False
        self.fail_snapshots = False
        self.hang_streaming = False

    @property
    def quote_limits(self) -> QuoteLimits:
        return QuoteLimits(streamed=self.limit)

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        self.told.append(instruments)
        if self.hang_streaming:
            await asyncio.get_running_loop().create_future()
        if self.fail_streaming:
            raise ConnectionError("market data refused")
        assert self.limit is None or len(instruments) <= self.limit
        await super().stream_quotes(instruments)

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        if self.fail_snapshots:
            raise ConnectionError("snapshot refused")
        return await super().get_quote(instrument)


class Accounts:
    """The manager's side of the board, with connection states set by the test."""

    def __init__(self, *brokers: SimBroker, default: str | None = None) -> None:
        self.brokers = {broker.name: broker for broker in brokers}
        self.states = {broker.name: CS.CONNECTED for broker in brokers}
        self.default_account = default

    def names(self) -> list[str]:
        return list(self.brokers)

    def get(self, name: str) -> SimBroker:
        return self.brokers[name]

    def state(self, name: str) -> ConnectionState:
        return self.states[name]


PRICES = {"AAPL": 200, "MSFT": 400, "SPY": 500}


async def connected(*brokers: SimBroker) -> None:
    for broker in brokers:
        await broker.connect()


def board_of(accounts: Accounts, clock: ManualClock | None = None, **kwargs: float) -> QuoteBoard:
    return QuoteBoard(accounts, clock=clock or ManualClock(), **kwargs)


# -- wants ---------------------------------------------------------------------------------
async def test_wants_of_every_owner_add_up_and_an_owner_drops_only_its_own():
    us = SimBroker("us", prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("positions", [AAPL, MSFT])
    board.want("watchlist", [MSFT, SPY])
    assert board.wanted == {AAPL, MSFT, SPY}
    await board.assign()
    assert board.streamed("us") == {AAPL, MSFT, SPY}

    board.want("positions", [])
    assert board.wanted == {MSFT, SPY}
    assert board.wanted_by("positions") == frozenset()
    await board.assign()
    assert board.streamed("us") == {MSFT, SPY}
    assert board.source(AAPL) is None
    assert board.quote(AAPL) is None  # no longer wanted: forgotten
    assert board.quote(MSFT) is not None


async def test_each_instrument_goes_to_one_connected_account_that_trades_it():
    us = SimBroker("us", prices=PRICES, seed=1)
    india = SimBroker("in", currency="INR", prices={"INFY": 1800}, seed=2)
    await connected(us, india)
    board = board_of(Accounts(us, india))
    board.want("positions", [AAPL, INFY, Instrument.stock("ZZZZ")])
    await board.assign()
    assert board.source(AAPL) == "us"
    assert board.source(INFY) == "in"
    assert board.source(Instrument.stock("ZZZZ")) is None  # nobody trades it: nothing to ask
    assert board.streamed("us") == {AAPL}
    assert board.streamed("in") == {INFY}


async def test_the_default_account_is_preferred_when_several_trade_an_instrument():
    first = SimBroker("first", prices=PRICES, seed=1)
    second = SimBroker("second", prices=PRICES, seed=2)
    await connected(first, second)
    board = board_of(Accounts(first, second, default="second"))
    board.want("ticket", [AAPL])
    await board.assign()
    assert board.source(AAPL) == "second"


# -- connections ---------------------------------------------------------------------------
async def test_instruments_move_when_their_account_drops_and_come_back_when_it_returns():
    first = Limited("first", None, prices=PRICES, seed=1)
    second = Limited("second", None, prices=PRICES, seed=2)
    await connected(first, second)
    accounts = Accounts(first, second, default="first")
    clock = ManualClock()
    board = board_of(accounts, clock)
    board.want("positions", [AAPL])
    await board.assign()
    assert board.source(AAPL) == "first"
    assert board.quote(AAPL).source == "first"

    accounts.states["first"] = CS.DISCONNECTED
    await board.assign()
    assert board.source(AAPL) == "second"
    assert first.told[-1] == frozenset()  # told to stop
    assert board.streamed("second") == {AAPL}
    # The new feed's first quote replaces the old one whole: two feeds never mix in one quote.
    assert board.quote(AAPL).source == "second"
    assert board.quote(AAPL).state is QuoteState.LIVE

    accounts.states["first"] = CS.CONNECTED
    await board.assign()
    # Streaming stays where it is while that account can: no churn on every reconnect.
    assert board.source(AAPL) == "second"


async def test_a_quote_from_an_account_that_dropped_is_stale_at_once():
    us = Limited("us", None, prices=PRICES, seed=1)
    await connected(us)
    accounts = Accounts(us)
    board = board_of(accounts)
    board.want("positions", [AAPL])
    await board.assign()
    assert board.quote(AAPL).state is QuoteState.LIVE
    board.take_changed()

    accounts.states["us"] = CS.DISCONNECTED
    await board.assign()
    assert board.source(AAPL) is None
    assert board.quote(AAPL).state is QuoteState.STALE
    assert board.quote(AAPL).last is not None  # the last known price is still shown, marked
    assert AAPL in board.take_changed()  # the row repaints to show it


async def test_quotes_from_an_account_not_chosen_for_the_instrument_are_dropped():
    first = SimBroker("first", prices=PRICES, seed=1)
    second = SimBroker("second", prices=PRICES, seed=2)
    await connected(first, second)
    board = board_of(Accounts(first, second, default="first"))
    board.want("positions", [AAPL])
    await board.assign()
    chosen = board.quote(AAPL)
    board.sink_for("second")(Quote(AAPL, "second", chosen.time, last=D("1.00")))
    board.receive(Quote(AAPL, "nobody", chosen.time, last=D("2.00")))
    assert board.quote(AAPL) == chosen


async def test_the_manager_reassigns_on_every_connection_event():
    manager = MultiBrokerManager(timeout=1)
    first = SimBroker("first", prices=PRICES, seed=1)
    second = SimBroker("second", prices=PRICES, seed=2)
    manager.add_broker("first", first, default=True)
    manager.add_broker("second", second)
    await manager.start()
    try:
        manager.quotes.want("positions", [AAPL, MSFT])
        await manager.connect_all()
        await until(lambda: manager.quotes.streamed("first") == {AAPL, MSFT})
        await until(lambda: manager.quotes.quote(AAPL) is not None)

        await manager.disconnect("first")
        await until(lambda: manager.quotes.streamed("second") == {AAPL, MSFT})
        await until(lambda: manager.quotes.quote(AAPL).source == "second")
    finally:
        await manager.stop()
        await manager.disconnect_all()


# -- limits --------------------------------------------------------------------------------
async def test_past_the_streaming_limit_the_rest_is_polled_as_snapshots_and_marked():
    capped = Limited("capped", 2, prices=PRICES, seed=1)
    await connected(capped)
    board = board_of(Accounts(capped))
    board.want("watchlist", [AAPL, MSFT, SPY])
    await board.assign()
    assert len(board.streamed("capped")) == 2
    polled = board.snapshotted("capped")
    assert len(polled) == 1
    (rest,) = polled
    assert board.source(rest) == "capped"
    assert board.quote(rest) is None  # not streamed: nothing until the first snapshot
    await board.take_snapshots()
    assert board.quote(rest).state is QuoteState.SNAPSHOT
    for streamed in board.streamed("capped"):
        assert board.quote(streamed).state is QuoteState.LIVE


async def test_past_one_accounts_limit_another_account_with_room_streams_the_rest():
    small = Limited("small", 1, prices=PRICES, seed=1)
    large = Limited("large", 10, prices=PRICES, seed=2)
    await connected(small, large)
    board = board_of(Accounts(small, large, default="small"))
    board.want("watchlist", [AAPL, MSFT, SPY])
    await board.assign()
    assert len(board.streamed("small")) == 1
    assert len(board.streamed("large")) == 2
    assert not board.snapshotted("small") and not board.snapshotted("large")


async def test_adding_one_instrument_does_not_move_the_ones_already_streamed():
    capped = Limited("capped", 2, prices={**PRICES, "AAA": 10}, seed=1)
    await connected(capped)
    board = board_of(Accounts(capped))
    board.want("watchlist", [MSFT, SPY])
    await board.assign()
    assert board.streamed("capped") == {MSFT, SPY}
    # AAA sorts first, but MSFT and SPY keep their streams; AAA is polled.
    board.want("watchlist", [MSFT, SPY, Instrument.stock("AAA")])
    await board.assign()
    assert board.streamed("capped") == {MSFT, SPY}
    assert board.snapshotted("capped") == {Instrument.stock("AAA")}


async def test_an_account_that_does_not_stream_is_polled():
    polled = Limited("polled", 0, prices=PRICES, seed=1)
    await connected(polled)
    board = board_of(Accounts(polled))
    board.want("ticket", [AAPL])
    await board.assign()
    assert polled.told == []  # nothing to stream: not asked
    assert board.snapshotted("polled") == {AAPL}
    await board.take_snapshots()
    assert board.quote(AAPL).state is QuoteState.SNAPSHOT


# -- stale ---------------------------------------------------------------------------------
async def test_a_quote_older_than_the_setting_is_stale_on_a_manual_clock():
    clock = ManualClock()
    us = SimBroker("us", prices=PRICES, seed=1, clock=clock)
    await connected(us)
    board = board_of(Accounts(us), clock, stale_after=10)
    board.want("positions", [AAPL])
    await board.assign()
    assert board.quote(AAPL).state is QuoteState.LIVE
    assert AAPL in board.take_changed()

    clock.advance(10)
    assert board.quote(AAPL).state is QuoteState.LIVE  # exactly the setting: not yet
    clock.advance(0.001)
    assert board.quote(AAPL).state is QuoteState.STALE
    assert board.take_changed() == {AAPL}  # the row repaints to say so
    assert board.take_changed() == set()

    us.step()  # a new quote: live again
    assert board.quote(AAPL).state is QuoteState.LIVE
    clock.advance(1)
    assert board.take_changed() == {AAPL}


async def test_settings_come_from_the_quotes_section_of_the_config(tmp_path):
    config = parse_config(
        {
            "accounts": [{"name": "paper", "type": "sim"}],
            "quotes": {"stale_after_seconds": 3, "snapshot_interval_seconds": 1.5},
        },
        where="test",
    )
    assert config.quotes == QuoteSettings(stale_after_seconds=3, snapshot_interval_seconds=1.5)
    runtime = build_runtime(config, state_dir=tmp_path)
    try:
        assert runtime.manager.quotes.stale_after == 3
        assert runtime.manager.quotes.snapshot_interval == 1.5
    finally:
        runtime.journal.close()


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"stale_after_seconds": 0}, "stale_after_seconds"),
        ({"snapshot_interval_seconds": 0.1}, "snapshot_interval_seconds"),
        ({"stale_after": 5}, "stale_after"),
    ],
)
def test_bad_quote_settings_are_refused_naming_the_key(section, field):
    from brokers.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"quotes": section}, where="test")
    assert field in str(caught.value)


# -- coalescing ----------------------------------------------------------------------------
async def test_a_burst_of_a_thousand_updates_is_one_change_holding_the_latest():
    us = SimBroker("us", prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("positions", [AAPL])
    await board.assign()
    board.take_changed()
    seen: list[Quote] = []
    board.add_listener(seen.append)
    for _ in range(1000):
        us.step()
    assert board.take_changed() == {AAPL}
    assert board.take_changed() == set()
    assert board.quote(AAPL).last == us.last_price_nowait(AAPL)
    assert len(seen) == 1000  # a listener that wants every quote still gets each one


async def test_a_partial_quote_keeps_the_fields_it_leaves_out():
    us = SimBroker("us", prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("ticket", [AAPL])
    await board.assign()
    full = board.quote(AAPL)
    board.receive(Quote(AAPL, "us", full.time, last=D("201.00")))
    merged = board.quote(AAPL)
    assert merged.last == D("201.00")
    assert (merged.bid, merged.ask, merged.previous_close) == (full.bid, full.ask, full.previous_close)


# -- failures ------------------------------------------------------------------------------
async def test_a_broker_that_cannot_stream_is_polled_instead_and_tried_again():
    broken = Limited("broken", None, prices=PRICES, seed=1)
    await connected(broken)
    broken.fail_streaming = True
    board = board_of(Accounts(broken), snapshot_interval=0.01)
    board.want("positions", [AAPL])
    await board.start()
    try:
        await until(lambda: board.quote(AAPL) is not None)
        assert board.quote(AAPL).state is QuoteState.SNAPSHOT
        assert board.streamed("broken") == frozenset()
        tries = len(broken.told)
        broken.fail_streaming = False
        await until(lambda: board.streamed("broken") == {AAPL})
        assert len(broken.told) > tries
        await until(lambda: board.quote(AAPL).state is QuoteState.LIVE)
    finally:
        await board.stop()


async def test_a_hanging_or_failing_broker_does_not_hold_up_the_others_or_kill_the_board():
    hung = Limited("hung", None, prices={"MSFT": 400}, seed=1)
    fine = Limited("fine", None, prices={"AAPL": 200}, seed=2)
    await connected(hung, fine)
    hung.hang_streaming = True
    hung.fail_snapshots = True
    board = board_of(Accounts(hung, fine), snapshot_interval=0.01, call_timeout=0.05)
    board.want("positions", [AAPL, MSFT])
    await board.start()
    try:
        await until(lambda: board.quote(AAPL) is not None)
        # The hung stream timed out, snapshots fail too: the board keeps running and retrying.
        await until(lambda: len(hung.told) >= 2)
        assert board.running
        hung.hang_streaming = False
        hung.fail_snapshots = False
        await until(lambda: board.quote(MSFT) is not None)
    finally:
        await board.stop()


async def test_a_failing_listener_is_logged_once_and_quotes_keep_coming(caplog):
    us = SimBroker("us", prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("positions", [AAPL])
    await board.assign()

    def broken(quote: Quote) -> None:
        raise RuntimeError("listener bug")

    board.add_listener(broken)
    for _ in range(50):
        us.step()
    assert board.quote(AAPL).last == us.last_price_nowait(AAPL)
    assert sum("quote listener failed" in record.message for record in caplog.records) == 1


async def test_stop_tells_every_broker_to_stop_streaming_and_forgets_the_sinks():
    us = Limited("us", None, prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("positions", [AAPL])
    await board.start()
    await until(lambda: board.streamed("us") == {AAPL})
    await board.stop()
    assert us.told[-1] == frozenset()
    assert not board.running


async def test_wants_changed_in_quick_succession_are_one_subscription():
    us = Limited("us", None, prices={**PRICES, "A": 1, "AA": 2}, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    await board.start()
    try:
        # A symbol typed letter by letter into the order ticket.
        for typed in ("A", "AA", "AAPL"):
            board.want("ticket", [Instrument.stock(typed)])
            for _ in range(3):
                await asyncio.sleep(0)
        await until(lambda: board.streamed("us") == {AAPL})
        assert us.told == [frozenset({AAPL})]
    finally:
        await board.stop()


def test_timing_may_be_changed_and_is_checked():
    board = board_of(Accounts())
    board.stale_after = 3
    board.snapshot_interval = 0.5
    assert (board.stale_after, board.snapshot_interval) == (3, 0.5)
    with pytest.raises(ValueError, match="stale_after"):
        board.stale_after = 0
    with pytest.raises(ValueError, match="snapshot_interval"):
        QuoteBoard(Accounts(), clock=ManualClock(), snapshot_interval=-1)


async def test_a_delayed_quote_is_stale_only_when_the_feed_stops_talking():
    clock = ManualClock()
    us = SimBroker("us", prices=PRICES, seed=1, clock=clock)
    await connected(us)
    board = board_of(Accounts(us), clock, stale_after=10)
    board.want("positions", [AAPL])
    await board.assign()
    # A delayed feed's quote carries a time fifteen minutes back, as such feeds do.
    made = clock.now - timedelta(minutes=15)
    board.sink_for("us")(Quote(AAPL, "us", made, last=D(190), state=QuoteState.DELAYED))
    assert board.quote(AAPL).state is QuoteState.DELAYED
    clock.advance(10.001)
    assert board.quote(AAPL).state is QuoteState.STALE


async def test_a_complete_quote_clears_a_side_of_the_book_that_emptied():
    us = SimBroker("us", prices=PRICES, seed=1)
    await connected(us)
    board = board_of(Accounts(us))
    board.want("positions", [AAPL])
    await board.assign()
    sink, now = board.sink_for("us"), datetime.now(UTC)
    sink(Quote(AAPL, "us", now, bid=D(189), ask=D(191), last=D(190), complete=True))
    sink(Quote(AAPL, "us", now, bid=None, ask=D(191), last=D(190), complete=True))
    assert board.quote(AAPL).bid is None  # gone at the broker, not a price still to be had
    # A message that carries only some fields keeps the rest.
    sink(Quote(AAPL, "us", now, bid=D(189.5)))
    sink(Quote(AAPL, "us", now, last=D(190.25)))
    assert (board.quote(AAPL).bid, board.quote(AAPL).last) == (D("189.5"), D("190.25"))


async def test_a_position_without_a_previous_close_takes_its_quotes():
    from brokers.account_state import Position

    manager = MultiBrokerManager(heartbeat_interval=3600)
    manager.add_broker("ib", SimBroker("ib", prices=PRICES, seed=1), default=True)
    carried = Position(account="ib", symbol="AAPL", quantity=D(10), avg_price=D(150))
    assert manager.previous_close(carried) is None  # unknown: day P&L shows n/a, never 0
    manager.quotes.pin(AAPL, "ib")
    manager.quotes.receive(Quote(AAPL, "ib", datetime.now(UTC), last=D(191), previous_close=D(188.5)))
    assert manager.previous_close(carried) == D("188.5")
    # The broker's own figure, where the position carries one, comes first.
    assert manager.previous_close(carried.model_copy(update={"previous_close": D(187)})) == D(187)


async def test_what_an_account_reports_it_cannot_stream_is_polled_until_it_streams_again(caplog):
    from brokers.quotes import StreamOutage

    feed = Limited("feed", None, prices=PRICES, seed=1)
    await connected(feed)
    clock = ManualClock()
    board = board_of(Accounts(feed), clock)
    heard: list[tuple[str, StreamOutage]] = []
    board.add_outage_listener(lambda account, outage: heard.append((account, outage)))
    board.want("watchlist", [AAPL, MSFT])
    await board.assign()
    assert board.streamed("feed") == {AAPL, MSFT} and not board.snapshotted("feed")

    board.receive(Quote(AAPL, "feed", clock.now, last=D(201)))
    assert board.quote(AAPL).state is QuoteState.LIVE
    refused = StreamOutage(frozenset({AAPL}), "the data stream refused the login: auth failed")
    feed._report_outage(refused)
    assert board.outage("feed") == refused
    assert board.snapshotted("feed") == {AAPL}
    # What the stream last sent is no longer kept current: not shown as live.
    assert board.quote(AAPL).state is QuoteState.SNAPSHOT and board.quote(AAPL).last == D(201)
    assert AAPL in board.take_changed()
    await board.take_snapshots()
    assert board.quote(AAPL).state is QuoteState.SNAPSHOT
    # Refused again, and for more: polled too, but said once.
    feed._report_outage(StreamOutage(frozenset({AAPL, MSFT}), "still refused"))
    assert board.snapshotted("feed") == {AAPL, MSFT}
    assert heard == [("feed", refused)]
    assert [r.getMessage() for r in caplog.records if "not streaming" in r.getMessage()] == [
        "feed: quotes not streaming (the data stream refused the login: auth failed); "
        "asking for snapshots every 5 s until they are"
    ]

    feed._report_outage(StreamOutage(frozenset()))
    assert board.outage("feed") is None
    assert not board.snapshotted("feed")
    assert heard[-1] == ("feed", StreamOutage(frozenset()))
    assert len(heard) == 2
