"""Several broker accounts behind one object: concurrent calls, health, one view.

Every call that reaches more than one broker fans out concurrently, each broker under its own
timeout, so one slow, hanging or failing broker is marked on its account and never holds up
the others. Keeping the accounts connected and read is ``upkeep.Upkeep``'s job; consolidated
figures are computed without I/O from the last data read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from .accounts import AccountRecord, default_account
from .base import Broker, BrokerEvent
from .consolidation import (
    BuyingPower,
    ConsolidatedPosition,
    Snapshot,
    Totals,
    compare_positions,
    consolidate_buying_power,
    consolidate_positions,
    consolidate_totals,
    empty_snapshot,
)
from .errors import UnknownAccountError
from .events import (
    ConnectionEvent,
    FillEvent,
    HaltCancelEvent,
    ManagerEvent,
    OrderEvent,
    PositionDiff,
    PositionDiffEvent,
)
from .fanout import BoundedCalls, CallResult, CancelAllResult
from .fx import FxRates, Money
from .health import ORDERABLE, Backoff, adapter_orderable
from .identifiers import account_name, currency_code
from .instruments import Instrument, instrument_of
from .models import (
    AccountStatus,
    AssetClass,
    Balance,
    ConnectionState,
    Fill,
    Order,
    Position,
    utcnow,
)
from .pubsub import EventHub, TurnBatch
from .quote_board import QuoteBoard
from .upkeep import HaltedCheck, ResyncHook, Sleep, Upkeep

__all__ = ["BookProvider", "ManagerListener", "MultiBrokerManager"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
BookProvider = Callable[[], dict[tuple[str, str], Decimal]]
"""The journal's book: (account, symbol) -> signed quantity the execution layer believes held."""
ManagerListener = Callable[[ManagerEvent], object]

