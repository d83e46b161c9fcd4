"""What we ask TWS about orders: place, cancel, cancel all, look up; and how long we wait for its
answer. What TWS reports back is taken in by the ``mirror``."""

from __future__ import annotations

from typing import Any, Protocol

from ...errors import (
    BrokerAPIError,
    BrokerConnectionError,
    BrokerTimeoutError,
    InvalidSymbolError,
    OrderNotFoundError,
    OrderRejectedError,
)
from ...legs import exit_requests
from ...models import BrokerCapabilities, ConnectionState, Order, OrderClass, OrderRequest, OrderStatus
from .api import ib_api
from .codes import CANCEL_FAILED, error_for, is_notice
from .instruments import contract_for, ib_order_for
from .mirror import Mirrored, OrderMirror
from .session import IBSession


class DeskSettings(Protocol):
    """What the desk is told by its owner, read each time it is used."""

    @property
    def name(self) -> str: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def timeout(self) -> float: ...
    @property
    def capabilities(self) -> BrokerCapabilities: ...


class OrderDesk:
    """The order requests of one account, sent through ``session`` and followed in ``mirror``."""

    def __init__(self, settings: DeskSettings, session: IBSession, mirror: OrderMirror) -> None:
        self._settings = settings
        self._session = session
        self._mirror = mirror

    async def place(self, request: OrderRequest) -> Order:
        settings, session, mirror = self._settings, self._session, self._mirror
        problem = settings.capabilities.supports(request)
        if problem:
            raise OrderRejectedError(problem, broker=settings.name, code="UNSUPPORTED")
        if settings.readonly:
            raise OrderRejectedError(
                "the connection to TWS is read-only (readonly = true)", broker=settings.name
            )
        try:
            contract = contract_for(request)
        except InvalidSymbolError as exc:
            exc.broker = settings.name
            raise
        existing = mirror.get(request.client_order_id)
        if existing is not None:
            # Same client order id again: never a second order at the broker.
            return existing.order.snapshot()
        ib = session.require()
        if session.state is not ConnectionState.CONNECTED:
            raise BrokerConnectionError(
                f"TWS is {session.state.value.lower()}; order not sent", broker=settings.name
            )
        ib_order = ib_order_for(request, session.account)
        legs = _linked_orders(ib, request, ib_order, session.account) if request.has_legs else []
        try:
            trade = ib.placeOrder(contract, ib_order)
            # The legs go out at once behind the entry, with no await in between: the last one
            # transmits the whole group (TWS holds the others until then).
            placed = [(leg, ib.placeOrder(contract, child)) for leg, child in legs]
        except ConnectionError as exc:
            raise BrokerConnectionError(f"order not sent: {exc}", broker=settings.name) from None
        tracked = Mirrored(
            order=Order(request=request, account=settings.name), order_id=ib_order.orderId, trade=trade
        )
        tracked.order.broker_order_id = str(ib_order.orderId)
        tracked.order.transition(OrderStatus.SUBMITTED)
        mirror.add(tracked)
        for leg, leg_trade in placed:
            child = Mirrored(
                order=Order(request=leg, account=settings.name),
                order_id=leg_trade.order.orderId,
                trade=leg_trade,
            )
            child.order.broker_order_id = str(leg_trade.order.orderId)
            child.order.transition(OrderStatus.SUBMITTED)
            mirror.add(child)
        try:
            await mirror.wait(tracked, lambda t: t.acked or t.order.is_terminal)
        except BrokerTimeoutError:
            tracked.order.transition(OrderStatus.UNKNOWN)
            mirror.changed(tracked)
            raise BrokerTimeoutError(
                f"no answer from TWS within {settings.timeout:g} s to order "
                f"{request.client_order_id}; its outcome is unknown",
                broker=settings.name,
            ) from None
        except BrokerConnectionError:
            tracked.order.transition(OrderStatus.UNKNOWN)
            mirror.changed(tracked)
            raise BrokerConnectionError(
                f"connection lost before TWS answered order {request.client_order_id}; "
                "its outcome is unknown",
                broker=settings.name,
            ) from None
        if tracked.order.status is OrderStatus.REJECTED:
            code, message = mirror.reject_error(tracked)
            raise error_for(code, message, settings.name)
        return tracked.order.snapshot()

    async def modify(self, broker_order_id: str, request: OrderRequest) -> Order:
        """placeOrder again with the order's own id: TWS changes the order in place and sends
        openOrder with the new terms (https://interactivebrokers.github.io/tws-api/modifying_orders.html).
        Returns once TWS shows the new terms; a refusal raises the error TWS gave."""
        settings, session, mirror = self._settings, self._session, self._mirror
        if settings.readonly:
            raise OrderRejectedError(
                "the connection to TWS is read-only (readonly = true)", broker=settings.name
            )
        tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None:
            await mirror.refresh()
            tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None:
            raise OrderNotFoundError(f"no order {broker_order_id} at {settings.name}", broker=settings.name)
        order = tracked.order
        if order.is_terminal:
            raise OrderRejectedError(
                f"order {broker_order_id} is {order.status.value} and can no longer be changed",
                broker=settings.name,
            )
        if not tracked.order_id:
            # As with a cancel: TWS takes a change by order id only from the client that placed it.
            raise OrderRejectedError(
                f"order {broker_order_id} was placed in TWS or by another API client; change it there",
                broker=settings.name,
                code="UNSUPPORTED",
            )
        ib = session.require()
        if session.state is not ConnectionState.CONNECTED:
            raise BrokerConnectionError(
                f"TWS is {session.state.value.lower()}; the change was not sent", broker=settings.name
            )
        ib_order = ib_order_for(request, session.account)
        ib_order.orderId = tracked.order_id
        if tracked.trade is not None:
            # TWS takes a modification as the whole order: an exit sent without its OCA group
            # and parent would leave its pair, and a fill of its partner would not cancel it.
            placed = tracked.trade.order
            ib_order.ocaGroup, ib_order.ocaType, ib_order.parentId = (
                placed.ocaGroup,
                placed.ocaType,
                placed.parentId,
            )
        contract = tracked.trade.contract if tracked.trade is not None else contract_for(request)
        wanted = (request.quantity, request.limit_price, request.stop_price)
        errors_before = len(tracked.errors)

        def refusal(t: Mirrored) -> tuple[int, str] | None:
            return next(
                ((c, m) for c, m in t.errors[errors_before:] if not is_notice(c)),
                None,
            )

        def answered(t: Mirrored) -> bool:
            terms = (t.order.quantity, t.order.limit_price, t.order.stop_price)
            return terms == wanted or t.order.is_terminal or refusal(t) is not None

        try:
            ib.placeOrder(contract, ib_order)
        except ConnectionError as exc:
            raise BrokerConnectionError(f"change not sent: {exc}", broker=settings.name) from None
        await mirror.wait(tracked, answered)
        refused = refusal(tracked)
        if refused is not None:
            raise error_for(refused[0], refused[1], settings.name)
        if (tracked.order.quantity, tracked.order.limit_price, tracked.order.stop_price) != wanted:
            raise OrderRejectedError(
                f"order {broker_order_id} ended ({tracked.order.status.value}) before the change took effect",
                broker=settings.name,
            )
        return tracked.order.snapshot()

    async def cancel(self, broker_order_id: str) -> Order:
        settings, mirror = self._settings, self._mirror
        if settings.readonly:
            raise BrokerAPIError("the connection to TWS is read-only (readonly = true)", broker=settings.name)
        tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None:
            await mirror.refresh()
            tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None:
            raise OrderNotFoundError(f"no order {broker_order_id} at {settings.name}", broker=settings.name)
        if tracked.order.is_terminal:
            return tracked.order.snapshot()
        if not tracked.order_id:
            # TWS takes a cancel by order id only from the client that placed the order.
            raise BrokerAPIError(
                f"order {broker_order_id} was placed in TWS or by another API client; "
                "cancel it there, or cancel all orders",
                broker=settings.name,
            )
        ib = self._session.require()
        ib_order = (
            tracked.trade.order if tracked.trade is not None else ib_api.Order(orderId=tracked.order_id)
        )
        errors_before = len(tracked.errors)
        try:
            ib.cancelOrder(ib_order)
        except ConnectionError as exc:
            raise BrokerConnectionError(f"cancel not sent: {exc}", broker=settings.name) from None

        def refused(t: Mirrored) -> bool:
            return any(code in CANCEL_FAILED for code, _ in t.errors[errors_before:])

        await mirror.wait(tracked, lambda t: t.order.is_terminal or refused(t))
        if not tracked.order.is_terminal:
            # Refused: most often the order filled or ended a moment ago. Ask before saying so.
            await mirror.refresh(executions=True)
        if not tracked.order.is_terminal:
            code, message = next((c, m) for c, m in tracked.errors[errors_before:] if c in CANCEL_FAILED)
            raise error_for(code, message, settings.name)
        return tracked.order.snapshot()

    async def cancel_all(self) -> list[str]:
        settings = self._settings
        if settings.readonly:
            raise BrokerAPIError("the connection to TWS is read-only (readonly = true)", broker=settings.name)
        ib = self._session.require()
        for trade in ib.openTrades():
            self._mirror.sync_trade(trade)
        asked = [
            t.order.broker_order_id for t in self._mirror if t.order.is_working and t.order.broker_order_id
        ]
        # reqGlobalCancel cancels every working order of this TWS login, whichever client placed it.
        try:
            ib.reqGlobalCancel()
        except ConnectionError as exc:
            raise BrokerConnectionError(f"cancel-all not sent: {exc}", broker=settings.name) from None
        return asked

    async def get(self, broker_order_id: str) -> Order:
        mirror = self._mirror
        tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None or not tracked.order.is_terminal:
            await mirror.refresh()
            tracked = mirror.by_broker_id(broker_order_id)
        if tracked is None:
            name = self._settings.name
            raise OrderNotFoundError(f"no order {broker_order_id} at {name}", broker=name)
        return tracked.order.snapshot()

    async def get_by_client_id(self, client_order_id: str) -> Order | None:
        mirror = self._mirror
        tracked = mirror.get(client_order_id)
        if tracked is not None and tracked.seen_by_broker and tracked.order.is_terminal:
            return tracked.order.snapshot()
        await mirror.refresh(executions=True)
        tracked = mirror.get(client_order_id)
        if tracked is None or not tracked.seen_by_broker:
            return None
        return tracked.order.snapshot()

    async def open_orders(self) -> list[Order]:
        session, mirror = self._session, self._mirror
        ib = session.require()
        if self._settings.readonly:
            trades = ib.openTrades()
        else:
            trades = await session.read("open orders", ib.reqAllOpenOrdersAsync)
        listed = {id(tracked) for tracked in map(mirror.sync_trade, trades) if tracked is not None}
        mirror.flush()
        in_flight = (OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)
        return [
            t.order.snapshot()
            for t in mirror
            if t.order.is_working and (id(t) in listed or t.order.status in in_flight)
        ]


