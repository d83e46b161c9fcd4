"""The account as the venue reports it: the balance of each asset, and every coin held as a
position in a market quoted in the account's currency, valued at that market's last price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...errors import BrokerAPIError
from ...models import AssetClass, Balance, MarginInfo, Position
from .session import CcxtSession
from .wire import dec, table


class AccountReads:
    """Reads of one account; the last prices they fetch are kept for valuing orders."""

    def __init__(self, account: str, currency: str, session: CcxtSession) -> None:
        self._account = account
        self._currency = currency
        self._session = session
        self._prices: dict[str, Decimal] = {}

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
        return [self._position(asset, quantity) for asset, quantity in sorted(held.items())]

    def _position(self, asset: str, quantity: Decimal) -> Position:
        symbol = f"{asset}/{self._currency}"
        # Spot venues report what is held, not what it cost: no average price is known here.
        return Position(
            symbol=symbol,
            quantity=quantity,
            account=self._account,
            asset_class=AssetClass.CRYPTO,
            currency=self._currency,
            last_price=self._prices.get(symbol),
        )

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
