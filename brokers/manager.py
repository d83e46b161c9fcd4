"""Several broker accounts behind one object: concurrent calls, health, reconnect, one view.

Every call that reaches more than one broker fans out concurrently, each broker under its own
timeout, so one slow, hanging or failing broker is marked on its account and never holds up
the others. Consolidated figures are computed without I/O from the last data read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from .base import Broker
from .consolidation import (
    AccountTotals,
    BuyingPower,
    ConsolidatedPosition,
    Figures,
    Snapshot,
    Totals,
    compare_positions,
    consolidate_buying_power,
    consolidate_positions,
    consolidate_totals,
    empty_snapshot,
)

# Re-exported for code that imports it from brokers.manager.
from .consolidation import average_price as average_price
from .errors import AuthenticationError, BrokerConnectionError, UnknownAccountError
from .events import (
    ConnectionEvent,
    FillEvent,
    ManagerEvent,
    OrderEvent,
    PositionDiff,
    PositionDiffEvent,
)
from .fanout import BoundedCalls, CallResult, CancelAllResult, describe_error
from .fx import FxRates, Money
from .health import ORDERABLE, READABLE, AccountRecord, Backoff
from .models import (
    AccountStatus,
    Balance,
    ConnectionState,
    Fill,
    Order,
    Position,
    utcnow,
)
from .plausibility import implausible
from .pubsub import EventHub

__all__ = [
    "AccountTotals",
    "Backoff",
    "BookProvider",
    "BuyingPower",
    "CallResult",
    "CancelAllResult",
    "ConnectionEvent",
    "ConsolidatedPosition",
    "Figures",
    "FillEvent",
    "ManagerEvent",
    "Money",
    "MultiBrokerManager",
    "OrderEvent",
    "PositionDiff",
    "PositionDiffEvent",
    "Snapshot",
    "Totals",
    "UnknownAccountError",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
BookProvider = Callable[[], dict[tuple[str, str], Decimal]]
"""The journal's book: (account, symbol) -> signed quantity the execution layer believes held."""
ResyncHook = Callable[[str], Awaitable[Any]]

_CS = ConnectionState


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("account name must be non-empty text")
    text = name.strip()
    if len(text) > 64 or not all(ch.isalnum() or ch in "-_." for ch in text):
        raise ValueError(
            f"account name may hold letters, digits, '-', '_' and '.' (64 at most), not {name!r}"
        )
    return text


