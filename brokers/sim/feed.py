"""A seeded random-walk price feed.

Each step multiplies a price by ``exp(N(0, volatility))``: a log-normal walk never reaches zero,
and the same seed gives the same path on every machine (the float arithmetic is IEEE-exact and
the result is turned into a Decimal through ``repr``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

DEFAULT_VOLATILITY = 0.001
"""Standard deviation of one step's log return: 0.1 %, a lively but believable tape at a few
steps per second."""

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")


def tick_size(price: Decimal) -> Decimal:
    # US equities quote in cents at or above $1 and in hundredths of a cent below it (Reg NMS
    # rule 612); good enough for every asset class the paper broker pretends to trade.
    return CENT if price >= 1 else SUB_PENNY


def round_to_tick(price: Decimal, tick: Decimal | None = None, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``price`` on the price grid, never below one tick."""
    step = tick if tick is not None else tick_size(price)
    rounded = (price / step).to_integral_value(rounding) * step
    return max(rounded, step).quantize(step)


def round_up_to_tick(price: Decimal, tick: Decimal | None = None) -> Decimal:
    return round_to_tick(price, tick, ROUND_CEILING)


def round_down_to_tick(price: Decimal, tick: Decimal | None = None) -> Decimal:
    return round_to_tick(price, tick, ROUND_FLOOR)


class RandomWalkFeed:
    def __init__(
        self, seed: int | None = None, volatility: float = DEFAULT_VOLATILITY, tick: Decimal | None = None
    ) -> None:
        if not math.isfinite(volatility) or volatility < 0:
            raise ValueError(f"volatility must be a finite number of at least 0, not {volatility!r}")
        self.volatility = volatility
        self.tick = tick
        self._random = random.Random(seed)

    def next_price(self, price: Decimal) -> Decimal:
        shock = self._random.gauss(0.0, self.volatility)
        return round_to_tick(price * Decimal(repr(math.exp(shock))), self.tick)

    def step(self, prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """One move of every symbol. Symbols are visited in sorted order so the path depends on
        the seed alone, not on the order prices were added."""
        return {symbol: self.next_price(prices[symbol]) for symbol in sorted(prices)}
