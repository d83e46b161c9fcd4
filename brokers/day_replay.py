"""Today's fills read back from the journal at start-up, into the book's day.

Without them, what was realised today and the day's trades would start again from nothing at
every restart. The day is the book's trading day (``Book.trading_day``: the UTC date); its fills
are the rows written since it began, found through the journal's lookup table of row times, so
the read follows today's rows, never the history. Each fill's id is handed to the book, so a
broker reporting the same fill again after the restart moves nothing.

A holding carried in from an earlier day and closed (or turned through nothing) today leaves no
average at its broker to work its cost at the open back from. So the book writes each account's
holdings at the open before the account's first fill of the day (``Book.openings``), as one
journal row of its own (``DAY_OPEN``: the day, and each holding's label, quantity, average cost
and previous close), waiting for the end of the event loop's turn like a broker's answer; the
same read of today's rows brings it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Protocol

from pydantic import BaseModel, ValidationError

from .book import Book
from .book_holding import DayOpening
from .enums import AssetClass, Side
from .instruments import Instrument, instrument_of
from .journal_rows import ACK, CANCEL, FILL, INTENT, RECONCILE, UPDATE
from .journal_schema import JournalEvent
from .models import Fill

__all__ = [
    "DAY_OPEN",
    "FILL_KINDS",
    "DayFill",
    "DayJournal",
    "DayRead",
    "FillJournal",
    "JournalOpenings",
    "day_start",
    "read_day",
    "read_day_fills",
    "replay_today",
]

log = logging.getLogger(__name__)

# The rows that may carry fills: an order's fill, and the broker's view of it taken up on an
# acknowledgement, an update, a reconcile or a cancel (``OrderTracker.absorb``).
FILL_KINDS = (FILL, ACK, UPDATE, RECONCILE, CANCEL)

# An account's holdings at the open of a trading day: ``{"day": ISO date, "holdings": {label:
# [quantity, average cost or null, previous close or null]}}``, one row per account and day.
DAY_OPEN = "day_open"


class FillJournal(Protocol):
    """What the replay reads of ``brokers.journal.Journal``."""

    def events(
        self,
        since: datetime | None = None,
        order: str | None = None,
        kinds: list[str] | None = None,
        *,
        last: int | None = None,
        archived: bool = False,
    ) -> list[JournalEvent]: ...


class DayJournal(FillJournal, Protocol):
    """What the replay reads and the openings write of ``brokers.journal.Journal``."""

    def record(
        self,
        kind: str,
        *,
        client_order_id: str | None = None,
        account: str | None = None,
        data: dict[str, object] | None = None,
        soon: bool = False,
    ) -> int | None: ...


@dataclass(frozen=True, slots=True)
class DayFill:
    """One of today's fills: the account, what it was in (as the book keys it) and the fill."""

    account: str
    instrument: Instrument
    fill: Fill


class _Traded(BaseModel):
    """What a fill of an order was in, as its journaled request says: the request was
    validated before it was written, so only these terms are read back (the whole request's
    checks cost as much again as the rest of the read)."""

    symbol: str
    side: Side
    account: str | None = None
    asset_class: AssetClass = AssetClass.STOCK
    exchange: str | None = None
    currency: str | None = None

    @property
    def instrument(self) -> Instrument:
        """As ``OrderRequest.instrument``."""
        return instrument_of(self.symbol, self.asset_class, self.exchange, self.currency)


def day_start(day: date) -> datetime:
    """The moment ``day`` begins, as the book counts days (UTC)."""
    return datetime.combine(day, time(0), UTC)


@dataclass(slots=True)
class DayRead:
    """What the journal holds of a day: its fills, oldest first, and the holdings at the open
    recorded for each account (the first row of each)."""

    fills: list[DayFill] = field(default_factory=list)
    openings: dict[str, dict[Instrument, DayOpening]] = field(default_factory=dict)
    opened_at: dict[str, datetime] = field(default_factory=dict)  # when each opening was written


def read_day_fills(journal: FillJournal, since: datetime) -> list[DayFill]:
    """The fills journaled from ``since`` on, oldest first (see ``read_day``)."""
    return read_day(journal, since).fills


def read_day(journal: FillJournal, since: datetime, day: date | None = None) -> DayRead:
    """The fills journaled from ``since`` on, oldest first, and the openings recorded for
    ``day`` (none without it). An order's fill row names no symbol or side: its order's intent
    does, read in the same pass for an order placed since then, else looked up through its
    client id's lookup table. A row that cannot be read is logged and left out."""
    requests: dict[str, _Traded | None] = {}
    intents: dict[str, dict[str, object]] = {}
    read = DayRead()
    found = read.fills
    kinds = [INTENT, *FILL_KINDS] if day is None else [INTENT, DAY_OPEN, *FILL_KINDS]
    for event in journal.events(since=since, kinds=kinds):
        coid = event.client_order_id
        if event.kind == DAY_OPEN:
            if day is not None and event.account is not None and event.account not in read.openings:
                opening = _opening(event, day)
                if opening is not None:
                    read.openings[event.account] = opening
                    read.opened_at[event.account] = event.time
            continue
        if event.kind == INTENT:
            if coid is not None:
                intents[coid] = event.data
                requests.pop(coid, None)  # an id sent again starts its order afresh
            continue
        try:
            found.extend(_fills(journal, event, requests, intents))
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            log.warning("journal row %d: its fills could not be read back (%s)", event.id, type(exc).__name__)
    return read