def _check_weight(weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float | Decimal):
        raise ValueError(f"weight must be a number, not {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"weight must be a finite number of at least 0, not {weight!r}")
    return value


def _adapter_orderable(broker: Broker) -> bool:
    """Adapters that resync on their own (a stream reconnect) report it in ``connection_state``;
    orders wait for that too, not only for the manager's own resync."""
    own = getattr(broker, "connection_state", None)
    return own not in _ADAPTER_BLOCKING


_ADAPTER_BLOCKING = frozenset({_CS.RESYNCING, _CS.CONNECTING})


def _adapter_trouble(broker: Broker) -> str | None:
    """Why an adapter that watches its own feed (a stream, an order-book poll) reports itself
    DEGRADED, or None: reads can succeed while updates have stopped arriving."""
    if getattr(broker, "connection_state", None) is not _CS.DEGRADED:
        return None
    reason = getattr(broker, "last_error", None)
    return reason if isinstance(reason, str) and reason else "the broker's update feed is not working"


class _Relay:
    """Hands one account's broker updates on to the manager's subscribers, in arrival order.

    The broker calls it with each update as it happens; it publishes from a callback on the next
    turn of the loop, everything that arrived in between at once: an order's acceptance and
    fills cost one callback, not a queue round trip and a task switch each. While the manager
    is not running, updates wait here until it starts.
    """

    __slots__ = ("account", "manager", "pending", "scheduled")

    def __init__(self, manager: MultiBrokerManager, account: AccountRecord) -> None:
        self.manager = manager
        self.account = account
        self.pending: list[Any] = []
        self.scheduled = False

    def __call__(self, event: Any) -> None:
        self.pending.append(event)
        if not self.scheduled and self.manager._running:
            self.resume()

    def resume(self) -> None:
        if self.pending and not self.scheduled:
            asyncio.get_running_loop().call_soon(self.flush)
            self.scheduled = True

    def flush(self) -> None:
        self.scheduled = False
        manager = self.manager
        name = self.account.name
        if not manager._running or manager._relays.get(name) is not self:
            return  # stopped (kept for start()) or removed (dropped)
        events, self.pending = self.pending, []
        now = manager._now()
        publish = manager._hub.publish  # _publish(), without the call in between
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
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        book_provider: BookProvider | None = None,
        degraded_limit: int = 3,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be a positive number of seconds")
        self._clock: Clock = clock or utcnow
        self.fx = fx if fx is not None else FxRates(base_currency, clock=self._clock)
        if self.fx.base != base_currency.strip().upper():
            raise ValueError(
                f"fx converts into {self.fx.base} but base_currency is {base_currency}; they must match"
            )
        self.base_currency = self.fx.base
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.backoff = backoff or Backoff()
        self._sleep = sleep or asyncio.sleep
        self.book_provider = book_provider
        self.degraded_limit = max(1, int(degraded_limit))
        self._accounts: dict[str, AccountRecord] = {}
        self._default: str | None = None
        self._hub: EventHub[ManagerEvent] = EventHub("manager")
        self._relays: dict[str, _Relay] = {}
        self._resync_hooks: list[ResyncHook] = []
        self._snapshot = empty_snapshot()
        self._running = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._calls = BoundedCalls()

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
        name = _check_name(name)
        if name in self._accounts:
            raise ValueError(f"an account named {name!r} already exists")
        if not isinstance(broker, Broker):
            raise TypeError(f"{name}: expected a Broker, not {type(broker).__name__}")
        status = AccountStatus(
            name=name,
            broker_type=broker_type or getattr(broker, "broker_type", "unknown"),
            live=bool(getattr(broker, "live", False)),
            currency=getattr(broker, "currency", "USD"),
            # Even a broker handed over already connected has not been read yet: orders wait
            # for connect_all() to resync it.
            state=_CS.DISCONNECTED,
            session_expires_at=broker.session_expires_at,
        )
        # Listen from now on so nothing the broker reports before start() is lost: until the
        # manager runs, updates wait in the relay.
        account = AccountRecord(name, broker, _check_weight(weight), status)
        self._accounts[name] = account
        relay = self._relays[name] = _Relay(self, account)
        broker.add_listener(relay)
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
        for task in (account.reconnect, account.reading):
            if task is not None:
                task.cancel()
        if account.broker.is_connected() and _running_loop() is not None:
            self._calls.spawn(self._quiet_disconnect(account.broker), f"disconnect:{account.name}")
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
        """The account marked default; a lone account is the default of itself. With several
        accounts and none marked there is no default, so an unrouted order is refused rather
        than sent somewhere the trader did not choose."""
        if self._default is not None:
            return self._default
        return next(iter(self._accounts)) if len(self._accounts) == 1 else None

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
        if self._session_expired(account):
            return False
        return account.broker.is_connected() and _adapter_orderable(account.broker)

    def unavailable_reason(self, name: str) -> str | None:
        """A sentence saying why orders cannot go to ``name`` now, or None if they can."""
        account = self._accounts.get(name)
        if account is None:
            return f"unknown account {name!r}"
        state = account.status.state
        if self._session_expired(account):
            return f"{name}: the broker session has expired; log in again"
        if state is _CS.RESYNCING or not _adapter_orderable(account.broker):
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

    def add_resync_hook(self, hook: ResyncHook) -> None:
        """``await hook(account)`` runs while the account is RESYNCING after every (re)connect, so
        orders stay blocked until it returns (the execution layer reconciles its orders here)."""
        self._resync_hooks.append(hook)

    def remove_resync_hook(self, hook: ResyncHook) -> None:
        with contextlib.suppress(ValueError):
            self._resync_hooks.remove(hook)

    def _now(self) -> datetime:
        return self._clock()

    def _session_expired(self, account: AccountRecord) -> bool:
        expires = account.broker.session_expires_at
        return expires is not None and expires <= self._now()

    def _set_state(self, account: AccountRecord, state: ConnectionState, error: str | None = None) -> None:
        status = account.status
        if state in (_CS.CONNECTING, _CS.FAILED, _CS.DISCONNECTED):
            account.fresh = False
        if status.state is state and status.last_error == error:
            return
        status.state = state
        status.last_error = error
        if account.name in self._accounts:
            self._publish(ConnectionEvent(account.name, state, error, self._now()))

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

    # -- connect / disconnect ---------------------------------------------------------------
    async def connect_all(self) -> dict[str, AccountStatus]:
        """Connect every account at once. Failures are marked on the account, never raised."""
        await asyncio.gather(*(self._connect(account) for account in list(self._accounts.values())))
        return self.statuses()

    async def connect(self, name: str) -> AccountStatus:
        await self._connect(self._account(name))
        return self.status(name)

    async def _connect(self, account: AccountRecord) -> None:
        account.wanted = True
        account.blocked = None
        if account.reconnect is not None and not account.reconnect.done():
            account.reconnect.cancel()
        if account.status.state in READABLE and account.broker.is_connected():
            return
        await self._attempt(account)
        if not self._is_up(account) and account.name in self._accounts:
            self._schedule_reconnect(account)

    def _is_up(self, account: AccountRecord) -> bool:
        return account.status.state in READABLE

    async def _attempt(self, account: AccountRecord) -> bool:
        """One connect followed by a resync. True when the account ends up CONNECTED."""
        async with account.lock:
            if account.status.state in READABLE and account.broker.is_connected():
                return True
            self._set_state(account, _CS.CONNECTING, account.status.last_error)
            try:
                if not account.broker.is_connected():
                    await self._calls.bounded(account.broker.connect(), self.connect_timeout)
            except TimeoutError:
                self._set_state(account, _CS.FAILED, f"did not connect within {self.connect_timeout:g} s")
                return False
            except AuthenticationError as exc:
                account.blocked = describe_error(exc)
                self._set_state(account, _CS.FAILED, account.blocked)
                return False
            except Exception as exc:
                self._set_state(account, _CS.FAILED, describe_error(exc))
                return False
            return await self._resync_locked(account)

    async def resync(self, name: str) -> AccountStatus:
        """Re-read an account's orders, positions and balance (orders to it wait meanwhile)."""
        account = self._account(name)
        async with account.lock:
            await self._resync_locked(account)
        return self.status(name)

    async def _resync_locked(self, account: AccountRecord) -> bool:
        self._set_state(account, _CS.RESYNCING)
        broker = account.broker
        started = time.perf_counter()
        try:
            orders, positions, balance = await self._calls.bounded(
                asyncio.gather(broker.get_open_orders(), broker.get_positions(), broker.get_balance()),
                self.timeout,
            )
        except TimeoutError:
            self._set_state(account, _CS.FAILED, f"resync got no answer within {self.timeout:g} s")
            account.fresh = False
            return False
        except Exception as exc:
            self._set_state(account, _CS.FAILED, f"resync failed: {describe_error(exc)}")
            account.fresh = False
            return False
        problem = implausible(balance, positions)
        if problem is None:
            self._store(account, balance, positions, (time.perf_counter() - started) * 1000)
        else:
            problem = f"{account.name} sent figures that cannot be used: {problem}"
            account.fresh = False
        for order in orders:
            self._publish(OrderEvent(account.name, order, self._now()))
        for hook in tuple(self._resync_hooks):
            try:
                await self._calls.bounded(hook(account.name), self.timeout)
            except Exception as exc:
                log.exception("resync hook failed for %s", account.name)
                self._set_state(account, _CS.FAILED, f"resync failed: {describe_error(exc)}")
                return False
        if problem is None:
            self._sync_positions(account)
        account.failed_reads = 0
        self._set_state(account, _CS.CONNECTED if problem is None else _CS.DEGRADED, problem)
        self._rebuild_snapshot()
        return True

    async def disconnect_all(self) -> None:
        """Disconnect every account at once and stop reconnecting them."""
        await asyncio.gather(*(self._disconnect(a) for a in list(self._accounts.values())))

    async def disconnect(self, name: str) -> None:
        await self._disconnect(self._account(name))

    async def _disconnect(self, account: AccountRecord) -> None:
        account.wanted = False
        if account.reconnect is not None:
            account.reconnect.cancel()
        error = None
        try:
            await self._calls.bounded(account.broker.disconnect(), self.timeout)
        except Exception as exc:
            error = f"disconnect: {describe_error(exc)}"
        account.fresh = False
        self._set_state(account, _CS.DISCONNECTED, error)
        self._rebuild_snapshot()

    async def _quiet_disconnect(self, broker: Broker) -> None:
        try:
            await self._calls.bounded(broker.disconnect(), self.timeout)
        except Exception as exc:
            log.warning("disconnecting %s failed: %s", broker.name, describe_error(exc))

    # -- reconnect --------------------------------------------------------------------------
    def _lost(self, account: AccountRecord, error: str) -> None:
        account.fresh = False
        self._set_state(account, _CS.DISCONNECTED, error)
        self._schedule_reconnect(account)

    def _schedule_reconnect(self, account: AccountRecord) -> None:
        if not (self._running and account.wanted and account.blocked is None):
            return
        if account.reconnect is not None and not account.reconnect.done():
            return
        account.reconnect = asyncio.create_task(
            self._reconnect_loop(account), name=f"reconnect:{account.name}"
        )

    async def _reconnect_loop(self, account: AccountRecord) -> None:
        attempt = 0
        while account.name in self._accounts and account.wanted and account.blocked is None:
            delay = self.backoff.delay(attempt)
            log.info("%s: reconnect attempt %d in %.2f s", account.name, attempt + 1, delay)
            account.next_retry_at = self._now() + timedelta(seconds=delay)
            try:
                await self._sleep(delay)
            finally:
                account.next_retry_at = None
            if not account.wanted or account.name not in self._accounts:
                return
            # A half-open session would refuse a new connect on some brokers; close it first.
            with contextlib.suppress(Exception):
                await self._calls.bounded(account.broker.disconnect(), self.timeout)
            if await self._attempt(account):
                log.info("%s: reconnected after %d attempt(s)", account.name, attempt + 1)
                return
            attempt += 1

    # -- refresh ----------------------------------------------------------------------------
    async def refresh(self) -> Snapshot:
        """Read balance and positions of every connected account at once.

        An account that does not answer within ``timeout`` or fails is marked DEGRADED (or
        DISCONNECTED when its connection dropped) and keeps its last data, flagged stale.
        """
        accounts = list(self._accounts.values())
        await asyncio.gather(*(self._read(account) for account in accounts))
        return self._rebuild_snapshot()

    async def _read(self, account: AccountRecord) -> None:
        # A refresh already under way for this account is joined, not doubled: a slow broker
        # must not collect a pile of identical calls from the heartbeat and the screen.
        if account.reading is None or account.reading.done():
            account.reading = asyncio.ensure_future(self._read_once(account))
        reading = account.reading
        # wait() neither cancels the shared read when this caller is cancelled nor raises
        # when someone else cancelled it (stop(), remove_broker()).
        await asyncio.wait({reading})
        if not reading.cancelled() and reading.exception() is not None:
            log.error("refreshing %s failed", account.name, exc_info=reading.exception())

    async def _read_once(self, account: AccountRecord) -> None:
        if account.status.state not in READABLE:
            return
        if self._session_expired(account):
            account.blocked = "the broker session has expired; log in again"
            account.fresh = False
            self._set_state(account, _CS.FAILED, account.blocked)
            return
        broker = account.broker
        if not broker.is_connected():
            trouble = _adapter_trouble(broker)
            if trouble is not None:
                # The adapter is up but holds orders back while it repairs its own feed.
                account.fresh = False
                self._set_state(account, _CS.DEGRADED, trouble)
                return
            self._lost(account, account.status.last_error or "connection lost")
            return
        started = time.perf_counter()
        try:
            balance, positions, rates = await self._calls.bounded(
                asyncio.gather(broker.get_balance(), broker.get_positions(), broker.get_fx_rates()),
                self.timeout,
            )
        except TimeoutError:
            self._read_failed(account, f"no answer within {self.timeout:g} s")
            return
        except BrokerConnectionError as exc:
            self._lost(account, describe_error(exc))
            return
        except AuthenticationError as exc:
            account.blocked = describe_error(exc)
            account.fresh = False
            self._set_state(account, _CS.FAILED, account.blocked)
            return
        except Exception as exc:
            self._read_failed(account, describe_error(exc))
            return
        if account.status.state not in READABLE:
            return  # disconnected or resynced while the answer was on its way
        problem = implausible(balance, positions)
        if problem is not None:
            self._read_failed(account, f"{account.name} sent figures that cannot be used: {problem}")
            return
        self._store(account, balance, positions, (time.perf_counter() - started) * 1000)
        self._take_rates(account, rates)
        account.failed_reads = 0
        trouble = _adapter_trouble(broker)
        self._set_state(account, _CS.CONNECTED if trouble is None else _CS.DEGRADED, trouble)

    def _read_failed(self, account: AccountRecord, error: str) -> None:
        account.fresh = False
        account.failed_reads += 1
        if account.failed_reads >= self.degraded_limit:
            # A connection that has stopped answering altogether is as good as dropped.
            self._lost(account, f"{error} ({account.failed_reads} times in a row)")
        else:
            self._set_state(account, _CS.DEGRADED, error)

    def _store(
        self, account: AccountRecord, balance: Balance, positions: list[Position], latency_ms: float
    ) -> None:
        now = self._now()
        account.balance = balance
        account.positions = [
            p if p.account == account.name else p.model_copy(update={"account": account.name})
            for p in positions
        ]
        account.data_at = now
        account.fresh = True
        account.status.last_refresh = now
        account.status.latency_ms = round(latency_ms, 3)

    def _take_rates(self, account: AccountRecord, rates: dict[str, Decimal]) -> None:
        for pair, rate in (rates or {}).items():
            try:
                self.fx.set_rate(pair, rate, source=account.name)
            except ValueError as exc:
                log.warning("%s reported an unusable fx rate %s: %s", account.name, pair, exc)

    def _rebuild_snapshot(self) -> Snapshot:
        balances: dict[str, Balance] = {}
        positions: dict[str, list[Position]] = {}
        as_of: dict[str, datetime] = {}
        stale: set[str] = set()
        errors: dict[str, str] = {}
        for name, account in self._accounts.items():
            if account.status.last_error:
                errors[name] = account.status.last_error
            if account.data_at is None:
                continue
            balances[name] = account.balance  # type: ignore[assignment]
            positions[name] = list(account.positions)
            as_of[name] = account.data_at
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
        whatever its state; one that is not is reported as such.
        """
        names = list(self._accounts) if accounts is None else [self._account(n).name for n in accounts]
        connected = [n for n in names if self._accounts[n].broker.is_connected()]
        results = await self.call_each(
            lambda broker: broker.cancel_all_orders(), connected, per_broker_timeout=per_broker_timeout
        )
        outcome: dict[str, CancelAllResult] = {}
        for name in names:
            result = results.get(name)
            if result is None:
                outcome[name] = CancelAllResult(name, False, (), "not connected")
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

    def add_listener(self, listener: Callable[[ManagerEvent], Any]) -> None:
        """Call ``listener(event)`` with every event from now on, as it is published (on the
        event loop thread), in the order subscribers' queues receive them. For a consumer that
        schedules its own work: it must be quick and must not await; an exception from it is
        logged and dropped."""
        self._hub.add_listener(listener)

    def remove_listener(self, listener: Callable[[ManagerEvent], Any]) -> None:
        self._hub.remove_listener(listener)

    def _publish(self, event: ManagerEvent) -> None:
        self._hub.publish(event)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Start the event pumps, the heartbeat, and reconnecting accounts that are down."""
        if self._running:
            return
        self._running = True
        for relay in self._relays.values():
            relay.resume()
        for account in self._accounts.values():
            if account.status.state in (_CS.FAILED, _CS.DISCONNECTED):
                self._schedule_reconnect(account)
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="manager-heartbeat")

    async def stop(self) -> None:
        """Stop every background task the manager runs. Connections stay as they are."""
        self._running = False
        tasks: list[asyncio.Future[Any]] = []
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
            self._heartbeat = None
        for account in self._accounts.values():
            for task in (account.reconnect, account.reading):
                if task is not None:
                    tasks.append(task)
            account.reconnect = account.reading = None
        for task in (*tasks, *self._calls.abandoned):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("heartbeat refresh failed")
            for account in list(self._accounts.values()):
                if account.status.state in (_CS.FAILED, _CS.DISCONNECTED):
                    self._schedule_reconnect(account)

    # -- consolidated view (no I/O) ---------------------------------------------------------
    def last_price(self, symbol: str, account: str | None = None) -> Decimal | None:
        """Last price held in memory: the brokers' own feeds first, then the last snapshot."""
        symbol = symbol.strip().upper()
        if account is not None:
            # The usual question (risk checks ask it for every order): one account's own feed.
            record = self._accounts.get(account)
            if record is not None:
                price = record.broker.last_price_nowait(symbol)
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
            price = self._accounts[name].broker.last_price_nowait(symbol)
            if price is not None:
                return price
        for name in names:
            for position in self._snapshot.positions.get(name, ()):
                if position.symbol == symbol and position.last_price is not None:
                    return position.last_price
        return None

    def _mark_price(self, position: Position) -> Decimal | None:
        account = self._accounts.get(position.account)
        if account is not None:
            live = account.broker.last_price_nowait(position.symbol)
            if live is not None:
                return live
        return position.last_price

    def consolidated_positions(self) -> list[ConsolidatedPosition]:
        """Positions grouped by (symbol, asset class, currency), from the last snapshot."""
        return consolidate_positions(self._snapshot, self.fx, self._mark_price)

    def totals(self) -> Totals:
        """Cash, equity, buying power, market value and unrealised P&L per account (in its own
        currency and in the base currency) and in total (base currency), from the last snapshot."""
        currencies = {name: account.status.currency for name, account in self._accounts.items()}
        return consolidate_totals(currencies, self._snapshot, self.fx, self._mark_price, self.base_currency)

    def equity(self) -> Money:
        return self.totals().total.equity

    def buying_power(self) -> BuyingPower:
        return consolidate_buying_power(self.totals())
