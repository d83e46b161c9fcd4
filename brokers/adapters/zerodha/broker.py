"""The Kite Connect adapter: one Zerodha account.

``ZerodhaBroker`` is the Broker; it composes the parts that do the work and steers them through
connecting and disconnecting:

- ``session``: the kiteconnect client and its calls, the daily access token, the state of the link;
- ``mirror``: our copy of every order at Kite, updated from its order book and trade book;
- ``updates``: the poll of the order book that stands in for a push channel Kite does not have;
- ``orders``: placing, cancelling, looking up and listing orders;
- ``exits``: OCO exits held by Kite as GTT triggers, and every trigger followed as orders;
- ``account``: balance, margin, positions and last prices;
- ``quotes``: the KiteTicker quote stream and ``kite.quote()`` snapshots.

kiteconnect is synchronous, so every call runs in a worker thread. Kite's access token dies every
morning at 06:00 IST; ``session_expires_at`` says when, and a refused token marks the account as
needing a new one. Settings are checked in ``settings``; Kite's vocabulary is in ``wire``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from ...base import ACCOUNT_KEYS
from ...credentials import redact
from ...errors import ConfigError
from ...identifiers import ACCOUNT_NAME_RULE, account_name
from ...instruments import Instrument
from ...models import (
    BrokerCapabilities,
    ConnectionState,
    Fill,
    Order,
    Position,
    utcnow,
)
from ...quotes import Listing, Quote, QuoteLimits
from ...settlement import warm_up
from ..composed import ComposedBroker
from .account import AccountReads
from .exits import ExitDesk
from .mirror import OrderMirror
from .orders import OrderDesk
from .quotes import DEFAULT_TICKER_ROOT, TickerFeed
from .session import KiteSession
from .settings import (
    MIN_POLL_INTERVAL,
    SECRET_KEYS,
    SETTINGS,
    capabilities_for,
    choice,
    issued_at,
    seconds,
    setting_error,
)
from .updates import OrderPoller
from .wire import EXCHANGES, PRODUCTS, VARIETIES, instrument

log = logging.getLogger(__name__)


class ZerodhaBroker(ComposedBroker[KiteSession, OrderDesk, AccountReads]):
    """One Kite Connect account. Credentials: "api_key" (KITE_API_KEY), "access_token"
    (KITE_ACCESS_TOKEN), from the keyring or the environment, loaded at ``connect``."""

    broker_type = "zerodha"
    #: Seconds after a lost submit answer during which the order may still turn up here:
    #: an HTTP request that timed out or lost its connection may still be processed.
    late_order_window = 30.0

    def __init__(
        self,
        name: str = "zerodha",
        *,
        live: bool = False,
        currency: str = "INR",
        root: str | None = None,
        ticker_root: str | None = None,
        exchange: str = "NSE",
        product: str = "CNC",
        variety: str = "regular",
        poll_interval: float = 1.0,
        timeout: float = 7.0,
        token_issued_at: datetime | str | None = None,
        cash_account: bool = False,
        api_key: str | None = None,
        access_token: str | None = None,
        read_attempts: int = 3,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        try:
            name = account_name(name)
        except ValueError:
            raise setting_error("name", ACCOUNT_NAME_RULE, name) from None
        if not isinstance(live, bool):
            raise setting_error("live", "true or false", live)
        if not isinstance(cash_account, bool):
            raise setting_error("cash_account", "true or false", cash_account)
        if root is not None and (not isinstance(root, str) or not re.match(r"https?://[^\s/]+", root)):
            raise setting_error("root", "an http(s) URL such as https://api.kite.trade", root)
        if ticker_root is not None and (
            not isinstance(ticker_root, str) or not re.match(r"wss?://[^\s/]+", ticker_root)
        ):
            raise setting_error("ticker_root", "a ws(s) URL such as wss://ws.kite.trade", ticker_root)
        if not live and root is None:
            raise ConfigError(
                f"zerodha account {name!r}: Kite has no paper-trading service, so every order is real. "
                "Set live = true to trade it, or point root at a test server."
            )
        if isinstance(currency, str) and currency.strip().upper() != "INR":
            log.debug("zerodha account %s holds INR; ignoring currency %s", name, currency)
        super().__init__(name, live=live, currency="INR")
        self._exchange = choice("exchange", exchange, EXCHANGES)
        product = choice("product", product, PRODUCTS)
        variety = choice("variety", variety, VARIETIES, upper=False)
        poll_interval = seconds("poll_interval", poll_interval, MIN_POLL_INTERVAL, 60)
        timeout = seconds("timeout", timeout, 0.1, 60)
        self._clock = clock
        self._capabilities = capabilities_for(product)
        self._session = KiteSession(
            name,
            root=root.rstrip("/") if root else None,
            timeout=timeout,
            read_attempts=max(1, int(read_attempts)),
            configured_issue=issued_at(token_issued_at),
            api_key=api_key,
            access_token=access_token,
            clock=self._now,
        )
        self._mirror = OrderMirror(name, self._session, variety=variety, emit=self._emit, clock=self._now)
        self._updates = OrderPoller(name, self._session, self._mirror, poll_interval=poll_interval)
        self._poller: asyncio.Task[None] | None = None
        self._exits = self._exit_desk()
        self._orders = OrderDesk(
            name,
            self._session,
            self._mirror,
            self._exits,
            capabilities=self._capabilities,
            exchange=self._exchange,
            product=product,
            variety=variety,
        )
        self._account = AccountReads(
            name, self._session, exchange=self._exchange, clock=self._now, cash_account=cash_account
        )
        # A test server (root) streams only from a ticker named beside it, never from Kite's own.
        self._quotes = TickerFeed(
            name,
            self._session,
            root=ticker_root or (DEFAULT_TICKER_ROOT if root is None else None),
            exchange=self._exchange,
            emit=self._emit_quote,
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> ZerodhaBroker:
        given = dict(settings)
        for key in list(given):
            if key in ACCOUNT_KEYS:
                given.pop(key)
            elif key.lower() in SECRET_KEYS:
                raise ConfigError(
                    f"zerodha setting {key!r} is a secret and never belongs in the config file: run "
                    f"`trading-console set-creds {given.get('name', 'ACCOUNT')}` or set KITE_API_KEY and "
                    "KITE_ACCESS_TOKEN"
                )
            elif key not in SETTINGS:
                raise ConfigError(f"unknown zerodha setting {key!r}; allowed: {', '.join(SETTINGS)}")
        return super().from_config(given)

    # -- exits held by Kite (GTT triggers) -------------------------------------------------
    def _exit_desk(self) -> ExitDesk:
        exits = ExitDesk(
            self.name, self._session, self._mirror, emit=self._emit, positions=self._read_positions
        )
        # Triggers are read with the order book, so what a trigger placed is known as its leg.
        self._mirror.watch_book(exits)
        return exits

    async def _read_positions(self) -> list[Position]:
        return await self._account.positions()

    def _now(self) -> datetime:
        # Looked up on each call: the clock may be replaced after the parts are built.
        return self._clock()

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    def instrument(self, symbol: str, exchange: str | None = None) -> tuple[str, str]:
        """(exchange, tradingsymbol) for "INFY", "NSE:INFY" or "INFY" with exchange="NSE"."""
        return instrument(symbol, exchange, self._exchange, self.name)

    # -- connection -----------------------------------------------------------------------
    @property
    def session_expires_at(self) -> datetime | None:
        return self._session.expires_at

    @property
    def needs_new_token(self) -> bool:
        return self._session.needs_new_token

    async def connect(self) -> None:
        session = self._session
        if session.is_connected():
            return
        # Its fills are dated by the settlement calendars: they load in the background.
        warm_up()
        await self._stop_poller()
        session.state = ConnectionState.CONNECTING
        try:
            await session.open()
            session.state = ConnectionState.RESYNCING
            await self._mirror.catch_up()
        except BaseException as exc:
            session.close()
            if isinstance(exc, Exception):
                session.last_error = redact(exc)
                session.state = ConnectionState.FAILED
            else:
                session.state = ConnectionState.DISCONNECTED
            raise
        session.state = ConnectionState.CONNECTED
        session.last_error = None
        await self._quotes.reopen()
        self._updates.reset()
        self._poller = asyncio.create_task(self._updates.run(), name=f"kite-poll-{self.name}")

    async def disconnect(self) -> None:
        session = self._session
        await self._stop_poller()
        self._quotes.close()
        session.close()
        if session.state is not ConnectionState.FAILED or not session.token_refused:
            session.state = ConnectionState.DISCONNECTED

    async def _stop_poller(self) -> None:
        poller, self._poller = self._poller, None
        if poller is None or poller is asyncio.current_task():
            return
        # Asked until it has ended: a cancel can be lost when the call it interrupts finishes in
        # the same instant (asyncio.wait_for before Python 3.12), and the poll would go on.
        while not poller.done():
            poller.cancel()
            await asyncio.wait([poller], timeout=1.0)
        if not poller.cancelled():
            poller.exception()  # retrieved: an error in the last poll is not "never retrieved"

    def _adopt_token(self, token: str) -> None:
        self._session.adopt_token(token)

    async def health_check(self) -> float:
        """Round-trip time of a cheap authenticated call, in milliseconds."""
        await self._session.call("profile")
        return self._session.latency_ms or 0.0

    # -- orders ---------------------------------------------------------------------------
    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._orders.cancel(str(broker_order_id), refresh=True)

    async def get_fills(self) -> list[Fill]:
        """Today's executions at Kite (its trade book), e.g. to reconcile after a restart."""
        return await self._orders.fills()

    # -- account --------------------------------------------------------------------------
    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        return await self._account.last_price(instrument)

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        return self._account.last_price_nowait(instrument)

    # -- quotes ---------------------------------------------------------------------------
    @property
    def quote_limits(self) -> QuoteLimits:
        return QuoteLimits(streamed=self._quotes.limit)

    def trades(self, instrument: Instrument) -> bool:
        return (
            super().trades(instrument)
            and instrument.asset_class in self._capabilities.asset_classes
            and (instrument.exchange is None or instrument.exchange in EXCHANGES)
        )

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        await self._quotes.stream(instruments)

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        return await self._quotes.snapshot(instrument)

    async def _look_up_listing(self, instrument: Instrument) -> Listing | None:
        return await self._quotes.look_up(instrument)
