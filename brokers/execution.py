"""ExecutionService: the only code path that calls ``Broker.place_order``.

The order path, in this order: validation, kill-switch state, route, broker health, risk checks,
journal write of the intent, then - with no ``await`` in between - the final kill-switch check
and the call to ``place_order``, then the journal records the broker's answer. Everything before
the broker call is synchronous, so another task can never slip a halt in between a check and
the call it guards.

A submit whose broker call times out or loses its connection becomes UNKNOWN. It is never
retried (that is how duplicate orders happen); ``reconcile()`` asks the broker by
``client_order_id`` and settles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from . import journal as jr
from .base import Broker
from .errors import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeoutError,
    InsufficientFundsError,
    InvalidSymbolError,
    OrderRejectedError,
)
from .events import FillEvent, OrderEvent
from .fanout import CancelAllResult, describe_error
from .killswitch import HaltInfo, HaltSettings, KillSwitch
from .models import (
    TERMINAL_STATUSES,
    AssetClass,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
    can_transition,
    describe_validation_error,
    new_client_order_id,
    to_decimal,
    utcnow,
)
from .risk import Book, PositionMismatch, RejectCode, Rejection, RiskEngine
from .routing import Router, split_quantity

__all__ = [
    "Book",
    "CancelOutcome",
    "ExecutionService",
    "PositionMismatch",
    "ReconcileReport",
    "RejectCode",
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

_REJECT_CODES = frozenset(code.value for code in RejectCode)

OrderCallback = Callable[[Order], Any]


# What ``cancel_all`` returns per account: the manager's own result (``ok``, ``cancelled``,
# ``error``), under the name this module has always exported.
CancelOutcome = CancelAllResult


@dataclass(slots=True)
class ReconcileReport:
    """What reconciling against the brokers found. Differences are listed, never hidden."""

    resolved: list[Order] = field(default_factory=list)  # orders whose state changed
    unresolved: dict[str, str] = field(default_factory=dict)  # client_order_id -> why
    positions: list[PositionMismatch] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # account -> what failed

    @property
    def clean(self) -> bool:
        return not (self.unresolved or self.positions or self.errors)


class _Deadlines:
    """Timeouts for broker calls in flight, all served by one timer.

    ``asyncio.timeout`` arms and disarms a timer per call, which costs more than the rest of a
    fast order path; here a call costs two dict operations and the timer, armed for the oldest
    call, cancels whatever has expired when it fires.
    """

    def __init__(self) -> None:
        self._calls: dict[int, tuple[float, asyncio.Task[Any]]] = {}
        self._expired: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0

    def start(self, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a broker call must run inside an asyncio task")
        self._seq += 1
        deadline = loop.time() + timeout
        self._calls[self._seq] = (deadline, task)
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._fire, loop)
        return self._seq

    def finish(self, token: int) -> bool:
        """Forget the call; True if it ran out of time (its task was cancelled for it)."""
        self._calls.pop(token, None)
        if token in self._expired:
            self._expired.discard(token)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return True
        return False

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for token, (deadline, task) in list(self._calls.items()):
            if deadline <= now:
                del self._calls[token]
                self._expired.add(token)
                task.cancel()
        if self._calls:
            self._timer = loop.call_at(
                min(deadline for deadline, _ in self._calls.values()), self._fire, loop
            )


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


@types.coroutine
def _carry_on(call: Any, step: Any) -> Generator[Any, Any, Any]:
    """Go on with a coroutine whose first step was taken by hand (it yielded ``step``), as
    ``await`` would have: what the task sends or throws in is passed on to it."""
    while True:
        try:
            sent = yield step
        except BaseException as exc:
            try:
                step = call.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                step = call.send(sent)
            except StopIteration as done:
                return done.value


def _sanity(request: OrderRequest) -> str | None:
    """Cheap checks for a request built without validation (``model_construct``)."""
    quantity = request.quantity
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
        return f"quantity must be a number greater than 0, not {quantity!r}"
    for name in ("limit_price", "stop_price"):
        price = getattr(request, name)
        if price is not None and (not isinstance(price, Decimal) or not price.is_finite() or price <= 0):
            return f"{name} must be a number greater than 0, not {price!r}"
    return None


_SHELL_ENUMS = {
    "side": Side,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
    "asset_class": AssetClass,
}


def _shell(raw: Mapping[str, Any]) -> OrderRequest:
    """A refused request, built without validation, holding only values of the right types: it
    is shown, indexed and passed to subscribers like any order, and a missing symbol or an
    unhashable account must not break any of that. What was unusable reads as blank (the side
    as BUY); the reject reason says what was wrong."""
    values: dict[str, Any] = {}
    for name in ("symbol", "account", "exchange", "currency", "client_order_id"):
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            values[name] = value.strip()
    values.setdefault("symbol", "")
    values.setdefault("client_order_id", new_client_order_id())
    for name, enum in _SHELL_ENUMS.items():
        try:
            values[name] = enum(raw[name])
        except (KeyError, ValueError, TypeError):
            if name == "side":
                values[name] = Side.BUY
    for name in ("quantity", "limit_price", "stop_price", "trail_percent", "trail_amount"):
        try:
            values[name] = to_decimal(raw[name], name)
        except (KeyError, ValueError, TypeError):
            if name == "quantity":
                values[name] = _ZERO
    return OrderRequest.model_construct(**values)


class ExecutionService:
    def __init__(
        self,
        manager: Any,
        kill_switch: KillSwitch,
        risk: RiskEngine | None = None,
        journal: jr.Journal | None = None,
        router: Router | None = None,
        *,
        halt_settings: HaltSettings | None = None,
        submit_timeout: float = 10.0,
        base_currency: str = "USD",
        fx: Any = None,
        call_timeout: float | None = None,
    ) -> None:
        if not submit_timeout > 0:
            raise ValueError("submit_timeout must be a positive number of seconds")
        self.manager = manager
        self.kill_switch = kill_switch
        self.risk = risk
        self.journal = journal
        self.router = router
        self.halt_settings = halt_settings or HaltSettings()
        self.submit_timeout = float(submit_timeout)
        self.call_timeout = float(call_timeout if call_timeout is not None else submit_timeout)
        self.base_currency = base_currency
        self.book = Book(manager, fx if fx is not None else getattr(manager, "fx", None), base_currency)
        self._orders: dict[str, Order] = {}
        self._by_broker_id: dict[tuple[str, str], Order] = {}
        # client_order_ids handed to a broker: it may hold them, so they are never sent again.
        self._intents: set[str] = set()
        # Orders whose place_order has not answered yet: reconcile must not judge them.
        self._in_flight: set[str] = set()
        self._callbacks: list[OrderCallback] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._events: asyncio.Queue[Any] | None = None
        # Manager events waiting to be applied, when the manager takes listeners (_receive).
        self._inbox: deque[Any] = deque()
        self._listening = False
        self._drain_scheduled = False
        self._cancel_task: asyncio.Task[dict[str, CancelOutcome]] | None = None
        # Orders whose submit lost its answer (UNKNOWN, or PENDING after a crash), until settled.
        self._unsettled: set[str] = set()
        self._sweep_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hooked = False
        self._deadlines = _Deadlines()
        self._halt_sentence: tuple[HaltInfo | None, str] | None = None
        # The switch's state as its callbacks last reported it: changes made in this process
        # arrive at once, a flag written by another process within one poll. Only the early
        # check reads it; the final check before the broker call always asks the switch itself.
        self._switch_state: TradingState = kill_switch.state
        kill_switch.subscribe(self._on_switch)

    # -- observing -----------------------------------------------------------------------
    def orders(self) -> list[Order]:
        """Every order this service knows, newest last."""
        return list(self._orders.values())

    def get_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def subscribe(self, callback: OrderCallback) -> None:
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def unsubscribe(self, callback: OrderCallback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def book_positions(self) -> dict[tuple[str, str], Decimal]:
        """(account, symbol) -> quantity as the execution layer believes it (for
        ``MultiBrokerManager.book_provider``)."""
        return self.book.positions()

    def _notify(self, order: Order) -> None:
        for callback in self._callbacks:
            try:
                callback(order)
            except Exception:
                log.exception("order subscriber failed")

    # -- the order path ------------------------------------------------------------------
    async def submit(self, request: OrderRequest | Mapping[str, Any]) -> Order:
        """Send one order. Never raises for a refusal: the returned order is REJECTED with a
        ``reject_code`` and a ``reject_reason`` a trader can read."""
        # 1. validation (an OrderRequest is already valid; only the cheap invariants are re-read)
        if type(request) is not OrderRequest:
            request_or_order = self._coerce(request)
            if isinstance(request_or_order, Order):
                return request_or_order
            request = request_or_order
        order = Order.for_request(request)
        quantity = request.quantity
        if not (
            type(quantity) is Decimal
            and quantity > 0
            and quantity.is_finite()
            and request.limit_price is None
            and request.stop_price is None
        ):  # else: all is checked
            problem = _sanity(request)
            if problem is not None:
                return self._refuse(order, RejectCode.INVALID_ORDER, problem)
        if request.client_order_id in self._intents:
            return self._refuse(
                order,
                RejectCode.DUPLICATE_ORDER,
                f"an order with client id {request.client_order_id} was already sent",
            )
        # 2. kill switch: one stat per order is spent on the final check, so this one goes by
        # the last reported state, confirmed with the switch itself when that is not ACTIVE (a
        # resume in another process is only seen at the next poll). A halt not reported yet
        # is caught by the final check.
        state = self._switch_state
        if state is not _ACTIVE:
            state = self.kill_switch.state
            if state is _HALTED:
                return self._refuse(order, RejectCode.SYSTEM_HALTED, self._halted_sentence())
        # 3. route (REDUCING needs the account to know what the position is)
        refusal = self._route(order)
        if refusal is not None:
            return self._refuse(order, *refusal)
        account: str = order.account  # type: ignore[assignment]
        if state is _REDUCING:
            refusal = self._reducing_refusal(request, account)
            if refusal is not None:
                return self._refuse(order, *refusal)
        # 4. broker health
        broker, refusal = self._usable_broker(request, account)
        if refusal is not None:
            return self._refuse(order, *refusal)
        # 5. risk
        if self.risk is not None:
            rejection = self.risk.check(request, account, self.book)
            if rejection is not None:
                return self._risk_refuse(order, rejection)
        # 6. journal, 7. final check + place_order, 8. journal the answer
        return await self._place(order, broker)  # type: ignore[arg-type]

    def _coerce(self, raw: Any) -> OrderRequest | Order:
        if isinstance(raw, OrderRequest):
            return raw  # a subclass: already validated
        if not isinstance(raw, Mapping):
            raise TypeError(f"submit takes an OrderRequest or a mapping, not {type(raw).__name__}")
        try:
            return OrderRequest.model_validate(dict(raw))
        except ValidationError as exc:
            shell = _shell(raw)
            order = Order.for_request(shell, shell.account)
            return self._refuse(order, RejectCode.INVALID_ORDER, describe_validation_error(exc))

    def _route(self, order: Order) -> tuple[str, str] | None:
        request = order.request
        names = self.manager.names()
        if request.account is not None:
            account = request.account
        else:
            account = self.router.route(request, names) if self.router is not None else None
            if account is None:
                account = self.manager.default_account
        if account is None:
            return (
                RejectCode.NO_ROUTE,
                f"no account takes {request.symbol}: no routing rule matches and there is no "
                f"default account; choose an account",
            )
        order.account = account
        if account not in names:
            known = ", ".join(names) or "none are configured"
            return RejectCode.UNKNOWN_ACCOUNT, f"unknown account {account!r} (accounts: {known})"
        return None

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

    def _usable_broker(
        self, request: OrderRequest, account: str
    ) -> tuple[Broker | None, tuple[str, str] | None]:
        manager = self.manager
        if not manager.is_available(account):
            explain = getattr(manager, "unavailable_reason", None)
            reason = (explain(account) if explain is not None else None) or f"{account} is not connected"
            return None, (RejectCode.BROKER_UNAVAILABLE, reason)
        broker = manager.get(account)
        unsupported = broker.capabilities.supports(request)
        if unsupported is not None:
            return None, (RejectCode.UNSUPPORTED, f"{account}: {unsupported}")
        return broker, None

    async def _place(self, order: Order, broker: Broker) -> Order:
        request = order.request
        switch = self.kill_switch
        self._register(order)
        if self.journal is not None:
            try:
                self.journal.record_intent(order)
            except Exception as exc:
                log.exception("journal write failed; order %s not sent", request.client_order_id)
                return self._refuse(
                    order,
                    RejectCode.JOURNAL_ERROR,
                    f"the order journal could not be written ({describe_error(exc)}); nothing was sent",
                )
        # From here to the broker call: no await.
        state = switch.state
        if state is not _ACTIVE:
            refusal = (
                (RejectCode.SYSTEM_HALTED, self._halted_sentence())
                if state is _HALTED
                else self._reducing_refusal(request, order.account)  # type: ignore[arg-type]
            )
            if refusal is not None:
                return self._refuse(order, *refusal, journal_kind=jr.REJECT)
        self._intents.add(request.client_order_id)
        # The call's first step is taken here, as ``await`` would take it. A broker that answers
        # without suspending (the paper broker) is done after it: no other task ran meanwhile,
        # so nothing needed the order counted as working or in flight, and no timer could have
        # fired. Otherwise the call goes on exactly as awaited, under its timer.
        call = broker.place_order(request)
        if type(call) is not types.CoroutineType:
            call = _awaited(call)
        try:
            step = call.send(None)
        except StopIteration as answered:
            placed = answered.value
        except BaseException as exc:
            return self._failed(order, exc, expired=False)
        else:
            # Counted as working from here on, so that broker events and other submits that run
            # while the call is in flight find it (not before the check above, where it would
            # count against itself); in flight, so that reconcile leaves it alone.
            self.book.track(order)
            in_flight = self._in_flight
            in_flight.add(request.client_order_id)
            token = self._deadlines.start(self.submit_timeout)
            try:
                placed = await _carry_on(call, step)
            except BaseException as exc:
                in_flight.discard(request.client_order_id)
                return self._failed(order, exc, expired=self._deadlines.finish(token))
            in_flight.discard(request.client_order_id)
            self._deadlines.finish(token)
        try:
            self._absorb(order, placed, jr.ACK, force=True)
        except Exception as exc:  # the broker took the call but its answer makes no sense
            log.error(
                "unreadable answer from %s to order %s", order.account, request.client_order_id, exc_info=exc
            )
            return self._lost(order, f"the broker's answer could not be read ({describe_error(exc)})")
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
            return self._lost(order, f"no answer from {order.account} within {self.submit_timeout:g}s")
        if not isinstance(exc, Exception):  # cancelled, interrupted: note it, then let it go on
            self._lost(order, "the submit was interrupted while the broker call was in flight")
            raise exc
        reason = describe_error(exc)
        if isinstance(exc, BrokerTimeoutError):
            return self._lost(order, reason)
        if isinstance(exc, BrokerConnectionError):
            return self._lost(order, f"connection lost while sending ({reason})")
        if isinstance(exc, InsufficientFundsError):
            code = RejectCode.INSUFFICIENT_FUNDS
        elif isinstance(exc, InvalidSymbolError):
            code = RejectCode.INVALID_SYMBOL
        elif isinstance(exc, OrderRejectedError):
            code = RejectCode.BROKER_REJECTED
        elif isinstance(exc, AuthenticationError):
            code = RejectCode.BROKER_UNAVAILABLE
        elif isinstance(exc, BrokerError) and not exc.retryable:
            code = RejectCode.BROKER_REJECTED
        elif isinstance(exc, BrokerError):
            return self._lost(order, reason)
        else:
            log.error("place_order at %s failed unexpectedly", order.account, exc_info=exc)
            return self._lost(order, f"unexpected error from the broker adapter ({reason})")
        return self._refuse(order, code, reason, journal_kind=jr.ACK)

    def _lost(self, order: Order, detail: str) -> Order:
        order.reject_reason = (
            f"{detail}; the order may or may not be at the broker - it is UNKNOWN "
            f"until reconciled by client id, and is not retried"
        )
        order.transition(OrderStatus.UNKNOWN)
        self._unsettled.add(order.client_order_id)
        self.book.track(order)
        self._journal_order(jr.UNKNOWN, order)
        log.warning("order %s at %s is UNKNOWN: %s", order.client_order_id, order.account, detail)
        self._notify(order)
        return order

    def _refuse(self, order: Order, code: str, reason: str, *, journal_kind: str | None = None) -> Order:
        order.reject(code.value if isinstance(code, RejectCode) else code, reason)
        coid = order.client_order_id
        # A refused resend of an id already in flight must not displace the original.
        if coid not in self._intents or self._orders.get(coid) is order:
            self._remember(order)
        if journal_kind is not None:
            self._journal_order(journal_kind, order)
        self._notify(order)
        return order

    def _risk_refuse(self, order: Order, rejection: Rejection) -> Order:
        if rejection.code == RejectCode.DAILY_LOSS:
            self.check_daily_loss()
        self._refuse(order, rejection.code, rejection.reason)
        if self.journal is not None:
            try:
                self.journal.record(
                    jr.RISK_REJECT,
                    client_order_id=order.client_order_id,
                    account=order.account,
                    data={"request": jr.request_data(order.request), "state": jr.order_state(order)},
                )
            except Exception:
                log.exception("could not journal the risk decision for %s", order.client_order_id)
        return order

    def _halted_sentence(self) -> str:
        cached = self._halt_sentence
        if cached is not None:
            # A script hammering a halted switch costs neither formatting nor another read of
            # the flag: the sentence is dropped on every change of state and every poll.
            return cached[1]
        info = self.kill_switch.info
        if info is None:
            sentence = "trading is halted; no new orders are accepted"
        else:
            reason = f": {info.reason}" if info.reason else ""
            sentence = (
                f"trading is halted (by {info.source} at {info.time:%H:%M:%S} UTC{reason}); "
                f"no new orders are accepted until trading is resumed"
            )
        self._halt_sentence = (info, sentence)
        return sentence

    # -- applying what brokers say -------------------------------------------------------
    def _remember(self, order: Order) -> None:
        self._register(order)
        self.book.track(order)

    def _register(self, order: Order) -> None:
        coid = order.client_order_id
        known = self._orders.get(coid)
        if known is not order:
            if known is not None:
                del self._orders[coid]  # a resubmitted id moves to the end
            self._orders[coid] = order
        if order.broker_order_id is not None and order.account is not None:
            self._by_broker_id[(order.account, order.broker_order_id)] = order

    def _journal_order(self, kind: str, order: Order, fills: list[Fill] | None = None) -> None:
        """What became of an order whose intent is committed: these rows commit by the end of
        the loop's turn or with the next intent, whichever is first (see ``brokers.journal``)."""
        if self.journal is None:
            return
        try:
            self.journal.record_order(kind, order, fills=fills, soon=True)
        except Exception:
            log.exception("could not journal %s for order %s", kind, order.client_order_id)

    def _absorb(self, order: Order, snapshot: Order, kind: str, *, force: bool = False) -> bool:
        """Merge a broker's view of an order into ours; journal and notify if anything changed."""
        status = snapshot.status
        current = order.status
        if (
            not force
            and (status is current or not can_transition(current, status))
            and snapshot.filled_quantity <= order.filled_quantity
            and len(snapshot.fills) <= len(order.fills)
            and snapshot.broker_order_id in (None, order.broker_order_id)
        ):
            return False  # old news: the usual case for updates that trail the broker's answer
        changed = False
        if snapshot.broker_order_id and snapshot.broker_order_id != order.broker_order_id:
            order.broker_order_id = snapshot.broker_order_id
            changed = True
        new_fills = [fill for fill in snapshot.fills if self._take_fill(order, fill)]
        if new_fills:
            self._count_fills(order)
        if snapshot.filled_quantity > order.filled_quantity:
            order.filled_quantity = snapshot.filled_quantity
            if snapshot.avg_fill_price is not None:
                order.avg_fill_price = snapshot.avg_fill_price
            changed = True
        if status is not order.status and can_transition(order.status, status):
            if status is OrderStatus.REJECTED:
                code = snapshot.reject_code
                order.reject_code = code if code in _REJECT_CODES else RejectCode.BROKER_REJECTED.value
                order.reject_reason = snapshot.reject_reason or f"{order.account} refused the order"
            elif status is OrderStatus.UNKNOWN:
                # The broker's own word for the order could not be read: ask it again, as for a
                # lost answer.
                order.reject_reason = (
                    f"{order.account} reported a status that cannot be read; the order "
                    f"is UNKNOWN until asked again by client id"
                )
                self._unsettled.add(order.client_order_id)
            order.transition(status, at=snapshot.updated_at)
            changed = True
        elif new_fills:
            self._status_from_fills(order)
        changed = changed or bool(new_fills)
        if (
            order.reject_reason is not None
            and order.reject_code is None
            and order.status is not OrderStatus.UNKNOWN
        ):
            order.reject_reason = None  # the UNKNOWN explanation no longer applies
        if changed or force:
            self._remember(order)
            self._journal_order(kind, order, fills=new_fills)
            self._notify(order)
        return changed

    def _take_fill(self, order: Order, fill: Fill) -> bool:
        """Record a fill on the order and the book, once."""
        if not order.take_fill(fill):
            return False
        self.book.add_fill(order.account or fill.account, fill)
        return True

    @staticmethod
    def _count_fills(order: Order) -> None:
        """Filled quantity and average price as the fills add up, but never below what a broker
        snapshot already reported. Run once for a batch of new fills (a snapshot may bring
        many), not once for each fill in it."""
        fills = order.fills
        if len(fills) == 1:
            from_fills, cost = fills[0].quantity, fills[0].quantity * fills[0].price
        else:
            from_fills = sum((f.quantity for f in fills), _ZERO)
            cost = sum((f.quantity * f.price for f in fills), _ZERO)
        if from_fills > order.filled_quantity:
            order.filled_quantity = from_fills
            order.avg_fill_price = cost / from_fills

    def _status_from_fills(self, order: Order) -> None:
        if order.status.is_terminal:
            return
        target = (
            OrderStatus.FILLED if order.filled_quantity >= order.quantity else OrderStatus.PARTIALLY_FILLED
        )
        if can_transition(order.status, target):
            order.transition(target)

    def _on_fill(self, account: str, fill: Fill) -> None:
        order = None
        if fill.client_order_id is not None:
            order = self._orders.get(fill.client_order_id)
        if order is None and fill.broker_order_id is not None:
            order = self._by_broker_id.get((account, fill.broker_order_id))
        if order is None:
            # Placed elsewhere (the broker's own app): it still moves the position.
            if self.book.add_fill(account, fill):
                self._safe_record(jr.FILL, None, account, {"foreign_fill": fill})
            return
        if not self._take_fill(order, fill):
            return
        self._count_fills(order)
        self._status_from_fills(order)
        self._remember(order)
        self._journal_order(jr.FILL, order, fills=[fill])
        self._notify(order)

    def _on_order(self, account: str, snapshot: Order) -> None:
        order = self._orders.get(snapshot.client_order_id)
        if order is None and snapshot.broker_order_id is not None:
            order = self._by_broker_id.get((account, snapshot.broker_order_id))
        if order is None or order.account != account:
            return
        if (
            order.status in TERMINAL_STATUSES
            and snapshot.filled_quantity <= order.filled_quantity
            and len(snapshot.fills) <= len(order.fills)
        ):
            return  # trailing news of an order already settled (the common case after an ack)
        self._absorb(order, snapshot, jr.UPDATE)

    def _safe_record(
        self, kind: str, client_order_id: str | None, account: str | None, data: dict[str, Any]
    ) -> None:
        if self.journal is None:
            return
        try:
            self.journal.record(kind, client_order_id=client_order_id, account=account, data=data)
        except Exception:
            log.exception("could not journal %s", kind)

    # -- daily loss ----------------------------------------------------------------------
    def check_daily_loss(self) -> str | None:
        """Re-value positions against each account's daily loss limit; past it, move the kill
        switch to REDUCING. Returns the message, or None while within limits."""
        if self.risk is None or not self.risk.watches_daily_loss:
            return None
        message = self.risk.daily_loss_breach(self.manager.names(), self.book)
        if message is not None:
            self._trip_daily_loss(message)
        return message

    def _trip_daily_loss(self, message: str) -> None:
        switch = self.kill_switch
        if switch.state is _ACTIVE:
            text = f"{message}; trading is now reduce-only"
            log.warning("%s", text)
            self._safe_record(jr.RISK, None, None, {"event": "daily_loss", "message": text})
            switch.reduce_only(text, source=DAILY_LOSS_SOURCE)

    # -- cancels and the kill switch -----------------------------------------------------
    async def cancel(self, account: str, broker_order_id: str) -> Order:
        """Cancel one order. Never held back by the kill switch. Broker failures raise."""
        broker = self.manager.get(account)
        known = self._by_broker_id.get((account, broker_order_id))
        self._safe_record(
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
            known = self._orders.get(snapshot.client_order_id)
        if known is None:
            return snapshot
        if not self._absorb(known, snapshot, jr.CANCEL):
            self._journal_order(jr.CANCEL, known)
        return known

    async def cancel_all(self) -> dict[str, CancelOutcome]:
        """Cancel every working order at every connected broker, all at once, each under the
        call timeout; a broker that ignores the limit is given up on rather than waited for."""
        outcome = await self.manager.cancel_all_orders(per_broker_timeout=self.call_timeout)
        self._safe_record(
            jr.CANCEL,
            None,
            None,
            {
                "cancel_all": {
                    name: {"ok": r.ok, "cancelled": r.cancelled, "error": r.error}
                    for name, r in outcome.items()
                }
            },
        )
        for result in outcome.values():
            if not result.ok:
                log.warning("cancel all at %s failed: %s", result.account, result.error)
        return outcome

    async def halt(self, reason: str = "", source: str = "api") -> dict[str, CancelOutcome]:
        """Halt first (the flag is on disk before this returns control), then cancel every
        working order if ``halt.cancel_open_orders``. Returns the outcome per broker."""
        self.kill_switch.halt(reason, source)
        if not self.halt_settings.cancel_open_orders:
            return {}
        task = self._cancel_task
        if task is None or task.done():
            task = self._start_cancel_all()
        return await asyncio.shield(task)

    async def resume(self, reason: str, source: str = "api") -> None:
        self.kill_switch.resume(reason, source)

    async def reduce_only(self, reason: str, source: str = "api") -> HaltInfo:
        return self.kill_switch.reduce_only(reason, source)

    def _start_cancel_all(self) -> asyncio.Task[dict[str, CancelOutcome]]:
        task = asyncio.get_running_loop().create_task(self.cancel_all(), name="cancel-all-on-halt")
        self._cancel_task = task
        return task

    def _on_switch(self, state: TradingState, info: HaltInfo | None) -> None:
        self._switch_state = state
        self._halt_sentence = None
        # A halt from anywhere (this process, another shell, a ``touch``) cancels working orders.
        if state is not _HALTED or not self.halt_settings.cancel_open_orders:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            if self._cancel_task is None or self._cancel_task.done():
                self._start_cancel_all()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_switch, state, info)

    # -- reconcile -----------------------------------------------------------------------
    async def reconcile(self, accounts: Iterable[str] | None = None) -> ReconcileReport:
        """Ask each broker about every order not known to be final (UNKNOWN ones above all) by
        client_order_id, and compare positions. The broker's answer wins; differences are
        reported."""
        report = ReconcileReport()
        names = list(accounts) if accounts is not None else list(self.manager.names())
        await asyncio.gather(*(self._reconcile_account(name, report) for name in names))
        if report.positions:
            log.warning("positions differed from the brokers: %s", report.positions)
        return report

    async def _reconcile_account(
        self, name: str, report: ReconcileReport, *, only: set[str] | None = None
    ) -> None:
        """Settle the account's working orders (or just those named in ``only``) and, for a full
        reconcile, compare its positions."""
        try:
            broker = self.manager.get(name)
        except KeyError:
            report.errors[name] = "unknown account"
            return
        # The periodic sweep names a handful of orders: look those up, not every order of the day.
        candidates = self._orders.values() if only is None else filter(None, map(self._orders.get, only))
        pending = [
            o
            for o in candidates
            if o.account == name and o.status.is_working and o.client_order_id not in self._in_flight
        ]
        if not broker.is_connected():
            report.errors[name] = "not connected"
            for order in pending:
                report.unresolved[order.client_order_id] = f"{name} is not connected"
            return
        for order in pending:
            try:
                async with asyncio.timeout(self.call_timeout):
                    snapshot = await broker.get_order_by_client_id(order.client_order_id)
            except Exception as exc:
                report.unresolved[order.client_order_id] = describe_error(exc)
                continue
            if snapshot is None:
                if order.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING) and self._may_still_arrive(
                    order, broker
                ):
                    report.unresolved[order.client_order_id] = (
                        f"{name} does not show this order yet; a submit whose answer was lost can still "
                        f"arrive, so it is asked again"
                    )
                elif order.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING):
                    self._refuse_unsent(order)
                    report.resolved.append(order)
                else:
                    report.unresolved[order.client_order_id] = f"{name} no longer reports this order"
                continue
            if self._absorb(order, snapshot, jr.RECONCILE):
                report.resolved.append(order)
        if only is not None:
            return
        try:
            async with asyncio.timeout(self.call_timeout):
                positions = await broker.get_positions()
        except Exception as exc:
            report.errors[name] = f"positions not read: {describe_error(exc)}"
            return
        report.positions.extend(self.book.seed(name, positions))

    @staticmethod
    def _may_still_arrive(order: Order, broker: Broker) -> bool:
        """A broker reached over a network may take an order after its answer was lost (the
        request was still on its way or being processed): "not found" means "never reached"
        only once the broker's ``late_order_window`` has passed since the order was lost."""
        window = getattr(broker, "late_order_window", 0.0)
        return window > 0 and (utcnow() - order.updated_at).total_seconds() < window

    def _refuse_unsent(self, order: Order) -> None:
        order.reject_code = RejectCode.BROKER_REJECTED.value
        order.reject_reason = (
            f"{order.account} has no order with client id {order.client_order_id}: "
            f"it never reached the broker"
        )
        order.transition(OrderStatus.REJECTED)
        self._remember(order)
        self._journal_order(jr.RECONCILE, order)
        self._notify(order)

    async def _resync(self, name: str) -> None:
        """Called by the manager while ``name`` is RESYNCING after a (re)connect."""
        report = ReconcileReport()
        await self._reconcile_account(name, report)
        self._safe_record(
            jr.RECONNECT,
            None,
            name,
            {
                "resolved": [o.client_order_id for o in report.resolved],
                "unresolved": report.unresolved,
                "positions": [[m.symbol, str(m.book), str(m.broker)] for m in report.positions],
            },
        )

    # -- running -------------------------------------------------------------------------
    async def start(self) -> None:
        """Reload working orders from the journal, read positions, and start consuming broker
        events and watching the kill switch."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        if self.journal is not None:
            for order in self.journal.open_orders():
                if order.client_order_id not in self._orders:
                    self._intents.add(order.client_order_id)
                    self._remember(order)
                    if order.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING):
                        self._unsettled.add(order.client_order_id)
            # Settled orders too: an id a broker has seen is never sent again, restart or not.
            self._intents.update(self._sent_before())
        await self._seed_positions()
        listen = getattr(self.manager, "add_listener", None)
        if listen is not None:
            listen(self._receive)
            self._listening = True
        else:
            self._events = self.manager.subscribe()
        add_hook = getattr(self.manager, "add_resync_hook", None)
        if add_hook is not None:
            add_hook(self._resync)
            self._hooked = True
        self._tasks = [asyncio.create_task(self._watch(), name="execution-watch")]
        if self._events is not None:
            self._tasks.append(asyncio.create_task(self._consume(self._events), name="execution-events"))

    def _sent_before(self) -> set[str]:
        """Client order ids the journal shows were handed to a broker: an intent that the final
        kill-switch check did not refuse."""
        sent: set[str] = set()
        for event in self.journal.events(kinds=[jr.INTENT, jr.REJECT]) if self.journal is not None else ():
            if event.client_order_id is None:
                continue
            if event.kind == jr.INTENT:
                sent.add(event.client_order_id)
            else:
                sent.discard(event.client_order_id)
        return sent

    async def _seed_positions(self) -> None:
        async def one(name: str) -> None:
            broker = self.manager.get(name)
            if not broker.is_connected():
                return
            try:
                async with asyncio.timeout(self.call_timeout):
                    positions = await broker.get_positions()
            except Exception as exc:
                log.warning("positions at %s not read: %s", name, describe_error(exc))
                return
            self.book.seed(name, positions)

        await asyncio.gather(*(one(name) for name in self.manager.names()))

    async def stop(self) -> None:
        if self._listening:
            # First, as cancelling a consuming task would: nothing more is applied from here on.
            self._listening = False
            self._inbox.clear()
            with contextlib.suppress(Exception):
                self.manager.remove_listener(self._receive)
        tasks, self._tasks = self._tasks, []
        for extra in (self._cancel_task, self._sweep_task):
            if extra is not None and not extra.done():
                tasks.append(extra)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._events is not None:
            self.manager.unsubscribe(self._events)
            self._events = None
        if self._hooked:
            with contextlib.suppress(Exception):
                self.manager.remove_resync_hook(self._resync)
            self._hooked = False

    def _receive(self, event: Any) -> None:
        """The manager's listener: events are applied from a callback of their own, in arrival
        order, all that arrived in between at once; the same turn of the loop a queue and a
        task would take, without a queue operation and a task switch per event."""
        self._inbox.append(event)
        if not self._drain_scheduled and self._loop is not None:
            self._loop.call_soon(self._drain)
            self._drain_scheduled = True

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self._inbox
        apply = self.apply_event
        while inbox and self._listening:
            event = inbox.popleft()
            try:
                apply(event)
            except Exception:
                log.exception("could not apply broker event %r", type(event).__name__)

    async def _consume(self, queue: asyncio.Queue[Any]) -> None:
        apply = self.apply_event
        while True:
            event = await queue.get()
            while True:  # whatever else has arrived, without a round trip through the loop each
                try:
                    apply(event)
                except Exception:
                    log.exception("could not apply broker event %r", type(event).__name__)
                if queue.empty():
                    break
                event = queue.get_nowait()

    def apply_event(self, event: Any) -> None:
        """Apply one manager event: an order update or a fill (other kinds are not ours)."""
        kind = type(event)
        if kind is OrderEvent:  # the manager's own events first, without the probing below
            snapshot = event.order
            if isinstance(snapshot, Order):
                self._on_order(event.account or snapshot.account, snapshot)
            return
        if kind is FillEvent:
            fill = event.fill
            if isinstance(fill, Fill):
                self._on_fill(event.account or fill.account, fill)
            return
        account = getattr(event, "account", None)
        fill = getattr(event, "fill", None)
        if isinstance(fill, Fill):
            self._on_fill(account or fill.account, fill)
            return
        snapshot = getattr(event, "order", None)
        if isinstance(snapshot, Order):
            self._on_order(account or snapshot.account, snapshot)

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
                except Exception:
                    log.exception("daily loss check failed")
            if polls % _SWEEP_EVERY_POLLS == 0 and self._unsettled:
                self._sweep_unsettled()
            await asyncio.sleep(interval)

    def _sweep_unsettled(self) -> None:
        """Ask the brokers again about orders whose submit lost its answer, so that they settle
        without waiting for a reconnect or a restart."""
        if self._sweep_task is not None and not self._sweep_task.done():
            return
        orders = self._orders
        self._unsettled = {
            coid
            for coid in self._unsettled
            if (order := orders.get(coid)) is not None
            and order.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING)
        }
        wanted = self._unsettled - self._in_flight
        accounts = sorted({orders[coid].account for coid in wanted if orders[coid].account is not None})
        if accounts:
            self._sweep_task = asyncio.get_running_loop().create_task(
                self._sweep(accounts, wanted), name="execution-sweep"
            )

    async def _sweep(self, accounts: list[str], wanted: set[str]) -> None:
        report = ReconcileReport()
        try:
            await asyncio.gather(*(self._reconcile_account(name, report, only=wanted) for name in accounts))
        except Exception:
            log.exception("asking the brokers about unsettled orders failed")

    # -- several accounts at once --------------------------------------------------------
    async def submit_distributed(
        self, request: OrderRequest, weights: Mapping[str, float] | None = None
    ) -> list[Order]:
        """Split ``request`` across accounts by weight (largest remainder, whole units where an
        account cannot trade fractions). The parent is risk-checked on its total first; then
        every child runs the full order path. Returns every child with its outcome, or the
        parent alone, REJECTED, if it failed before splitting."""
        if type(request) is not OrderRequest:
            coerced = self._coerce(request)
            if isinstance(coerced, Order):
                return [coerced]
            request = coerced
        parent = Order.for_request(request)
        if self.kill_switch.state is _HALTED:
            return [self._refuse(parent, RejectCode.SYSTEM_HALTED, self._halted_sentence())]
        chosen = dict(weights) if weights is not None else self.manager.weights()
        names = self.manager.names()
        unknown = [name for name in chosen if name not in names]
        if unknown:
            return [
                self._refuse(
                    parent,
                    RejectCode.UNKNOWN_ACCOUNT,
                    f"unknown account {unknown[0]!r} (accounts: {', '.join(names)})",
                )
            ]
        if self.risk is not None:
            rejection = self.risk.check_parent(request, self.book)
            if rejection is not None:
                return [self._risk_refuse(parent, rejection)]
        fractional = {}
        for name in chosen:
            with contextlib.suppress(Exception):
                fractional[name] = self.manager.get(name).capabilities.fractional_quantities
        try:
            parts = split_quantity(request.quantity, chosen, fractional)
        except ValueError as exc:
            return [self._refuse(parent, RejectCode.UNSUPPORTED, f"cannot split the order: {exc}")]
        children = [
            request.model_copy(
                update={"account": name, "quantity": quantity, "client_order_id": new_client_order_id()}
            )
            for name, quantity in parts.items()
        ]
        self._safe_record(
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
