"""The account as Schwab reports it: balances and positions from the securities account.

Stocks, ETFs and funds are positions in shares; an option is a position in contracts, its symbol
the OCC code Schwab writes (``AAPL  250620C00225000``: root, expiry, right, strike) and its
multiplier the instrument's ``optionMultiplier`` (100 when Schwab leaves it out). Schwab's
``averagePrice`` is per share and its ``marketValue`` is the whole position's, so the last price
is the value over contracts times the multiplier. A row that cannot be read is left out with a
warning naming it; the others are kept.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from ...errors import BrokerAPIError
from ...instruments import option_right
from ...models import AssetClass, Balance, MarginInfo, Position
from .session import SchwabSession
from .wire import dec, table

log = logging.getLogger(__name__)

_ASSETS = {
    "EQUITY": AssetClass.STOCK,
    "ETF": AssetClass.STOCK,
    "COLLECTIVE_INVESTMENT": AssetClass.STOCK,
    "MUTUAL_FUND": AssetClass.STOCK,
    "OPTION": AssetClass.OPTION,
    "FUTURE": AssetClass.FUTURE,
    "FOREX": AssetClass.FOREX,
}


class AccountReads:
    def __init__(self, account: str, session: SchwabSession) -> None:
        self._account = account
        self._session = session

    async def _securities(self, positions: bool) -> dict[str, object]:
        client, account = self._session.require()
        kwargs: dict[str, Any] = {"fields": ["positions"]} if positions else {}
        body = await self._session.call(client.get_account, account, what="read the account", **kwargs)
        securities = table(table(body).get("securitiesAccount"))
        if not securities:
            raise BrokerAPIError("Schwab sent an account without a securitiesAccount", broker=self._account)
        self._session.refreshed()
        return securities

    async def balance(self) -> Balance:
        securities = await self._securities(positions=False)
        current = table(securities.get("currentBalances"))
        cash = dec(current.get("cashBalance")) or Decimal(0)
        equity = dec(current.get("liquidationValue")) or cash
        # A margin account reports buyingPower; a cash account what it may spend today.
        power = dec(current.get("buyingPower"))
        if power is None:
            power = dec(current.get("cashAvailableForTrading")) or Decimal(0)
        return Balance(account=self._account, currency="USD", cash=cash, equity=equity, buying_power=power)

    async def margin(self) -> MarginInfo:
        securities = await self._securities(positions=False)
        current = table(securities.get("currentBalances"))
        equity = dec(current.get("liquidationValue")) or Decimal(0)
        maintenance = dec(current.get("maintenanceRequirement")) or Decimal(0)
        available = (
            dec(current.get("availableFunds")) or dec(current.get("cashAvailableForTrading")) or Decimal(0)
        )
        return MarginInfo(
            account=self._account,
            currency="USD",
            maintenance_margin=maintenance,
            available_funds=available,
            excess_liquidity=equity - maintenance,
        )

    async def positions(self) -> list[Position]:
        securities = await self._securities(positions=True)
        listed = securities.get("positions")
        rows = []
        for raw in listed if isinstance(listed, list) else []:
            row = table(raw)
            instrument = table(row.get("instrument"))
            symbol = str(instrument.get("symbol") or "")
            quantity = (dec(row.get("longQuantity")) or Decimal(0)) - (
                dec(row.get("shortQuantity")) or Decimal(0)
            )
            asset = _ASSETS.get(str(instrument.get("assetType")))
            if not symbol or not quantity or asset not in (AssetClass.STOCK, AssetClass.OPTION):
                continue  # futures, forex, bonds: not shown through this adapter yet
            value = dec(row.get("marketValue"))
            try:
                multiplier = Decimal(1)
                right = None
                if asset is AssetClass.OPTION:
                    multiplier = dec(instrument.get("optionMultiplier")) or Decimal(100)
                    right = option_right(str(instrument.get("putCall") or ""))
                if multiplier <= 0:
                    raise ValueError(f"multiplier {multiplier} is not positive")
                position = Position(
                    symbol=symbol,
                    quantity=quantity,
                    avg_price=dec(row.get("averagePrice")) or Decimal(0),
                    account=self._account,
                    asset_class=asset,
                    currency="USD",
                    last_price=abs(value / (quantity * multiplier)) if value is not None else None,
                    multiplier=multiplier,
                    right=right,
                )
                if asset is AssetClass.OPTION and position.instrument.expiry is None:
                    raise ValueError("the symbol is not an OCC option code (root, YYMMDD, C or P, strike)")
            except (ValueError, ValidationError) as exc:
                reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                log.warning(
                    "%s: left out Schwab's %s position %r: %s", self._account, asset.value, symbol, reason
                )
                continue
            rows.append(position)
        return rows
