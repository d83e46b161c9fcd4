"""Which account an order goes to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .models import AssetClass


class RoutingRule(BaseModel):
    """First matching rule wins. Unset criteria match anything."""

    model_config = ConfigDict(extra="forbid")

    account: str
    asset_class: AssetClass | None = None
    exchange: str | None = None
    currency: str | None = None
    symbol: str | None = None  # shell-style pattern, e.g. "*.NS" or "NIFTY*"