def _opening(event: JournalEvent, day: date) -> dict[Instrument, DayOpening] | None:
    """The holdings at the open a ``DAY_OPEN`` row of ``day`` holds; None for a row of another
    day or one that cannot be read (logged)."""
    data = event.data
    if data.get("day") != day.isoformat():
        return None
    held = data.get("holdings")
    try:
        if not isinstance(held, Mapping):
            raise TypeError("holdings")
        opening: dict[Instrument, DayOpening] = {}
        for label, figures in held.items():
            if not isinstance(figures, list):
                raise TypeError(label)
            quantity, cost, close = figures
            opening[Instrument.from_label(str(label))] = DayOpening(
                Decimal(str(quantity)), _decimal(cost), _decimal(close)
            )
    except (TypeError, ValueError, InvalidOperation):
        log.warning("journal row %d: the holdings at the open could not be read back", event.id)
        return None
    return opening


def _decimal(text: object) -> Decimal | None:
    return None if text is None else Decimal(str(text))


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


class JournalOpenings:
    """``DayOpenings`` in the journal: one ``DAY_OPEN`` row per account and day, written with
    the broker answers that wait for the end of the event loop's turn (``record(soon=True)``),
    never on its own ahead of an order's intent."""

    def __init__(self, journal: DayJournal) -> None:
        self.journal = journal

    def record_opening(self, account: str, day: date, holdings: Mapping[Instrument, DayOpening]) -> None:
        self.journal.record(
            DAY_OPEN,
            account=account,
            data={
                "day": day.isoformat(),
                "holdings": {
                    instrument.label: [str(o.quantity), _text(o.cost), _text(o.previous_close)]
                    for instrument, o in holdings.items()
                },
            },
            soon=True,
        )


def _fills(
    journal: FillJournal,
    event: JournalEvent,
    requests: dict[str, _Traded | None],
    intents: dict[str, dict[str, object]],
) -> list[DayFill]:
    data = event.data
    foreign = data.get("foreign_fill")
    if isinstance(foreign, Mapping):
        # A fill of an order placed elsewhere: the row carries the whole fill.
        fill = Fill.model_validate(foreign)
        return [DayFill(event.account or fill.account, fill.instrument.in_currency(fill.currency), fill)]
    raw_fills = data.get("fills")
    coid = event.client_order_id
    if not raw_fills or coid is None:
        return []
    if coid in requests:
        request = requests[coid]
    else:
        intent = intents.get(coid)
        request = requests[coid] = (
            _request(journal, coid) if intent is None else _Traded.model_validate(intent["request"])
        )
    if request is None:
        log.warning("journal row %d: fills of order %s, whose intent is not in the journal", event.id, coid)
        return []
    account = event.account or request.account or ""
    found = []
    for raw in raw_fills:
        fill = Fill.model_validate(
            {
                **raw,
                "account": account,
                "symbol": request.symbol,
                "side": request.side,
                "asset_class": request.asset_class,
                "client_order_id": coid,
            }
        )
        # As the book keys a fill of a known order: what the order traded, in the fill's currency.
        found.append(DayFill(account, request.instrument.in_currency(fill.currency), fill))
    return found


def _request(journal: FillJournal, coid: str) -> _Traded | None:
    intents = journal.events(order=coid, kinds=[INTENT], last=1, archived=True)
    if not intents:
        return None
    return _Traded.model_validate(intents[-1].data["request"])


async def replay_today(
    book: Book, journal: DayJournal | None, remembers_since: Callable[[str], datetime | None] | None = None
) -> int:
    """Read today's fills and openings from ``journal`` in a thread and hand them to ``book``
    (``Book.replay_day``); how many fills were taken. From then on the book writes each
    account's holdings at the open to ``journal`` (``JournalOpenings``) where none was read
    back. A journal that cannot be read is logged: the day's figures then count from now, no
    fill is counted twice for it, and no opening is written for the day (the brokers'
    positions may hold fills of it that were not read)."""
    if journal is None:
        return 0
    book.openings = JournalOpenings(journal)
    day = book.trading_day()
    try:
        read = await asyncio.to_thread(read_day, journal, day_start(day), day)
    except Exception:
        log.exception("today's fills could not be read from the journal; realised today counts from now")
        return 0
    fills, openings = read.fills, read.openings
    if remembers_since is not None:
        # An account that started afresh (the paper broker, in this process only) holds none
        # of what was journaled before it started: those fills are not in its positions, and
        # the venue's ids start over, so they must not be taken as seen either.
        fills = [f for f in fills if _remembered(remembers_since(f.account), f.fill.timestamp)]
        openings = {
            account: held
            for account, held in openings.items()
            if _remembered(remembers_since(account), read.opened_at[account])
        }
    return book.replay_day(day, ((f.account, f.instrument, f.fill) for f in fills), openings)


def _remembered(since: datetime | None, at: datetime) -> bool:
    return since is None or at >= since
