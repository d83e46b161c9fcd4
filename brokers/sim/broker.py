"""The paper broker: a complete ``Broker`` over the simulated venue, with faults and a feed.

Everything happens synchronously inside each call, so with ``latency=0`` and no faults armed a
call never suspends: ``place_order`` costs microseconds and tests need no sleeps. Events produced
while the connection is down are not delivered, as with a real broker's stream; the broker's
books stay right and can be read again after ``connect()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime, time
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from ..base import ACCOUNT_KEYS, Broker
from ..errors import BrokerConnectionError, BrokerError, BrokerTimeoutError, ConfigError, OrderRejectedError
from ..instruments import Instrument, InstrumentKey, instrument_of
from ..models import (
    AssetClass,
    Balance,
    BrokerCapabilities,
    Fill,
    MarginInfo,
    Order,
    OrderRequest,
    OrderType,
    Position,
    TimeInForce,
    describe_validation_error,
    to_decimal,
    utcnow,
)
from ..quotes import Quote, QuoteLimits, QuoteState
from ..settlement import calendars_loaded, loaded, warm_up
from .account import CommissionSchedule, PendingCash, SimAccount
from .clock import Clock
from .faults import SimFaults
from .feed import DEFAULT_VOLATILITY, RandomWalkFeed
from .quotes import QuoteMaker
from .settings import SimSettings, normalize_symbol
from .venue import SessionCalendar, SimVenue, snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

# Account keys every broker type accepts; these are the manager's business, not the broker's.
_ACCOUNT_KEYS = ACCOUNT_KEYS | {"broker_type"}

Amount = Decimal | int | float | str


class SimBroker(Broker):
    """A paper account. ``SimSettings`` says what each option accepts.

    FOK orders that cannot fill completely at once, and the unfilled rest of IOC orders, end
    CANCELLED (as Alpaca and Interactive Brokers report them), never EXPIRED; EXPIRED is for DAY
    orders at the session close. ``prices=None`` trades a small default universe (AAPL, MSFT,
    ...); ``prices={}`` trades nothing until ``set_price``.
    """

    broker_type = "sim"

    def __init__(
        self,
        name: str = "sim",
        currency: str = "USD",
        initial_cash: Amount = 100_000,
        prices: Mapping[str, Amount] | None = None,
        latency: float = 0.0,
        seed: int | None = None,
        *,
        live: bool = False,
        slippage_bps: Amount = 0,
        commission_per_share: Amount = 0,
        commission_min: Amount = 0,
        commission_percent: Amount = 0,
        liquidity_per_tick: Amount | None = None,
        allow_short: bool = True,
        account_type: str = "margin",
        leverage: Amount = 2,
        clock: Clock | None = None,
        faults: SimFaults | None = None,
        tick_interval: float | None = None,
        volatility: float = DEFAULT_VOLATILITY,
        initial_positions: Mapping[str, tuple[Amount, Amount]] | None = None,
        session_close: time | str | None = None,
        session_timezone: str = "UTC",
        tick_size: Amount | None = None,
        history_limit: int = 100_000,
    ) -> None:
        try:
            settings = SimSettings.model_validate(
                {
                    "name": name,
                    "currency": currency,
                    "initial_cash": initial_cash,
                    "prices": prices,
                    "latency": latency,
                    "seed": seed,
                    "live": live,
                    "slippage_bps": slippage_bps,
                    "commission_per_share": commission_per_share,
                    "commission_min": commission_min,
                    "commission_percent": commission_percent,
                    "liquidity_per_tick": liquidity_per_tick,
                    "allow_short": allow_short,
                    "account_type": account_type,
                    "leverage": leverage,
                    "clock": clock,
                    "faults": faults,
                    "tick_interval": tick_interval,
                    "volatility": volatility,
                    "initial_positions": initial_positions,
                    "session_close": session_close,
                    "session_timezone": session_timezone,
                    "tick_size": tick_size,
                    "history_limit": history_limit,
                }
            )
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None
        super().__init__(settings.name, live=settings.live, currency=settings.currency)
        self.settings = settings
        self.latency = settings.latency
        self.faults: SimFaults = settings.faults if settings.faults is not None else SimFaults()
        self._clock: Clock = settings.clock or utcnow
        created = self._clock()
        if created.tzinfo is None:
            raise ValueError("clock must return timezone-aware datetimes")
        self._created = created
        self._connected = False
        self._feed = RandomWalkFeed(settings.seed, settings.volatility, settings.tick_size)
        self._tick_interval = settings.tick_interval
        self._feed_task: asyncio.Task[None] | None = None
        # Identity of an instrument -> the venue's own spelling of its symbol (see last_price_nowait).
        self._spellings: dict[InstrumentKey, str] = {}
        self._spelled = 0
        # Venue symbol -> the instruments streamed under it.
        self._streamed: dict[str, tuple[Instrument, ...]] = {}

        account = SimAccount(
            settings.initial_cash,
            account_type=settings.account_type,
            leverage=settings.leverage,
            allow_short=settings.allow_short,
        )
        prices = settings.resolved_prices()
        for symbol, (quantity, avg_price) in (settings.initial_positions or {}).items():
            account.seed(symbol, quantity, avg_price)
            prices.setdefault(symbol, avg_price)
        self._quotes = QuoteMaker(settings.name, prices, settings.seed, settings.tick_size)
        calendar = None
        if settings.session_close is not None:
            close = settings.session_close
            calendar = SessionCalendar(close, close.tzinfo or ZoneInfo(settings.session_timezone))
        self._venue = SimVenue(
            name=settings.name,
            currency=settings.currency,
            account=account,
            commission=CommissionSchedule(
                settings.commission_per_share, settings.commission_min, settings.commission_percent
            ),
            prices=prices,
            clock=self._clock,
            listening=self._listening,
            slippage_bps=settings.slippage_bps,
            liquidity_per_tick=settings.liquidity_per_tick,
            tick=settings.tick_size,
            history_limit=settings.history_limit,
            calendar=calendar,
        )
        self._capabilities = BrokerCapabilities(
            order_types=frozenset(OrderType),
            time_in_force=frozenset(TimeInForce),
            asset_classes=frozenset(AssetClass) - {AssetClass.OTHER},  # OTHER: nothing is known to trade it
            fractional_quantities=True,
            # A cash account cannot borrow shares whatever allow_short says.
            short_selling=account.allow_short,
            bulk_cancel=True,
            streaming_updates=True,
            modify_orders=True,
            # The venue holds exits itself, as a broker would (``SimVenue._linked``).
            bracket_orders=True,
            oto_orders=True,
            oco_orders=True,
            session_expiry=False,
            currencies=frozenset({settings.currency}),
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, object]) -> SimBroker:
        """Build from an account's config. The generic account keys that are not the broker's
        business (default, weight, risk, label) are ignored, and so is any key set to None."""
        values = {
            key: value for key, value in settings.items() if key not in _ACCOUNT_KEYS and value is not None
        }
        name = values.get("name", "sim")
        unknown = sorted(set(values) - set(SimSettings.model_fields))
        if unknown:
            allowed = ", ".join(sorted(set(SimSettings.model_fields) - {"clock"}))
            raise ConfigError(f"sim account {name!r}: unknown key {unknown[0]!r}; allowed: {allowed}")
        try:
            validated = SimSettings.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"sim account {name!r}: {describe_validation_error(exc)}") from None
        return cls(**dict(validated))

    # -- settings that may change while running ---------------------------------------------
    @property
    def slippage_bps(self) -> Decimal:
        return self._venue.slippage_bps

    @slippage_bps.setter
    def slippage_bps(self, value: Amount) -> None:
        self._venue.slippage_bps = to_decimal(value, "slippage_bps")

    @property
    def liquidity_per_tick(self) -> Decimal | None:
        return self._venue.liquidity_per_tick

    @liquidity_per_tick.setter
    def liquidity_per_tick(self, value: Amount | None) -> None:
        self._venue.liquidity_per_tick = None if value is None else to_decimal(value, "liquidity_per_tick")

    @property
    def account_type(self) -> str:
        return self._venue.account.account_type

    @property
    def leverage(self) -> Decimal:
        return self._venue.account.leverage

    @property
    def initial_cash(self) -> Decimal:
        return self._venue.account.initial_cash

    @property
    def prices(self) -> dict[str, Decimal]:
        return dict(self._venue.prices)

    @property
    def symbols(self) -> list[str]:
        return sorted(self._venue.prices)

    def now(self) -> datetime:
        return self._clock()

    # -- simulation controls (no connection needed) ---------------------------------------
    def set_price(self, symbol: str, price: Amount) -> Decimal:
        """Move the market in ``symbol`` (adding it if new) and let working orders react."""
        key = normalize_symbol(symbol, "symbol")
        value = to_decimal(price, "price")
        if value <= 0:
            raise ValueError(f"price must be greater than 0, not {value}")
        self._quotes.priced(key, value)
        self._venue.set_price(key, value)
        self._flush()
        self._publish_quotes({key: value})
        return value

    def step(self) -> dict[str, Decimal]:
        """Move every symbol one random-walk step; returns the new prices."""
        moved = self._feed.step(self._venue.prices)
        self._venue.move(moved)
        self._flush()
        self._publish_quotes(moved)
        return moved

    def start_feed(self, interval: float | None = None) -> None:
        """Run ``step()`` every ``interval`` seconds on the running event loop."""
        seconds = interval if interval is not None else (self._tick_interval or 1.0)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"interval must be a positive number of seconds, not {seconds!r}")
        self.stop_feed()
        self._feed_task = asyncio.get_running_loop().create_task(
            self._run_feed(seconds), name=f"sim-feed-{self.name}"
        )

    def stop_feed(self) -> None:
        task, self._feed_task = self._feed_task, None
        if task is not None and not task.done():
            task.cancel()

    @property
    def feed_running(self) -> bool:
        return self._feed_task is not None and not self._feed_task.done()

    async def _run_feed(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.step()
            except Exception:  # one bad step must not stop the market
                log.exception("price feed step failed for %s", self.name)

    def end_of_day(self) -> list[str]:
        """Expire every working DAY order; returns their broker order ids."""
        expired = self._venue.expire_day_orders()
        self._flush()
        self._quotes.close_day(self._venue.prices)
        return expired

    def reset_account(self) -> None:
        """Cash back to the configured amount, no positions, no orders. Working orders are
        reported CANCELLED first so that anyone watching the stream is not left with ghosts."""
        self._venue.reset()
        self._flush()

    def pending_settlements(self) -> list[PendingCash]:
        """Cash of fills that has not settled yet by this broker's clock, soonest first."""
        return self._venue.pending_settlements()

    def stop_level(self, broker_order_id: str) -> Decimal | None:
        """Where a working stop or trailing stop order would trigger now; None for other orders."""
        return self._venue.stop_level(broker_order_id)

    # -- connection -----------------------------------------------------------------------
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        faults = self.faults
        wait = self.latency + faults.take_hang("connect")
        if wait:
            await _sleep(wait)
        if faults.take_timeout("connect"):
            raise self._timeout("connect")
        if faults.take_connect_failure():
            raise BrokerConnectionError("connection refused (simulated fault)", broker=self.name)
        # Fills will be dated by the settlement calendars: they load in the background from
        # here (if the runtime has not started them already); the first order waits for them.
        warm_up()
        self._connected = True
        if self._tick_interval is not None and not self.feed_running:
            self.start_feed(self._tick_interval)

    async def disconnect(self) -> None:
        self._connected = False
        task = self._feed_task
        self.stop_feed()
        if task is not None:
            # wait() rather than awaiting the task: our own cancellation must still propagate.
            await asyncio.wait([task])

    # -- orders ---------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> Order:
        if not calendars_loaded():
            # Its fills are dated by the settlement calendars: an order sent while they still
            # load waits for them in a thread, never holding up the event loop.
            await loaded()
        if self._quiet():
            try:
                return self._venue.place(request)
            finally:
                self._flush()
        # Written out rather than through _call: the hot path must not even create a coroutine
        # it does not need.
        wait = self._enter("place_order")
        if wait:
            await self._wait(wait)
        faults = self.faults
        timed_out = faults.take_timeout("place_order")
        if timed_out and not faults.timeout_after_accept:
            raise self._timeout("place_order")
        if timed_out:
            # The broker acted, but whatever it answered (an ack or a refusal) is lost.
            with contextlib.suppress(BrokerError):
                self._accept(request)
            self._flush()
            raise self._timeout("place_order")
        try:
            return self._accept(request)
        finally:
            self._flush()

    def _accept(self, request: OrderRequest) -> Order:
        reason = self.faults.take_reject()
        if reason is not None:
            raise OrderRejectedError(reason, broker=self.name, code="SIMULATED_REJECT")
        return self._venue.place(request)

    async def modify_order(self, broker_order_id: str, request: OrderRequest) -> Order:
        return await self._call("modify_order", lambda: self._venue.modify(broker_order_id, request))

    async def cancel_order(self, broker_order_id: str) -> Order:
        return await self._call("cancel_order", lambda: self._venue.cancel(broker_order_id))

    async def cancel_all_orders(self) -> list[str]:
        return await self._call("cancel_all_orders", self._venue.cancel_all)

    async def get_order(self, broker_order_id: str) -> Order:
        return await self._call("get_order", lambda: snapshot(self._venue.order(broker_order_id)))

    async def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        return await self._call(
            "get_order_by_client_id", lambda: self._venue.order_by_client(client_order_id)
        )

    async def get_open_orders(self) -> list[Order]:
        return await self._call("get_open_orders", self._venue.open_orders)

    # -- account --------------------------------------------------------------------------
    async def get_balance(self) -> Balance:
        return await self._call("get_balance", self._venue.balance)

    async def get_positions(self) -> list[Position]:
        return await self._call("get_positions", self._venue.positions)

    async def get_margin(self) -> MarginInfo:
        return await self._call("get_margin", self._venue.margin)

    @property
    def capabilities(self) -> BrokerCapabilities:
        return self._capabilities

    async def get_last_price(self, instrument: Instrument) -> Decimal | None:
        return await self._call("get_last_price", lambda: self.last_price_nowait(instrument))

    def last_price_nowait(self, instrument: Instrument) -> Decimal | None:
        """The venue quotes plain symbols (``AAPL``, ``BTC/USD``): the price of the one whose
        spelling names ``instrument`` in its asset class. An option or future whose terms are
        given apart from its root (an OCC code) is not quoted here, so never gets the root's
        price."""
        symbol = self._symbol_of(instrument)
        return self._venue.prices.get(symbol) if symbol is not None else None

    def _symbol_of(self, instrument: Instrument) -> str | None:
        prices = self._venue.prices
        if len(prices) != self._spelled:
            # New symbols were priced in: spell each as every class the venue trades.
            self._spellings = {
                instrument_of(symbol, asset_class).key: symbol
                for symbol in prices
                for asset_class in self._capabilities.asset_classes
            }
            self._spelled = len(prices)
        return self._spellings.get(instrument.key)

    @property
    def remembers_since(self) -> datetime | None:
        return self._created

    # -- quotes ---------------------------------------------------------------------------
    @property
    def quote_limits(self) -> QuoteLimits:
        return QuoteLimits(streamed=None)

    def trades(self, instrument: Instrument) -> bool:
        """The venue lists what it prices: a symbol it has a price for, in this account's
        currency (or an instrument that names none)."""
        return super().trades(instrument) and self._symbol_of(instrument) is not None

    async def stream_quotes(self, instruments: frozenset[Instrument]) -> None:
        streamed: dict[str, list[Instrument]] = {}
        for instrument in instruments:
            symbol = self._symbol_of(instrument)
            if symbol is not None:
                streamed.setdefault(symbol, []).append(instrument)
        new = {symbol for symbol in streamed if symbol not in self._streamed}
        self._streamed = {symbol: tuple(each) for symbol, each in streamed.items()}
        # A new subscription starts with the current quote, as a real feed's does.
        prices = self._venue.prices
        self._publish_quotes({symbol: prices[symbol] for symbol in sorted(new)})

    async def get_quote(self, instrument: Instrument) -> Quote | None:
        def read() -> Quote | None:
            symbol = self._symbol_of(instrument)
            if symbol is None:
                return None
            price = self._venue.prices[symbol]
            return self._quotes.quote(instrument, symbol, price, self._clock(), QuoteState.SNAPSHOT)

        return await self._call("get_quote", read)

    def _publish_quotes(self, prices: Mapping[str, Decimal]) -> None:
        if not self._connected or not self._streamed:
            return
        for quote in self._quotes.quotes(self._streamed, prices, self._clock()):
            self._emit_quote(quote)

    async def get_fx_rates(self) -> dict[str, Decimal]:
        return await self._call("get_fx_rates", dict)

    # -- call plumbing --------------------------------------------------------------------
    def _quiet(self) -> bool:
        """Connected, no latency, no fault armed, no session close to watch: a call then comes
        to the action alone, and ``place_order`` skips the checks below. Keep in step with
        ``_enter`` and the ``take_*`` methods of ``SimFaults``."""
        faults = self.faults
        return (
            self._connected
            and not self.latency
            and faults.disconnect_after is None
            and not faults.hang_next
            and not faults.timeout_next
            and not faults.reject_next
            and self._venue.next_close is None
        )

    def _enter(self, method: str) -> float:
        """Connection and fault checks of every call; returns how long to wait first."""
        if not self._connected:
            raise BrokerConnectionError("not connected; connect first", broker=self.name)
        faults = self.faults
        if faults.disconnect_after is not None:
            if faults.disconnect_after <= 0:
                faults.disconnect_after = None
                self._connected = False
                raise BrokerConnectionError("connection lost (simulated fault)", broker=self.name)
            faults.disconnect_after -= 1
        if self._venue.next_close is not None:
            self._venue.roll_session()
            self._flush()
        return self.latency + faults.take_hang(method)

    async def _wait(self, seconds: float) -> None:
        await _sleep(seconds)
        if not self._connected:
            raise BrokerConnectionError("connection lost before the answer arrived", broker=self.name)

    async def _call(self, method: str, action: Callable[[], T]) -> T:
        wait = self._enter(method)
        if wait:
            await self._wait(wait)
        timed_out = self.faults.take_timeout(method)
        if timed_out and not self.faults.timeout_after_accept:
            raise self._timeout(method)
        if timed_out:
            with contextlib.suppress(BrokerError):
                action()
            self._flush()
            raise self._timeout(method)
        try:
            return action()
        finally:
            self._flush()

    def _timeout(self, method: str) -> BrokerTimeoutError:
        return BrokerTimeoutError(f"{method} timed out (simulated fault)", broker=self.name)

    # -- update stream --------------------------------------------------------------------
    def _listening(self) -> bool:
        return self._connected and bool(self._hub)

    def _flush(self) -> None:
        venue = self._venue
        if not venue.events:
            return
        events, venue.events = venue.events, []
        faults = self.faults
        if faults.out_of_order_fills:
            fills = [event for event in events if isinstance(event, Fill)]
            events = [event for event in events if not isinstance(event, Fill)] + fills[::-1]
        for event in events:
            self._emit(event)
            if faults.duplicate_fills and isinstance(event, Fill):
                self._emit(event)


async def _sleep(seconds: float) -> None:
    if math.isinf(seconds):
        await asyncio.get_running_loop().create_future()  # a hang that never answers
    else:
        await asyncio.sleep(seconds)
