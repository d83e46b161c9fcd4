"""Today's fills read back from the journal at start-up, into the book's day.

Without them, what was realised today and the day's trades would start again from nothing at
every restart. The day is the book's trading day (``Book.trading_day``: the UTC date); its fills
are the rows written since it began, found through the journal's lookup table of row times, so
the read follows today's rows, never the history. Each fill's id is handed to the book, so a
broker reporting the same fill again after the restart moves nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Protocol

from pydantic import BaseModel, ValidationError

from .book import Book
from .enums import AssetClass, Side
from .instruments import Instrument, instrument_of
from .journal_rows import ACK, CANCEL, FILL, INTENT, RECONCILE, UPDATE
from .journal_schema import JournalEvent
from .models import Fill

__all__ = ["FILL_KINDS", "DayFill", "FillJournal", "day_start", "read_day_fills", "replay_today"]

log = logging.getLogger(__name__)

# The rows that may carry fills: an order's fill, and the broker's view of it taken up on an
# acknowledgement, an update, a reconcile or a cancel (``OrderTracker.absorb``).
FILL_KINDS = (FILL, ACK, UPDATE, RECONCILE, CANCEL)


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


def read_day_fills(journal: FillJournal, since: datetime) -> list[DayFill]:
    """The fills journaled from ``since`` on, oldest first. An order's fill row names no symbol
    or side: its order's intent does, read in the same pass for an order placed since then,
    else looked up through its client id's lookup table. A row that cannot be read is logged
    and left out."""
    requests: dict[str, _Traded | None] = {}
    intents: dict[str, dict[str, object]] = {}
    found: list[DayFill] = []
    for event in journal.events(since=since, kinds=[INTENT, *FILL_KINDS]):
        coid = event.client_order_id
        if event.kind == INTENT:
            if coid is not None:
                intents[coid] = event.data
                requests.pop(coid, None)  # an id sent again starts its order afresh
            continue
        try:
            found.extend(_fills(journal, event, requests, intents))
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            log.warning("journal row %d: its fills could not be read back (%s)", event.id, type(exc).__name__)
    return found


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


async def replay_today(book: Book, journal: FillJournal | None) -> int:
    """Read today's fills from ``journal`` in a thread and hand them to ``book``
    (``Book.replay_day``); how many were taken. A journal that cannot be read is logged: the
    day's figures then count from now, and no fill is counted twice for it."""
    if journal is None:
        return 0
    day = book.trading_day()
    try:
        fills = await asyncio.to_thread(read_day_fills, journal, day_start(day))
    except Exception:
        log.exception("today's fills could not be read from the journal; realised today counts from now")
        return 0
    return book.replay_day(day, ((f.account, f.instrument, f.fill) for f in fills))
