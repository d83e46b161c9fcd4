"""What an order would do if sent now: where it goes, what it is worth, whether to ask first.

Built by ``ExecutionService.preview`` with the routing and splitting the order path itself uses,
so that a confirmation names exactly the accounts the order will reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .book import Book
from .intake import currency_refusal
from .models import OrderRequest
from .routing import Routes

__all__ = ["DEFAULT_CONFIRM_NOTIONAL_ABOVE", "OrderPreview", "preview_order"]

# Orders worth more than this (in the base currency) are confirmed before they are sent.
DEFAULT_CONFIRM_NOTIONAL_ABOVE = Decimal(50_000)


@dataclass(frozen=True, slots=True)
class OrderPreview:
    request: OrderRequest
    distributed: bool
    # account -> quantity it would receive (for a notional order, the amount of money), in
    # routing order; for a split order only the accounts that get a part. Empty when nothing
    # would take the order (``problem`` says why).
    targets: dict[str, Decimal]
    live_accounts: tuple[str, ...]
    base_currency: str
    # Quantity times the order's own price, else the last price, in the base currency; None
    # when there is no price or no exchange rate (``notional_note`` says which).
    notional: Decimal | None
    notional_note: str | None
    # Why the trader should confirm (a LIVE account, a large notional); empty: send at once.
    reasons: tuple[str, ...]
    problem: str | None = None

    @property
    def accounts(self) -> list[str]:
        return list(self.targets)

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.reasons)


def preview_order(
    request: OrderRequest,
    *,
    distributed: bool,
    routes: Routes,
    book: Book,
    confirm_notional_above: Decimal | None,
) -> OrderPreview:
    """The preview of ``request``, routed or split by ``routes`` and valued by ``book``."""
    problem: str | None = None
    targets: dict[str, Decimal] = {}
    if distributed:
        split = routes.split(request)
        if isinstance(split, tuple):
            problem = split[1]
        else:
            targets = split
    else:
        account = routes.account_for(request)
        refusal = routes.no_route(request) if account is None else routes.unknown_account([account])
        if refusal is not None:
            problem = refusal[1]
        elif account is not None:
            targets = {account: _size(request)}
    refused: list[str] = []
    if request.currency is not None and targets:
        # What submit refuses before its risk checks, said here; a part is never valued in a
        # currency its account does not trade.
        mismatches = {
            name: reason
            for name in targets
            if (reason := currency_refusal(request, name, routes.accounts.get(name))) is not None
        }
        if len(mismatches) == len(targets):
            unvalued = f"not valued: no account it would go to trades {request.currency}"
            problem = "; ".join(mismatches.values())
            return _preview(request, distributed, {}, (), book, None, unvalued, (), problem)
        # Some parts would go and the others be refused: sent only once the trader agrees.
        targets = {name: quantity for name, quantity in targets.items() if name not in mismatches}
        refused = [f"part refused: {reason}" for reason in mismatches.values()]
    live = tuple(name for name in targets if routes.accounts.get(name).live)
    # Each account values its part at its own price and in the currency it trades.
    if targets:
        notional, note = _total(request, targets, book)
    else:
        notional, note = _notional(request, _size(request), None, book)
    reasons = ["LIVE account", *refused] if live else refused
    if confirm_notional_above is not None and notional is not None and notional > confirm_notional_above:
        reasons.append(f"notional above {confirm_notional_above:,.2f} {book.base_currency}")
    return _preview(request, distributed, targets, live, book, notional, note, tuple(reasons), problem)


def _preview(
    request: OrderRequest,
    distributed: bool,
    targets: dict[str, Decimal],
    live: tuple[str, ...],
    book: Book,
    notional: Decimal | None,
    note: str | None,
    reasons: tuple[str, ...],
    problem: str | None,
) -> OrderPreview:
    return OrderPreview(
        request=request,
        distributed=distributed,
        targets=targets,
        live_accounts=live,
        base_currency=book.base_currency,
        notional=notional,
        notional_note=note,
        reasons=reasons,
        problem=problem,
    )


def _total(
    request: OrderRequest, targets: dict[str, Decimal], book: Book
) -> tuple[Decimal | None, str | None]:
    """The parts' values summed in the base currency; None (and why) if one cannot be valued."""
    total = Decimal(0)
    for account, quantity in targets.items():
        value, note = _notional(request, quantity, account, book)
        if (
            value is None
            and request.reference_price is None
            and book.last_price(request.instrument, account) is None
        ):
            # No price at that account (a symbol it does not list, a feed not started yet): an
            # estimate at the last price anywhere, as a single order without an account is.
            value, note = _notional(request, quantity, None, book)
        if value is None:
            return None, note
        total += value
    return total, None


def _size(request: OrderRequest) -> Decimal:
    """The quantity, or for a notional order the amount of money."""
    if request.quantity is not None:
        return request.quantity
    return request.notional or Decimal(0)


def _notional(
    request: OrderRequest, quantity: Decimal, account: str | None, book: Book
) -> tuple[Decimal | None, str | None]:
    """What ``quantity`` of the order (for a notional order, that amount of money) is worth in
    the base currency."""
    if request.notional is not None:
        currency = book.order_currency(request, account)
        value = book.to_base(quantity, currency)
        if value is None:
            return None, f"no exchange rate from {currency} to {book.base_currency}"
        return value, None
    price = request.reference_price
    if price is None:
        price = book.last_price(request.instrument, account)
    if price is None:
        return None, f"no price for {request.symbol} yet"
    # The currency was checked against the account above: what it trades, else its own.
    currency = book.order_currency(request, account)
    value = book.to_base(quantity * price, currency)
    if value is None:
        return None, f"no exchange rate from {currency} to {book.base_currency}"
    return value, None
