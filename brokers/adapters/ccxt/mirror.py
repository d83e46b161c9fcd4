"""Our copy of every order at the venue, moved along by what ccxt reports.

The status of an order comes from the venue's order record; its executions come from the venue's
trade list, one ``Fill`` per trade with that trade's fee, under an id made of the order's and the
trade's ids, so a trade seen twice is counted once. An order the venue calls closed stays
PARTIALLY_FILLED here until its trades have been read: FILLED follows the fills.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ...base import BrokerEvent
from ...credentials import redact
from ...enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from ...errors import BrokerAPIError
from ...models import Fill, Order, OrderRequest, can_transition, utcnow
from ..listed_order import read_or_skip
from .wire import dec, map_status, stamp, table

log = logging.getLogger(__name__)

_MAX_TRACKED = 10_000
_CLIENT_ID = re.compile(r"[\w-]{1,48}")


class OrderMirror:
    """Every order of one account by the venue's order id; ``emit`` passes on each Order snapshot
    and Fill."""

    def __init__(self, account: str, emit: Callable[[BrokerEvent], None]) -> None:
        self._account = account
        self._emit = emit
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._symbols: dict[str, str] = {}
        self._reported: dict[str, Decimal] = {}
        self._pending: dict[str, OrderRequest] = {}
        # Orders placed elsewhere, followed by their totals: their trades before we saw them are
        # not ours to count, and no later trade list tells old from new.
        self._foreign: set[str] = set()

    def expect(self, request: OrderRequest) -> None:
        self._pending[request.client_order_id] = request

    def forget(self, request: OrderRequest) -> None:
        self._pending.pop(request.client_order_id, None)

    def pending(self, client_order_id: str) -> OrderRequest | None:
        return self._pending.get(client_order_id)

    def followed(self) -> list[tuple[str, str, Order]]:
        """(venue id, market symbol, order) of every order we follow."""
        return [(oid, self._symbols.get(oid, ""), order) for oid, order in self._orders.items()]

    def follows(self, broker_order_id: str) -> bool:
        return broker_order_id in self._orders

    def by_client_id(self, client_order_id: str) -> Order | None:
        for order in self._orders.values():
            if order.client_order_id == client_order_id:
                return order.snapshot()
        return None

    def awaiting_trades(self) -> dict[str, int]:
        """Market symbol -> the earliest creation time (ms) among orders the venue says have
        filled more than the trades we have read."""
        wanted: dict[str, int] = {}
        for oid, order in self._orders.items():
            if self._reported.get(oid, Decimal(0)) > order.filled_quantity:
                symbol = self._symbols.get(oid, "")
                since = int(order.created_at.timestamp() * 1000) - 60_000
                wanted[symbol] = min(wanted.get(symbol, since), since)
        return wanted

    # -- orders ---------------------------------------------------------------------------
    def ingest(
        self, payload: dict[str, Any], *, request: OrderRequest | None = None, symbol: str = ""
    ) -> Order:
        """Apply one ccxt order; emit the order if it changed. ``symbol`` is the market it was
        placed in, for venues whose answer to a submit names none."""
        oid = str(payload.get("id") or "")
        if not oid:
            raise BrokerAPIError("the venue sent an order without an id", broker=self._account)
        order = self._orders.get(oid)
        fresh = order is None
        if order is None:
            coid = str(payload.get("clientOrderId") or "")
            request = request or self._pending.pop(coid, None)
            filled_before = Decimal(0)
            foreign = request is None
            if request is None:
                request = self._request_from(payload, oid)
                # Placed elsewhere, before we looked: what filled then is not news.
                filled_before = dec(payload.get("filled")) or Decimal(0)
            else:
                self._pending.pop(request.client_order_id, None)
            order = Order(
                request=request,
                account=self._account,
                broker_order_id=oid,
                created_at=stamp(payload.get("timestamp")) or utcnow(),
            )
            if foreign:
                self._foreign.add(oid)
            if filled_before > 0:
                order.filled_quantity = min(filled_before, order.request.units)
                order.avg_fill_price = dec(payload.get("average"))
            self._remember(oid, order, str(payload.get("symbol") or symbol))
        changed = self._apply(oid, order, payload)
        if fresh or changed:
            self._emit(order.snapshot())
        return order

    def ingest_quietly(self, payload: object) -> Order | None:
        """``ingest`` for listings, where one unreadable order must not stop the rest."""
        return read_or_skip(self.ingest, payload, self._account, "the venue")

    def _apply(self, oid: str, order: Order, payload: dict[str, Any]) -> bool:
        reported = dec(payload.get("filled")) or Decimal(0)
        if reported > order.request.units:
            raise BrokerAPIError(
                f"the venue reported {reported} filled of order {oid} for {order.request.units}",
                broker=self._account,
            )
        target = map_status(payload.get("status"), reported, order.request.units)
        if oid in self._foreign:
            changed = reported > order.filled_quantity
            if changed:
                order.filled_quantity = reported
                order.avg_fill_price = dec(payload.get("average")) or order.avg_fill_price
            if target is not order.status and can_transition(order.status, target):
                changed = order.transition(target) or changed
            return changed
        self._reported[oid] = max(reported, self._reported.get(oid, Decimal(0)))
        if target in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED):
            # Fills move an order's quantity and status; until its trades are read it is working.
            if order.status in (OrderStatus.PENDING, OrderStatus.SUBMITTED):
                return order.transition(OrderStatus.ACCEPTED)
            return False
        if target is order.status or not can_transition(order.status, target):
            return False
        if target is OrderStatus.REJECTED:
            order.reject_code = "BROKER_REJECTED"
            order.reject_reason = "the venue rejected the order"
        return order.transition(target)

    def _request_from(self, payload: dict[str, Any], oid: str) -> OrderRequest:
        """A request that describes an order placed elsewhere."""
        amount = dec(payload.get("amount"))
        side = str(payload.get("side") or "").upper()
        symbol = str(payload.get("symbol") or "")
        if amount is None or amount <= 0 or side not in ("BUY", "SELL") or not symbol:
            raise BrokerAPIError(f"order {oid} names no market, side or amount", broker=self._account)
        price = dec(payload.get("price"))
        kind = OrderType.LIMIT if str(payload.get("type")) == "limit" and price else OrderType.MARKET
        coid = str(payload.get("clientOrderId") or "")
        return OrderRequest(
            symbol=symbol,
            side=Side(side),
            quantity=amount,
            order_type=kind,
            limit_price=price if kind is OrderType.LIMIT else None,
            time_in_force=TimeInForce.GTC,
            asset_class=AssetClass.CRYPTO,
            client_order_id=coid if _CLIENT_ID.fullmatch(coid) and coid != "0" else f"venue-{oid}"[:48],
        )

    # -- trades ---------------------------------------------------------------------------
    def take_trades(self, trades: list[Any], quote_of: Callable[[str], str | None]) -> None:
        """Apply each trade of an order we follow as a fill, once; emit each new fill, then the
        order it moved."""
        moved: dict[str, Order] = {}
        for trade in trades:
            if not isinstance(trade, dict):
                continue
            oid = str(trade.get("order") or "")
            order = self._orders.get(oid)
            if order is None or oid in self._foreign:
                continue
            try:
                fill = self._fill(order, oid, trade, quote_of(str(trade.get("symbol") or "")))
            except (ValueError, TypeError) as exc:
                log.warning("%s: ignored a trade that cannot be read: %s", self._account, redact(exc))
                continue
            if fill is not None and order.apply_fill(fill):
                self._emit(fill)
                moved[oid] = order
        for order in moved.values():
            self._emit(order.snapshot())

    def _fill(self, order: Order, oid: str, trade: dict[str, Any], quote: str | None) -> Fill | None:
        tid = str(trade.get("id") or "")
        amount, price = dec(trade.get("amount")), dec(trade.get("price"))
        if not tid or amount is None or amount <= 0 or price is None or price <= 0:
            log.warning("%s: ignored a trade of %s without an id, amount or price", self._account, oid)
            return None
        fee = table(trade.get("fee"))
        commission = dec(fee.get("cost")) or Decimal(0)
        fee_currency = str(fee.get("currency") or "")
        base = str(trade.get("symbol") or "").partition("/")[0]
        if commission and fee_currency and fee_currency == base:
            commission *= price  # a fee taken from the coin bought, in the quote currency
        elif commission and quote is not None and fee_currency and fee_currency != quote:
            log.warning(
                "%s: fee of trade %s is in %s, neither side of the market; not counted",
                self._account,
                tid,
                fee_currency,
            )
            commission = Decimal(0)
        return Fill(
            fill_id=f"{oid}:{tid}",
            account=self._account,
            symbol=order.symbol,
            side=order.side,
            quantity=amount,
            price=price,
            commission=commission,
            currency=quote if quote is not None and len(quote) == 3 else "USD",
            asset_class=order.request.asset_class,
            broker_order_id=oid,
            client_order_id=order.client_order_id,
            timestamp=stamp(trade.get("timestamp")) or utcnow(),
        )

    def _remember(self, oid: str, order: Order, symbol: str) -> None:
        self._orders[oid] = order
        self._symbols[oid] = symbol
        if len(self._orders) > _MAX_TRACKED:
            for old_id, old in list(self._orders.items()):
                if len(self._orders) <= _MAX_TRACKED:
                    break
                if old.is_terminal:
                    del self._orders[old_id]
                    self._symbols.pop(old_id, None)
                    self._reported.pop(old_id, None)
                    self._foreign.discard(old_id)
