"""The paper broker: matching engine, seeded price feed, accounting and fault injection."""

from __future__ import annotations

from .broker import SimBroker
from .clock import ManualClock
from .faults import SimFaults

__all__ = ["ManualClock", "SimBroker", "SimFaults"]
