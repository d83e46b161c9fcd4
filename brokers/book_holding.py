"""One holding as the book tracks it (``BookHolding``): its position, the average prices its
P&L is counted from, and the day's figures, including today's fills read back after a restart;
and what a trading day found it at (``DayOpening``), kept so that a restart can count again what
was realised against it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import NamedTuple, Protocol

from .instruments import Instrument
from .pnl import DayActivity

__all__ = ["BookHolding", "DayOpening", "DayOpenings"]

_ZERO = Decimal(0)


class DayOpening(NamedTuple):
    """A holding as the trading day found it: its quantity and average cost at the open (None:
    not known, never a guess), and the previous close the book had for it (the day's P&L of a
    holding closed today is counted from it)."""

    quantity: Decimal
    cost: Decimal | None
    previous_close: Decimal | None = None


class DayOpenings(Protocol):
    """Where each account's holdings at the open are written, once per account and day, so that
    a restart later that day can count what was realised against them (``brokers.day_replay``
    writes them to the journal)."""

    def record_opening(self, account: str, day: date, holdings: Mapping[Instrument, DayOpening]) -> None:
        """Keep ``account``'s holdings at the open of ``day`` (those held then, none opened that
        day). Called on the event loop; must not wait on a disk."""


class BookHolding:
    """One position as the execution layer tracks it. ``basis`` is the average price for the
    day's P&L: positions carried in from before are marked at the price when first seen.

    For the P&L shown (``brokers.pnl``): ``cost`` is the average price paid (the broker's, for
    what was held before), ``day_*`` today's fills added up, ``realized_today`` what they closed
    against ``cost``, and ``previous_close`` the broker's, when it gave one."""

    __slots__ = (
        "basis",
        "cost",
        "day_cash",
        "day_commission",
        "day_quantity",
        "multiplier",
        "opening",
        "previous_close",
        "quantity",
        "realized",
        "realized_today",
    )

    def __init__(
        self, quantity: Decimal = _ZERO, basis: Decimal = _ZERO, cost: Decimal | None = None
    ) -> None:
        self.quantity = quantity
        self.basis = basis
        self.realized = _ZERO
        # Money per unit of price and quantity: contracts of an option or future move
        # ``multiplier`` times the price (set from the instrument when the holding is added).
        self.multiplier = Decimal(1)
        self.cost = basis if cost is None else cost
        self.previous_close: Decimal | None = None
        self.day_quantity = _ZERO
        self.day_cash = _ZERO
        self.day_commission = _ZERO
        # None: unknown (today's fills replayed after a restart closed a holding whose cost at
        # the open cannot be worked out again); it stays unknown until the day ends.
        self.realized_today: Decimal | None = _ZERO
        # Quantity and cost at the day's open, where the book knows them (see ``Book.openings``).
        self.opening: DayOpening | None = None

    def apply(self, signed: Decimal, price: Decimal, commission: Decimal) -> None:
        quantity = self.quantity
        self.realized -= commission
        if self.realized_today is not None:
            self.realized_today -= commission
        self.day_quantity += signed
        self.day_cash += signed * price * self.multiplier
        self.day_commission += commission
        if quantity == 0 or (quantity > 0) == (signed > 0):
            total = abs(quantity) + abs(signed)
            self.basis = (self.basis * abs(quantity) + price * abs(signed)) / total
            self.cost = (self.cost * abs(quantity) + price * abs(signed)) / total
            self.quantity = quantity + signed
            return
        closed = min(abs(signed), abs(quantity))
        direction = 1 if quantity > 0 else -1
        self.realized += closed * (price - self.basis) * self.multiplier * direction
        if self.realized_today is not None:
            self.realized_today += closed * (price - self.cost) * self.multiplier * direction
        self.quantity = quantity + signed
        if self.quantity == 0:
            self.basis = self.cost = _ZERO
        elif (self.quantity > 0) != (quantity > 0):
            self.basis = self.cost = price  # flipped: the remainder was opened at this price

    def new_day(self, last: Decimal | None) -> None:
        self.realized = self.realized_today = _ZERO
        self.day_quantity = self.day_cash = self.day_commission = _ZERO
        if last is not None:
            self.basis = last
        # Yesterday's last price is the nearest thing to its close the book has seen.
        self.previous_close = last
        # Held through the change of day: the day opens with what the book holds.
        self.opening = DayOpening(self.quantity, self.cost if self.quantity else _ZERO)

    def activity(self) -> DayActivity:
        return DayActivity(
            self.day_quantity, self.day_cash, self.day_commission, self.realized_today, self.previous_close
        )

    @property
    def traded_today(self) -> bool:
        realized = self.realized_today
        return realized is None or bool(self.day_quantity or self.day_cash or self.day_commission or realized)

    def replay(self, fills: list[tuple[Decimal, Decimal, Decimal]], opened: DayOpening | None) -> None:
        """Add today's fills read back after a restart (signed quantity, price, commission,
        oldest first) to the day's figures, the quantity and cost now being the broker's, which
        already include them. ``opened``: the holding at the open as recorded that day, if an
        opening was recorded for the account (a holding it does not name opened at nothing).

        The quantity at the open is the quantity now less the fills. Its cost is worked back
        from the broker's average now: each fill that adds to a holding averages its cost, one
        that reduces it leaves the cost alone, so the cost now is ``a x cost at the open + b``
        for as long as the holding has not gone through nothing. Realised P&L is known when no
        fill closed against the cost at the open, or when that cost can be worked back; else
        it is unknown (None), never a guess. Fills counted here before (an account whose fills
        came before its positions) leave the cost now not the one these fills led to.

        The recorded opening is taken first when its quantity is the one worked back (the fills
        then account for every change since): a holding carried in and closed or flipped
        through nothing today has no cost now to work back from."""
        multiplier = self.multiplier
        fresh = not self.traded_today
        net = sum((signed for signed, _, _ in fills), _ZERO)
        quantity = self.quantity - self.day_quantity - net
        at_open = quantity
        # cost = a x opening cost + b; realised = known + per x opening cost
        a, b = Decimal(1), _ZERO
        known = per = _ZERO
        for signed, price, commission in fills:
            known -= commission
            self.day_quantity += signed
            self.day_cash += signed * price * multiplier
            self.day_commission += commission
            if quantity == 0 or (quantity > 0) == (signed > 0):
                total = abs(quantity) + abs(signed)
                a, b = a * abs(quantity) / total, (b * abs(quantity) + price * abs(signed)) / total
                quantity += signed
                continue
            closed = min(abs(signed), abs(quantity))
            direction = 1 if quantity > 0 else -1
            known += closed * (price - b) * multiplier * direction
            per -= closed * a * multiplier * direction
            was = quantity
            quantity += signed
            if quantity == 0:
                a, b = _ZERO, _ZERO
            elif (quantity > 0) != (was > 0):
                a, b = _ZERO, price
        realized: Decimal | None = known
        cost: Decimal | None = None
        if at_open == 0:
            cost = _ZERO
        elif opened is not None and opened.quantity == at_open and opened.cost is not None:
            cost = opened.cost
            realized = known + per * cost
        elif fresh and quantity != 0 and a != 0:
            cost = (self.cost - b) / a
            realized = known + per * (self.cost - b) / a
        elif per:
            realized = None
        self.opening = DayOpening(at_open, cost)
        if realized is None or self.realized_today is None:
            self.realized_today = None
        else:
            self.realized_today += realized
