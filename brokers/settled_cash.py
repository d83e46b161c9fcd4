"""Settled and unsettled cash worked out from fills, beside what the brokers report.

Each fill becomes a ``PendingSettlement``: its signed cash (a sale's proceeds positive, a
purchase's cost negative, commission included) and the moment it settles
(``brokers.settlement``). From those:

- ``computed_split`` splits a reported balance's cash into settled and unsettled at the time
  the balance was read, from the fills alone; ``with_computed`` puts that beside the broker's
  own figure (the broker's wins; a difference is kept so it can be shown) or, where the broker
  reports none, in its place;
- ``CashLedger`` keeps, for cash accounts, what the pre-trade check needs without I/O: the last
  balance, the fills since, the working buys. ``spendable`` is settled cash now, less purchases
  not yet paid for and less working buys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from .account_state import Balance, Fill, SettledCashSource
from .clock import utcnow
from .consolidation import Snapshot, Totals, consolidate_settlement
from .enums import Side
from .events import ConnectionEvent, FillEvent, ManagerEvent, OrderEvent
from .fx import FxRates
from .instruments import Instrument
from .orders import Order
from .settlement import calendars_loaded, settlement_of, warm_up

__all__ = [
    "HISTORY_DAYS",
    "HISTORY_ORDERS",
    "CashLedger",
    "FillHistory",
    "PendingSettlement",
    "Spendable",
    "computed_split",
    "pending_from_orders",
    "settlement_for_fill",
    "totals_with_fills",
    "with_computed",
]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)

HISTORY_DAYS = 14
"""How far back the journal's fills are read when a cash account is first seen: longer than the
longest cycle of ``brokers.settlement.RULES`` (T+2) with a run of holidays on top, so every fill
whose cash may still be unsettled is among them."""

HISTORY_ORDERS = 5000
"""The most orders read back for that; more in ``HISTORY_DAYS`` and the split is not worked out
(the ones left out could be unsettled sales)."""


class FillHistory(Protocol):
    """Where the fills from before this process came from (``brokers.journal.Journal``)."""

    def orders_since(self, since: datetime, *, most: int = ...) -> list[Order]: ...

    def rows_since(self, since: datetime, *, up_to: int) -> int: ...


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    """The cash of one fill and when it settles. ``amount`` is in ``currency``, signed."""

    account: str
    currency: str
    fill_id: str
    symbol: str
    side: Side
    amount: Decimal
    executed_at: datetime
    trade_date: date
    settlement_date: date
    settles_at: datetime
    cycle: str

    def settled(self, now: datetime) -> bool:
        return self.settles_at <= now


def settlement_for_fill(
    account: str, fill: Fill, instrument: Instrument, currency: str | None = None
) -> PendingSettlement:
    """``fill`` of ``instrument`` as cash to settle. The dates the fill carries (the broker's
    word) win over the table's; ``currency`` is the account's, for an instrument naming none."""
    settlement = settlement_of(instrument, fill.timestamp, currency or fill.currency)
    settles_at = settlement.settles_at
    settlement_date = fill.settlement_date or settlement.settlement_date
    if fill.settlement_date is not None and fill.settlement_date != settlement.settlement_date:
        shift = fill.settlement_date - settlement.settlement_date
        settles_at = settles_at + shift
    value = fill.quantity * fill.price * instrument.multiplier
    amount = value - fill.commission if fill.side is Side.SELL else -(value + fill.commission)
    return PendingSettlement(
        account=account,
        currency=fill.currency,
        fill_id=fill.fill_id,
        symbol=fill.symbol,
        side=fill.side,
        amount=amount,
        executed_at=fill.timestamp,
        trade_date=fill.trade_date or settlement.trade_date,
        settlement_date=settlement_date,
        settles_at=settles_at,
        cycle=settlement.rule.cycle,
    )


def pending_from_orders(orders: Iterable[Order], currencies: Mapping[str, str]) -> list[PendingSettlement]:
    """Every fill of ``orders`` (the journal's, say) as cash to settle, oldest first.
    ``currencies``: account -> its currency, for instruments that name none."""
    rows = []
    for order in orders:
        account = order.account or ""
        instrument = order.request.instrument
        for fill in order.fills:
            rows.append(settlement_for_fill(account, fill, instrument, currencies.get(account)))
    rows.sort(key=lambda row: row.executed_at)
    return rows


def _unsettled_at(rows: Iterable[PendingSettlement], at: datetime) -> Decimal:
    """Cash of the fills made by ``at`` that had not settled at ``at``."""
    return sum((r.amount for r in rows if r.executed_at <= at < r.settles_at), _ZERO)


def computed_split(balance: Balance, rows: Iterable[PendingSettlement]) -> tuple[Decimal, Decimal]:
    """(settled, unsettled) cash of ``balance`` at the time it was read, from ``rows`` (the
    account's fills) alone."""
    unsettled = _unsettled_at((r for r in rows if r.account == balance.account), balance.timestamp)
    return balance.cash - unsettled, unsettled


def with_computed(balance: Balance, rows: Iterable[PendingSettlement]) -> Balance:
    """``balance`` with its settled and unsettled cash: the broker's where it reported them
    (the computed settled figure kept beside it), else the computed ones."""
    settled, unsettled = computed_split(balance, rows)
    if balance.settled_source is SettledCashSource.BROKER and balance.settled_cash is not None:
        return balance.model_copy(update={"computed_settled_cash": settled})
    return balance.model_copy(
        update={
            "settled_cash": settled,
            "unsettled_cash": unsettled,
            "settled_source": SettledCashSource.COMPUTED,
            "computed_settled_cash": settled,
        }
    )


@dataclass(frozen=True, slots=True)
class Spendable:
    """What a cash account may spend now, in ``currency``: ``settled`` cash less ``owed`` (for
    purchases not settled yet) less ``working`` (buy orders still working). ``incoming`` is sale
    proceeds still to settle, by settlement date."""

    account: str
    currency: str
    settled: Decimal
    owed: Decimal
    working: Decimal
    incoming: tuple[tuple[date, Decimal], ...]
    source: SettledCashSource

    @property
    def amount(self) -> Decimal:
        return self.settled - self.owed - self.working

    def shortfall(self, what: str, cost: Decimal) -> str:
        """Why ``what`` (an order costing ``cost``) cannot be paid with settled cash, and when
        the sale proceeds come in."""
        money = self._money
        text = (
            f"{self.account} is a cash account: {what} needs about {money(cost)} and "
            f"{money(max(self.amount, _ZERO))} of settled cash is free (settled {money(self.settled)}"
        )
        if self.owed:
            text += f", owed for purchases not yet settled {money(self.owed)}"
        if self.working:
            text += f", working buys {money(self.working)}"
        return text + ")" + self.incoming_text()

    def incoming_text(self) -> str:
        """ "; sale proceeds settle 10,000.00 USD on Mon 25 Aug 2025, ...", or nothing."""
        if not self.incoming:
            return ""
        parts = [f"{self._money(amount)} on {day:%a %d %b %Y}" for day, amount in self.incoming[:3]]
        return "; sale proceeds settle " + ", ".join(parts)

    def _money(self, value: Decimal) -> str:
        return f"{value:,.2f} {self.currency}"


BalanceSource = Callable[[], Mapping[str, Balance]]
"""The balances the accounts last reported, by account (the manager's snapshot)."""


class CashLedger:
    """Settled cash of the cash accounts, kept current from the manager's events (``on_event``,
    a manager listener) and the balances it last read (``balances``).

    ``generation`` changes whenever the set of cash accounts does: the risk engine plans its
    checks again then. ``reservation_seconds``: how long a buy that passed the check counts
    as working before the broker has said anything about it."""

    def __init__(
        self,
        balances: BalanceSource,
        *,
        clock: Callable[[], datetime] = utcnow,
        reservation_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        history: FillHistory | None = None,
    ) -> None:
        self._balances = balances
        self._history = history
        self._clock = clock
        self._monotonic = monotonic
        self._reservation_seconds = reservation_seconds
        self._seen: Mapping[str, Balance] | None = None
        self.cash_accounts: frozenset[str] = frozenset()
        self.generation = 0
        self._rows: dict[str, dict[str, PendingSettlement]] = {}
        self._instruments: dict[str, Instrument] = {}
        # account -> client_order_id -> (cost per unit still to fill, remaining quantity)
        self._working: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}
        self._reserved: dict[str, tuple[str, float]] = {}
        # Whether fills from before this ledger started were given (``add_rows``, or read from
        # ``history`` when a cash account is first seen): without them a split worked out here
        # would count an older sale's unsettled proceeds as settled. ``history_gap`` says why
        # they could not be read.
        self.has_history = False
        self.history_gap: str | None = None
        # Fills that came before the settlement calendars had loaded, to be dated once they have.
        self._undated: list[tuple[str, Fill, Instrument]] = []

    # -- what the accounts are ------------------------------------------------------------
    def sync(self) -> None:
        """Take in the balances if they were read again since last time."""
        balances = self._balances()
        if balances is self._seen:
            return
        self._seen = balances
        cash = frozenset(name for name, balance in balances.items() if balance.cash_account)
        if cash != self.cash_accounts:
            self.cash_accounts = cash
            self.generation += 1
            if cash:
                warm_up()
                self._take_history()

    def _take_history(self) -> None:
        """Read the journal's recent fills if they are wanted and not read yet. Dating them
        needs the settlement calendars: until those have loaded (in the background, just
        after start) it waits for a later look rather than hold up the event loop."""
        history = self._history
        if history is None or self.has_history or self.history_gap is not None or not self.cash_accounts:
            return
        if calendars_loaded() and self._seen is not None:
            self._read_history(history, self._seen)

    def _read_history(self, history: FillHistory, balances: Mapping[str, Balance]) -> None:
        """Take the fills of the last ``HISTORY_DAYS`` from the journal, once: a cash account
        whose broker does not split its cash is then worked out from them after a restart."""
        since = self._clock() - timedelta(days=HISTORY_DAYS)
        try:
            if history.rows_since(since, up_to=HISTORY_ORDERS * 4 + 1) > HISTORY_ORDERS * 4:
                # orders_since reads the last ``4 x most`` rows: beyond that some would be missed.
                self.history_gap = (
                    f"the journal holds too many orders of the last {HISTORY_DAYS} days to read "
                    "back at once, so sales still settling may be missing"
                )
                return
            orders = history.orders_since(since, most=HISTORY_ORDERS)
        except Exception as exc:  # a journal that cannot be read must not stop trading in margin accounts
            log.warning("the journal's recent fills could not be read: %s", exc)
            self.history_gap = f"the journal's recent fills could not be read ({type(exc).__name__})"
            return
        currencies = {name: balance.currency for name, balance in balances.items()}
        self.add_rows(pending_from_orders(orders, currencies))

    def unknown_reason(self, account: str) -> str:
        """Why ``spendable(account)`` is None, as the end of a sentence."""
        balance = (self._seen or {}).get(account)
        if balance is None:
            return "no balance of it has been read yet"
        if self.history_gap is not None:
            return f"its broker reports no settled cash and {self.history_gap}"
        if any(waiting[0] == account for waiting in self._undated):
            return "the settlement calendars that date its fills are still loading (a moment after start)"
        if self._history is not None and not calendars_loaded():
            return (
                "its broker reports no settled cash and the settlement calendars that date its "
                "earlier fills are still loading (a moment after start)"
            )
        return "its broker reports no settled cash and its fills from before this start are not known"

    def is_cash_account(self, account: str) -> bool:
        self.sync()
        return account in self.cash_accounts

    # -- events ---------------------------------------------------------------------------
    def on_event(self, event: ManagerEvent) -> None:
        """A manager listener. An account's balance is read again when it (re)connects, so the
        set of cash accounts is looked at then; every other event costs a margin account one
        set look-up."""
        if event.account in self.cash_accounts:
            if isinstance(event, FillEvent):
                self.add_fill(event.account, event.fill)
            elif isinstance(event, OrderEvent):
                self.track(event.account, event.order)
        if isinstance(event, ConnectionEvent):
            self.sync()

    def track(self, account: str, order: Order) -> None:
        """Keep the instrument of ``order`` for its fills and, for a buy, what it still needs."""
        request = order.request
        instrument = request.instrument
        if order.broker_order_id:
            self._instruments[order.broker_order_id] = instrument
        self._instruments[request.client_order_id] = instrument
        if request.side is not Side.BUY:
            return
        working = self._working.setdefault(account, {})
        key = request.client_order_id
        self._reserved.pop(key, None)
        if request.notional is not None:
            # A notional buy's need is its money still unspent (a unit price of one).
            money = order.remaining_notional
            if not order.is_working or money <= 0:
                working.pop(key, None)
            else:
                working[key] = (Decimal(1), money)
            return
        remaining = order.remaining_quantity
        if not order.is_working or remaining is None or remaining <= 0:
            working.pop(key, None)
            return
        known = working.get(key)
        price = request.limit_price if request.limit_price is not None else request.stop_price
        unit = price * instrument.multiplier if price is not None else (known[0] if known else None)
        if unit is None and order.avg_fill_price is not None:
            unit = order.avg_fill_price * instrument.multiplier
        if unit is not None:
            working[key] = (unit, remaining)

    def add_fill(self, account: str, fill: Fill) -> None:
        instrument = None
        if fill.broker_order_id:
            instrument = self._instruments.get(fill.broker_order_id)
        if instrument is None and fill.client_order_id:
            instrument = self._instruments.get(fill.client_order_id)
        if instrument is None:
            instrument = fill.instrument
        if not calendars_loaded():
            # Dated once the calendars have loaded (just after start), not on the event loop now.
            self._undated.append((account, fill, instrument))
            return
        self._add_dated(account, fill, instrument)

    def _add_dated(self, account: str, fill: Fill, instrument: Instrument) -> None:
        balance = (self._seen or {}).get(account)
        row = settlement_for_fill(account, fill, instrument, balance.currency if balance else None)
        self._rows.setdefault(account, {})[fill.fill_id] = row
        self._prune(account)

    def _date_waiting(self) -> None:
        """Date the fills that came while the calendars loaded, once they have."""
        if self._undated and calendars_loaded():
            waiting, self._undated = self._undated, []
            for account, fill, instrument in waiting:
                self._add_dated(account, fill, instrument)

    def add_rows(self, rows: Iterable[PendingSettlement]) -> None:
        """Fills known from elsewhere (the journal at start)."""
        self.has_history = True
        for row in rows:
            self._rows.setdefault(row.account, {})[row.fill_id] = row

    def reserve(self, account: str, client_order_id: str, unit_cost: Decimal, quantity: Decimal) -> None:
        """A buy passed the check: count it as working until the broker speaks of it."""
        self._working.setdefault(account, {})[client_order_id] = (unit_cost, quantity)
        self._reserved[client_order_id] = (account, self._monotonic())

    def _prune(self, account: str) -> None:
        rows = self._rows.get(account)
        balance = (self._seen or {}).get(account)
        if not rows or balance is None or len(rows) < 64:
            return
        # Settled before the balance was read: the balance has them already.
        for fill_id in [k for k, r in rows.items() if r.settles_at < balance.timestamp]:
            del rows[fill_id]

    def _expire_reservations(self) -> None:
        if not self._reserved:
            return
        cutoff = self._monotonic() - self._reservation_seconds
        for key, (account, at) in list(self._reserved.items()):
            if at < cutoff:
                del self._reserved[key]
                self._working.get(account, {}).pop(key, None)

    # -- reading --------------------------------------------------------------------------
    def rows(self, account: str | None = None) -> list[PendingSettlement]:
        self._date_waiting()
        if account is not None:
            return sorted(self._rows.get(account, {}).values(), key=lambda r: r.executed_at)
        return sorted(
            (row for rows in self._rows.values() for row in rows.values()), key=lambda r: r.executed_at
        )

    def with_fills(self, balances: Mapping[str, Balance]) -> Mapping[str, Balance]:
        """``balances`` with each cash account's settled cash as its fills give it: beside the
        broker's figure (a difference is then shown) or, where the broker gives none, in its
        place (``with_computed``). ``balances`` itself, unchanged, while the fills from before
        this start are not known: a figure from today's fills alone would be wrong."""
        self.sync()
        self._take_history()
        self._date_waiting()
        if not self.has_history or not self.cash_accounts.intersection(balances):
            return balances
        seen = dict(balances)
        for name in self.cash_accounts.intersection(balances):
            seen[name] = with_computed(balances[name], self._rows.get(name, {}).values())
        return seen

    def pending(self, account: str | None = None, now: datetime | None = None) -> list[PendingSettlement]:
        """Fills whose cash has not settled by ``now``, soonest settlement first."""
        moment = now if now is not None else self._clock()
        rows = [row for row in self.rows(account) if row.settles_at > moment]
        rows.sort(key=lambda row: (row.settles_at, row.executed_at))
        return rows

    def spendable(self, account: str) -> Spendable | None:
        """What ``account`` may spend now; None when that cannot be known: no balance of it has
        been read, or its broker reports no settled cash and the fills before this ledger
        started are unknown."""
        self.sync()
        if not self.has_history:
            self._take_history()
        if self._undated:
            self._date_waiting()
            if any(waiting[0] == account for waiting in self._undated):
                return None  # a fill of it is still to be dated
        balance = (self._seen or {}).get(account)
        if balance is None:
            return None
        reported = (
            balance.settled_cash is not None and balance.settled_source is not SettledCashSource.UNKNOWN
        )
        if not reported and not self.has_history:
            return None
        self._expire_reservations()
        now = self._clock()
        rows = self._rows.get(account, {}).values()
        read_at = balance.timestamp
        if reported and balance.settled_cash is not None:
            settled, source = balance.settled_cash, balance.settled_source
        else:
            settled, source = balance.cash - _unsettled_at(rows, read_at), SettledCashSource.COMPUTED
        owed = _ZERO
        incoming: dict[date, Decimal] = {}
        for row in rows:
            if read_at < row.settles_at <= now:
                # Settled (or paid at once) since the balance was read: not in its settled cash.
                settled += row.amount
            elif row.settles_at > now:
                if row.amount < 0:
                    owed -= row.amount
                else:
                    incoming[row.settlement_date] = incoming.get(row.settlement_date, _ZERO) + row.amount
        working = sum((unit * quantity for unit, quantity in self._working.get(account, {}).values()), _ZERO)
        return Spendable(
            account=account,
            currency=balance.currency,
            settled=settled,
            owed=owed,
            working=working,
            incoming=tuple(sorted(incoming.items())),
            source=source,
        )


def totals_with_fills(totals: Totals, snapshot: Snapshot, ledger: CashLedger, fx: FxRates) -> Totals:
    """``totals`` (consolidated from ``snapshot``) whose settled and pending cash also says what
    the cash accounts' fills give (``CashLedger.with_fills``): the figure worked out where the
    broker reports none, and a disagreement where it reports another."""
    settlement = totals.settlement
    if settlement is None:
        return totals
    balances = ledger.with_fills(snapshot.balances)
    if balances is snapshot.balances:
        return totals
    currencies = {name: split.currency for name, split in settlement.per_account.items()}
    seen = replace(snapshot, balances=dict(balances))
    return replace(totals, settlement=consolidate_settlement(currencies, seen, fx, settlement.currency))
