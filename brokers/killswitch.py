"""The kill switch and the persisted SYSTEM_HALTED flag."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HaltSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel_open_orders: bool = True
    poll_interval_ms: int = Field(default=100, ge=10, le=250)
