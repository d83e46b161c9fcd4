"""The account as the venue reports it: the balance of each asset, and every coin held as a
position in a market quoted in the account's currency, valued at that market's last price.

A spot venue reports what is held, not what it cost. The cost is worked out from the account's
trades in that market (``fetch_my_trades``), at average cost, fees paid in the quote currency
included: only when those trades account for the whole holding. Coins deposited, bought
elsewhere or before the history the venue returns leave the cost unknown (None), so that
unrealised P&L reads as unknown rather than as the whole value. It is worked out again only when
the holding changes.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from ...credentials import redact
from ...errors import BrokerAPIError, BrokerConnectionError, BrokerError, BrokerTimeoutError
from ...models import AssetClass, Balance, MarginInfo, Position
from .session import CcxtSession
from .wire import dec, table

log = logging.getLogger(__name__)

# How far the trades may miss the holding and still account for it (the venue rounds balances).
_TOLERANCE = Decimal("1e-6")


def average_cost(trades: list[Any], held: Decimal, base: str, quote: str) -> Decimal | None:
    """The average cost per coin of ``held`` coins of ``base`` from the account's trades in the
    ``base``/``quote`` market, oldest first; None when the trades do not account for the holding."""
    quantity = Decimal(0)
    cost = Decimal(0)
    for trade in sorted(
        (t for t in trades if isinstance(t, dict)), key=lambda t: dec(t.get("timestamp")) or Decimal(0)
    ):
        amount, price = dec(trade.get("amount")), dec(trade.get("price"))
        side = str(trade.get("side") or "")
        if amount is None or amount <= 0 or price is None or price <= 0 or side not in ("buy", "sell"):
            return None  # a trade that cannot be read: no cost can be trusted
        fee = table(trade.get("fee"))
        fee_cost = dec(fee.get("cost")) or Decimal(0)
        fee_currency = str(fee.get("currency") or "")
        if side == "buy":
            quantity += amount
            cost += amount * price
            if fee_currency == quote:
                cost += fee_cost
            elif fee_currency == base:
                quantity -= fee_cost  # the fee was taken from the coins bought
        else:
            if amount > quantity + quantity * _TOLERANCE:
                return None  # sold coins the history never showed bought
            cost -= cost / quantity * amount if quantity else Decimal(0)
            quantity -= amount
            if fee_currency == base:
                quantity -= fee_cost
        if quantity <= 0:
            quantity, cost = Decimal(0), Decimal(0)
    if quantity <= 0 or abs(quantity - held) > held * _TOLERANCE:
        return None
    return cost / quantity


class AccountReads:
    """Reads of one account; the last prices they fetch are kept for valuing orders."""

    def __init__(self, account: str, currency: str, session: CcxtSession) -> None:
        self._account = account
        self._currency = currency
        self._session = session
        self._prices: dict[str, Decimal] = {}
        # Market symbol -> (the holding it was worked out for, its average cost or None).
        self._costs: dict[str, tuple[Decimal, Decimal | None]] = {}

    def last(self, symbol: str) -> Decimal | None:
        return self._prices.get(symbol)

    async def _holdings(self) -> tuple[dict[str, Any], dict[str, Decimal]]:
        """The balance as ccxt reports it, and each coin held (not the account's currency)."""
        session = self._session
        exchange = session.require()
        balance = await session.call(exchange.fetch_balance, what="read the balance")
        if not isinstance(balance, dict):
            raise BrokerAPIError("the venue sent a balance that is not an object", broker=self._account)
        totals = table(balance.get("total"))
        held: dict[str, Decimal] = {}
        for asset, amount in totals.items():
            quantity = dec(amount)
            if quantity and asset != self._currency:
                held[str(asset)] = quantity
        markets = exchange.markets or {}
        symbols = [f"{asset}/{self._currency}" for asset in held if f"{asset}/{self._currency}" in markets]
        if symbols:
            tickers = await session.call(exchange.fetch_tickers, symbols, what="read prices")
            for symbol in symbols:
                ticker = tickers.get(symbol) if isinstance(tickers, dict) else None
                price = dec(ticker.get("last") or ticker.get("close")) if isinstance(ticker, dict) else None
                if price is not None and price > 0:
                    self._prices[symbol] = price
        session.refreshed()
        return balance, held

    async def positions(self) -> list[Position]:
        _, held = await self._holdings()
        positions = []
        for asset, quantity in sorted(held.items()):
            symbol = f"{asset}/{self._currency}"
            positions.append(
                Position(
                    symbol=symbol,
                    quantity=quantity,
                    avg_price=await self._cost(asset, quantity),
                    account=self._account,
                    asset_class=AssetClass.CRYPTO,
                    currency=self._currency,
                    last_price=self._prices.get(symbol),
                )
            )
        return positions

    async def _cost(self, asset: str, quantity: Decimal) -> Decimal | None:
        symbol = f"{asset}/{self._currency}"
        known = self._costs.get(symbol)
        if known is not None and known[0] == quantity:
            return known[1]
        session = self._session
        exchange = session.require()
        if quantity <= 0 or symbol not in (exchange.markets or {}) or not exchange.has.get("fetchMyTrades"):
            cost = None
        else:
            try:
                trades = await session.call(
                    exchange.fetch_my_trades, symbol, what=f"read the trades in {symbol}"
                )
            except (BrokerConnectionError, BrokerTimeoutError) as exc:
                # Passing trouble: the cost is unknown for this read and asked for again next time.
                log.warning("%s: the cost of %s is unknown for now: %s", self._account, symbol, redact(exc))
                return None
            except BrokerError as exc:
                # A key that may not read the trade history still shows what is held.
                log.warning("%s: the cost of %s is unknown: %s", self._account, symbol, redact(exc))
                trades = None
            cost = average_cost(trades, quantity, asset, self._currency) if isinstance(trades, list) else None
        self._costs[symbol] = (quantity, cost)
        return cost

    async def balance(self) -> Balance:
        balance, held = await self._holdings()
        own = table(balance.get(self._currency))
        cash = dec(own.get("total")) or Decimal(0)
        free = dec(own.get("free"))
        worth = sum(
            (
                quantity * self._prices[f"{asset}/{self._currency}"]
                for asset, quantity in held.items()
                if f"{asset}/{self._currency}" in self._prices
            ),
            Decimal(0),
        )
        return Balance(
            account=self._account,
            currency=self._currency,
            cash=cash,
            equity=cash + worth,
            buying_power=free if free is not None else cash,
        )

    async def margin(self) -> MarginInfo:
        balance = await self.balance()
        # A spot wallet borrows nothing: what is free is what can be spent.
        return MarginInfo(
            account=self._account,
            currency=self._currency,
            available_funds=balance.buying_power,
            excess_liquidity=balance.buying_power,
        )
