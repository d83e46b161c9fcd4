"""Whether an order needs the trader's confirmation before it goes out, and what to show them:
where it would go, which of those accounts are LIVE, its notional in the base currency."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from brokers.models import OrderRequest
from console import formatting as fmt

if TYPE_CHECKING:
    from brokers.config import Config
    from brokers.runtime import Runtime


@dataclass(frozen=True)
class Confirmation:
    targets: list[str]
    live: list[str]
    notional: Decimal | None
    reasons: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.reasons)


def confirmation_for(
    config: Config, runtime: Runtime, request: OrderRequest, distributed: bool
) -> Confirmation:
    """Every order to a LIVE account asks; so does one whose notional is above
    ``ui.confirm_notional_above``."""
    targets = config.order_targets(request, distributed)
    live_accounts = {account.name for account in config.accounts if account.live}
    live = [name for name in targets if name in live_accounts]
    notional = _notional(config, runtime, request, targets)
    reasons: list[str] = []
    if live:
        reasons.append("LIVE account")
    threshold = config.ui.confirm_notional_above
    if threshold is not None and notional is not None and notional > threshold:
        reasons.append(f"notional above {fmt.amount(threshold)} {config.base_currency}")
    return Confirmation(targets, live, notional, reasons)


def _notional(config: Config, runtime: Runtime, request: OrderRequest, targets: list[str]) -> Decimal | None:
    """Quantity times the order's own price, else the last price, in the base currency."""
    price = request.reference_price
    account = targets[0] if len(targets) == 1 else None
    if price is None:
        try:
            price = runtime.manager.last_price(request.symbol, account)
        except Exception:
            price = None
    if price is None:
        return None
    currencies = {a.name: a.currency for a in config.accounts}
    currency = request.currency or currencies.get(account or "", config.base_currency)
    return runtime.fx.convert(request.quantity * price, currency).amount
