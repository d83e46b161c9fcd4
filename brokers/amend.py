"""Changing a working order at its broker: the new terms pass the checks a new order passes, the
change goes through the broker's own replace, and the journal holds the old terms and the new.

A modification is checked as the order it becomes, in place of the one it was: the risk checks
see the book without the order being changed (``WithoutOrder``), so a working order is never
counted twice against its own replacement. As on the order path, nothing awaits between the
final kill-switch check and the broker call.

A refused modification is a value, as a refused order is: ``OrderAmender.modify`` returns a
report of it (a detached copy of the order, REJECTED, with ``reject_code`` and
``reject_reason``); the order itself keeps working with the terms it had.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from pydantic import ValidationError

from . import journal as jr
from .base import AccountDirectory
from .book import Book
from .errors import BrokerConnectionError, BrokerError, BrokerTimeoutError, refusal_code
from .fanout import describe_error
from .instruments import Instrument
from .killswitch import KillSwitch
from .models import (
    Order,
    OrderClass,
    OrderRequest,
    OrderStatus,
    RejectCode,
    Side,
    TimeInForce,
    TradingState,
    describe_validation_error,
)
from .risk import RiskEngine
from .tracking import OrderTracker

__all__ = ["MODIFIED", "MODIFY", "MODIFY_REJECT", "OrderAmender", "WithoutOrder", "order_terms"]

log = logging.getLogger(__name__)

# Journal kinds. MODIFY is written before the broker is asked (old and new terms); MODIFIED when
# it confirms, with the new request (it replaces the intent's when the journal is read back);
# MODIFY_REJECT when the change was refused, here or by the broker.
MODIFY = "modify"
MODIFIED = "modified"
MODIFY_REJECT = "modify_reject"

_ZERO = Decimal(0)


def order_terms(request: OrderRequest) -> dict[str, str | None]:
    """What a modification may change, as the journal and a person read it."""
    return {
        "quantity": str(request.quantity),
        "limit_price": None if request.limit_price is None else str(request.limit_price),
        "stop_price": None if request.stop_price is None else str(request.stop_price),
        "time_in_force": request.time_in_force.value,
    }


def _terms(request: OrderRequest) -> tuple[object, ...]:
    return (request.quantity, request.limit_price, request.stop_price, request.time_in_force)


class WithoutOrder:
    """The book as it would stand without one working order: the context a modification of that
    order is risk-checked in (it replaces the order, it does not join it)."""

    def __init__(self, book: Book, order: Order) -> None:
        self._book = book
        self._order = order
        self._instrument = order.request.instrument
        self.base_currency = book.base_currency

    def _is_it(self, account: str | None, instrument: Instrument, side: Side) -> bool:
        order = self._order
        return account in (None, order.account) and side is order.side and instrument == self._instrument

    def position(self, account: str | None, instrument: Instrument) -> Decimal:
        return self._book.position(account, instrument)

    def pending(self, account: str | None, instrument: Instrument, side: Side) -> Decimal:
        pending = self._book.pending(account, instrument, side)
        if self._is_it(account, instrument, side):
            pending -= self._order.remaining_quantity or _ZERO
        return max(pending, _ZERO)

    def pending_notional(self, account: str | None, instrument: Instrument, side: Side) -> Decimal:
        # The order being changed is never a notional one (those are not changed in place).
        return self._book.pending_notional(account, instrument, side)

    def open_orders(self, account: str | None) -> int:
        count = self._book.open_orders(account)
        if account in (None, self._order.account):
            count -= 1
        return max(count, 0)

    def last_price(self, instrument: Instrument, account: str | None) -> Decimal | None:
        return self._book.last_price(instrument, account)

    def order_currency(self, request: OrderRequest, account: str | None) -> str:
        return self._book.order_currency(request, account)

    def to_base(self, amount: Decimal, currency: str) -> Decimal | None:
        return self._book.to_base(amount, currency)

    def daily_pnl(self, account: str | None) -> Decimal | None:
        return self._book.daily_pnl(account)

    def trading_day(self) -> date:
        return self._book.trading_day()

    def is_reducing(self, request: OrderRequest, account: str | None) -> bool:
        """``Book.is_reducing`` for the order's new terms, without its old ones."""
        instrument = request.instrument
        current = self.position(account, instrument)
        if current == 0 or (current > 0) == (request.side is Side.BUY):
            return False
        already = self.pending(account, instrument, request.side)
        if request.quantity is None:
            return False  # as Book.is_reducing: a notional order's size is not known
        remaining = request.quantity - self._order.filled_quantity
        return already + remaining <= abs(current)


