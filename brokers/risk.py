"""Pre-trade risk checks."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class RiskLimits(BaseModel):
    """Limits for one scope (global, or one account). Every limit is off when unset."""

    model_config = ConfigDict(extra="forbid")

    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_notional: Decimal | None = Field(default=None, gt=0)
    max_position: Decimal | None = Field(default=None, gt=0)
    price_band_percent: Decimal | None = Field(default=None, gt=0, le=100)
    max_orders_per_second: Decimal | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)
    max_open_orders: int | None = Field(default=None, gt=0)
    daily_loss_limit: Decimal | None = Field(default=None, gt=0)
    allowed_symbols: list[str] | None = None
    denied_symbols: list[str] | None = None
    duplicate_window_seconds: Decimal | None = Field(default=None, gt=0)
