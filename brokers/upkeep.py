"""Keeping the manager's accounts connected and their data current.

Connect and resync, heartbeat reads of balance and positions, marking an account DEGRADED or
DISCONNECTED when it stops answering, and reconnecting dropped accounts on the backoff schedule.
Every broker call runs under its own timeout, so one slow or hanging broker never holds up the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from .accounts import AccountRecord
from .base import Broker
from .errors import AuthenticationError, BrokerConnectionError
from .events import ConnectionEvent, HaltCancelEvent, ManagerEvent, OrderEvent, UncancelledOrder
from .fanout import BoundedCalls, describe_error
from .fx import FxRates
from .health import READABLE, Backoff, adapter_trouble
from .models import Balance, ConnectionState, Order, Position
from .plausibility import implausible

__all__ = ["HaltedCheck", "ResyncHook", "Sleep", "Upkeep"]

log = logging.getLogger(__name__)

ResyncHook = Callable[[str], Awaitable[object]]
"""``await hook(account)`` while the account is RESYNCING after a (re)connect."""
Sleep = Callable[[float], Awaitable[object]]
HaltedCheck = Callable[[], bool]
"""True while trading is halted and a halt cancels working orders."""

_CS = ConnectionState


class Upkeep:
    """Connects, reads and reconnects the accounts in ``accounts`` (the manager's own mapping,
    which it alone adds to and removes from).

    It tells the manager what it learns through three callables: ``publish`` for every connection
    and order event, ``changed`` after figures were read, and ``compare_positions`` after a
    resync read an account's positions. ``timeout`` bounds every call to one broker;
    ``connect_timeout`` a connect. An account that fails ``degraded_limit`` reads in a row is
    treated as dropped. While ``halted()`` says so, an account that (re)connects has its working
    orders cancelled before it is marked CONNECTED: a halt could not reach it while it was down.
    """

    def __init__(
        self,
        accounts: Mapping[str, AccountRecord],
        *,
        calls: BoundedCalls,
        fx: FxRates,
        clock: Callable[[], datetime],
        publish: Callable[[ManagerEvent], None],
        changed: Callable[[], object],
        compare_positions: Callable[[AccountRecord], None],
        timeout: float,
        connect_timeout: float,
        backoff: Backoff,
        sleep: Sleep,
        heartbeat_interval: float,
        degraded_limit: int,
        halted: HaltedCheck | None = None,
    ) -> None:
        self._accounts = accounts
        self.halted = halted
        self._calls = calls
        self.fx = fx
        self._now = clock
        self._publish = publish
        self._changed = changed
        self._compare_positions = compare_positions
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self._sleep = sleep
        self.heartbeat_interval = heartbeat_interval
        self.degraded_limit = degraded_limit
        self.resync_hooks: list[ResyncHook] = []
        self.running = False
        self._heartbeat: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the heartbeat, and reconnecting accounts that are down."""
        self.running = True
        for account in self._accounts.values():
            if account.status.state in (_CS.FAILED, _CS.DISCONNECTED):
                self._schedule_reconnect(account)
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="manager-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat and every reconnect and read under way."""
        self.running = False
        tasks: list[asyncio.Task[None]] = []
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
            self._heartbeat = None
        for account in self._accounts.values():
            tasks.extend(task for task in (account.reconnect, account.reading) if task is not None)
            account.reconnect = account.reading = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def forget(self, account: AccountRecord) -> None:
        """Stop watching an account the manager has dropped."""
        for task in (account.reconnect, account.reading):
            if task is not None:
                task.cancel()

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

    # -- state ------------------------------------------------------------------------------
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

    # -- connect / disconnect ---------------------------------------------------------------
    async def connect_all(self) -> None:
        """Connect every account at once. Failures are marked on the account, never raised."""
        await asyncio.gather(*(self.connect(account) for account in list(self._accounts.values())))

    async def connect(self, account: AccountRecord) -> None:
        """Connect and resync ``account``, and keep it connected from now on."""
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

    async def resync(self, account: AccountRecord) -> None:
        """Re-read an account's orders, positions and balance (orders to it wait meanwhile)."""
        async with account.lock:
            await self._resync_locked(account)

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
        for hook in tuple(self.resync_hooks):
            try:
                await self._calls.bounded(hook(account.name), self.timeout)
            except Exception as exc:
                log.exception("resync hook failed for %s", account.name)
                self._set_state(account, _CS.FAILED, f"resync failed: {describe_error(exc)}")
                return False
        if problem is None:
            self._compare_positions(account)
        if self.halted_now():
            # Last, after the hooks and right before the account becomes usable, so an order
            # the reconciliation found working is cancelled too.
            left = await self._cancel_while_halted(account, orders)
            problem = "; ".join(p for p in (problem, left) if p) or None
        account.failed_reads = 0
        self._set_state(account, _CS.CONNECTED if problem is None else _CS.DEGRADED, problem)
        self._changed()
        return True

    def halted_now(self) -> bool:
        """Whether a (re)connect now must cancel working orders first; an error counts as yes."""
        if self.halted is None:
            return False
        try:
            return bool(self.halted())
        except Exception:
            log.exception("could not tell whether trading is halted; treating it as halted")
            return True

    async def _cancel_while_halted(self, account: AccountRecord, orders: list[Order]) -> str | None:
        """Cancel the working orders found at ``account`` (the broker's bulk cancel where it has
        one), publish what happened, and say what is left working, or None."""
        working = [order for order in orders if order.is_working]
        if not working:
            # Nothing to do; an earlier sweep's leftovers no longer stand.
            account.halt_cancel = HaltCancelEvent(account.name, (), (), self._now())
            return None
        error: str | None = None
        try:
            asked = set(await self._calls.bounded(account.broker.cancel_all_orders(), self.timeout))
        except TimeoutError:
            asked, error = set(), f"cancel-all got no answer within {self.timeout:g} s"
        except Exception as exc:
            asked, error = set(), f"cancel-all failed: {describe_error(exc)}"
        cancelled = tuple(
            o.broker_order_id for o in working if o.broker_order_id and o.broker_order_id in asked
        )
        left = tuple(
            UncancelledOrder(o, error or "the broker's cancel-all did not include it")
            for o in working
            if not (o.broker_order_id and o.broker_order_id in asked)
        )
        account.halt_cancel = HaltCancelEvent(account.name, cancelled, left, self._now())
        self._publish(account.halt_cancel)
        if not left:
            log.warning(
                "%s came back while trading is halted: cancelled %d working order(s)",
                account.name,
                len(cancelled),
            )
            return None
        log.error(
            "%s came back while trading is halted: %d working order(s) could not be cancelled (%s)",
            account.name,
            len(left),
            left[0].reason,
        )
        return f"trading is halted but {len(left)} working order(s) could not be cancelled: {left[0].reason}"

    async def disconnect_all(self) -> None:
        """Disconnect every account at once and stop reconnecting them."""
        await asyncio.gather(*(self.disconnect(a) for a in list(self._accounts.values())))

    async def disconnect(self, account: AccountRecord) -> None:
        """Disconnect ``account`` and stop reconnecting it."""
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
        self._changed()

    async def quiet_disconnect(self, broker: Broker) -> None:
        """Disconnect a broker nobody watches any more; a failure is only logged."""
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
        if not (self.running and account.wanted and account.blocked is None):
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
    async def refresh(self) -> None:
        """Read balance and positions of every connected account at once.

        An account that does not answer within ``timeout`` or fails is marked DEGRADED (or
        DISCONNECTED when its connection dropped) and keeps its last data, flagged stale.
        """
        accounts = list(self._accounts.values())
        await asyncio.gather(*(self._read(account) for account in accounts))
        self._changed()

    async def _read(self, account: AccountRecord) -> None:
        # A refresh already under way for this account is joined, not doubled: a slow broker
        # must not collect a pile of identical calls from the heartbeat and the screen.
        if account.reading is None or account.reading.done():
            account.reading = asyncio.create_task(self._read_once(account))
        reading = account.reading
        # wait() neither cancels the shared read when this caller is cancelled nor raises
        # when someone else cancelled it (stop(), remove_broker()).
        await asyncio.wait({reading})
        if not reading.cancelled() and reading.exception() is not None:
            log.error("refreshing %s failed", account.name, exc_info=reading.exception())

    async def _read_once(self, account: AccountRecord) -> None:
        if account.status.state not in READABLE:
            return
        if account.session_expired(self._now()):
            account.blocked = "the broker session has expired; log in again"
            account.fresh = False
            self._set_state(account, _CS.FAILED, account.blocked)
            return
        broker = account.broker
        if not broker.is_connected():
            trouble = adapter_trouble(broker)
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
        trouble = adapter_trouble(broker)
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
        account.reported_at = account.broker.figures_as_of
        account.fresh = True
        account.status.last_refresh = now
        account.status.as_of = account.reported_at
        account.status.latency_ms = round(latency_ms, 3)

    def _take_rates(self, account: AccountRecord, rates: dict[str, Decimal]) -> None:
        for pair, rate in (rates or {}).items():
            try:
                self.fx.set_rate(pair, rate, source=account.name)
            except ValueError as exc:
                log.warning("%s reported an unusable fx rate %s: %s", account.name, pair, exc)
