"""What the screen reads of the market: where a symbol would be traded, its latest quote, and
what an order for it would cost, in the account's currency and the base currency.

The order ticket and the watchlist both ask here, so a symbol is quoted from the account an
order for it would reach and the estimate under the ticket is priced as that order would be.
Subscriptions stay with the manager's quote board: this only tells it what each part of the
screen wants (``want``).

Whether a symbol exists at all is each broker's answer (``Broker.listing``), asked in the
background (``ask_listing``, which the ticket calls once the trader pauses) and read here from
what the brokers keep: a symbol is "unknown" only when every account that would take the order
has said it does not list it. No answer, a failure or a timeout leaves it "no price yet".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from pydantic import ValidationError

from brokers.base import AccountDirectory, Broker
from brokers.fx import Money
from brokers.instruments import Instrument
from brokers.models import OrderRequest, OrderType, Side
from brokers.quotes import Listing, Quote, StreamOutage

__all__ = ["Estimate", "Market", "QuoteBoardView", "SymbolLook", "estimate_price"]

UNKNOWN_SYMBOL = "unknown symbol"
NO_PRICE_YET = "no price yet"
LOOKUP_TIMEOUT = 5.0
"""Seconds one broker may take to say whether it lists a symbol; a broker that does not answer
in time leaves the symbol "no price yet"."""


class QuoteBoardView(Protocol):
    """What the screen uses of ``brokers.quote_board.QuoteBoard``."""

    def want(self, owner: str, instruments: Iterable[Instrument]) -> None: ...

    def quote(self, instrument: Instrument) -> Quote | None: ...

    def source(self, instrument: Instrument) -> str | None: ...

    def take_changed(self) -> set[Instrument]: ...

    def add_listener(self, listener: Callable[[Quote], object]) -> None: ...

    def remove_listener(self, listener: Callable[[Quote], object]) -> None: ...

    def add_outage_listener(self, listener: Callable[[str, StreamOutage], object]) -> None: ...


Route = Callable[[OrderRequest], "str | None"]
"""Where the order path would send a request (``Routes.account_for``)."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """Quantity times the price the order would trade at, in the account's currency and the
    base currency; ``price_from`` names where the price came from (limit, stop, ask, ...)."""

    amount: Decimal
    currency: str
    base: Money
    price_from: str


@dataclass(frozen=True, slots=True)
class SymbolLook:
    """One symbol as the screen shows it: the instrument, the account an order would reach,
    its quote, and what is wrong (``unknown symbol``, ``no price yet``) when something is."""

    instrument: Instrument
    account: str | None
    quote: Quote | None
    problem: str | None
    note: str | None = None
    """Said beside the quote but not in the way of an order (an account that does not list it)."""


class Market:
    def __init__(self, accounts: AccountDirectory, board: QuoteBoardView, route: Route) -> None:
        self.accounts = accounts
        self.board = board
        self._route = route

    def currency_of(self, account: str | None) -> str | None:
        if account is None:
            return None
        try:
            return self.accounts.get(account).currency
        except KeyError:
            return None

    def route(self, request: OrderRequest) -> str | None:
        """The account the order path would send ``request`` to; None when none would take it
        or the account is not one of ours."""
        try:
            account = self._route(request)
        except Exception:
            return None
        return account if account in self.accounts.names() else None

    def _takers(self, request: OrderRequest) -> tuple[str | None, Instrument, list[str], list[str]]:
        """Where ``request`` would go, its instrument in that account's currency, the accounts
        that trade it, and those that would take the order: the account it names, else every
        account that trades it."""
        account = self.route(request)
        instrument = request.instrument
        currency = self.currency_of(account)
        if currency is not None:
            instrument = instrument.in_currency(currency)
        traders = [name for name in self.accounts.names() if self.accounts.get(name).trades(instrument)]
        if request.account is not None:
            takers = [request.account] if request.account in traders else []
        else:
            takers = traders
        return account, instrument, traders, takers

    def look_at(self, request: OrderRequest) -> SymbolLook:
        """``request``'s instrument, in the currency of the account it would reach."""
        account, instrument, traders, takers = self._takers(request)
        quote = self.board.quote(instrument)
        listings = {name: self.accounts.get(name).listing_nowait(instrument) for name in takers}
        problem: str | None = None
        note: str | None = None
        if not traders or (listings and all(each is Listing.NOT_LISTED for each in listings.values())):
            problem = UNKNOWN_SYMBOL
        elif quote is None or (quote.price is None and quote.bid is None and quote.ask is None):
            problem = NO_PRICE_YET
        if account is not None and traders and account not in traders:
            note = f"{account} does not list {instrument.label}"
        elif account is not None and listings.get(account) is Listing.NOT_TRADABLE:
            note = f"{account} lists {instrument.label} but does not trade it now"
        elif (
            account is not None and listings.get(account) is Listing.NOT_LISTED and problem != UNKNOWN_SYMBOL
        ):
            note = f"{account} does not list {instrument.label}"
        return SymbolLook(instrument, account, quote, problem, note)

    def listing_key(self, request: OrderRequest) -> tuple[Instrument, str | None, tuple[str, ...]]:
        """What ``ask_listing`` would ask about: an answer is for this, and for nothing else."""
        _, instrument, _, takers = self._takers(request)
        return instrument, instrument.currency, tuple(takers)

    def unanswered(self, request: OrderRequest) -> bool:
        """Whether some account that would take ``request`` has not said whether it lists the
        instrument (it failed, timed out, or was not asked yet)."""
        _, instrument, _, takers = self._takers(request)
        return any(self.accounts.get(name).listing_nowait(instrument) is None for name in takers)

    async def ask_listing(self, request: OrderRequest) -> None:
        """Ask every account that would take ``request`` whether it lists the instrument, each
        within ``LOOKUP_TIMEOUT``; the brokers keep the answers, which ``look_at`` reads. Never
        on the order path: only the screen waits on this."""
        _, instrument, _, takers = self._takers(request)
        brokers = [self.accounts.get(name) for name in takers]
        if not brokers:
            return

        async def ask(broker: Broker) -> None:
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT):
                    await broker.listing(instrument)
            except Exception:  # no answer: the symbol stays "no price yet"
                return

        await asyncio.gather(*(ask(broker) for broker in brokers))

    def look_up(self, symbol: str) -> SymbolLook | None:
        """A bare symbol (a watchlist's), looked at as an order for it would be; None when it
        cannot be a symbol at all."""
        try:
            request = OrderRequest(symbol=symbol, side=Side.BUY, quantity=Decimal(1))
        except ValidationError:
            return None
        return self.look_at(request)

    def estimate(self, request: OrderRequest, look: SymbolLook) -> Estimate | None:
        """What ``request`` would cost at its own price, else at the quote's side it would
        trade against; None without a price or an account currency."""
        currency = self.currency_of(look.account) or self.currency_of(self.accounts.default_account)
        if currency is None:
            return None
        if request.notional is not None:
            amount, source = request.notional, "amount"
        else:
            priced = estimate_price(request, look.quote)
            if priced is None or request.quantity is None:
                return None
            price, source = priced
            amount = look.instrument.notional(request.quantity, price)
        return Estimate(amount, currency, self.accounts.fx.convert(amount, currency), source)


def estimate_price(request: OrderRequest, quote: Quote | None) -> tuple[Decimal, str] | None:
    """The price an order would trade at, and its name: its limit, else its stop, else the ask
    for a buy and the bid for a sell, else the last price (or the mid)."""
    if request.limit_price is not None:
        return request.limit_price, "limit"
    if request.stop_price is not None and request.order_type is OrderType.STOP:
        return request.stop_price, "stop"
    if quote is None:
        return None
    side = quote.ask if request.side is Side.BUY else quote.bid
    if side is not None:
        return side, "ask" if request.side is Side.BUY else "bid"
    if quote.price is not None:
        return quote.price, "last" if quote.last is not None else "mid"
    return None
