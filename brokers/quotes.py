"""Quotes: what a broker says an instrument is bid, offered and last traded at.

A ``Quote`` is one broker's view of one instrument at one moment. Brokers push them through
``Broker.set_quote_sink`` for the instruments they were asked to stream
(``Broker.stream_quotes``) and answer ``Broker.get_quote`` for a one-off snapshot. The manager's
quote board, not the screen, decides what is streamed where (see ``brokers.quote_board``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .instruments import Instrument

__all__ = [
    "Listing",
    "OutageSink",
    "Quote",
    "QuoteLimits",
    "QuoteSettings",
    "QuoteSink",
    "QuoteState",
    "StreamOutage",
]


class QuoteState(StrEnum):
    LIVE = "LIVE"
    """Streamed in real time."""
    DELAYED = "DELAYED"
    """Streamed, but the broker says it is delayed (no real-time subscription)."""
    SNAPSHOT = "SNAPSHOT"
    """Asked for now and then rather than streamed (past a broker's streaming limit, or a broker
    that does not stream)."""
    STALE = "STALE"
    """Older than the stale setting: never to be read as a live price."""


@dataclass(frozen=True, slots=True)
class Quote:
    instrument: Instrument
    source: str
    """The account whose broker sent it."""
    time: datetime
    """When the broker says the quote was made (UTC); the time it arrived when it does not say."""
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    previous_close: Decimal | None = None
    state: QuoteState = QuoteState.LIVE
    complete: bool = False
    """The broker's whole view of the instrument (IB's ticker, Kite's full tick): a field left
    None is empty at the broker now (a side of the book gone), not left out of this message."""

    @property
    def spread(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return self.ask - self.bid

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    @property
    def price(self) -> Decimal | None:
        """The best single price to value or estimate with: last, else the mid."""
        return self.last if self.last is not None else self.mid

    @property
    def change(self) -> Decimal | None:
        """Last against the previous close; None when either is unknown (never 0 for unknown)."""
        if self.last is None or self.previous_close is None:
            return None
        return self.last - self.previous_close

    @property
    def change_percent(self) -> Decimal | None:
        change = self.change
        if change is None or not self.previous_close:
            return None
        return change / self.previous_close * 100

    def merged(self, newer: Quote) -> Quote:
        """``newer`` with the fields it leaves out (None) kept from this quote: brokers send a
        bid in one message and a size or a last in the next. A complete quote keeps nothing: a
        side of the book that emptied must not go on showing its old price."""
        if newer.complete or (
            newer.bid is not None
            and newer.ask is not None
            and newer.last is not None
            and newer.bid_size is not None
            and newer.ask_size is not None
            and newer.previous_close is not None
        ):
            # A full quote keeps nothing of the old one; this is the common case of a busy
            # feed, and copying a dataclass costs more than the rest of taking a quote.
            return newer
        return replace(
            newer,
            bid=newer.bid if newer.bid is not None else self.bid,
            ask=newer.ask if newer.ask is not None else self.ask,
            last=newer.last if newer.last is not None else self.last,
            bid_size=newer.bid_size if newer.bid_size is not None else self.bid_size,
            ask_size=newer.ask_size if newer.ask_size is not None else self.ask_size,
            previous_close=newer.previous_close if newer.previous_close is not None else self.previous_close,
        )

    def as_state(self, state: QuoteState) -> Quote:
        return self if self.state is state else replace(self, state=state)


@dataclass(frozen=True, slots=True)
class QuoteLimits:
    """How many instruments one account may stream at once; ``None`` means no limit the
    adapter knows of, 0 means it does not stream (snapshots only)."""

    streamed: int | None = 0


QuoteSink = Callable[[Quote], object]
"""Receives each quote a broker streams, on the event loop thread; must be quick and not await."""


@dataclass(frozen=True, slots=True)
class StreamOutage:
    """What an account was asked to stream and is not streaming now, and why: its stream's
    login or subscription refused, its connection gone and not yet back. The quote board asks
    for these as snapshots until the account reports an outage with no instruments (streaming
    again). ``reason`` is a sentence free of secrets."""

    instruments: frozenset[Instrument]
    reason: str | None = None


OutageSink = Callable[[StreamOutage], object]
"""Receives each change of a broker's stream outage, on the event loop thread."""


class Listing(StrEnum):
    """What a broker says of an instrument when asked whether it lists it
    (``Broker.listing``)."""

    LISTED = "listed"
    NOT_TRADABLE = "not tradable"
    """Listed, but the broker takes no orders for it now (Alpaca's ``tradable`` false, an
    inactive asset)."""
    NOT_LISTED = "not listed"
    """The broker has no such instrument: the order ticket says "unknown symbol"."""


class QuoteSettings(BaseModel):
    """``[quotes]`` in the config file."""

    model_config = ConfigDict(extra="forbid")

    stale_after_seconds: float = Field(default=15.0, gt=0, le=86_400, allow_inf_nan=False)
    """A quote older than this is shown STALE, never as live."""
    snapshot_interval_seconds: float = Field(default=5.0, ge=0.5, le=3_600, allow_inf_nan=False)
    """How often instruments that cannot be streamed (past an account's limit) are asked for."""
