"""Currency conversion for consolidation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class FxSettings(BaseModel):
    """Rates as "USDINR" = 83.25, meaning 1 USD buys 83.25 INR."""

    model_config = ConfigDict(extra="forbid")

    rates: dict[str, Decimal] = Field(default_factory=dict)
    as_of: datetime | None = None
    stale_after_seconds: int = Field(default=86_400, gt=0)
