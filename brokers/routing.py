"""Which account an order goes to, and how a parent order is split across accounts."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from decimal import ROUND_DOWN, Decimal
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, field_validator

from .base import AccountDirectory, Broker
from .models import MAX_DECIMALS, AssetClass, OrderRequest, RejectCode


class RoutingRule(BaseModel):
    """First matching rule wins. Unset criteria match anything."""

    model_config = ConfigDict(extra="forbid")

    account: str
    asset_class: AssetClass | None = None
    exchange: str | None = None
    currency: str | None = None
    symbol: str | None = None  # shell-style pattern, e.g. "*.NS" or "NIFTY*"

    @field_validator("exchange", "currency", "symbol")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        # Requests are upper-cased by validation, so rules are too: "nse" still matches NSE.
        return value.strip().upper() if isinstance(value, str) and value.strip() else None

    def matches(self, request: OrderRequest) -> bool:
        if self.asset_class is not None and request.asset_class is not self.asset_class:
            return False
        if self.exchange is not None and request.exchange != self.exchange:
            return False
        if self.currency is not None and request.currency != self.currency:
            return False
        return self.symbol is None or fnmatchcase(request.symbol, self.symbol)


class Router:
    def __init__(self, rules: list[RoutingRule] | None = None, default_account: str | None = None) -> None:
        self.rules = list(rules or ())
        self.default_account = default_account

    def route(self, request: OrderRequest, accounts: Collection[str]) -> str | None:
        """The explicit account, else the first rule that matches and names a known account,
        else the default account; None when nothing applies.

        An explicit account is returned even if unknown, so the caller can say so by name
        rather than silently sending the order elsewhere.
        """
        if request.account is not None:
            return request.account
        ruled = self.rule_for(request, accounts)
        if ruled is not None:
            return ruled
        if self.default_account is not None and self.default_account in accounts:
            return self.default_account
        return None

    def rule_for(self, request: OrderRequest, accounts: Collection[str]) -> str | None:
        """The account of the first rule that matches and names a known account, else None."""
        for rule in self.rules:
            if rule.account in accounts and rule.matches(request):
                return rule.account
        return None


def split_quantity(
    quantity: Decimal, weights: Mapping[str, float | Decimal], fractional: Mapping[str, bool] | None = None
) -> dict[str, Decimal]:
    """Split ``quantity`` by weight with the largest-remainder method.

    Accounts that cannot trade fractions get whole units; the rest get amounts at the finest
    step the request itself allows (``quantity``'s own precision, at most 8 places), so the parts
    always add up to exactly ``quantity``. Ties in remainder go to the larger weight, then to the
    account listed first. Accounts with zero weight get nothing and are left out.
    """
    fractional = fractional or {}
    shares = {name: Decimal(str(weight)) for name, weight in weights.items()}
    if any(not share.is_finite() or share < 0 for share in shares.values()):
        raise ValueError("weights must be finite and not negative")
    shares = {name: share for name, share in shares.items() if share > 0}
    total_weight = sum(shares.values(), Decimal(0))
    if not shares or total_weight <= 0:
        raise ValueError("at least one account needs a weight above 0")
    if quantity <= 0:
        raise ValueError("quantity must be greater than 0")

    exponent = quantity.normalize().as_tuple().exponent
    places = min(MAX_DECIMALS, max(0, -exponent if isinstance(exponent, int) else 0))
    fine = Decimal(1).scaleb(-places)
    whole_only = {name: not fractional.get(name, False) for name in shares}
    if quantity % 1 and all(whole_only.values()):
        raise ValueError(f"{quantity} cannot be split into whole units")

    order = list(shares)
    exact = {name: quantity * shares[name] / total_weight for name in order}
    parts: dict[str, Decimal] = {}
    for name in order:
        step = Decimal(1) if whole_only[name] else fine
        parts[name] = (exact[name] / step).to_integral_value(ROUND_DOWN) * step
    left = quantity - sum(parts.values(), Decimal(0))
    ranking = sorted(order, key=lambda name: (-(exact[name] - parts[name]), -shares[name], order.index(name)))
    # Hand out what rounding left over: whole units by largest remainder, then any fraction to
    # the first account that can hold it.
    while left >= 1:
        for name in ranking:
            if left < 1:
                break
            parts[name] += 1
            left -= 1
    if left > 0:
        taker = next((name for name in ranking if not whole_only[name]), None)
        if taker is None:
            raise ValueError(f"{quantity} cannot be split into whole units")
        parts[taker] += left
    return {name: _canonical(part) for name, part in parts.items() if part > 0}


def _canonical(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


_LISTED_MAX = 4096
"""Instruments remembered as listed at the default account, at most (then it starts over)."""


class Routes:
    """Where orders go among the accounts ``accounts`` knows: ``router``'s rules, else the
    default account; a parent order split by weight. Shared by the order path and the preview,
    so that what a confirmation names is what the order reaches."""

    def __init__(self, accounts: AccountDirectory, router: Router | None) -> None:
        self.accounts = accounts
        self.router = router
        # What a default account was seen to list, with the broker that listed it: a price
        # once held is evidence that does not expire, and the order path asks on every order.
        self._listed: dict[tuple[str, AssetClass, str | None, str | None, str], Broker] = {}

    def account_for(self, request: OrderRequest) -> str | None:
        """The explicit account, else the first matching rule, else an account that trades
        the instrument (``trading_account``), else the default account (the account may be
        unknown: ``unknown_account`` says so by name)."""
        if request.account is not None:
            return request.account
        router = self.router
        default = self.accounts.default_account
        if router is not None:
            names = self.accounts.names()
            ruled = router.rule_for(request, names)
            if ruled is not None:
                return ruled
            if router.default_account in names:
                default = router.default_account
        return self.trading_account(request, default)

    def trading_account(self, request: OrderRequest, default: str | None) -> str | None:
        """Where an order no rule places goes when there is a default account, among the accounts that trade its instrument
        (``Broker.trades``): the default account when it holds a price for it, or when another
        account in the default's currency does (the symbol is listed in that market); else the
        first account in another currency that holds a price (the symbol is listed there, not
        in the default's market); else the default account when it trades it, else the first
        account that does, else the default account, whose refusal then says why.

        A price held in memory is the evidence that an account lists a symbol whose currency
        the order leaves open: an INR share held at an INR account is priced there and nowhere
        else, and an order for it never goes to a USD default that has no price for it."""
        if default is None:
            return None  # no default account: only an explicit account or a rule places it
        accounts = self.accounts
        try:
            home = accounts.get(default)
        except KeyError:
            return default  # refused by name as an unknown account
        seen = (request.symbol, request.asset_class, request.exchange, request.currency, default)
        if self._listed.get(seen) is home:
            return default
        instrument = request.instrument
        home_trades = home.trades(instrument)
        if home_trades and accounts.last_price(instrument, default) is not None:
            if len(self._listed) >= _LISTED_MAX:
                self._listed.clear()
            self._listed[seen] = home
            return default
        elsewhere: str | None = None
        first: str | None = None
        for name in accounts.names():
            if name == default:
                continue
            broker = accounts.get(name)
            if not broker.trades(instrument):
                continue
            first = first or name
            if accounts.last_price(instrument, name) is None:
                continue
            if broker.currency == home.currency:
                return default if home_trades else name
            elsewhere = elsewhere or name
        if elsewhere is not None:
            return elsewhere
        if home_trades:
            return default
        return first or default

    @staticmethod
    def no_route(request: OrderRequest) -> tuple[RejectCode, str]:
        return (
            RejectCode.NO_ROUTE,
            f"no account takes {request.symbol}: no routing rule matches and there is no "
            f"default account; choose an account",
        )

    def unknown_account(self, names: Iterable[str]) -> tuple[RejectCode, str] | None:
        """The refusal for the first name that is not an account, or None."""
        known = self.accounts.names()
        unknown = next((name for name in names if name not in known), None)
        if unknown is None:
            return None
        return (
            RejectCode.UNKNOWN_ACCOUNT,
            f"unknown account {unknown!r} (accounts: {', '.join(known) or 'none are configured'})",
        )

    def split(
        self, request: OrderRequest, weights: Mapping[str, float] | None = None
    ) -> dict[str, Decimal] | tuple[RejectCode, str]:
        """account -> quantity by weight (the accounts' own weights by default), leaving out
        the accounts that get nothing; or why the order cannot be split."""
        chosen = dict(weights) if weights is not None else self.accounts.weights()
        unknown = self.unknown_account(chosen)
        if unknown is not None:
            return unknown
        if request.quantity is None:
            return (
                RejectCode.UNSUPPORTED,
                "a notional (amount of money) order goes to one account; name the account",
            )
        fractional = {name: self.accounts.get(name).capabilities.fractional_quantities for name in chosen}
        try:
            return split_quantity(request.quantity, chosen, fractional)
        except ValueError as exc:
            return RejectCode.UNSUPPORTED, f"cannot split the order: {exc}"
