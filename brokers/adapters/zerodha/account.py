"""The account as Kite reports it: margins, holdings and positions read and turned into our
Balance, MarginInfo and Position, and last prices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from ...account_state import SettledCashSource
from ...credentials import redact
from ...errors import BrokerAPIError, BrokerError, InvalidSymbolError
from ...instruments import Instrument
from ...models import AssetClass, Balance, MarginInfo, Position, describe_validation_error
from .session import KiteSession
from .wire import CASH_EXCHANGES, asset_class_of, dec, holding_key, instrument

log = logging.getLogger(__name__)

UNREADABLE = (AttributeError, KeyError, TypeError, ValueError, InvalidOperation, ValidationError)


def unreadable(exc: BaseException) -> str:
    """Why Kite's data could not be read, in words a trader can act on (not "'str' object has no
    attribute 'get'")."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]}" if exc.args else "a field is missing"
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    if isinstance(exc, AttributeError | TypeError | InvalidOperation):
        return "a field holds the wrong kind of value"
    return redact(exc)


def _total(rows: Iterable[dict[str, Any]], key: str) -> Decimal:
    return sum((dec(row.get(key)) for row in rows), Decimal(0))


def balance_from(
    account: str,
    segment: dict[str, Any],
    holdings: list[dict[str, Any]],
    positions: dict[str, Any],
    at: datetime,
    *,
    cash_account: bool = False,
) -> Balance:
    available = segment.get("available") or {}
    cash = dec(available.get("cash"), 2)
    # Kite's cash is the day's opening balance plus funds added today: settled money. The
    # proceeds of holdings sold today are held apart (utilised.holding_sales) until they settle.
    sold = dec((segment.get("utilised") or {}).get("holding_sales"), 2)
    held = sum(
        ((dec(h.get("quantity")) + dec(h.get("t1_quantity"))) * dec(h.get("last_price")) for h in holdings),
        Decimal(0),
    )
    net = positions.get("net") or []
    # Positions' P&L on top of holdings at market: a sale of held shares shows as a short
    # position against the holding, so its proceeds are counted once.
    return Balance(
        account=account,
        currency="INR",
        cash=cash,
        equity=dec(cash + held + _total(net, "pnl"), 2),
        buying_power=dec(segment.get("net"), 2),
        realized_pnl=dec(_total(net, "realised"), 2),
        unrealized_pnl=dec(_total(net, "unrealised") + _total(holdings, "pnl"), 2),
        timestamp=at,
        settled_cash=cash,
        unsettled_cash=sold,
        settled_source=SettledCashSource.BROKER,
        cash_account=cash_account,
        margin_used=_margin_used(segment.get("utilised") or {}),
    )


def _margin_used(utilised: dict[str, Any]) -> Decimal:
    """What open positions hold of the account: SPAN, exposure and option premium."""
    return dec(
        dec(utilised.get("span")) + dec(utilised.get("exposure")) + dec(utilised.get("option_premium")), 2
    )


def margin_from(account: str, segment: dict[str, Any], at: datetime) -> MarginInfo:
    utilised = segment.get("utilised") or {}
    net = dec(segment.get("net"), 2)
    return MarginInfo(
        account=account,
        currency="INR",
        initial_margin=_margin_used(utilised),
        maintenance_margin=dec(utilised.get("span"), 2),
        available_funds=net,
        excess_liquidity=net,
        timestamp=at,
    )


def merge_positions(a: Position, b: Position) -> Position:
    """Holdings and today's net position of one instrument, as one position."""
    quantity = a.quantity + b.quantity
    avg: Decimal | None
    if a.avg_price is None or b.avg_price is None:
        avg = None  # Kite reports every cost; kept for the type's sake
    elif a.quantity * b.quantity > 0:
        avg = (a.avg_price * a.quantity + b.avg_price * b.quantity) / quantity
    else:  # one side reduces the other: what is left keeps the larger side's price
        avg = a.avg_price if abs(a.quantity) >= abs(b.quantity) else b.avg_price
    return a.model_copy(
        update={
            "quantity": quantity,
            "avg_price": None if avg is None else dec(avg),
            "realized_pnl": a.realized_pnl + b.realized_pnl,
            "last_price": b.last_price if b.last_price is not None else a.last_price,
            "previous_close": a.previous_close or b.previous_close,
            "day_pnl": None if a.day_pnl is None or b.day_pnl is None else a.day_pnl + b.day_pnl,
            "realized_today": _either_or_sum(a.realized_today, b.realized_today),
        }
    )


