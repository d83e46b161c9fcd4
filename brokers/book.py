"""Positions and working orders per account, as the execution layer believes them.

Kept in memory from broker reads and fills so that a risk check never waits for a broker; it is
what ``brokers.risk`` checks read (it implements ``RiskContext``). The brokers' word wins: a
reconcile seeds the book from their positions and reports where it differed.

Holdings and working orders are keyed by (account, ``Instrument``), never by a bare symbol: a CFD
and a stock of one symbol are two holdings, one equity reported on two exchanges is one. Where a
symbol string is given (the ``RiskContext`` calls of older callers), it names a stock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

from .base import FxSource, PriceSource
from .book_holding import BookHolding, DayOpening, DayOpenings
from .events import PositionDiff
from .instruments import Instrument
from .legs import working_quantity
from .models import WORKING_STATUSES, Fill, Order, OrderRequest, Position, Side
from .pnl import DayActivity, DayBook
from .riskstate import DayBaseline, DayBaselines

__all__ = ["Book", "DayOpening", "DayOpenings"]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)


_NOTHING = DayOpening(_ZERO, _ZERO)


def _as_found(row: _Reported) -> DayOpening:
    """A holding as a broker reports it, taken as its opening if no fill of the day moved it."""
    return DayOpening(row.quantity, row.avg_price if row.quantity else _ZERO)


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _instrument(what: Instrument | str) -> Instrument:
    return what if isinstance(what, Instrument) else Instrument.stock(what)


class _Reported:
    """The rows a broker reported for one instrument at one account, added up."""

    __slots__ = ("instrument", "previous_close", "quantity", "unknown", "weight", "weighted")

    def __init__(self, position: Position) -> None:
        self.instrument = position.instrument
        self.quantity = _ZERO
        self.weight = _ZERO
        self.weighted = _ZERO
        self.unknown = False
        self.previous_close: Decimal | None = None
        self.add(position)

    def add(self, position: Position) -> None:
        self.quantity += position.quantity
        self.weight += abs(position.quantity)
        if position.avg_price is None:
            self.unknown = True  # a cost the broker does not know
        else:
            self.weighted += abs(position.quantity) * position.avg_price
        if self.previous_close is None:
            self.previous_close = position.previous_close

    @property
    def avg_price(self) -> Decimal | None:
        if self.unknown:
            return None
        return self.weighted / self.weight if self.weight else _ZERO


def _unsummable(kept: Instrument, other: Instrument) -> str:
    """How a row that cannot be added to ``kept`` is named in a mismatch report."""
    terms = []
    if other.currency != kept.currency:
        terms.append(f"in {other.currency or 'the account currency'}, book holds {kept.currency}")
    if other.multiplier != kept.multiplier:
        terms.append(f"multiplier {other.multiplier}, book holds {kept.multiplier}")
    return f"{other.label} ({'; '.join(terms)})"


class Book:
    """Positions and working orders per (account, instrument). ``prices`` values positions and names each
    account's currency; ``fx`` turns other currencies into ``base_currency`` (without it only
    amounts already in the base currency can be added up)."""

    def __init__(
        self,
        prices: PriceSource,
        fx: FxSource | None,
        base_currency: str,
        today: Callable[[], date] | None = None,
    ) -> None:
        self.prices = prices
        self.fx = fx
        self.base_currency = base_currency
        self._today = today if today is not None else _utc_today
        self.holdings: dict[tuple[str, Instrument], BookHolding] = {}
        # The same holdings by account, then instrument: the daily loss check re-values one
        # account's positions for every order to it, and must not walk everybody's.
        self._by_account: dict[str, dict[Instrument, BookHolding]] = {}
        self.open: dict[str, dict[str, Order]] = {}  # account -> working orders by client id
        self._open_by_key: dict[tuple[str, Instrument, Side], dict[str, Order]] = {}
        # What each tracked order trades, by client id: a fill names only a symbol, and the
        # order it belongs to says whether that is a stock, a CFD or a contract.
        self._traded: dict[str, Instrument] = {}
        self._seen_fills: set[tuple[str, str]] = set()
        self._day = self._today()
        # Where the day's baseline is kept across restarts and processes, and the holdings
        # changed since it was last written.
        self.store: DayBaselines | None = None
        self._dirty: set[tuple[str, Instrument]] = set()
        # The holdings traded today: what ``day_trades`` copies.
        self._traded_today: set[tuple[str, Instrument]] = set()
        # Today's fills read back from the journal at start-up (``replay_day``), per account,
        # until that account's positions are read: they are added to the day's figures then.
        self._replay: dict[str, list[tuple[Instrument, Fill]]] = {}
        self._replay_day: date | None = None
        self._seeded: set[str] = set()
        # Where each account's holdings at the open are written (``DayOpenings``), once per
        # account and day: the accounts whose opening is written (or was read back) for
        # ``_day``, and the openings read back, by account.
        self.openings: DayOpenings | None = None
        self._opened: set[str] = set()
        self._recorded: dict[str, Mapping[Instrument, DayOpening]] = {}
        # Whether every fill of the day so far is known to the book: it saw the day begin, or
        # took the day's fills read back after a restart. Until then a broker's quantity may
        # hold fills of the day it has not seen, and no opening is written.
        self._day_known = False

    # -- keeping it ----------------------------------------------------------------------
    def track(self, order: Order) -> None:
        """Index ``order`` as working or not, after any change to it."""
        account = order.account
        if account is None:
            return
        request = order.request
        coid = request.client_order_id
        working = order.status in WORKING_STATUSES
        instrument = self._traded.get(coid)
        if instrument is None:
            if not working and not request.validated:
                # A refusal of input that never was a valid order: it names no instrument, and
                # was never indexed as working.
                self._untrack(account, coid, None)
                return
            instrument = self._traded[coid] = request.instrument
        if not working:
            self._untrack(account, coid, (account, instrument, request.side))
            return
        key = (account, instrument, request.side)
        by_account = self.open.get(account)
        by_key = self._open_by_key.get(key)
        if by_account is None:
            by_account = self.open[account] = {}
        by_account[coid] = order
        if by_key is None:
            by_key = self._open_by_key[key] = {}
        by_key[coid] = order

    def _untrack(self, account: str, coid: str, key: tuple[str, Instrument, Side] | None) -> None:
        by_account = self.open.get(account)
        if by_account is not None:
            by_account.pop(coid, None)
        by_key = self._open_by_key.get(key) if key is not None else None
        if by_key is not None:
            by_key.pop(coid, None)

    def add_fill(self, account: str, fill: Fill) -> bool:
        """Move the position by a fill, once per fill id. Returns whether it was new."""
        key = (account, fill.fill_id)
        if key in self._seen_fills:
            return False
        self._seen_fills.add(key)
        today = self._today()
        if today != self._day:
            # Past midnight: the fill belongs to the new day, which starts from the holdings
            # as they were before it.
            self._new_day(today)
        if account not in self._opened and self.openings is not None:
            self._open_day(account)
        traded = self._traded.get(fill.client_order_id) if fill.client_order_id is not None else None
        instrument = (traded or fill.instrument).in_currency(fill.currency)
        holding = self.holdings.get((account, instrument))
        if holding is None:
            holding = self._add_holding(account, instrument, BookHolding())
        if fill.multiplier != 1:
            # An order names no multiplier; the broker's execution of a contract does.
            holding.multiplier = fill.multiplier
        quantity = fill.quantity
        holding.apply(quantity if fill.side is Side.BUY else -quantity, fill.price, fill.commission)
        self._dirty.add((account, instrument))
        self._traded_today.add((account, instrument))
        return True

    def seed(self, account: str, positions: Iterable[Position]) -> list[PositionDiff]:
        """Take the broker's positions as the truth; returns where the book disagreed.

        Rows of one instrument are added up (one equity reported per exchange, a holding and
        the day's trades in it). A row that cannot be added to the others (another currency or
        multiplier) is not taken into the book and is reported on every seed, never dropped.
        """
        diffs: list[PositionDiff] = []
        reported: dict[Instrument, _Reported] = {}
        for position in positions:
            instrument = position.instrument
            row = reported.get(instrument)
            if row is None:
                reported[instrument] = _Reported(position)
            elif row.instrument.summable(instrument):
                row.add(position)
            elif position.quantity:
                diffs.append(
                    PositionDiff(account, _unsummable(row.instrument, instrument), _ZERO, position.quantity)
                )
        for instrument, holding in self._by_account.get(account, {}).items():
            if instrument not in reported and holding.quantity != 0:
                diffs.append(PositionDiff(account, instrument.label, holding.quantity, _ZERO))
                holding.quantity = _ZERO
        stored = self.store.load(account, self._day) if self.store is not None else {}
        labels = {instrument.label for instrument in reported}
        for label, closed in stored.items():
            instrument = Instrument.from_label(label)
            if label not in labels and (account, instrument) not in self.holdings:
                # Closed earlier today: its profit or loss still counts.
                self._add_holding(
                    account, instrument, BookHolding(_ZERO, closed.basis)
                ).realized = closed.realized
        for instrument, row in reported.items():
            key = (account, instrument)
            known = self.holdings.get(key)
            if known is None:
                kept = stored.get(instrument.label)
                if kept is not None:
                    holding = self._add_holding(
                        account, row.instrument, BookHolding(row.quantity, kept.basis, row.avg_price)
                    )
                    holding.realized = kept.realized
                    holding.previous_close = row.previous_close
                    holding.opening = _as_found(row)
                    continue
                mark = self.last_price(instrument, account) or row.avg_price or _ZERO
                holding = self._add_holding(
                    account, row.instrument, BookHolding(row.quantity, mark, row.avg_price)
                )
                holding.previous_close = row.previous_close
                holding.opening = _as_found(row)
                self._dirty.add(key)
                continue
            if row.previous_close is not None:
                known.previous_close = row.previous_close
            if known.quantity != row.quantity:
                diffs.append(PositionDiff(account, instrument.label, known.quantity, row.quantity))
                known.quantity = row.quantity
                if row.avg_price is not None:  # else the book's own average stands
                    known.cost = row.avg_price
        self._seeded.add(account)
        self._take_replay(account)
        return diffs

    def replay_day(
        self,
        day: date,
        fills: Iterable[tuple[str, Instrument, Fill]],
        openings: Mapping[str, Mapping[Instrument, DayOpening]] | None = None,
    ) -> int:
        """Take today's fills read back from the journal after a restart (account, what the
        fill was in, the fill; oldest first): each fill id is known from now on, so a broker
        reporting it again moves nothing, and the fills are added to the day's figures of
        their holdings once the account's positions have been read (those include them
        already). ``openings``: the holdings at the open recorded today, by account; a
        holding carried in and closed today counts what it realised against them, and those
        accounts' openings are not written again. Fills of another day than the book's are
        left out. Returns how many fills were taken."""
        if day != self._today():
            return 0
        if self._day != day:
            self._new_day(day, seen=False)
        if openings:
            for account, opening in openings.items():
                # The first written stands: it was nearest the open.
                self._recorded.setdefault(account, opening)
            self._opened.update(openings)
        taken = 0
        for account, instrument, fill in fills:
            key = (account, fill.fill_id)
            if key in self._seen_fills:
                continue
            self._seen_fills.add(key)
            self._replay.setdefault(account, []).append((instrument, fill))
            taken += 1
        self._replay_day = day
        self._day_known = True
        for account in self._seeded.intersection(self._replay):
            self._take_replay(account)
        return taken

    def _take_replay(self, account: str) -> None:
        waiting = self._replay.pop(account, None)
        if not waiting or self._replay_day != self._day:
            return
        by_instrument: dict[Instrument, list[tuple[Decimal, Decimal, Decimal]]] = {}
        for instrument, fill in waiting:
            signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
            by_instrument.setdefault(instrument, []).append((signed, fill.price, fill.commission))
        recorded = self._recorded.get(account)
        for instrument, fills in by_instrument.items():
            holding = self.holdings.get((account, instrument))
            if holding is None:
                # Not held now (closed today): a holding of nothing, for what it made today.
                holding = self._add_holding(account, instrument, BookHolding())
            # A holding the recorded opening does not name was not held at the open.
            opened = None if recorded is None else recorded.get(instrument, _NOTHING)
            holding.replay(fills, opened)
            if holding.previous_close is None and opened is not None:
                # Not reported now (closed today): the previous close it had at the open.
                holding.previous_close = opened.previous_close
            self._traded_today.add((account, instrument))

    def _open_day(self, account: str) -> None:
        """Write ``account``'s holdings at the open (``openings``) before the first fill the
        book takes there on its day (an opening is needed only on a day the account trades),
        once its positions are read and every fill of the day so far is known. What is held
        now, less the day's fills, was held at the open; its cost is known where the holding
        has not traded today (the broker's average, or the book's as the day began) or it was
        worked back from the day's fills, else it is written as unknown."""
        writer = self.openings
        if (
            writer is None
            or account in self._opened
            or account not in self._seeded
            or not self._day_known
            or self._replay.get(account)
        ):
            return
        self._opened.add(account)
        held: dict[Instrument, DayOpening] = {}
        for instrument, holding in self._by_account.get(account, {}).items():
            quantity = holding.quantity - holding.day_quantity
            if not quantity:
                continue
            opening = holding.opening
            cost = opening.cost if opening is not None and opening.quantity == quantity else None
            held[instrument] = DayOpening(quantity, cost, holding.previous_close)
        try:
            writer.record_opening(account, self._day, held)
        except Exception:
            log.exception("the holdings of %s at the open could not be written", account)

    def _add_holding(self, account: str, instrument: Instrument, holding: BookHolding) -> BookHolding:
        holding.multiplier = instrument.multiplier
        self.holdings[(account, instrument)] = holding
        by_instrument = self._by_account.get(account)
        if by_instrument is None:
            by_instrument = self._by_account[account] = {}
        by_instrument[instrument] = holding
        return holding

    def positions(self) -> dict[tuple[str, str], Decimal]:
        """(account, instrument label) -> signed quantity, as the execution layer believes it.
        A stock's label is its symbol (``Instrument.label``)."""
        return {
            (account, instrument.label): holding.quantity
            for (account, instrument), holding in self.holdings.items()
            if holding.quantity
        }

    def instrument_positions(self) -> dict[tuple[str, Instrument], Decimal]:
        """(account, instrument) -> signed quantity, as the execution layer believes it."""
        return {key: holding.quantity for key, holding in self.holdings.items() if holding.quantity}

    # -- RiskContext ---------------------------------------------------------------------
    def position(self, account: str | None, instrument: Instrument | str) -> Decimal:
        wanted = _instrument(instrument)
        if account is None:
            return sum((h.quantity for (_, i), h in self.holdings.items() if i == wanted), _ZERO)
        holding = self.holdings.get((account, wanted))
        return holding.quantity if holding is not None else _ZERO

    def pending(self, account: str | None, instrument: Instrument | str, side: Side) -> Decimal:
        wanted = _instrument(instrument)
        if account is not None:
            working = self._open_by_key.get((account, wanted, side))
            if not working:
                return _ZERO
            # A bracket's or OCO pair's exits count once: only one of them can fill.
            return working_quantity(working.values())
        return sum((self.pending(name, wanted, side) for name in self.open), _ZERO)

    def pending_notional(self, account: str | None, instrument: Instrument | str, side: Side) -> Decimal:
        """Money that working notional orders on that side have still to spend."""
        wanted = _instrument(instrument)
        if account is not None:
            working = self._open_by_key.get((account, wanted, side))
            return sum((o.remaining_notional for o in working.values()), _ZERO) if working else _ZERO
        return sum((self.pending_notional(name, wanted, side) for name in self.open), _ZERO)

    def open_orders(self, account: str | None) -> int:
        if account is not None:
            return len(self.open.get(account, ()))
        return sum(len(orders) for orders in self.open.values())

    def last_price(self, instrument: Instrument, account: str | None) -> Decimal | None:
        try:
            return self.prices.last_price(instrument, account)
        except KeyError:
            return None

    def account_currency(self, account: str | None) -> str:
        if account is None:
            return self.base_currency
        try:
            return self.prices.get(account).currency
        except KeyError:
            return self.base_currency

    def order_currency(self, request: OrderRequest, account: str | None) -> str:
        return request.currency or self.account_currency(account)

    def to_base(self, amount: Decimal, currency: str) -> Decimal | None:
        if currency == self.base_currency:
            return amount
        if self.fx is None:
            return None
        return self.fx.convert(amount, currency).amount

    def is_reducing(self, request: OrderRequest, account: str | None) -> bool:
        """Would this order shrink the position without flipping it, counting the working
        orders already on the same side?"""
        instrument = request.instrument
        current = self.position(account, instrument)
        if current == 0 or (current > 0) == (request.side is Side.BUY) or request.quantity is None:
            # A notional order's quantity is known only as it fills: it cannot be shown to stop
            # at zero, so it never counts as reducing.
            return False
        already = self.pending(account, instrument, request.side)
        if self.pending_notional(account, instrument, request.side):
            return False  # the same, for notional orders already working on that side
        return already + request.quantity <= abs(current)

    def trading_day(self) -> date:
        """The day the daily P&L is counted for."""
        return self._today()

    def daily_pnl(self, account: str | None) -> Decimal | None:
        today = self._today()
        if today != self._day:
            self._new_day(today)
        by_account = self._by_account
        names: Iterable[str] = by_account if account is None else (account,)
        total = _ZERO
        for name in names:
            account_currency = None
            for instrument, holding in by_account.get(name, {}).items():
                pnl = holding.realized
                if holding.quantity:
                    last = self.last_price(instrument, name)
                    if last is not None:
                        pnl += (last - holding.basis) * holding.quantity * holding.multiplier
                if pnl:
                    # Money of a holding is in its instrument's currency (a EUR listing at a USD
                    # account), else in the account's.
                    currency = instrument.currency
                    if currency is None:
                        if account_currency is None:
                            account_currency = self.account_currency(name)
                        currency = account_currency
                    converted = self.to_base(pnl, currency)
                    if converted is None:
                        return None  # cannot add it up honestly
                    total += converted
        return total

    def save_baseline(self) -> None:
        """Write the day's baseline of every holding changed since the last call (see
        ``store``). Call now and then, off the order path."""
        store = self.store
        if store is None or not self._dirty:
            return
        if self._today() != self._day:
            self._new_day(self._today())
        dirty, self._dirty = self._dirty, set()
        rows = [
            (account, instrument.label, DayBaseline(holding.basis, holding.realized))
            for account, instrument in dirty
            if (holding := self.holdings.get((account, instrument))) is not None
        ]
        if not store.save(self._day, rows):
            self._dirty |= dirty

    def _new_day(self, today: date, *, seen: bool = True) -> None:
        """Count from ``today`` on. ``seen``: the book was running as the day began, so what
        it holds now is each account's opening."""
        self._day = today
        self._dirty.update(self.holdings)
        self._traded_today.clear()
        for (name, instrument), holding in self.holdings.items():
            holding.new_day(self.last_price(instrument, name))
        self._recorded.clear()
        self._opened.clear()
        # Only a book that had read positions before the day began saw the day's every fill.
        self._day_known = seen and bool(self._seeded)

    # -- DayTrades (the P&L shown) --------------------------------------------------------
    def day_activity(self, account: str, instrument: Instrument) -> DayActivity | None:
        """Today's fills in ``instrument`` at ``account``, as ``brokers.pnl`` counts them."""
        if self._today() != self._day:
            self._new_day(self._today())
        holding = self._by_account.get(account, {}).get(instrument)
        return holding.activity() if holding is not None else None

    def day_trades(self) -> DayBook:
        """Today's fills in every holding traded today, copied: for reading off the event loop
        (a holding not traded today has none to copy)."""
        if self._today() != self._day:
            self._new_day(self._today())
        activity: dict[tuple[str, Instrument], DayActivity] = {}
        closed: dict[str, dict[Instrument, DayActivity]] = {}
        for account, instrument in self._traded_today:
            holding = self.holdings[(account, instrument)]
            day = activity[(account, instrument)] = holding.activity()
            if holding.quantity == 0:
                closed.setdefault(account, {})[instrument] = day
        return DayBook(activity, closed)

    def closed_today(self, account: str) -> dict[Instrument, DayActivity]:
        """Holdings at ``account`` traded today and no longer held: their profit or loss still
        counts in the day's."""
        if self._today() != self._day:
            self._new_day(self._today())
        return {
            instrument: holding.activity()
            for instrument, holding in self._by_account.get(account, {}).items()
            if holding.quantity == 0 and holding.traded_today
        }
