"""The Interactive Brokers adapter: one account, reached through a running TWS or IB Gateway.

``IBKRBroker`` is the Broker; it composes the parts that do the work and steers them through
connecting, losing the connection and disconnecting:

- ``session``: the connection to TWS, the account traded, the state of the link, reads;
- ``mirror``: our record of every order, kept in step with TWS's statuses and executions;
- ``orders``: placing, cancelling and looking up orders;
- ``account``: balance, margin, positions, last prices and FX rates;
- ``quotes``: market data lines and snapshots as Quotes.

Symbol formats are described in ``instruments``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ...errors import BrokerConnectionError
from ...instruments import Instrument
from ...models import (
    BrokerCapabilities,
    ConnectionState,
    Order,
)
from ...quotes import Listing, Quote, QuoteLimits
from ...settlement import warm_up
from ..composed import ComposedBroker
from .account import AccountReads
from .api import ib_api
from .mirror import OrderMirror
from .orders import OrderDesk
from .quotes import QuoteFeed
from .session import IBSession
from .settings import CAPABILITIES, DEFAULT_MARKET_DATA_LINES, LIVE_PORT, PAPER_PORT, read_settings

log = logging.getLogger(__name__)


class IBKRBroker(ComposedBroker[IBSession, OrderDesk, AccountReads]):
    """One account at Interactive Brokers, reached through a running TWS or IB Gateway."""

    broker_type = "ibkr"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: TWS may still act on an order message it read before the socket dropped.
    late_order_window = 30.0
    #: How long a fill waits for its commission report before it is reported without one.
    commission_grace = 0.5
    #: How long a Filled status waits for its executions before they are asked for, and then
    #: taken from the status if still missing.
    execution_grace = 2.0
    read_attempts = 3

    def __init__(
        self,
        name: str = "ibkr",
        *,
        live: bool = False,
        currency: str = "USD",
        host: str = "127.0.0.1",
        port: int | None = None,
        client_id: int = 1,
        account: str | None = None,
        timeout: float = 10.0,
        readonly: bool = False,
        market_data_lines: int = DEFAULT_MARKET_DATA_LINES,
        cash_account: bool = False,
    ) -> None:
        super().__init__(name, live=live, currency=currency)
        self.host = host
        self.port = port if port is not None else (LIVE_PORT if live else PAPER_PORT)
        self.client_id = client_id
        self.account_code = account
        self.timeout = float(timeout)
        self.readonly = readonly
        self.market_data_lines = market_data_lines
        # Spends settled cash only: IB's account data does not say, so the config does.
        self.cash_account = cash_account
        # The parts read the settings above from here each time they use them.
        self._session = IBSession(self, new_client=self._new_client, refresh_orders=self._refresh_all_orders)
        self._mirror = OrderMirror(self, self._session, self._emit)
        self._orders = OrderDesk(self, self._session, self._mirror)
        self._account = AccountReads(self, self._session)
        self._quotes = QuoteFeed(self, self._session, self._emit_quote)

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> IBKRBroker:
        read = read_settings(settings)
        return cls(
            read.name,
            live=read.live,
            currency=read.currency,
            host=read.host,
            port=read.port,
            client_id=read.client_id,
            account=read.account,
            timeout=read.timeout,
            readonly=read.readonly,
            market_data_lines=read.market_data_lines,
            cash_account=read.cash_account,
        )

    # -- connection -----------------------------------------------------------------------
    @property
    def capabilities(self) -> BrokerCapabilities:
        return CAPABILITIES

    async def connect(self) -> None:
        session = self._session
        if session.is_connected():
            return
        # Its fills are dated by the settlement calendars: they load in the background.
        warm_up()
        try:
            await session.open()
            # The client library asked for the day's executions on connecting.
            self._mirror.reconcile(executions_current=True)
            self._quotes.restore()
            session.set_state(ConnectionState.CONNECTED)
            session.refreshed()
        except Exception as exc:
            session.set_state(ConnectionState.FAILED, str(exc) or type(exc).__name__)
            raise

    async def disconnect(self) -> None:
        self._session.begin_closing()
        self._mirror.stop()
        self._mirror.fail_waiters(BrokerConnectionError("disconnected", broker=self.name))
        self._quotes.forget()
        self._session.close()

    async def ping(self) -> float:
        """Round trip to TWS in milliseconds (also kept for ``status().latency_ms``)."""
        return await self._session.ping()

    def _new_client(self) -> Any:
        ib = ib_api.IB()
        ib.orderStatusEvent += self._mirror.on_trade
        ib.openOrderEvent += self._mirror.on_trade
        ib.execDetailsEvent += self._mirror.on_exec_details
        ib.commissionReportEvent += self._mirror.on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        self._quotes.attach(ib)
        return ib

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        self._session.on_error(code, message)
        self._mirror.on_error(req_id, code, message)
        self._quotes.on_error(code, contract)

    def _on_disconnected(self) -> None:
        session = self._session
        if session.connecting or session.closing:
            return
        log.warning("%s: connection to TWS/IB Gateway lost", self.name)
        # Fills received before the drop are real: report them now rather than lose them.
        self._mirror.release_all_fills()
        self._mirror.fail_waiters(
            BrokerConnectionError("connection to TWS/IB Gateway lost", broker=self.name)
        )
        session.set_state(ConnectionState.DISCONNECTED, "connection to TWS/IB Gateway lost")

    async def _refresh_all_orders(self) -> None:
        await self._mirror.refresh(executions=True)

    @property
    def _pending_fills(self) -> int:
        """Fills held back for their commission report."""
        return self._mirror.pending_fills

    # -- orders ---------------------------------------------------------------------------
    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._orders.cancel(broker_order_id)

    # -- account --------------------------------------------------------------------------
    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        return self._account.last_price(instrument)

    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        return self.last_price_nowait(instrument)

    async def get_fx_rates(self) -> dict[str, Decimal]:
        """What TWS reports as ExchangeRate in the account values (1 unit in the base currency)."""
        return self._account.fx_rates()

    # -- quotes ---------------------------------------------------------------------------
    @property
    def quote_limits(self) -> QuoteLimits:
        return QuoteLimits(streamed=self.market_data_lines)

    def trades(self, instrument: Instrument) -> bool:
        return super().trades(instrument) and instrument.asset_class in CAPABILITIES.asset_classes

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        await self._quotes.stream(instruments)

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        return await self._quotes.snapshot(instrument)

    async def _look_up_listing(self, instrument: Instrument) -> Listing | None:
        return await self._quotes.look_up(instrument)
