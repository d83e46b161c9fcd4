"""What an order would do if sent now: where it goes, what it is worth, whether to ask first.

Built by ``ExecutionService.preview`` with the routing and splitting the order path itself uses,
so that a confirmation names exactly the accounts the order will reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .book import Book
from .models import OrderRequest
from .routing import Routes

__all__ = ["DEFAULT_CONFIRM_NOTIONAL_ABOVE", "OrderPreview", "preview_order"]

# Orders worth more than this (in the base currency) are confirmed before they are sent.
DEFAULT_CONFIRM_NOTIONAL_ABOVE = Decimal(50_000)


@dataclass(frozen=True, slots=True)
class OrderPreview:
    request: OrderRequest
    distributed: bool
    # account -> quantity it would receive, in routing order; for a split order only the
    # accounts that get a part. Empty when nothing would take the order (``problem`` says why).
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
            targets = {account: request.quantity}
    live = tuple(name for name in targets if routes.accounts.get(name).live)
    # A lone account values the order at its own price and in its own currency.
    only = next(iter(targets)) if len(targets) == 1 else None
    notional, note = _notional(request, only, book)
    reasons = ["LIVE account"] if live else []
    if confirm_notional_above is not None and notional is not None and notional > confirm_notional_above:
        reasons.append(f"notional above {confirm_notional_above:,.2f} {book.base_currency}")
    return OrderPreview(
        request=request,
        distributed=distributed,
        targets=targets,
        live_accounts=live,
        base_currency=book.base_currency,
        notional=notional,
        notional_note=note,
        reasons=tuple(reasons),
        problem=problem,
    )


def _notional(request: OrderRequest, account: str | None, book: Book) -> tuple[Decimal | None, str | None]:
    price = request.reference_price
    if price is None:
        price = book.last_price(request.symbol, account)
    if price is None:
        return None, f"no price for {request.symbol} yet"
    currency = book.order_currency(request, account)
    value = book.to_base(request.quantity * price, currency)
    if value is None:
        return None, f"no exchange rate from {currency} to {book.base_currency}"
    return value, None
