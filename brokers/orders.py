"""An order as it lives at a broker, and the state machine its status follows.

``Order`` holds the validated request, its account and broker id, its status and its fills;
its status changes only along ``LEGAL_TRANSITIONS``, and a fill is counted once, whatever order
fills arrive in.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from decimal import Decimal

from .account_state import Fill
from .clock import utcnow
from .enums import OrderStatus, OrderType, Side, TimeInForce
from .order_request import OrderRequest

__all__ = ["LEGAL_TRANSITIONS", "Order", "can_transition"]

log = logging.getLogger(__name__)

# The order state machine. A status not listed as a target of the current one is refused.
# UNKNOWN (a submit whose answer was lost) may resolve to anything but PENDING.
_S = OrderStatus
LEGAL_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING: frozenset(
        {
            _S.SUBMITTED,
            _S.ACCEPTED,
            _S.PARTIALLY_FILLED,
            _S.FILLED,
            _S.CANCELLED,
            _S.REJECTED,
            _S.EXPIRED,
            _S.UNKNOWN,
        }
    ),
    _S.SUBMITTED: frozenset(
        {_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED, _S.UNKNOWN}
    ),
    _S.ACCEPTED: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED, _S.UNKNOWN}
    ),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.UNKNOWN}),
    _S.UNKNOWN: frozenset(
        {_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED}
    ),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}
del _S


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in LEGAL_TRANSITIONS[current]


_ZERO = Decimal(0)


@dataclasses.dataclass(slots=True, kw_only=True)
class Order:
    """A request as it lives at a broker. Status changes only along ``LEGAL_TRANSITIONS``.

    A slotted dataclass, not a pydantic model: the order path makes and copies several orders
    for every request, and what an order holds comes from a validated ``OrderRequest``, from
    validated ``Fill`` objects, or from the code that follows the order at its broker. Fills
    are added through ``take_fill`` or ``apply_fill``, never to ``fills`` directly: those two
    keep the index of fill ids that refuses a repeat.
    """

    request: OrderRequest
    account: str | None = None
    broker_order_id: str | None = None
    status: OrderStatus = OrderStatus.PENDING
    filled_quantity: Decimal = _ZERO
    avg_fill_price: Decimal | None = None
    reject_code: str | None = None
    reject_reason: str | None = None
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    updated_at: datetime = dataclasses.field(default_factory=utcnow)
    fills: list[Fill] = dataclasses.field(default_factory=list)
    # The ids among ``fills``, so that an order filled in thousands of pieces need not look
    # through all of them for each new one. Built by the first look-up that has fills to look
    # through (the first fill has none, so an order filled at once seldom needs it), then kept
    # by ``take_fill``.
    _fill_ids: set[str] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.request, OrderRequest):
            raise TypeError(f"request must be an OrderRequest, not {type(self.request).__name__}")
        if self.created_at.tzinfo is None or self.updated_at.tzinfo is None:
            raise ValueError("created_at and updated_at must be timezone-aware")
        if self.account is None:
            self.account = self.request.account

    @classmethod
    def for_request(
        cls,
        request: OrderRequest,
        account: str | None = None,
        *,
        broker_order_id: str | None = None,
        at: datetime | None = None,
    ) -> Order:
        """A new PENDING order for ``request``, at ``account`` (else the request's own), created
        and updated ``at`` (else now)."""
        now = utcnow() if at is None else at
        return cls(
            request=request,
            account=account,
            broker_order_id=broker_order_id,
            created_at=now,
            updated_at=now,
        )

    def snapshot(self) -> Order:
        """A copy that later changes to this order cannot reach: its own fill list, and so its
        own fill ids (the fills themselves are frozen and shared, as is the request)."""
        # Every field written out (``dataclasses.replace`` does the same, several times slower):
        # brokers take one per stream update. A test checks that none is left out.
        return Order(
            request=self.request,
            account=self.account,
            broker_order_id=self.broker_order_id,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_fill_price=self.avg_fill_price,
            reject_code=self.reject_code,
            reject_reason=self.reject_reason,
            created_at=self.created_at,
            updated_at=self.updated_at,
            fills=list(self.fills),
        )

    # Flattened view of the request, so callers need not reach through ``request``.
    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def quantity(self) -> Decimal | None:
        """None for a notional order (see ``notional``)."""
        return self.request.quantity

    @property
    def notional(self) -> Decimal | None:
        return self.request.notional

    @property
    def order_type(self) -> OrderType:
        return self.request.order_type

    @property
    def limit_price(self) -> Decimal | None:
        return self.request.limit_price

    @property
    def stop_price(self) -> Decimal | None:
        return self.request.stop_price

    @property
    def time_in_force(self) -> TimeInForce:
        return self.request.time_in_force

    @property
    def remaining_quantity(self) -> Decimal | None:
        """None for a notional order, whose size is money (``remaining_notional``)."""
        quantity = self.request.quantity
        return None if quantity is None else max(_ZERO, quantity - self.filled_quantity)

    @property
    def remaining_notional(self) -> Decimal:
        """Money a notional order has still to spend; 0 for an order by quantity."""
        notional = self.request.notional
        if notional is None:
            return _ZERO
        spent = _ZERO if self.avg_fill_price is None else self.filled_quantity * self.avg_fill_price
        return max(_ZERO, notional - spent)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_working(self) -> bool:
        return self.status.is_working

    def transition(self, new: OrderStatus | str, *, at: datetime | None = None) -> bool:
        """Move to ``new`` if the state machine allows it. Returns whether anything changed.

        An illegal move (FILLED -> ACCEPTED, ...) is logged and refused, never applied: late or
        reordered broker events must not make an order look alive again.
        """
        if not isinstance(new, OrderStatus):
            new = OrderStatus(new)
        current = self.status
        if new is current and new is not OrderStatus.PARTIALLY_FILLED:
            return False
        if not can_transition(current, new):
            log.warning(
                "refused illegal status change %s -> %s for order %s",
                current.value,
                new.value,
                self.client_order_id,
            )
            return False
        self.status = new
        self.updated_at = utcnow() if at is None else at
        return True

    def reject(self, code: str, reason: str) -> Order:
        self.reject_code = code
        self.reject_reason = reason
        self.transition(OrderStatus.REJECTED)
        return self

    def has_fill(self, fill_id: str) -> bool:
        """Whether a fill with this id is among ``fills``."""
        if not self.fills:
            return False
        if self._fill_ids is None:
            self._fill_ids = {fill.fill_id for fill in self.fills}
        return fill_id in self._fill_ids

    def take_fill(self, fill: Fill) -> bool:
        """Append ``fill`` to ``fills`` unless one with its id is there already; returns whether
        it was added. Quantities are left alone (``apply_fill`` does both)."""
        if self.has_fill(fill.fill_id):
            return False
        self.fills.append(fill)
        if self._fill_ids is not None:
            self._fill_ids.add(fill.fill_id)
        return True

    def apply_fill(self, fill: Fill) -> bool:
        """Add a fill once. Quantity and average price are sums, so arrival order does not matter."""
        if not self.take_fill(fill):
            return False
        held = self.filled_quantity
        total = held + fill.quantity
        previous_cost = _ZERO if self.avg_fill_price is None else self.avg_fill_price * held
        self.avg_fill_price = (previous_cost + fill.price * fill.quantity) / total
        self.filled_quantity = total
        if self.status.is_terminal:
            # A fill after a cancel confirmation is real money: count it, keep the final status.
            log.warning(
                "fill %s arrived for %s order %s", fill.fill_id, self.status.value, self.client_order_id
            )
            self.updated_at = fill.timestamp
        else:
            # A notional order is done when its broker says so: its quantity is not known here.
            quantity = self.request.quantity
            done = quantity is not None and total >= quantity
            self.transition(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, at=fill.timestamp)
        return True
