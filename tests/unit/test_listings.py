"""The answers a broker gives about its listings, kept per instrument: a definite answer is
kept for a while and then asked again, "cannot tell" and failures are never kept, and asks in
flight at once share one request."""

from __future__ import annotations

import asyncio

from brokers.instruments import Instrument
from brokers.listing import Listings
from brokers.quotes import Listing

AAPL = Instrument.stock("AAPL")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_definite_answer_is_kept_for_a_while_then_asked_again():
    clock = Clock()
    listings = Listings(keep_for=60, clock=clock)
    asked: list[Instrument] = []

    async def look_up(instrument: Instrument) -> Listing | None:
        asked.append(instrument)
        return Listing.NOT_LISTED

    assert listings.known(AAPL) is None
    assert await listings.ask(AAPL, look_up) is Listing.NOT_LISTED
    assert await listings.ask(AAPL, look_up) is Listing.NOT_LISTED
    assert listings.known(AAPL) is Listing.NOT_LISTED
    assert len(asked) == 1
    clock.now = 60
    assert listings.known(AAPL) is None
    assert await listings.ask(AAPL, look_up) is Listing.NOT_LISTED
    assert len(asked) == 2


async def test_cannot_tell_and_failures_are_not_kept():
    listings = Listings()
    answers: list[Listing | None | Exception] = [None, RuntimeError("down"), Listing.LISTED]

    async def look_up(instrument: Instrument) -> Listing | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await listings.ask(AAPL, look_up) is None
    assert await listings.ask(AAPL, look_up) is None
    assert await listings.ask(AAPL, look_up) is Listing.LISTED
    assert answers == []


async def test_asks_in_flight_at_once_share_one_request_and_one_giving_up_leaves_the_rest():
    listings = Listings()
    release = asyncio.Event()
    calls = 0

    async def look_up(instrument: Instrument) -> Listing | None:
        nonlocal calls
        calls += 1
        await release.wait()
        return Listing.LISTED

    first = asyncio.create_task(listings.ask(AAPL, look_up))
    second = asyncio.create_task(listings.ask(AAPL, look_up))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second is Listing.LISTED
    assert calls == 1
    assert listings.known(AAPL) is Listing.LISTED
