"""IB executions on our orders: each counted once, and a correction in place of what it corrects.

TWS publishes a correction to an execution as another execDetails "with all parameters identical
except for the execID", which "will differ only in the digits after the final period"
(https://interactivebrokers.github.io/tws-api/executions_commissions.html): ``...01.01`` is
corrected by ``...01.02``. Counting it as a new execution fills the order twice.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from ...models import Fill, Order, OrderStatus

log = logging.getLogger(__name__)

_ZERO = Decimal(0)


def _split(exec_id: str) -> tuple[str, tuple[int, str]]:
    """The execution id without its revision, and the revision in the order TWS raises it
    (``01`` < ``02`` < ``0a``: hex digits)."""
    base, _, revision = exec_id.rpartition(".")
    if not base:
        return exec_id, (-1, "")
    try:
        return base, (int(revision, 16), revision)
    except ValueError:
        return base, (-1, revision)


class ExecutionLedger:
    """Every execution taken, by its id without the revision."""

    def __init__(self) -> None:
        # base id -> (the id the execution was first counted under, the revision applied)
        self._taken: dict[str, tuple[str, tuple[int, str]]] = {}

    def counted_as(self, exec_id: str) -> str | None:
        """The fill id this execution counts under: its own if it is new, that of the execution
        it corrects if it is a correction, None if a later revision was applied already (the
        original arriving after its correction, as a replay may bring it)."""
        base, revision = _split(exec_id)
        taken = self._taken.get(base)
        if taken is None:
            self._taken[base] = (exec_id, revision)
            return exec_id
        first, applied = taken
        if revision <= applied:
            return None
        self._taken[base] = (first, revision)
        return first


def add_fill(order: Order, fill: Fill, floor: Decimal = _ZERO) -> bool:
    """Add a new fill to ``order`` once and move its status; ``floor`` is a filled quantity the
    order already counts without its fills (see ``recount``)."""
    if not order.take_fill(fill):
        return False
    held = order.filled_quantity
    if floor <= 0:
        total = held + fill.quantity
        cost = _ZERO if order.avg_fill_price is None else order.avg_fill_price * held
        order.avg_fill_price = (cost + fill.price * fill.quantity) / total
        order.filled_quantity = total
    else:
        recount(order, floor)
    if order.status.is_terminal:
        # A fill after a cancel confirmation is real money: counted, the final status kept.
        log.warning(
            "fill %s arrived for %s order %s", fill.fill_id, order.status.value, order.client_order_id
        )
        order.updated_at = fill.timestamp
    else:
        done = order.filled_quantity >= order.request.units
        order.transition(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, at=fill.timestamp)
    return True


def replace_fill(order: Order, fill: Fill, floor: Decimal = _ZERO) -> bool:
    """Put ``fill`` in place of the fill with its id (a corrected execution); False if the order
    has no such fill or it is unchanged."""
    for index, earlier in enumerate(order.fills):
        if earlier.fill_id == fill.fill_id:
            if earlier == fill:
                return False
            order.fills[index] = fill  # the same id, so the order's index of fill ids still holds
            recount(order, floor)
            order.updated_at = fill.timestamp
            return True
    return False


def recount(order: Order, floor: Decimal = _ZERO) -> None:
    """Filled quantity and average price from the fills, unless they add up to less than
    ``floor``: a Filled status taken without its executions is not undone by them."""
    filled = sum((f.quantity for f in order.fills), _ZERO)
    if filled <= 0 or filled < floor:
        return
    order.filled_quantity = filled
    order.avg_fill_price = sum((f.quantity * f.price for f in order.fills), _ZERO) / filled
