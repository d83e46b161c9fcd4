"""The ccxt adapter: one account at a crypto venue (Kraken, Binance.US, Coinbase Advanced Trade),
through ccxt's asyncio client.

``CcxtBroker`` composes the parts that do the work:

- ``session``: the ccxt client (ccxt is imported on connecting, never before), its calls and
  errors, the state of the link;
- ``mirror``: our copy of every order at the venue, and the fills read from its trades;
- ``orders``: placing (after the market's precision and minimums are checked), cancelling, looking
  up and listing orders, and the poll that stands in for a push channel;
- ``updates``: the poll's timer and the venue's cancel-all-after timer;
- ``stream``: order and fill updates from the venue's websocket (ccxt.pro) where it has one, with
  the polls as the fallback;
- ``account``: balances, and each coin held as a position valued in the account's currency.

Crypto trades around the clock: there is no session close and no DAY time in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from decimal import Decimal

from ...credentials import redact
from ...errors import BrokerError
from ...instruments import Instrument
from ...models import AssetClass, BrokerCapabilities, Order, OrderRequest
from ..composed import ComposedBroker
from .account import AccountReads
from .mirror import OrderMirror
from .orders import OrderDesk
from .session import CcxtSession
from .settings import Venue, capabilities_for, check_paper, read_settings, venue_of
from .stream import OrderStream
from .updates import DeadMansSwitch, OrderPoller
from .wire import market_symbol

log = logging.getLogger(__name__)

__all__ = ["CcxtBroker"]


class CcxtBroker(ComposedBroker[CcxtSession, OrderDesk, AccountReads]):
    """One account at a crypto venue. Keys: "api_key" and "secret_key" in the keyring, else the
    environment variables named by ``key_env`` and ``secret_env``."""

    broker_type = "ccxt"
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "ccxt",
        *,
        exchange: str = "kraken",
        live: bool = False,
        currency: str = "USD",
        base_url: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 2.0,
        request_interval: float | None = None,
        cancel_after_seconds: int = 60,
        key_env: str = "CCXT_API_KEY",
        secret_env: str = "CCXT_SECRET_KEY",
        order_stream: bool | None = None,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        self.exchange_id = exchange
        self.venue: Venue = venue_of(exchange, f"ccxt account {name!r}")
        check_paper(exchange, live, base_url, f"ccxt account {name!r}")
        self.base_url = base_url
        self.timeout = float(timeout)
        self.request_interval = request_interval
        self.key_env = key_env
        self.secret_env = secret_env
        # The venue's websocket where this adapter takes one, unless the config turns it off.
        self.order_stream = self.venue.order_stream and order_stream is not False
        self._capabilities = capabilities_for(exchange).model_copy(
            update={"currencies": frozenset({currency}), "streaming_updates": self.order_stream}
        )
        self._mirror = OrderMirror(name, self._emit)
        self._session = CcxtSession(self)
        self._account = AccountReads(name, currency, self._session)
        self._orders = OrderDesk(self, self._session, self._mirror, self._account)
        switch = (
            DeadMansSwitch(name, self._session, cancel_after_seconds) if self.venue.cancel_after else None
        )
        self._switch = switch
        self._poller = OrderPoller(name, self._session, self._orders, switch, poll_interval=poll_interval)
        self._poll_task: asyncio.Task[None] | None = None
        self._stream: OrderStream | None = None
        if self.order_stream:
            self._stream = OrderStream(
                name,
                self._session,
                self._mirror,
                self._orders.quote_of,
                self._poller,
                poll_interval=poll_interval,
                trades=self.venue.stream_trades,
            )
            self._poller.pace = self._stream
        self._stream_task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> CcxtBroker:
        read = read_settings(settings)
        return cls(
            read.name,
            exchange=read.exchange,
            live=read.live,
            currency=read.currency,
            base_url=read.base_url,
            timeout=read.timeout,
            poll_interval=read.poll_interval,
            request_interval=read.request_interval,
            cancel_after_seconds=read.cancel_after_seconds,
            key_env=read.key_env,
            secret_env=read.secret_env,
            order_stream=read.order_stream,
        )

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    # -- connection -----------------------------------------------------------------------
    async def connect(self) -> None:
        await self._session.open()
        try:
            await self._orders.open_orders()  # orders already working are followed from now on
        except BaseException:
            await self._session.close()
            raise
        if self._poll_task is None or self._poll_task.done():
            self._poll_task = asyncio.create_task(self._poller.run(), name=f"{self.name}-poll")
        if self._stream is not None and (self._stream_task is None or self._stream_task.done()):
            self._stream_task = asyncio.create_task(self._stream.run(), name=f"{self.name}-stream")

    async def disconnect(self) -> None:
        stream, self._stream_task = self._stream_task, None
        if stream is not None and self._stream is not None:
            # Waiting on the socket only: cancelling it leaves nothing half-done at the venue.
            self._stream.stop()
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
        task, self._poll_task = self._poll_task, None
        if task is not None:
            self._poller.stop()
            try:
                async with asyncio.timeout(self.timeout * 2 + 5.0):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._switch is not None and self._session.is_connected():
            # A deliberate disconnect leaves working orders to the trader, not to the timer.
            try:
                async with asyncio.timeout(self.timeout):
                    await self._switch.disarm()
            except (BrokerError, TimeoutError) as exc:
                log.warning("%s: could not switch off the cancel-all-after timer: %s", self.name, redact(exc))
        await self._session.close()

    # -- orders ---------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        order = await self._orders.place(request)
        self._poller.poke()  # its first state, and the cancel-all-after timer, without waiting a tick
        return order

    async def cancel_order(self, broker_order_id: str) -> Order:
        order = await self._orders.cancel(broker_order_id)
        self._poller.poke()  # the cancel-all-after timer, switched off without waiting a tick
        return order

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        # A venue quotes its coin pairs, nothing else.
        if instrument.asset_class is not AssetClass.CRYPTO:
            return None
        return self._account.last(market_symbol(instrument.symbol))

    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        return self.last_price_nowait(instrument)
