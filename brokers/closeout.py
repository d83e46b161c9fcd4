"""Cancel-all short of a halt, and flatten: what they will do, worked out before anything is sent,
so that a confirmation can list every order they will cancel or send.

Flatten closes each position with a market order through the ordinary order path (kill switch,
routing to the position's own account, risk, journal): allowed while REDUCING, since a closing
order shrinks its position, and refused with SYSTEM_HALTED while HALTED, as any order is. The
working orders in the instruments being closed are cancelled first, so that none of them reopens
the position and, while REDUCING, none counts against the closing order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .fanout import CancelAllResult, describe_error
from .instruments import Instrument, normalize_symbol
from .models import AssetClass, Order, OrderRequest, OrderType, Side

log = logging.getLogger(__name__)

__all__ = [
    "FlattenPlan",
    "cancel_each",
    "close_out",
    "closing_request",
    "matches_symbol",
    "orders_to_cancel",
    "outcome_record",
    "plan_flatten",
]

_ZERO = Decimal(0)


def _spellings(symbol: str) -> set[str]:
    text = symbol.strip().upper()
    return {text, text.replace("/", ""), normalize_symbol(text, AssetClass.CRYPTO)}


def matches_symbol(instrument: Instrument, symbol: str | Instrument | None) -> bool:
    """Whether ``instrument`` is what a trader means by ``symbol`` (None: everything). A symbol
    typed names every instrument of that symbol; an ``Instrument`` (a row on screen: the AAPL CFD,
    not the shares) names only itself."""
    if symbol is None:
        return True
    if isinstance(symbol, Instrument):
        return instrument == symbol
    wanted = _spellings(symbol)
    return instrument.symbol.upper() in wanted or instrument.symbol.replace("/", "").upper() in wanted


def orders_to_cancel(
    orders: Iterable[Order], account: str | None, symbol: str | Instrument | None
) -> list[Order]:
    """The working orders a cancel-all with these filters reaches, among ``orders``."""
    return [
        order
        for order in orders
        if order.is_working
        and order.broker_order_id is not None
        and (account is None or order.account == account)
        and matches_symbol(order.request.instrument, symbol)
    ]


def closing_request(account: str, instrument: Instrument, quantity: Decimal) -> OrderRequest | str:
    """The market order that closes ``quantity`` (signed) of ``instrument`` at ``account``, or
    why no order of ours can name it."""
    if instrument.expiry is not None or instrument.strike is not None or instrument.right is not None:
        return (
            f"{instrument.label} at {account}: a contract named by expiry, strike or right apart from "
            f"its symbol cannot be closed from here; close it at the broker"
        )
    if instrument.asset_class is AssetClass.OTHER:
        return f"{instrument.label} at {account}: not an instrument this console can trade"
    try:
        return OrderRequest(
            symbol=instrument.symbol,
            side=Side.SELL if quantity > 0 else Side.BUY,
            quantity=abs(quantity),
            order_type=OrderType.MARKET,
            account=account,
            asset_class=instrument.asset_class,
            exchange=instrument.exchange,
            currency=instrument.currency,
        )
    except ValueError as exc:
        return f"{instrument.label} at {account}: {exc}"


@dataclass(frozen=True, slots=True)
class FlattenPlan:
    """What ``flatten`` will do: cancel ``cancels``, then send ``closes``; ``skipped`` says which
    positions it leaves alone and why."""

    cancels: list[Order] = field(default_factory=list)
    closes: list[OrderRequest] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.cancels and not self.closes


def plan_flatten(
    positions: Mapping[tuple[str, Instrument], Decimal],
    working: Iterable[Order],
    accounts: Iterable[str],
    *,
    symbol: str | Instrument | None,
    account: str | None,
) -> FlattenPlan:
    """The plan for every nonzero position at ``account`` (else every account here) in ``symbol``
    (else every instrument)."""
    known = set(accounts)
    cancels: list[Order] = []
    closes: list[OrderRequest] = []
    skipped: list[str] = []
    closing: set[tuple[str, Instrument]] = set()
    for (name, instrument), quantity in sorted(
        positions.items(), key=lambda item: (item[0][0], item[0][1].symbol)
    ):
        if quantity == _ZERO or name not in known:
            continue
        if account is not None and name != account:
            continue
        if not matches_symbol(instrument, symbol):
            continue
        request = closing_request(name, instrument, quantity)
        if isinstance(request, str):
            skipped.append(request)
            continue
        closes.append(request)
        closing.add((name, instrument))
    for order in working:
        if (
            order.is_working
            and order.broker_order_id is not None
            and (order.account or "", order.request.instrument) in closing
        ):
            cancels.append(order)
    return FlattenPlan(cancels, closes, skipped)


async def cancel_each(
    cancel: Callable[[str, str], Awaitable[Order]], orders: Iterable[Order], accounts: Iterable[str]
) -> dict[str, CancelAllResult]:
    """Cancel ``orders`` one by one, all at once, with ``cancel(account, broker_order_id)``:
    the outcome per account (every one of ``accounts``, whether it had orders or not)."""
    targets = [(order.account or "", order.broker_order_id or "") for order in orders]
    results = await asyncio.gather(
        *(cancel(name, broker_id) for name, broker_id in targets), return_exceptions=True
    )
    cancelled: dict[str, list[str]] = {name: [] for name in accounts}
    errors: dict[str, list[str]] = {name: [] for name in cancelled}
    for (name, broker_id), result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            errors.setdefault(name, []).append(f"{broker_id}: {describe_error(result)}")
            cancelled.setdefault(name, [])
        else:
            cancelled.setdefault(name, []).append(broker_id)
            errors.setdefault(name, [])
    return {
        name: CancelAllResult(name, not errors[name], tuple(done), "; ".join(errors[name]) or None)
        for name, done in cancelled.items()
    }


def outcome_record(outcome: Mapping[str, CancelAllResult]) -> dict[str, dict[str, object]]:
    """A cancel-all's outcome per account, as the journal records it."""
    return {name: {"ok": r.ok, "cancelled": r.cancelled, "error": r.error} for name, r in outcome.items()}


async def close_out(
    plan: FlattenPlan,
    *,
    halted: bool,
    cancel: Callable[[str, str], Awaitable[Order]],
    submit: Callable[[OrderRequest], Awaitable[Order]],
) -> list[Order]:
    """Carry out ``plan``: cancel its working orders (not while ``halted``: nothing goes to a
    broker then, and the closing orders are refused by ``submit`` with SYSTEM_HALTED), then
    send the closing orders all at once. Returns the closing orders."""
    for note in plan.skipped:
        log.warning("flatten: %s", note)
    if not halted:
        for order in plan.cancels:
            try:
                await cancel(order.account or "", order.broker_order_id or "")
            except Exception as exc:  # each on its own: the close goes ahead and says why
                log.warning(
                    "flatten: order %s at %s could not be cancelled first: %s",
                    order.client_order_id,
                    order.account,
                    describe_error(exc),
                )
    return list(await asyncio.gather(*(submit(request) for request in plan.closes)))
