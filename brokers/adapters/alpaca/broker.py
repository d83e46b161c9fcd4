"""The Alpaca adapter: one account, reached over Alpaca's REST API and trade-update stream.

``AlpacaBroker`` is the Broker; it composes the parts that do the work and steers them through
connecting and disconnecting:

- ``session``: the REST client and its calls, the trade-update stream, the state of the link and
  the resync after a gap in the stream;
- ``mirror``: our copy of every order at Alpaca, updated from what it reports, and its fills;
- ``orders``: placing, cancelling, looking up and listing orders;
- ``account``: balance, margin and positions;
- ``quotes``: market data, from Alpaca's stock and crypto data streams and snapshots.

Its settings, endpoints and capabilities are in ``settings``; Alpaca's vocabulary in ``wire``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ...credentials import register_secret, require_secret
from ...errors import BrokerConnectionError
from ...instruments import Instrument
from ...models import (
    BrokerCapabilities,
    Order,
)
from ...quotes import Listing, Quote, QuoteLimits
from ...settlement import warm_up
from ..composed import ComposedBroker
from .account import AccountReads
from .assets import asset_listing
from .data_settings import DataSettings, read_data_settings
from .mirror import OrderMirror
from .orders import OrderDesk
from .quotes import AlpacaQuotes
from .session import AlpacaSession, Credentials
from .settings import (
    LIVE_STREAM_URL,
    LIVE_URL,
    PAPER_STREAM_URL,
    PAPER_URL,
    capabilities_for,
    endpoints,
    read_settings,
)

__all__ = ["LIVE_STREAM_URL", "LIVE_URL", "PAPER_STREAM_URL", "PAPER_URL", "AlpacaBroker"]


class AlpacaBroker(ComposedBroker[AlpacaSession, OrderDesk, AccountReads]):
    """One Alpaca account, paper unless ``live``. Keys come from the keyring or environment."""

    broker_type = "alpaca"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: an HTTP request that timed out or lost its connection may still be processed.
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "alpaca",
        *,
        live: bool = False,
        currency: str = "USD",
        api_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        stream_url: str | None = None,
        timeout: float = 10.0,
        key_env: str = "ALPACA_API_KEY",
        secret_env: str = "ALPACA_SECRET_KEY",
        crypto: bool = True,
        reconnect_delay: float = 1.0,
        data: DataSettings | None = None,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        register_secret(api_key)
        register_secret(secret_key)
        self.base_url, self.stream_url = endpoints(live, base_url, stream_url)
        self.timeout = float(timeout)
        self.reconnect_delay = float(reconnect_delay)
        self._capabilities = capabilities_for(crypto)
        # The parts read the settings above from here each time they use them.
        self._mirror = OrderMirror(name, self._emit)
        self._credentials = Credentials(api_key, secret_key, key_env, secret_env)
        self._session = AlpacaSession(
            self,
            self._credentials,
            on_trade_update=self._mirror.on_trade_update,
            resync=self._resync,
        )
        self._orders = OrderDesk(self, self._session, self._mirror)
        self._account = AccountReads(name, self._session)
        self._quotes = AlpacaQuotes(
            name, data or DataSettings(), self._keys, self._emit_quote, self.timeout, self._report_outage
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> AlpacaBroker:
        read = read_settings(settings)
        return cls(
            read.name,
            live=read.live,
            crypto=read.crypto,
            base_url=read.base_url,
            stream_url=read.stream_url,
            timeout=read.timeout,
            reconnect_delay=read.reconnect_delay,
            key_env=read.key_env,
            secret_env=read.secret_env,
            data=read_data_settings(settings, f"alpaca account {read.name!r}"),
        )

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    # -- connection -----------------------------------------------------------------------
    @property
    def last_refresh(self) -> datetime | None:
        return self._session.last_refresh

    @property
    def latency_ms(self) -> float | None:
        return self._session.latency_ms

    async def connect(self) -> None:
        # Its fills are dated by the settlement calendars: they load in the background.
        warm_up()
        await self._session.open()

    async def disconnect(self) -> None:
        await self._quotes.close()
        await self._session.close()

    async def _resync(self, since: datetime | None) -> None:
        await self._orders.resync(since)

    # -- orders ---------------------------------------------------------------------------
    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._orders.cancel(broker_order_id)

    # -- quotes ---------------------------------------------------------------------------
    @property
    def quote_limits(self) -> QuoteLimits:
        return self._quotes.limits

    def trades(self, instrument: Instrument) -> bool:
        return super().trades(instrument) and instrument.asset_class in self._capabilities.asset_classes

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        if instruments and not self.is_connected():
            raise BrokerConnectionError("not connected to Alpaca", broker=self.name)
        await self._quotes.stream(instruments)

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        if not self.is_connected():
            raise BrokerConnectionError("not connected to Alpaca", broker=self.name)
        return await self._quotes.snapshot(instrument)

    async def _look_up_listing(self, instrument: Instrument) -> Listing | None:
        return await asset_listing(self._session, instrument)

    def _keys(self) -> tuple[str, str]:
        credentials = self._credentials
        return (
            credentials.api_key or require_secret(self.name, "api_key", credentials.key_env),
            credentials.secret_key or require_secret(self.name, "secret_key", credentials.secret_env),
        )
