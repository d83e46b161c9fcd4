"""A read-only account: positions and cash from a broker's position export (Fidelity, Vanguard,
or any CSV with a column map), for brokers this console cannot trade through. They join the
consolidated positions and totals; every order is refused.

The file is read again whenever it changes (its size or modification time), at the next read of
positions or balance. The account's last refresh is the file's modification time, so its figures
show "as of" when the export was written, not when it was read; rows that could not be read are
named with their line numbers in ``last_error``, and the other rows are kept.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ...base import Broker
from ...errors import BrokerAPIError, OrderNotFoundError, OrderRejectedError
from ...instruments import Instrument, instrument_of
from ...models import (
    AssetClass,
    Balance,
    BrokerCapabilities,
    ConnectionState,
    MarginInfo,
    Order,
    OrderRequest,
    Position,
)
from .layouts import FIDELITY, Layout
from .reader import Export, read_export
from .settings import read_settings

__all__ = ["READ_ONLY", "CsvBroker"]

READ_ONLY = "READ_ONLY"


class ReadOnlyCapabilities(BrokerCapabilities):
    """What a file can trade: nothing."""

    source: str = ""

    def supports(self, request: OrderRequest) -> str | None:
        return f"this account is read-only (positions imported from {self.source}): it takes no orders"


@dataclass(frozen=True, slots=True)
class _Stamp:
    size: int
    mtime_ns: int


class CsvBroker(Broker):
    broker_type = "csv"

    def __init__(
        self,
        name: str = "csv",
        *,
        path: str | Path = "positions.csv",
        layout: Layout = FIDELITY,
        live: bool = False,
        currency: str = "USD",
    ) -> None:
        super().__init__(name, live=False, currency=currency)
        self.path = Path(path)
        self.layout = layout
        self._capabilities = ReadOnlyCapabilities(
            order_types=frozenset(),
            time_in_force=frozenset(),
            asset_classes=frozenset({AssetClass.STOCK}),
            streaming_updates=False,
            short_selling=False,
            bulk_cancel=True,  # there is never anything to cancel
            currencies=frozenset({currency}),
            source=f"{layout.title} export {self.path.name}",
        )
        self._state = ConnectionState.DISCONNECTED
        self._stamp: _Stamp | None = None
        self._export = Export()
        self._as_of: datetime | None = None
        self._error: str | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> CsvBroker:
        read = read_settings(settings)
        return cls(read.name, path=read.path, layout=read.layout, currency=read.currency)

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    # -- the file -------------------------------------------------------------------------
    @property
    def as_of(self) -> datetime | None:
        """When the export was written (its modification time)."""
        return self._as_of

    @property
    def last_refresh(self) -> datetime | None:
        return self._as_of

    @property
    def figures_as_of(self) -> datetime | None:
        return self._as_of

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._error

    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    async def connect(self) -> None:
        self._stamp = None
        self._state = ConnectionState.CONNECTING
        try:
            await self._current()
        except BrokerAPIError as exc:
            self._state, self._error = ConnectionState.FAILED, exc.message
            raise
        self._state = ConnectionState.CONNECTED

    async def disconnect(self) -> None:
        self._state = ConnectionState.DISCONNECTED

    async def _current(self) -> Export:
        """The export as the file holds it now, read again only if the file changed."""
        async with self._lock:
            try:
                info = await asyncio.to_thread(os.stat, self.path)
            except OSError as exc:
                raise BrokerAPIError(
                    f"cannot read the position export {self.path}: {exc.strerror or type(exc).__name__}",
                    broker=self.name,
                ) from None
            stamp = _Stamp(info.st_size, info.st_mtime_ns)
            if stamp != self._stamp:
                try:
                    text = await asyncio.to_thread(
                        self.path.read_text, encoding="utf-8-sig", errors="replace"
                    )
                except OSError as exc:
                    raise BrokerAPIError(
                        f"cannot read the position export {self.path}: {exc.strerror or type(exc).__name__}",
                        broker=self.name,
                    ) from None
                self._export = read_export(text, self.layout)
                self._stamp = stamp
                self._as_of = datetime.fromtimestamp(info.st_mtime_ns / 1e9, UTC)
                problems = self._export.problems
                self._error = (
                    None
                    if not problems
                    else f"{len(problems)} row(s) of {self.path.name} skipped: " + "; ".join(problems[:5])
                )
            return self._export

    # -- account --------------------------------------------------------------------------
    async def get_positions(self) -> list[Position]:
        export = await self._current()
        return [
            Position(
                symbol=h.symbol,
                quantity=h.quantity,
                avg_price=h.average_cost,
                account=self.name,
                asset_class=AssetClass.STOCK,
                currency=self.currency,
                last_price=h.price,
            )
            for h in export.holdings
            if h.quantity
        ]

    async def get_balance(self) -> Balance:
        export = await self._current()
        worth = sum((h.quantity * h.price for h in export.holdings if h.price is not None), Decimal(0))
        return Balance(
            account=self.name,
            currency=self.currency,
            cash=export.cash,
            equity=export.cash + worth,
            buying_power=Decimal(0),  # nothing can be bought here
            timestamp=self._as_of or datetime.now(UTC),
        )

    async def get_margin(self) -> MarginInfo:
        return MarginInfo(account=self.name, currency=self.currency)

    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        return self.last_price_nowait(instrument)

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        """The export's price of a holding of that very instrument (the file's, as of its time)."""
        return next(
            (
                h.price
                for h in self._export.holdings
                if instrument_of(h.symbol, AssetClass.STOCK) == instrument
            ),
            None,
        )

    # -- orders: none ---------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        raise OrderRejectedError(
            self._capabilities.supports(request) or "read-only account", broker=self.name, code=READ_ONLY
        )

    async def cancel_order(self, broker_order_id: str) -> Order:
        raise OrderNotFoundError(f"a read-only account has no order {broker_order_id}", broker=self.name)

    async def cancel_all_orders(self) -> list[str]:
        return []

    async def get_order(self, broker_order_id: str) -> Order:
        raise OrderNotFoundError(f"a read-only account has no order {broker_order_id}", broker=self.name)

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return None

    async def get_open_orders(self) -> list[Order]:
        return []