class OrderAmender:
    """One modification of one order, through the same gates as a new order."""

    def __init__(
        self,
        *,
        manager: AccountDirectory,
        kill_switch: KillSwitch,
        tracker: OrderTracker,
        book: Book,
        risk: RiskEngine | None,
        timeout: float,
        halted_sentence: Callable[[], str],
        in_flight: set[str],
    ) -> None:
        self.manager = manager
        self.kill_switch = kill_switch
        self.tracker = tracker
        self.book = book
        self.risk = risk
        self.timeout = timeout
        self.halted_sentence = halted_sentence
        # Orders whose change is on its way to the broker: one change at a time per order, so
        # that a second never races the first to the broker.
        self.in_flight = in_flight

    async def modify(
        self,
        order: Order,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
    ) -> Order:
        asked: dict[str, object] = {
            name: value
            for name, value in (
                ("quantity", quantity),
                ("limit_price", limit_price),
                ("stop_price", stop_price),
                ("time_in_force", time_in_force),
            )
            if value is not None
        }
        problem = self._not_modifiable(order)
        if problem is not None:
            return self._refuse(order, None, asked, RejectCode.INVALID_ORDER, problem)
        built = self._new_request(order, asked)
        if isinstance(built, str):
            return self._refuse(order, None, asked, RejectCode.INVALID_ORDER, built)
        request = built
        account = order.account or ""
        state = self.kill_switch.state
        if state is TradingState.HALTED:
            return self._refuse(order, request, asked, RejectCode.SYSTEM_HALTED, self.halted_sentence())
        context = WithoutOrder(self.book, order)
        if state is TradingState.REDUCING and not context.is_reducing(request, account):
            return self._refuse(order, request, asked, *self._reduce_only(request, account))
        if not self.manager.is_available(account):
            reason = self.manager.unavailable_reason(account) or f"{account} is not connected"
            return self._refuse(order, request, asked, RejectCode.BROKER_UNAVAILABLE, reason)
        broker = self.manager.get(account)
        capabilities = broker.capabilities
        if not capabilities.modify_orders:
            return self._refuse(
                order,
                request,
                asked,
                RejectCode.UNSUPPORTED,
                f"{account} cannot change a working order; cancel it and place a new one",
            )
        unsupported = capabilities.supports(request)
        if unsupported is not None:
            return self._refuse(order, request, asked, RejectCode.UNSUPPORTED, f"{account}: {unsupported}")
        if self.risk is not None:
            rejection = self.risk.check(request, account, context)
            if rejection is not None:
                return self._refuse(order, request, asked, rejection.code, rejection.reason)
        coid = order.client_order_id
        broker_order_id = order.broker_order_id or ""
        before = order_terms(order.request)
        self.tracker.record(MODIFY, coid, account, {"from": before, "to": order_terms(request)})
        # From here to the broker call: no await.
        state = self.kill_switch.state
        if state is TradingState.HALTED:
            return self._refuse(order, request, asked, RejectCode.SYSTEM_HALTED, self.halted_sentence())
        if state is TradingState.REDUCING and not context.is_reducing(request, account):
            return self._refuse(order, request, asked, *self._reduce_only(request, account))
        deadline = asyncio.timeout(self.timeout)
        self.in_flight.add(coid)
        amending = self.tracker.amending
        amending[coid] = request
        try:
            async with deadline:
                answer = await broker.modify_order(broker_order_id, request)
        except Exception as exc:
            # Without an answer the broker's word on the terms is all there is: a read-back
            # that shows them is no longer taken for an echo of ours.
            amending.pop(coid, None)
            return await self._failed(order, request, asked, exc, expired=deadline.expired())
        finally:
            self.in_flight.discard(coid)
            amending.pop(coid, None)
        self._confirmed(order, request, answer, before)
        return order

    # -- the checks --------------------------------------------------------------------------
    def _not_modifiable(self, order: Order) -> str | None:
        coid = order.client_order_id
        tracker = self.tracker
        if coid in self.in_flight:
            return f"a change to order {coid} is on its way to the broker; wait for its answer"
        if coid in tracker.orphaned:
            return tracker.orphan_note(order) or f"order {coid} cannot be reached from here"
        if coid in tracker.in_flight or order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
            return (
                f"order {coid} is {order.status.value}: its broker has not confirmed it yet, so it "
                f"cannot be changed until it has"
            )
        if order.is_terminal:
            return f"order {coid} is {order.status.value}; only a working order can be changed"
        if order.account is None or order.broker_order_id is None:
            return f"order {coid} has no order id at its broker yet, so it cannot be changed"
        if order.request.notional is not None:
            return (
                f"order {coid} is for an amount of money, which no broker here changes in place; "
                "cancel it and send a new one"
            )
        return None

    @staticmethod
    def _new_request(order: Order, asked: dict[str, object]) -> OrderRequest | str:
        if not asked:
            return "nothing to change: give a new quantity, limit price, stop price or time in force"
        old = order.request
        if old.legs is OrderClass.OCO and "limit_price" in asked and "take_profit" not in asked:
            # An OCO order is its take-profit: a LIMIT at that price, which moves with it.
            asked = {**asked, "take_profit": asked["limit_price"]}
        try:
            request = OrderRequest.model_validate({**old.model_dump(), **asked})
        except ValidationError as exc:
            return describe_validation_error(exc)
        if _terms(request) == _terms(old):
            return f"order {order.client_order_id} already has these terms; nothing was sent"
        if request.units <= order.filled_quantity:
            return f"quantity must be above the {order.filled_quantity} already filled, not {request.units}"
        return request

    def _reduce_only(self, request: OrderRequest, account: str) -> tuple[str, str]:
        info = self.kill_switch.info
        why = f" ({info.reason})" if info is not None and info.reason else ""
        return (
            RejectCode.REDUCE_ONLY,
            f"trading is reduce-only{why}: the order's new terms must shrink the position in "
            f"{request.symbol} at {account}",
        )

    # -- outcomes ----------------------------------------------------------------------------
    def _refuse(
        self,
        order: Order,
        request: OrderRequest | None,
        asked: dict[str, object],
        code: str,
        reason: str,
    ) -> Order:
        """Journal the refusal and return its report; the order itself is left as it was."""
        code_text = code.value if isinstance(code, RejectCode) else str(code)
        data: dict[str, object] = {
            "code": code_text,
            "reason": reason,
            "from": order_terms(order.request),
            "to": order_terms(request) if request is not None else {k: str(v) for k, v in asked.items()},
        }
        self.tracker.record(MODIFY_REJECT, order.client_order_id, order.account, data)
        log.info("modification of order %s refused: %s: %s", order.client_order_id, code_text, reason)
        report = order.snapshot()
        if request is not None:
            report.request = request
        report.status = OrderStatus.REJECTED  # the modification's outcome, not the order's
        report.reject_code = code_text
        report.reject_reason = reason
        return report

    async def _failed(
        self,
        order: Order,
        request: OrderRequest,
        asked: dict[str, object],
        exc: Exception,
        *,
        expired: bool,
    ) -> Order:
        reason = "no answer in time" if expired else describe_error(exc)
        code = None if expired else refusal_code(exc)
        if code is not None:
            return self._refuse(order, request, asked, code, f"{order.account} refused the change: {reason}")
        if not isinstance(exc, BrokerTimeoutError | BrokerConnectionError | BrokerError) and not expired:
            log.error("modify_order at %s failed unexpectedly", order.account, exc_info=exc)
        # The broker may or may not have made the change: ask it what the order holds now.
        await self._read_back(order)
        return self._refuse(
            order,
            request,
            asked,
            RejectCode.BROKER_UNAVAILABLE,
            f"no clear answer from {order.account} to the change ({reason}); the order holds "
            f"whatever terms the broker reports, now quantity {order.quantity}"
            + (f" limit {order.limit_price}" if order.limit_price is not None else "")
            + (f" stop {order.stop_price}" if order.stop_price is not None else ""),
        )

    async def _read_back(self, order: Order) -> None:
        if order.account is None or order.broker_order_id is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                snapshot = await self.manager.get(order.account).get_order(order.broker_order_id)
        except Exception as exc:
            log.warning(
                "could not read order %s back after an unanswered change: %s",
                order.client_order_id,
                describe_error(exc),
            )
            return
        self.tracker.absorb(order, snapshot, jr.UPDATE)

    def _confirmed(
        self, order: Order, request: OrderRequest, answer: Order, before: dict[str, str | None]
    ) -> None:
        """The broker made the change: the order has the new terms from now on, whatever the
        broker's echo of it still shows."""
        tracker = self.tracker
        order.request = request
        answer.request = request
        tracker.absorb(order, answer, jr.UPDATE)
        tracker.remember(order)
        tracker.journal_order(MODIFIED, order, with_request=True)
        log.info(
            "order %s at %s modified: %s -> %s",
            order.client_order_id,
            order.account,
            before,
            order_terms(request),
        )
        tracker.notify(order)
