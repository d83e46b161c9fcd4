"""The paper venue's quotes: a bid one tick under the last price and an ask one tick over it,
sizes in round lots, and the previous close of every symbol.

The paper venue fills at its last price; the bid and ask are there so that a screen shows what a
real feed shows. Sizes come from a random source of their own, so that quoting never changes the
seeded price path.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from ..instruments import Instrument
from ..quotes import Quote, QuoteState
from .feed import tick_size

_LOTS = tuple(Decimal(100 * lots) for lots in range(1, 21))


class QuoteMaker:
    def __init__(
        self, account: str, prices: Mapping[str, Decimal], seed: int | None, tick: Decimal | None
    ) -> None:
        self.account = account
        self.tick = tick
        self._closes: dict[str, Decimal] = dict(prices)
        self._sizes = random.Random(None if seed is None else seed ^ 0x51AB)

    def previous_close(self, symbol: str) -> Decimal | None:
        return self._closes.get(symbol)

    def priced(self, symbol: str, price: Decimal) -> None:
        """A symbol's first price is its previous close until the day ends."""
        self._closes.setdefault(symbol, price)

    def close_day(self, prices: Mapping[str, Decimal]) -> None:
        """Today's last prices become the previous closes."""
        self._closes.update(prices)

    def quote(
        self,
        instrument: Instrument,
        symbol: str,
        price: Decimal,
        at: datetime,
        state: QuoteState = QuoteState.LIVE,
    ) -> Quote:
        tick = self.tick if self.tick is not None else tick_size(price)
        bid = price - tick
        choice = self._sizes.choice
        return Quote(
            instrument,
            self.account,
            at,
            bid=bid if bid > 0 else None,
            ask=price + tick,
            last=price,
            bid_size=choice(_LOTS),
            ask_size=choice(_LOTS),
            previous_close=self._closes.get(symbol),
            state=state,
        )

    def quotes(
        self, streamed: Mapping[str, Iterable[Instrument]], prices: Mapping[str, Decimal], at: datetime
    ) -> list[Quote]:
        """A LIVE quote of every streamed instrument among the symbols in ``prices``."""
        made: list[Quote] = []
        for symbol, price in prices.items():
            instruments = streamed.get(symbol)
            if instruments:
                made.extend(self.quote(instrument, symbol, price, at) for instrument in instruments)
        return made