def _either_or_sum(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None or b is None:
        return b if a is None else a
    return a + b


def _day_figures(
    data: dict[str, Any], quantity: Decimal, is_holding: bool
) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """Kite's day as (previous close, day's P&L, realised today): the close is 0 when Kite has
    none; a holding's day is its ``day_change`` a share, a net position's its ``m2m`` with its
    ``realised``."""
    close = dec(data.get("close_price")) or None
    if is_holding:
        change = data.get("day_change")
        return close, None if change is None or change == "" else dec(dec(change) * quantity, 2), None
    m2m = data.get("m2m")
    return close, None if m2m is None or m2m == "" else dec(m2m, 2), dec(data.get("realised"), 2)


def positions_from(
    account: str,
    holdings: list[dict[str, Any]],
    positions: dict[str, Any],
    prices: dict[tuple[str, str], Decimal],
) -> list[Position]:
    """Holdings (T1 shares included) merged with the net positions, one row per instrument
    (``holding_key``); last prices go into ``prices``."""
    merged: dict[tuple[str, str], Position] = {}
    rows = [(h, True) for h in holdings] + [(p, False) for p in (positions.get("net") or [])]
    # Positions carry no ISIN: a share's is looked up by its trading symbol among the holdings.
    isins = {
        str(h.get("tradingsymbol")): str(h["isin"])
        for h in holdings
        if isinstance(h, dict) and h.get("isin") and h.get("exchange") in CASH_EXCHANGES
    }
    for data, is_holding in rows:
        try:
            exchange, symbol = str(data["exchange"]), str(data["tradingsymbol"])
            key = holding_key(exchange, symbol, str(data.get("isin") or "") or isins.get(symbol))
            quantity = dec(data.get("quantity")) + (dec(data.get("t1_quantity")) if is_holding else 0)
            last = dec(data.get("last_price")) or None
            if last is not None:
                prices[(exchange, symbol)] = last
            if quantity == 0:
                continue
            close, day_pnl, realized_today = _day_figures(data, quantity, is_holding)
            position = Position(
                symbol=symbol,
                quantity=quantity,
                avg_price=dec(data.get("average_price")),
                account=account,
                asset_class=asset_class_of(exchange, symbol),
                currency="INR",
                last_price=last,
                realized_pnl=dec(data.get("realised"), 2),
                multiplier=dec(data.get("multiplier")) or Decimal(1),
                exchange=exchange,
                previous_close=close,
                day_pnl=day_pnl,
                realized_today=realized_today,
            )
        except UNREADABLE as exc:
            log.warning(
                "%s: skipped a position Kite sent that could not be read: %s", account, unreadable(exc)
            )
            continue
        merged[key] = merge_positions(merged[key], position) if key in merged else position
    return [p for p in merged.values() if p.quantity != 0]


class AccountReads:
    """Reads of one account's margins, holdings, positions and last prices through ``session``,
    for the segment of its default exchange. ``clock`` is asked for the time on each use."""

    def __init__(
        self,
        account: str,
        session: KiteSession,
        *,
        exchange: str,
        clock: Callable[[], datetime],
        cash_account: bool = False,
    ) -> None:
        self._account = account
        # Kite's margins do not say whether the account may spend unsettled proceeds: the config does.
        self._cash_account = cash_account
        self._session = session
        self._exchange = exchange
        self._clock = clock
        self._prices: dict[tuple[str, str], Decimal] = {}

    def _segment(self) -> str:
        return "commodity" if self._exchange == "MCX" else "equity"

    async def _margins(self) -> dict[str, Any]:
        data = await self._session.read("margins")
        segment = data.get(self._segment()) if isinstance(data, dict) else None
        if not isinstance(segment, dict):
            raise BrokerAPIError(f"Kite margins had no {self._segment()} segment", broker=self._account)
        return segment

    async def balance(self) -> Balance:
        read = self._session.read
        segment, holdings, positions = await asyncio.gather(
            self._margins(), read("holdings"), read("positions")
        )
        try:
            return balance_from(
                self._account, segment, holdings, positions, self._clock(), cash_account=self._cash_account
            )
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite balance could not be read: {unreadable(exc)}", broker=self._account
            ) from None

    async def margin(self) -> MarginInfo:
        segment = await self._margins()
        try:
            return margin_from(self._account, segment, self._clock())
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite margins could not be read: {unreadable(exc)}", broker=self._account
            ) from None

    async def positions(self) -> list[Position]:
        read = self._session.read
        holdings, positions = await asyncio.gather(read("holdings"), read("positions"))
        try:
            return positions_from(self._account, holdings, positions, self._prices)
        except UNREADABLE as exc:
            raise BrokerAPIError(
                f"Kite positions could not be read: {unreadable(exc)}", broker=self._account
            ) from None

    async def last_price(self, wanted: Instrument) -> Decimal | None:
        symbol = wanted.symbol
        try:
            exchange, tradingsymbol = self._listing(wanted)
            key = f"{exchange}:{tradingsymbol}"
            quote = (await self._session.read("ltp", key)).get(key)
            price = dec(quote["last_price"]) if quote else None
        except (BrokerError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            log.debug("%s: no last price for %s: %s", self._account, symbol, redact(exc))
            return None
        if price:
            self._prices[(exchange, tradingsymbol)] = price
        return price or None

    def last_price_nowait(self, wanted: Instrument) -> Decimal | None:
        try:
            return self._prices.get(self._listing(wanted))
        except InvalidSymbolError:
            return None

    def _listing(self, wanted: Instrument) -> tuple[str, str]:
        """(exchange, tradingsymbol) of ``wanted``. A derivative is its exchange's own, so one
        named without its exchange (NFO, MCX, ...) is not looked up on the cash default."""
        if wanted.asset_class is not AssetClass.STOCK and wanted.exchange is None:
            raise InvalidSymbolError(f"{wanted.label} names no Kite exchange", broker=self._account)
        return instrument(wanted.symbol, wanted.exchange, self._exchange, self._account)
