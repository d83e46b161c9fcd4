"""The account as TWS reports it: balance and margin from the account summary, positions with
their marks from the portfolio, last prices and FX rates from the account values."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from ...account_state import SettledCashSource
from ...errors import BrokerAPIError
from ...instruments import Instrument, instrument_of
from ...models import Balance, MarginInfo, Position
from .instruments import figure, price_or_none, symbol_for, to_amount
from .session import IBSession


class AccountSettings(Protocol):
    """What the account reads are told by their owner, read each time they are used."""

    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def cash_account(self) -> bool: ...


class AccountReads:
    """Reads of the account ``session`` trades, as our Balance, MarginInfo and Position."""

    def __init__(self, settings: AccountSettings, session: IBSession) -> None:
        self._settings = settings
        self._session = session
        # The account's base currency, as the last summary gave it; FX rates are quoted in it.
        self._base_currency = settings.currency

    async def _summary(self) -> tuple[dict[str, str], str]:
        session, name = self._session, self._settings.name
        ib = session.require()
        values = await session.read("account summary", lambda: ib.accountSummaryAsync(session.account))
        account = session.account
        tags: dict[str, str] = {}
        base = ""
        for value in values:
            if value.account != account:
                continue
            if value.tag == "NetLiquidation":
                base = value.currency
            # Ledger tags come once per currency and once as BASE; the BASE one is the total.
            if value.currency == "BASE" or value.tag not in tags:
                tags[value.tag] = value.value
        if "NetLiquidation" not in tags:
            raise BrokerAPIError(f"TWS sent no account summary for {account}", broker=name)
        session.refreshed()
        self._base_currency = base or self._settings.currency
        return tags, self._base_currency

    async def balance(self) -> Balance:
        tags, currency = await self._summary()
        cash = self._figure(tags, "TotalCashValue")
        # SettledCash: the cash that has settled (TWS sends it for cash accounts and, at most
        # brokers' set-ups, for margin accounts too); the rest of the cash is still to settle.
        settled = self._figure(tags, "SettledCash") if tags.get("SettledCash") else None
        return Balance(
            account=self._settings.name,
            currency=currency,
            cash=cash,
            equity=self._figure(tags, "NetLiquidation"),
            buying_power=self._figure(tags, "BuyingPower" if "BuyingPower" in tags else "AvailableFunds"),
            realized_pnl=self._figure(tags, "RealizedPnL"),
            unrealized_pnl=self._figure(tags, "UnrealizedPnL"),
            settled_cash=settled,
            unsettled_cash=None if settled is None else cash - settled,
            settled_source=SettledCashSource.UNKNOWN if settled is None else SettledCashSource.BROKER,
            cash_account=self._settings.cash_account,
            # The initial margin of what is open: what the positions hold of the account.
            margin_used=self._figure(tags, "InitMarginReq") if tags.get("InitMarginReq") else None,
        )

    def _figure(self, tags: dict[str, str], tag: str) -> Decimal:
        return figure(tags.get(tag), tag, self._settings.name)

    async def margin(self) -> MarginInfo:
        tags, currency = await self._summary()
        equity, gross = to_amount(tags.get("NetLiquidation")), to_amount(tags.get("GrossPositionValue"))
        leverage = to_amount(tags.get("Leverage")) or (gross / equity if equity > 0 else Decimal(0))
        return MarginInfo(
            account=self._settings.name,
            currency=currency,
            initial_margin=to_amount(tags.get("InitMarginReq")),
            maintenance_margin=to_amount(tags.get("MaintMarginReq")),
            available_funds=to_amount(tags.get("AvailableFunds")),
            excess_liquidity=to_amount(tags.get("ExcessLiquidity")),
            leverage=leverage,
        )

    async def positions(self) -> list[Position]:
        session, name, currency = self._session, self._settings.name, self._settings.currency
        ib = session.require()
        positions = await session.read("positions", ib.reqPositionsAsync)
        account = session.account
        marks = {item.contract.conId: item for item in ib.portfolio(account)}
        result = []
        for held in positions:
            if held.account != account or not held.position:
                continue
            contract = held.contract
            symbol, asset = symbol_for(contract)
            multiplier = to_amount(contract.multiplier) or Decimal(1)
            mark = marks.get(contract.conId)
            result.append(
                Position(
                    symbol=symbol,
                    quantity=figure(held.position, f"a position in {symbol} of", name),
                    # IB's average cost includes the multiplier; ours is per unit of price.
                    avg_price=to_amount(
                        figure(held.avgCost, f"an average cost for {symbol} of", name) / multiplier
                    ),
                    account=name,
                    asset_class=asset,
                    currency=contract.currency or currency,
                    last_price=price_or_none(mark.marketPrice) if mark else None,
                    realized_pnl=to_amount(mark.realizedPNL) if mark else Decimal(0),
                    # TWS's portfolio counts realised P&L for the day (its "Realized P&L").
                    realized_today=to_amount(mark.realizedPNL) if mark else None,
                    multiplier=multiplier,
                    exchange=contract.exchange or contract.primaryExchange or None,
                )
            )
        session.refreshed()
        return result

    def last_price(self, instrument: Instrument) -> Decimal | None:
        """The mark of a position in ``instrument``, as TWS last sent it; None if none is held.
        Only that very instrument: an AAPL option's or CFD's mark is not the share's."""
        ib, account = self._session.client, self._session.account
        if ib is None or not account:
            return None
        for item in ib.portfolio(account):
            symbol, asset = symbol_for(item.contract)
            if asset is instrument.asset_class and instrument_of(symbol, asset) == instrument:
                return price_or_none(item.marketPrice)
        return None

    def fx_rates(self) -> dict[str, Decimal]:
        """What TWS reports as ExchangeRate in the account values (1 unit in the base currency)."""
        ib, account = self._session.client, self._session.account
        if ib is None or not account:
            return {}
        base = self._base_currency
        rates = {}
        for value in ib.accountValues(account):
            rate = to_amount(value.value)
            if value.tag == "ExchangeRate" and value.currency not in ("BASE", base) and rate > 0:
                rates[f"{value.currency}{base}"] = rate
        return rates