_CS = ConnectionState


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float | Decimal):
        raise ValueError(f"weight must be a number, not {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"weight must be a finite number of at least 0, not {weight!r}")
    return value


class _Relay:
    """Hands one account's broker updates on to the manager's subscribers, in arrival order.

    The broker calls it with each update as it happens; it publishes everything that arrived in
    one turn of the loop at the end of that turn. While the manager is not running, updates wait
    here until it starts.
    """

    __slots__ = ("batch", "clock", "hub", "name")

    def __init__(self, name: str, hub: EventHub[ManagerEvent], clock: Clock, *, running: bool) -> None:
        self.name = name
        self.hub = hub
        self.clock = clock
        self.batch: TurnBatch[BrokerEvent] = TurnBatch(self.publish, paused=not running)

    def __call__(self, event: BrokerEvent) -> None:
        self.batch.add(event)

    def publish(self, events: list[BrokerEvent]) -> None:
        now = self.clock()
        publish = self.hub.publish
        name = self.name
        for event in events:
            if isinstance(event, Fill):
                publish(FillEvent(name, event, now))
            elif isinstance(event, Order):
                publish(OrderEvent(name, event, now))
            else:
                log.warning("%s sent an update of unknown kind %s", name, type(event).__name__)


class MultiBrokerManager:
    """Accounts by name, their health, and one consolidated view of them.

    ``timeout`` bounds every call to one broker; ``connect_timeout`` (default ``timeout``) bounds
    a connect. ``heartbeat_interval`` is how often ``start()``'s loop refreshes every account;
    an account that fails ``degraded_limit`` heartbeats in a row is treated as dropped. Dropped
    accounts reconnect on the ``backoff`` schedule, waiting with ``sleep`` (tests pass a fake).
    ``halted()`` tells whether trading is halted (and a halt cancels working orders): an account
    that connects or reconnects meanwhile has its working orders cancelled before it is marked
    CONNECTED, and a ``HaltCancelEvent`` says what was cancelled and what could not be.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        fx: FxRates | None = None,
        base_currency: str = "USD",
        heartbeat_interval: float = 5.0,
        clock: Clock | None = None,
        connect_timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
        book_provider: BookProvider | None = None,
        degraded_limit: int = 3,
        halted: HaltedCheck | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be a positive number of seconds")
        self._clock: Clock = clock or utcnow
        self.fx = fx if fx is not None else FxRates(base_currency, clock=self._clock)
        if self.fx.base != currency_code(base_currency, "base_currency"):
            raise ValueError(
                f"fx converts into {self.fx.base} but base_currency is {base_currency}; they must match"
            )
        self.base_currency = self.fx.base
        self.book_provider = book_provider
        self._accounts: dict[str, AccountRecord] = {}
        self._default: str | None = None
        self._hub: EventHub[ManagerEvent] = EventHub("manager")
        self._relays: dict[str, _Relay] = {}
        self._snapshot = empty_snapshot()
        self._calls = BoundedCalls()
        self._upkeep = Upkeep(
            self._accounts,
            calls=self._calls,
            fx=self.fx,
            clock=self._clock,
            publish=self._publish,
            changed=self._rebuild_snapshot,
            compare_positions=self._sync_positions,
            timeout=float(timeout),
            connect_timeout=float(connect_timeout if connect_timeout is not None else timeout),
            backoff=backoff or Backoff(),
            sleep=sleep or asyncio.sleep,
            heartbeat_interval=float(heartbeat_interval),
            degraded_limit=max(1, int(degraded_limit)),
            halted=halted,
        )
        self.quotes = QuoteBoard(self, clock=self._clock)
        """Quotes of what the screens want, streamed from the accounts that trade them."""

    @property
    def timeout(self) -> float:
        """Seconds every call to one broker may take."""
        return self._upkeep.timeout

    @property
    def connect_timeout(self) -> float:
        return self._upkeep.connect_timeout

    @property
    def heartbeat_interval(self) -> float:
        return self._upkeep.heartbeat_interval

    @property
    def backoff(self) -> Backoff:
        return self._upkeep.backoff

    @property
    def degraded_limit(self) -> int:
        """Reads that may fail in a row before an account is treated as dropped."""
        return self._upkeep.degraded_limit

    @degraded_limit.setter
    def degraded_limit(self, limit: int) -> None:
        self._upkeep.degraded_limit = max(1, int(limit))

    # -- accounts ---------------------------------------------------------------------------
    def add_broker(
        self,
        name: str,
        broker: Broker,
        default: bool = False,
        weight: float = 1.0,
        *,
        broker_type: str | None = None,
    ) -> None:
        name = account_name(name)
        if name in self._accounts:
            raise ValueError(f"an account named {name!r} already exists")
        if not isinstance(broker, Broker):
            raise TypeError(f"{name}: expected a Broker, not {type(broker).__name__}")
        status = AccountStatus(
            name=name,
            broker_type=broker_type or broker.broker_type,
            live=broker.live,
            currency=broker.currency,
            # Even a broker handed over already connected has not been read yet: orders wait
            # for connect_all() to resync it.
            state=_CS.DISCONNECTED,
            session_expires_at=broker.session_expires_at,
        )
        # Listen from now on so nothing the broker reports before start() is lost: until the
        # manager runs, updates wait in the relay.
        account = AccountRecord(name, broker, _check_weight(weight), status)
        self._accounts[name] = account
        relay = self._relays[name] = _Relay(name, self._hub, self._clock, running=self.running)
        broker.add_listener(relay)
        broker.set_quote_sink(self.quotes.receive)
        if default:
            self._default = name
        self._rebuild_snapshot()

    def remove_broker(self, name: str) -> Broker:
        """Forget an account and stop watching it. A connected broker is disconnected in the
        background: a session nobody watches must not stay open."""
        account = self._account(name)
        del self._accounts[account.name]
        if self._default == account.name:
            self._default = None
        relay = self._relays.pop(account.name, None)
        if relay is not None:
            account.broker.remove_listener(relay)
            relay.batch.discard()
        account.broker.set_quote_sink(None)
        self._upkeep.forget(account)
        if account.broker.is_connected() and _running_loop() is not None:
            self._calls.spawn(self._upkeep.quiet_disconnect(account.broker), f"disconnect:{account.name}")
        self._rebuild_snapshot()
        self._publish(ConnectionEvent(account.name, _CS.DISCONNECTED, "account removed", self._now()))
        return account.broker

    @property
    def brokers(self) -> dict[str, Broker]:
        return {name: account.broker for name, account in self._accounts.items()}

    def get(self, name: str) -> Broker:
        return self._account(name).broker

    def names(self) -> list[str]:
        return list(self._accounts)

    def __contains__(self, name: object) -> bool:
        return name in self._accounts

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def default_account(self) -> str | None:
        """The account an unrouted order goes to: see ``brokers.accounts.default_account``."""
        return default_account(self._accounts, self._default)

    def set_default(self, name: str | None) -> None:
        self._default = None if name is None else self._account(name).name

    def weights(self) -> dict[str, float]:
        return {name: account.weight for name, account in self._accounts.items()}

    def set_weight(self, name: str, weight: float) -> None:
        self._account(name).weight = _check_weight(weight)

    def _account(self, name: str) -> AccountRecord:
        try:
            return self._accounts[name]
        except (KeyError, TypeError):
            raise UnknownAccountError(str(name), list(self._accounts)) from None

    # -- health -----------------------------------------------------------------------------
    def statuses(self) -> dict[str, AccountStatus]:
        return {name: self.status(name) for name in self._accounts}

    def status(self, name: str) -> AccountStatus:
        account = self._account(name)
        account.status.session_expires_at = account.broker.session_expires_at
        return account.status.model_copy()

    def state(self, name: str) -> ConnectionState:
        return self._account(name).status.state

    def is_available(self, name: str) -> bool:
        """May new orders go to this account now? Cheap enough for the order path."""
        account = self._accounts.get(name)
        if account is None or account.status.state not in ORDERABLE:
            return False
        if account.session_expired(self._now()):
            return False
        return account.broker.is_connected() and adapter_orderable(account.broker)

    def unavailable_reason(self, name: str) -> str | None:
        """A sentence saying why orders cannot go to ``name`` now, or None if they can."""
        account = self._accounts.get(name)
        if account is None:
            return f"unknown account {name!r}"
        state = account.status.state
        if account.session_expired(self._now()):
            return f"{name}: the broker session has expired; log in again"
        if state is _CS.RESYNCING or not adapter_orderable(account.broker):
            return f"{name} is re-reading its orders and positions after a reconnect; try again shortly"
        if state not in ORDERABLE or not account.broker.is_connected():
            detail = f" ({account.status.last_error})" if account.status.last_error else ""
            return f"{name} is {state.value.lower()}{detail}"
        return None

    def next_retry(self, name: str) -> datetime | None:
        """When the manager will next try to reconnect ``name``, while it is waiting to."""
        return self._account(name).next_retry_at

    def position_diffs(self) -> dict[str, tuple[PositionDiff, ...]]:
        """The differences found by the last position sync of each account."""
        return {name: account.diffs for name, account in self._accounts.items()}

    def halt_cancels(self) -> dict[str, HaltCancelEvent]:
        """Per account that (re)connected while trading was halted, the last such sweep: the
        working orders it cancelled and those it could not, with the reason."""
        return {
            name: account.halt_cancel
            for name, account in self._accounts.items()
            if account.halt_cancel is not None
        }

    def set_halted_check(self, halted: HaltedCheck | None) -> None:
        """Tell the manager how to learn whether trading is halted (see the class text), for a
        kill switch built after the manager; None stops cancelling on (re)connect."""
        self._upkeep.halted = halted

    def add_resync_hook(self, hook: ResyncHook) -> None:
        """``await hook(account)`` runs while the account is RESYNCING after every (re)connect, so
        orders stay blocked until it returns (the execution layer reconciles its orders here)."""
        self._upkeep.resync_hooks.append(hook)

    def remove_resync_hook(self, hook: ResyncHook) -> None:
        with contextlib.suppress(ValueError):
            self._upkeep.resync_hooks.remove(hook)

    def _now(self) -> datetime:
        return self._clock()

    # -- connect / disconnect / refresh -----------------------------------------------------
    async def connect_all(self) -> dict[str, AccountStatus]:
        """Connect every account at once. Failures are marked on the account, never raised."""
        await self._upkeep.connect_all()
        return self.statuses()

    async def connect(self, name: str) -> AccountStatus:
        await self._upkeep.connect(self._account(name))
        return self.status(name)

    async def resync(self, name: str) -> AccountStatus:
        """Re-read an account's orders, positions and balance (orders to it wait meanwhile)."""
        await self._upkeep.resync(self._account(name))
        return self.status(name)

    async def disconnect_all(self) -> None:
        """Disconnect every account at once and stop reconnecting them."""
        await self._upkeep.disconnect_all()

    async def disconnect(self, name: str) -> None:
        await self._upkeep.disconnect(self._account(name))

    async def refresh(self) -> Snapshot:
        """Read balance and positions of every connected account at once.

        An account that does not answer within ``timeout`` or fails is marked DEGRADED (or
        DISCONNECTED when its connection dropped) and keeps its last data, flagged stale.
        """
        await self._upkeep.refresh()
        return self._snapshot

    # -- fan-out ----------------------------------------------------------------------------
    async def call_each(
        self,
        call: Callable[[Broker], Awaitable[T]],
        accounts: Iterable[str] | None = None,
        *,
        per_broker_timeout: float | None = None,
    ) -> dict[str, CallResult[T]]:
        """``await call(broker)`` on every named account at once, each under its own timeout
        (``per_broker_timeout``, default the manager's).

        Never raises for a broker's failure: each account gets a ``CallResult``.
        """
        names = list(self._accounts) if accounts is None else [self._account(n).name for n in accounts]
        limit = self.timeout if per_broker_timeout is None else per_broker_timeout

        async def one(name: str) -> CallResult[T]:
            broker = self._accounts[name].broker
            return await self._calls.call(name, lambda: call(broker), limit)

        results = await asyncio.gather(*(one(name) for name in names))
        return {result.account: result for result in results}

    # -- snapshot ---------------------------------------------------------------------------
    def _rebuild_snapshot(self) -> Snapshot:
        balances: dict[str, Balance] = {}
        positions: dict[str, list[Position]] = {}
        as_of: dict[str, datetime] = {}
        stale: set[str] = set()
        errors: dict[str, str] = {}
        for name, account in self._accounts.items():
            if account.status.last_error:
                errors[name] = account.status.last_error
            if account.data_at is None or account.balance is None:
                continue  # never read
            balances[name] = account.balance
            positions[name] = list(account.positions)
            as_of[name] = account.reported_at or account.data_at
            if not account.fresh:
                stale.add(name)
        self._snapshot = Snapshot(
            taken_at=self._now(),
            balances=balances,
            positions=positions,
            statuses=self.statuses(),
            as_of=as_of,
            stale=frozenset(stale),
            errors=errors,
        )
        return self._snapshot

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- position sync ----------------------------------------------------------------------
    def _sync_positions(self, account: AccountRecord) -> None:
        if self.book_provider is None:
            return
        try:
            book = self.book_provider()
        except Exception:
            log.exception("reading the book for %s failed; positions not compared", account.name)
            return
        account.diffs = compare_positions(account.name, book, account.positions)
        self._publish(PositionDiffEvent(account.name, account.diffs, self._now()))

    # -- cancel -----------------------------------------------------------------------------
    async def cancel_all_orders(
        self, accounts: Iterable[str] | None = None, *, per_broker_timeout: float | None = None
    ) -> dict[str, CancelAllResult]:
        """Ask every account (or those named) to cancel all working orders, all at once.

        Cancels are never held back by health: an account that says it is connected is asked,
        whatever its state; one that is not is reported as such (and, while halted, as one
        whose working orders are cancelled when it reconnects).
        """
        names = list(self._accounts) if accounts is None else [self._account(n).name for n in accounts]
        connected = [n for n in names if self._accounts[n].broker.is_connected()]
        results = await self.call_each(
            lambda broker: broker.cancel_all_orders(), connected, per_broker_timeout=per_broker_timeout
        )
        outcome: dict[str, CancelAllResult] = {}
        down = "not connected"
        if len(connected) < len(names) and self._upkeep.halted_now():
            down = "not connected; its working orders are cancelled when it reconnects"
        for name in names:
            result = results.get(name)
            if result is None:
                outcome[name] = CancelAllResult(name, False, (), down)
            elif result.ok:
                outcome[name] = CancelAllResult(
                    name, True, tuple(result.value or ()), None, result.elapsed_ms
                )
            else:
                outcome[name] = CancelAllResult(name, False, (), result.error, result.elapsed_ms)
        return outcome

    # -- events -----------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[ManagerEvent]:
        """A queue receiving every event from now on; pair with ``unsubscribe``."""
        return self._hub.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[ManagerEvent]) -> None:
        self._hub.unsubscribe(queue)

    def events(self) -> AsyncIterator[ManagerEvent]:
        return self._hub.stream()

    def add_listener(self, listener: ManagerListener) -> None:
        """Call ``listener(event)`` with every event from now on, as it is published (on the
        event loop thread), in the order subscribers' queues receive them. For a consumer that
        schedules its own work: it must be quick and must not await; an exception from it is
        logged and dropped."""
        self._hub.add_listener(listener)

    def remove_listener(self, listener: ManagerListener) -> None:
        self._hub.remove_listener(listener)

    def _publish(self, event: ManagerEvent) -> None:
        if isinstance(event, ConnectionEvent):
            self.quotes.refresh()
        self._hub.publish(event)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._upkeep.running

    async def start(self) -> None:
        """Start the event pumps, the heartbeat, and reconnecting accounts that are down."""
        if self.running:
            return
        self._upkeep.start()
        for relay in self._relays.values():
            relay.batch.resume()
        await self.quotes.start()

    async def stop(self) -> None:
        """Stop every background task the manager runs. Connections stay as they are."""
        for relay in self._relays.values():
            relay.batch.pause()
        await self.quotes.stop()
        for task in tuple(self._calls.abandoned):
            task.cancel()
        await self._upkeep.stop()
        # Background disconnects may finish; broker calls that ignore cancellation are given up
        # on after the timeout rather than holding shutdown forever.
        leftovers = {*self._calls.abandoned, *self._calls.background}
        if leftovers:
            await asyncio.wait(leftovers, timeout=self.timeout)

    async def __aenter__(self) -> MultiBrokerManager:
        await self.connect_all()
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        await self.disconnect_all()

    # -- consolidated view (no I/O) ---------------------------------------------------------
    def last_price(self, instrument: Instrument | str, account: str | None = None) -> Decimal | None:
        """Last price of ``instrument`` (a plain symbol is a stock) held in memory: the brokers'
        own feeds first, then the last snapshot's positions in that very instrument."""
        if not isinstance(instrument, Instrument):
            instrument = instrument_of(instrument, AssetClass.STOCK)
        if account is not None:
            # The usual question (risk checks ask it for every order): one account's own feed.
            record = self._accounts.get(account)
            if record is not None:
                price = record.broker.last_price_nowait(instrument)
                if price is not None:
                    return price
            names = [self._account(account).name]
        else:
            names = list(self._accounts)
            default = self.default_account
            if default in self._accounts:
                names.remove(default)
                names.insert(0, default)
        for name in names:
            price = self._accounts[name].broker.last_price_nowait(instrument)
            if price is not None:
                return price
        for name in names:
            for position in self._snapshot.positions.get(name, ()):
                if position.last_price is not None and position.instrument == instrument:
                    return position.last_price
        return None

    def _mark_price(self, position: Position) -> Decimal | None:
        account = self._accounts.get(position.account)
        if account is not None:
            live = account.broker.last_price_nowait(position.instrument)
            if live is not None:
                return live
        return position.last_price

    def previous_close(self, position: Position) -> Decimal | None:
        """The previous close of ``position``: its broker's, else its quote's (IB's positions
        carry none; its market data lines do). ``brokers.pnl.previous_close``'s other source."""
        if position.previous_close is not None:
            return position.previous_close
        quote = self.quotes.quote(position.instrument)
        return None if quote is None else quote.previous_close

    def consolidated_positions(self) -> list[ConsolidatedPosition]:
        """Positions grouped by instrument, from the last snapshot."""
        return consolidate_positions(self._snapshot, self.fx, self._mark_price, close=self.previous_close)

    def totals(self) -> Totals:
        """Cash, equity, buying power, market value and unrealised P&L per account (in its own
        currency and in the base currency) and in total (base currency), from the last snapshot."""
        currencies = {name: account.status.currency for name, account in self._accounts.items()}
        return consolidate_totals(
            currencies,
            self._snapshot,
            self.fx,
            self._mark_price,
            self.base_currency,
            close=self.previous_close,
        )

    def equity(self) -> Money:
        return self.totals().total.equity

    def buying_power(self) -> BuyingPower:
        return consolidate_buying_power(self.totals())
