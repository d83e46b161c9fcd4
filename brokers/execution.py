"""ExecutionService: the only code path that calls ``Broker.place_order``.

The order path, in this order: validation, kill-switch state, route, broker health, risk checks,
journal write of the intent, then - with no ``await`` in between - the final kill-switch check
and the call to ``place_order``, then the journal records the broker's answer. Everything before
the broker call is synchronous, so another task can never slip a halt in between a check and
the call it guards.

A submit whose broker call times out or loses its connection becomes UNKNOWN. It is never
retried (that is how duplicate orders happen); reconciliation (``brokers.reconcile``) asks the
broker by ``client_order_id`` and settles it. Orders are tracked in ``brokers.tracking`` and
positions kept in ``brokers.book``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from . import journal as jr
from .amend import OrderAmender
from .base import AccountDirectory, Broker, FxSource
from .book import Book
from .closeout import FlattenPlan, cancel_each, close_out, orders_to_cancel, outcome_record, plan_flatten
from .day_replay import replay_today
from .errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    OrderNotFoundError,
    UnknownAccountError,
    refusal_code,
)
from .events import ManagerEvent
from .fanout import CancelAllResult, describe_error
from .instruments import Instrument
from .intake import currency_refusal, validate
from .killswitch import HaltInfo, HaltSettings, KillSwitch
from .models import (
    Order,
    OrderRequest,
    RejectCode,
    TimeInForce,
    TradingState,
    new_client_order_id,
)
from .preview import DEFAULT_CONFIRM_NOTIONAL_ABOVE, OrderPreview, preview_order
from .reconcile import Reconciler, ReconcileReport
from .risk import Rejection, RiskEngine
from .riskstate import RISK_DB, DayStore
from .routing import Router, Routes
from .tracking import OrderCallback, OrderTracker

__all__ = [
    "DAILY_LOSS_SOURCE",
    "CancelOutcome",
    "ExecutionService",
    "HaltStart",
]

log = logging.getLogger(__name__)

_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
_ACTIVE = TradingState.ACTIVE
_ZERO = Decimal(0)
DAILY_LOSS_SOURCE = "risk:daily_loss"
# How often (in kill-switch polls) the watch loop re-values positions against the loss limit.
_PNL_EVERY_POLLS = 10
# How often (in kill-switch polls) it asks brokers again about orders whose submit lost its answer.
_SWEEP_EVERY_POLLS = 20

# What ``cancel_all`` returns per account: the manager's own result (``ok``, ``cancelled``,
# ``error``), under the name this module has always exported.
CancelOutcome = CancelAllResult
CancelAllTask = asyncio.Task[dict[str, CancelOutcome]]


# What ``place_order`` may raise that says for certain the broker did not take the order.
class HaltStart(NamedTuple):
    """What ``halt_now`` did: the halt in force (already on disk) and the cancel-all it started,
    None when ``halt.cancel_open_orders`` is off."""

    info: HaltInfo
    cancel_all: CancelAllTask | None


class ExecutionService:
    def __init__(
        self,
        manager: AccountDirectory,
        kill_switch: KillSwitch,
        risk: RiskEngine | None = None,
        journal: jr.Journal | None = None,
        router: Router | None = None,
        *,
        halt_settings: HaltSettings | None = None,
        submit_timeout: float = 10.0,
        base_currency: str = "USD",
        fx: FxSource | None = None,
        call_timeout: float | None = None,
        confirm_notional_above: Decimal | None = DEFAULT_CONFIRM_NOTIONAL_ABOVE,
    ) -> None:
        if not submit_timeout > 0:
            raise ValueError("submit_timeout must be a positive number of seconds")
        self.manager = manager
        self.kill_switch = kill_switch
        self.risk = risk
        if risk is not None:
            # Rate buckets beside the kill switch's flag: one limit for every process there.
            risk.share_state(kill_switch.state_dir)
        self.journal = journal
        self.router = router
        self.routes = Routes(manager, router)
        self.halt_settings = halt_settings or HaltSettings()
        self.submit_timeout = float(submit_timeout)
        self.call_timeout = float(call_timeout if call_timeout is not None else submit_timeout)
        self.base_currency = base_currency
        self.confirm_notional_above = confirm_notional_above
        self.book = Book(manager, fx if fx is not None else manager.fx, base_currency)
        self.tracker = OrderTracker(self.book, journal)
        self.reconciler = Reconciler(manager, self.tracker, self.call_timeout)
        self._watch_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_task: CancelAllTask | None = None
        # Orders handed to a broker so far, and how many there were when the running halt's
        # cancel-all started: a sweep already under way may have passed a broker that took an
        # order since (a resume between two halts), so a halt after that starts a new one.
        self._handed_over = 0
        self._cancel_covers = 0
        self._halt_sentence: str | None = None
        # Orders whose modification is on its way to their broker (see ``brokers.amend``).
        self._modifying: set[str] = set()
        # The switch's state as its listener last reported it: changes made in this process
        # arrive at once, a flag written by another process within one poll. Only the early
        # check reads it; the final check before the broker call always asks the switch itself.
        self._switch_state: TradingState = kill_switch.state
        kill_switch.subscribe(self._on_switch)

    # -- observing -----------------------------------------------------------------------
    def orders(self) -> list[Order]:
        """Every order this service knows, newest last."""
        return list(self.tracker.orders.values())

    def get_order(self, client_order_id: str) -> Order | None:
        return self.tracker.get(client_order_id)

    def orphaned_orders(self) -> list[Order]:
        """Working orders from the journal whose account is not configured here: nothing here
        can reach them (see ``orphan_note``)."""
        return [
            order for order in self.tracker.orders.values() if order.client_order_id in self.tracker.orphaned
        ]

    def orphan_note(self, order: Order) -> str | None:
        """For an orphaned order, what it means and what to do; None for any other order."""
        return self.tracker.orphan_note(order)

    def working_orders(self) -> list[Order]:
        """Orders that can still fill at a configured account (orphaned ones are not among
        them: see ``orphaned_orders``)."""
        orphaned = self.tracker.orphaned
        return [
            order
            for order in self.tracker.orders.values()
            if order.status.is_working and order.client_order_id not in orphaned
        ]

    def subscribe(self, callback: OrderCallback) -> None:
        """Call ``callback(order)`` after every change to an order, on the event loop thread."""
        self.tracker.hub.add_listener(callback)

    def unsubscribe(self, callback: OrderCallback) -> None:
        self.tracker.hub.remove_listener(callback)

    def book_positions(self) -> dict[tuple[str, str], Decimal]:
        """(account, symbol) -> quantity as the execution layer believes it (for
        ``MultiBrokerManager.book_provider``)."""
        return self.book.positions()

    # -- the order path ------------------------------------------------------------------
    async def submit(self, request: OrderRequest | Mapping[str, object]) -> Order:
        """Send one order. Never raises for a refusal: the returned order is REJECTED with a
        ``reject_code`` and a ``reject_reason`` a trader can read."""
        # 1. validation: a request that did not come out of the model's validators (a mapping,
        # ``model_copy``, ``model_construct``) goes through them here.
        coerced = self._coerce(request)
        if isinstance(coerced, Order):
            return coerced
        request = coerced
        order = Order.for_request(request)
        if self.tracker.sent.includes(request):
            return self._decline(
                order,
                RejectCode.DUPLICATE_ORDER,
                f"an order with client id {request.client_order_id} was already sent",
            )
        # 2. kill switch: the last reported state, confirmed with the switch itself when that is
        # not ACTIVE (a resume in another process is only seen at the next poll). A halt not
        # reported yet is caught by the final check.
        state = self._switch_state
        if state is not _ACTIVE:
            state = self.kill_switch.state
            if state is _HALTED:
                return self._decline(order, RejectCode.SYSTEM_HALTED, self._halted_sentence())
        # 3. route (REDUCING needs the account to know what the position is)
        account = self.routes.account_for(request)
        if account is None:
            return self._decline(order, *self.routes.no_route(request))
        order.account = account
        unknown = self.routes.unknown_account([account])
        if unknown is not None:
            return self._decline(order, *unknown)
        if state is _REDUCING:
            refusal = self._reducing_refusal(request, account)
            if refusal is not None:
                return self._decline(order, *refusal)
        # 4. broker health
        broker = self._usable_broker(request, account)
        if isinstance(broker, tuple):
            return self._decline(order, *broker)
        # 5. risk
        if self.risk is not None:
            rejection = self.risk.check(request, account, self.book)
            if rejection is not None:
                return self._risk_refuse(order, rejection)
        # 6. journal, 7. final check + place_order, 8. journal the answer
        return await self._place(order, account, broker)

    def _coerce(self, raw: object) -> OrderRequest | Order:
        validated = validate(raw)
        if isinstance(validated, OrderRequest):
            return validated
        shell, problem = validated
        # Not journaled: what is not an order (a script's garbage, a number of 5,000 digits) is
        # answered and logged, and never grows the journal.
        log.info("refused an invalid order: %s", problem)
        return self.tracker.refuse(Order.for_request(shell, shell.account), RejectCode.INVALID_ORDER, problem)

    def _reducing_refusal(self, request: OrderRequest, account: str) -> tuple[str, str] | None:
        if self.book.is_reducing(request, account):
            return None
        info = self.kill_switch.info
        why = f" ({info.reason})" if info is not None and info.reason else ""
        code = (
            RejectCode.DAILY_LOSS
            if info is not None and info.source == DAILY_LOSS_SOURCE
            else RejectCode.REDUCE_ONLY
        )
        return (
            code,
            f"trading is reduce-only{why}: only orders that shrink the position in "
            f"{request.symbol} at {account} are accepted",
        )

    def _remembers_since(self, account: str) -> datetime | None:
        try:
            return self.manager.get(account).remembers_since
        except KeyError:
            return None

    def _usable_broker(self, request: OrderRequest, account: str) -> Broker | tuple[str, str]:
        """The account's broker if it can take the order now, else the refusal."""
        manager = self.manager
        if not manager.is_available(account):
            return RejectCode.BROKER_UNAVAILABLE, (
                manager.unavailable_reason(account) or f"{account} is not connected"
            )
        broker = manager.get(account)
        if request.has_legs:
            legs = broker.capabilities.legs_refusal(request)
            if legs is not None:
                return RejectCode.LEGS_UNSUPPORTED, f"{account}: {legs}"
        unsupported = broker.capabilities.supports(request)
        if unsupported is not None:
            return RejectCode.UNSUPPORTED, f"{account}: {unsupported}"
        # Before the risk checks: they value the order in its currency, and one the account does
        # not trade would value it at a price the broker reads in another.
        if request.currency is not None:
            mismatch = currency_refusal(request, account, broker)
            if mismatch is not None:
                return RejectCode.CURRENCY_MISMATCH, mismatch
        return broker

    async def _place(self, order: Order, account: str, broker: Broker) -> Order:
        request = order.request
        coid = request.client_order_id
        tracker = self.tracker
        tracker.register(order)
        if self.journal is not None:
            try:
                self.journal.record_intent(order)
            except Exception as exc:
                log.exception("journal write failed; order %s not sent", coid)
                return self.tracker.refuse(
                    order,
                    RejectCode.JOURNAL_ERROR,
                    f"the order journal could not be written ({describe_error(exc)}); nothing was sent",
                )
        # From here to the broker call: no await. (Entering ``asyncio.timeout`` never suspends.)
        state = self.kill_switch.state
        if state is not _ACTIVE:
            refusal = (
                (RejectCode.SYSTEM_HALTED, self._halted_sentence())
                if state is _HALTED
                else self._reducing_refusal(request, account)
            )
            if refusal is not None:
                return self.tracker.refuse(order, *refusal, journal_kind=jr.REJECT)
        tracker.sent.add(coid)
        self._handed_over += 1
        # Working and in flight from here on, so that broker events and other submits that run
        # while the call is out find it (not before the check above, where it would count
        # against itself), and reconcile leaves it alone.
        self.book.track(order)
        tracker.in_flight.add(coid)
        deadline = asyncio.timeout(self.submit_timeout)
        try:
            async with deadline:
                placed = await broker.place_order(request)
        except BaseException as exc:
            return self._failed(order, exc, expired=deadline.expired())
        finally:
            tracker.in_flight.discard(coid)
        try:
            tracker.absorb(order, placed, jr.ACK, force=True)
        except Exception as exc:  # the broker took the call but its answer makes no sense
            log.error("unreadable answer from %s to order %s", account, coid, exc_info=exc)
            return self.tracker.lose(order, f"the broker's answer could not be read ({describe_error(exc)})")
        # The state as last reported, not another look at the flag: a halt in this process is
        # reported at once, and one from elsewhere is seen at the next poll, whose cancel-all
        # takes this order too.
        if order.is_working and self._switch_state is _HALTED and self.halt_settings.cancel_open_orders:
            await self._cancel_after_halt(order)
        return order

    async def _cancel_after_halt(self, order: Order) -> None:
        """An order already on its way when a halt came in can be acknowledged after the halt's
        cancel-all has run at its broker, and would be left working there: cancel it now."""
        if order.account is None or order.broker_order_id is None:
            return
        try:
            await self.cancel(order.account, order.broker_order_id)
        except Exception as exc:
            log.error(
                "order %s at %s was acknowledged after the halt and could not be cancelled: %s",
                order.client_order_id,
                order.account,
                describe_error(exc),
            )

    def _failed(self, order: Order, exc: BaseException, *, expired: bool) -> Order:
        """Classify a failed ``place_order``: a definite refusal is REJECTED; anything that
        leaves open whether the broker took the order is UNKNOWN."""
        if expired:
            return self.tracker.lose(order, f"no answer from {order.account} within {self.submit_timeout:g}s")
        if not isinstance(exc, Exception):  # cancelled, interrupted: note it, then let it go on
            self.tracker.lose(order, "the submit was interrupted while the broker call was in flight")
            raise exc
        reason = describe_error(exc)
        if isinstance(exc, BrokerConnectionError):
            return self.tracker.lose(order, f"connection lost while sending ({reason})")
        code = refusal_code(exc)
        if code is not None:
            return self.tracker.refuse(order, code, reason, journal_kind=jr.ACK)
        if not isinstance(exc, BrokerError):
            log.error("place_order at %s failed unexpectedly", order.account, exc_info=exc)
            return self.tracker.lose(order, f"unexpected error from the broker adapter ({reason})")
        return self.tracker.lose(order, reason)

    def _risk_refuse(self, order: Order, rejection: Rejection) -> Order:
        if rejection.code == RejectCode.DAILY_LOSS:
            self.check_daily_loss()
        return self._decline(order, rejection.code, rejection.reason)

    def _decline(self, order: Order, code: str, reason: str) -> Order:
        """Refuse a valid request before its intent is journaled, with a row saying what was
        asked and why it was refused: every refusal of an order is in the audit trail. (Input
        that is not an order at all is refused before the journal: see ``_coerce``.)"""
        self.tracker.refuse(order, code, reason)
        # A resend of an id already sent must not touch the original's journal rows.
        self.tracker.journal_refusal(order, resent=order.client_order_id in self.tracker.sent)
        return order

    def _halted_sentence(self) -> str:
        # A script hammering a halted switch costs neither formatting nor another read of the
        # flag: the sentence is dropped on every change of state and every poll.
        if self._halt_sentence is None:
            info = self.kill_switch.info
            if info is None:
                self._halt_sentence = "trading is halted; no new orders are accepted"
            else:
                reason = f": {info.reason}" if info.reason else ""
                self._halt_sentence = (
                    f"trading is halted (by {info.source} at {info.time:%H:%M:%S} UTC{reason}); "
                    f"no new orders are accepted until trading is resumed"
                )
        return self._halt_sentence

    # -- before sending ------------------------------------------------------------------
    def preview(self, request: OrderRequest, *, distributed: bool = False) -> OrderPreview:
        """Where ``request`` would go if sent now (split by the account weights when
        ``distributed``), what it is worth in the base currency, and whether the trader should
        confirm it first: any target account LIVE, or a notional above
        ``confirm_notional_above``. Routes and splits exactly as ``submit`` and
        ``submit_distributed`` do; asks no broker."""
        return preview_order(
            request,
            distributed=distributed,
            routes=self.routes,
            book=self.book,
            confirm_notional_above=self.confirm_notional_above,
        )

    # -- several accounts at once --------------------------------------------------------
    async def submit_distributed(
        self, request: OrderRequest | Mapping[str, object], weights: Mapping[str, float] | None = None
    ) -> list[Order]:
        """Split ``request`` across accounts by weight (largest remainder, whole units where an
        account cannot trade fractions). The parent is risk-checked on its total first; then
        every child runs the full order path. Returns every child with its outcome, or the
        parent alone, REJECTED, if it failed before splitting."""
        coerced = self._coerce(request)
        if isinstance(coerced, Order):
            return [coerced]
        request = coerced
        parent = Order.for_request(request)
        if self.kill_switch.state is _HALTED:
            return [self._decline(parent, RejectCode.SYSTEM_HALTED, self._halted_sentence())]
        chosen = dict(weights) if weights is not None else self.manager.weights()
        unknown = self.routes.unknown_account(chosen)
        if unknown is not None:
            return [self._decline(parent, *unknown)]
        parts = self.routes.split(request, chosen)
        if not isinstance(parts, tuple) and request.currency is not None:
            # Each child is refused at an account that cannot trade the currency; when none can,
            # the parent is, before its total is valued in a currency no account would use.
            mismatches = self._currency_mismatches(request, parts)
            if len(mismatches) == len(parts):
                return [self._decline(parent, RejectCode.CURRENCY_MISMATCH, "; ".join(mismatches.values()))]
        if self.risk is not None:
            rejection = self.risk.check_parent(request, self.book)
            if rejection is not None:
                return [self._risk_refuse(parent, rejection)]
        if isinstance(parts, tuple):
            return [self._decline(parent, *parts)]
        children = [
            request.model_copy(
                update={"account": name, "quantity": quantity, "client_order_id": new_client_order_id()}
            )
            for name, quantity in parts.items()
        ]
        self.tracker.record(
            jr.RISK,
            request.client_order_id,
            None,
            {
                "event": "split",
                "request": jr.request_data(request),
                "children": {
                    child.client_order_id: [child.account, str(child.quantity)] for child in children
                },
            },
        )
        return list(await asyncio.gather(*(self.submit(child) for child in children)))

    def _currency_mismatches(self, request: OrderRequest, accounts: Iterable[str]) -> dict[str, str]:
        """account -> why it cannot trade the order's currency, for those that cannot."""
        found: dict[str, str] = {}
        for account in accounts:
            mismatch = currency_refusal(request, account, self.manager.get(account))
            if mismatch is not None:
                found[account] = mismatch
        return found

    # -- running -------------------------------------------------------------------------
    async def start(self) -> None:
        """Reload working orders from the journal, read positions, and start applying broker
        events and watching the kill switch."""
        if self._watch_task is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self.risk is not None and self.risk.watches_daily_loss and self.book.store is None:
            # The day's P&L is counted from where it was before a restart, in every process.
            self.book.store = DayStore(self.kill_switch.state_dir / RISK_DB)
        self.tracker.restore(set(self.manager.names()))
        orphans = self.orphaned_orders()
        if orphans:
            accounts = ", ".join(sorted({repr(o.account) for o in orphans}))
            log.warning(
                "%d working order(s) in the journal belong to accounts not in this configuration "
                "(%s): shown as orphaned, not counted as working, not cancelled by a halt",
                len(orphans),
                accounts,
            )
        await replay_today(self.book, self.journal, self._remembers_since)
        await self.reconciler.seed_positions()
        self.tracker.listen(self.manager)
        self.manager.add_resync_hook(self.reconciler.resync)
        self._watch_task = asyncio.create_task(self._watch(), name="execution-watch")

    async def stop(self) -> None:
        if self.tracker.stop_listening(self.manager):
            self.manager.remove_resync_hook(self.reconciler.resync)
        tasks = [
            task for task in (self._watch_task, self._cancel_task) if task is not None and not task.done()
        ]
        self._watch_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.reconciler.stop()
        store = self.book.store
        if store is not None:
            self.book.save_baseline()
            store.close()
            self.book.store = None

    def apply_event(self, event: ManagerEvent) -> None:
        """Apply one manager event now: an order update or a fill (other kinds are not ours)."""
        self.tracker.apply_event(event)

    async def _watch(self) -> None:
        interval = self.halt_settings.poll_interval_ms / 1000
        polls = 0
        while True:
            self.kill_switch.poll()
            self._halt_sentence = None  # the flag may say something new without a change of state
            polls += 1
            if polls % _PNL_EVERY_POLLS == 0:
                try:
                    self.check_daily_loss()
                    self.book.save_baseline()
                except Exception:
                    log.exception("daily loss check failed")
            if polls % _SWEEP_EVERY_POLLS == 0 and self.tracker.unsettled:
                self.reconciler.sweep_unsettled()
            await asyncio.sleep(interval)

    # -- reconcile -----------------------------------------------------------------------
    async def reconcile(self, accounts: Iterable[str] | None = None) -> ReconcileReport:
        """Ask each broker about every order not known to be final (UNKNOWN ones above all) by
        client_order_id, and compare positions. The broker's answer wins; differences are
        reported."""
        return await self.reconciler.reconcile(accounts)

    # -- daily loss ----------------------------------------------------------------------
    def check_daily_loss(self) -> str | None:
        """Re-value positions against each account's daily loss limit; past it, move the kill
        switch to REDUCING. Returns the message, or None while within limits."""
        if self.risk is None or not self.risk.watches_daily_loss:
            return None
        message = self.risk.daily_loss_breach(self.manager.names(), self.book)
        if message is not None and self.kill_switch.state is _ACTIVE:
            text = f"{message}; trading is now reduce-only"
            log.warning("%s", text)
            self.tracker.record(jr.RISK, None, None, {"event": "daily_loss", "message": text})
            # For the rest of the trading day, in every process and across restarts.
            self.kill_switch.reduce_only(text, source=DAILY_LOSS_SOURCE, day=self.book.trading_day())
        return message

    # -- changing a working order --------------------------------------------------------
    async def modify(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
    ) -> Order:
        """Change a working order's quantity, prices or time in force through its broker's own
        replace (``brokers.amend``). The new terms pass the checks a new order passes; refused
        while HALTED (SYSTEM_HALTED), as a submit is. Returns the order with its new terms, or a
        report of the refusal (REJECTED, with ``reject_code`` and ``reject_reason``) while the
        order keeps its old terms. Raises ``OrderNotFoundError`` for an id not known here."""
        order = self.tracker.get(client_order_id)
        if order is None:
            raise OrderNotFoundError(f"no order with client id {client_order_id!r} is known here")
        amender = OrderAmender(
            manager=self.manager,
            kill_switch=self.kill_switch,
            tracker=self.tracker,
            book=self.book,
            risk=self.risk,
            timeout=self.submit_timeout,
            halted_sentence=self._halted_sentence,
            in_flight=self._modifying,
        )
        return await amender.modify(
            order,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )

    # -- cancels and the kill switch -----------------------------------------------------
    async def cancel(self, account: str, broker_order_id: str) -> Order:
        """Cancel one order. Never held back by the kill switch. Broker failures raise."""
        broker = self.manager.get(account)
        tracker = self.tracker
        known = tracker.find(account, broker_order_id)
        tracker.record(
            jr.CANCEL,
            known.client_order_id if known else None,
            account,
            {"broker_order_id": broker_order_id, "requested": True},
        )
        try:
            async with asyncio.timeout(self.call_timeout):
                snapshot = await broker.cancel_order(broker_order_id)
        except TimeoutError:
            raise BrokerTimeoutError(
                f"no answer to the cancel within {self.call_timeout:g}s", broker=account
            ) from None
        if known is None:
            known = tracker.get(snapshot.client_order_id)
        if known is None:
            return snapshot
        if not tracker.absorb(known, snapshot, jr.CANCEL):
            tracker.journal_order(jr.CANCEL, known)
        return known

    def cancel_all_plan(
        self, account: str | None = None, symbol: str | Instrument | None = None
    ) -> list[Order]:
        """The working orders known here that ``cancel_all(account, symbol)`` reaches. Without a
        symbol the brokers' own bulk cancel is used, which also takes orders placed elsewhere."""
        return orders_to_cancel(self.working_orders(), account, symbol)

    async def cancel_all(
        self, account: str | None = None, symbol: str | Instrument | None = None
    ) -> dict[str, CancelOutcome]:
        """Cancel every working order (at ``account`` only, in ``symbol`` only), without halting.
        Never held back by the kill switch. Without a symbol each broker's bulk cancel runs, at
        every connected account at once (or at the one named), each under the call timeout; a
        broker that ignores the limit is given up on rather than waited for. With a symbol the
        working orders known here in that symbol are cancelled one by one. Returns the outcome
        per account; raises ``UnknownAccountError`` for an account not configured."""
        if account is not None and account not in self.manager.names():
            raise UnknownAccountError(account, self.manager.names())
        if symbol is not None:
            return await self._cancel_each(self.cancel_all_plan(account, symbol), account, symbol)
        accounts = None if account is None else [account]
        outcome = await self.manager.cancel_all_orders(accounts, per_broker_timeout=self.call_timeout)
        data: dict[str, object] = {"cancel_all": outcome_record(outcome)}
        orphans = [order for order in self.orphaned_orders() if order.is_working]
        if orphans:
            # Out of reach here, and so not cancelled: the record says so rather than nothing.
            data["orphaned_not_cancelled"] = {o.client_order_id: o.account for o in orphans}
            log.warning(
                "cancel all: %d orphaned order(s) of accounts not in this configuration were not "
                "cancelled (%s)",
                len(orphans),
                ", ".join(sorted({str(o.account) for o in orphans})),
            )
        self.tracker.record(jr.CANCEL, None, None, data)
        for result in outcome.values():
            if not result.ok:
                log.warning("cancel all at %s failed: %s", result.account, result.error)
        return outcome

    async def _cancel_each(
        self, orders: list[Order], account: str | None, symbol: str | Instrument
    ) -> dict[str, CancelOutcome]:
        names = [account] if account is not None else self.manager.names()
        outcome = await cancel_each(self.cancel, orders, names)
        named = symbol.label if isinstance(symbol, Instrument) else symbol
        self.tracker.record(
            jr.CANCEL, None, account, {"cancel_all": outcome_record(outcome), "symbol": named}
        )
        return outcome

    # -- flatten ---------------------------------------------------------------------------
    def flatten_plan(self, symbol: str | Instrument | None = None, account: str | None = None) -> FlattenPlan:
        """What ``flatten(symbol, account)`` would cancel and send, from the positions and
        working orders known here; asks no broker."""
        return plan_flatten(
            self.book.instrument_positions(),
            self.working_orders(),
            self.manager.names(),
            symbol=symbol,
            account=account,
        )

    async def flatten(
        self, symbol: str | Instrument | None = None, account: str | None = None
    ) -> list[Order]:
        """Close every position (at ``account`` only, in ``symbol`` only) with a market order
        through the order path (``brokers.closeout``), after cancelling the working orders in
        those instruments. Allowed while REDUCING; while HALTED nothing is cancelled and every
        closing order is refused with SYSTEM_HALTED. Returns the closing orders; raises
        ``UnknownAccountError`` for an account not configured."""
        if account is not None and account not in self.manager.names():
            raise UnknownAccountError(account, self.manager.names())
        return await close_out(
            self.flatten_plan(symbol, account),
            halted=self.kill_switch.state is _HALTED,
            cancel=self.cancel,
            submit=self.submit,
        )

    def halt_now(self, reason: str = "", source: str = "api") -> HaltStart:
        """Halt at once, from a key handler or any code on the event loop: the flag is on disk
        when this returns, and (with ``halt.cancel_open_orders``) cancel-all has started.

        The switch tells ``_on_switch`` of the change, which starts the cancel-all, as it does
        for a halt from anywhere else; asked again while halted, this cancels again whatever
        may have slipped through."""
        info = self.kill_switch.halt(reason, source)
        return HaltStart(info, self._start_cancel_all())

    async def halt(self, reason: str = "", source: str = "api") -> dict[str, CancelOutcome]:
        """``halt_now``, then wait for the cancel-all. Returns the outcome per broker."""
        started = self.halt_now(reason, source)
        if started.cancel_all is None:
            return {}
        return await asyncio.shield(started.cancel_all)

    async def resume(self, reason: str, source: str = "api") -> None:
        self.kill_switch.resume(reason, source)

    async def reduce_only(self, reason: str, source: str = "api") -> HaltInfo:
        return self.kill_switch.reduce_only(reason, source)

    def _start_cancel_all(self) -> CancelAllTask | None:
        """The cancel-all of a halt: the one running if no order has gone to a broker since it
        started, else a new one beside it (None when halts leave working orders alone). Call on
        the event loop."""
        if not self.halt_settings.cancel_open_orders:
            return None
        task = self._cancel_task
        if task is None or task.done() or self._cancel_covers != self._handed_over:
            self._cancel_covers = self._handed_over
            task = asyncio.get_running_loop().create_task(self.cancel_all(), name="cancel-all-on-halt")
            self._cancel_task = task
        return task

    def _on_switch(self, state: TradingState, info: HaltInfo | None) -> None:
        """The kill switch's listener, for a change made here or seen in the flag by a poll: a
        halt from anywhere (this process, another shell, a ``touch``) cancels working orders."""
        self._switch_state = state
        self._halt_sentence = None
        if state is not _HALTED:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a halt from another thread: cancel on the service's own loop
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._on_switch, state, info)
            return
        self._start_cancel_all()