def _linked_orders(
    ib: Any, request: OrderRequest, entry: Any, account: str
) -> list[tuple[OrderRequest, Any]]:
    """The IB orders for ``request``'s exits, each with the request it stands for, and ``entry``
    made their parent (https://interactivebrokers.github.io/tws-api/bracket_order.html): ids
    taken in advance, the exits children of the entry (``parentId``) in one OCA group that
    cancels the rest on a fill, every order but the last sent with ``transmit`` off so TWS holds
    the group until the last arrives. An OCO pair has no parent: the order itself and its stop
    share the OCA group and each is transmitted."""
    exits = exit_requests(request)
    oco = request.legs is OrderClass.OCO
    entry.orderId = ib.client.getReqId()
    group = f"OCA-{request.client_order_id}"
    if oco:
        entry.ocaGroup, entry.ocaType = group, _OCA_CANCEL_REST
    else:
        entry.transmit = False
    legs: list[tuple[OrderRequest, Any]] = []
    for leg in exits:
        child = ib_order_for(leg, account)
        child.orderId = ib.client.getReqId()
        child.ocaGroup, child.ocaType = group, _OCA_CANCEL_REST
        if not oco:
            child.parentId = entry.orderId
            child.transmit = False
        legs.append((leg, child))
    if legs:
        legs[-1][1].transmit = True
    return legs


# ocaType 1: cancel the group's other orders, with block (no overfill).
_OCA_CANCEL_REST = 1
