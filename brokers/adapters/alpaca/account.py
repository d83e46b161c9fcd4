"""The account as Alpaca reports it: balance and margin from the account, positions with their
marks."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from ...account_state import SettledCashSource
from ...errors import BrokerAPIError
from ...models import Balance, MarginInfo, Position
from .session import AlpacaSession
from .wire import currency_of, dec, payload_dict, position_from_payload, required, unreadable


class AccountReads:
    """Reads of the account ``session`` trades, as our Balance, MarginInfo and Position."""

    def __init__(self, account: str, session: AlpacaSession) -> None:
        self._account = account
        self._session = session

    async def balance(self) -> Balance:
        session = self._session
        client = session.require_client()
        account, positions = await asyncio.gather(
            session.read(client.get_account, what="read the account"),
            session.read(client.get_all_positions, what="list positions"),
        )
        account = payload_dict(account, "account")
        if not isinstance(positions, list):
            raise BrokerAPIError("Alpaca sent positions that are not a list", broker=self._account)
        unrealized = sum(
            (
                dec(p.get("unrealized_pl"), "unrealized_pl") or Decimal(0)
                for p in positions
                if isinstance(p, dict)
            ),
            Decimal(0),
        )
        session.refreshed()
        cash = required(account, "cash")
        # A cash account has a multiplier of 1 and cannot short. (A margin account may be set to
        # a multiplier of 1 too, but it can still short.) It spends only settled cash, which
        # Alpaca gives as its non-marginable buying power; at a margin account that figure is
        # borrowing power, not cash, so the split is left to be worked out from the fills.
        cash_account = (
            dec(account.get("multiplier"), "multiplier") == 1 and account.get("shorting_enabled") is False
        )
        settled = dec(account.get("non_marginable_buying_power"), "non_marginable_buying_power")
        reported = cash_account and settled is not None
        return Balance(
            account=self._account,
            currency=currency_of(account),
            cash=cash,
            equity=required(account, "equity"),
            buying_power=required(account, "buying_power"),
            unrealized_pnl=unrealized,
            settled_cash=settled if reported else None,
            unsettled_cash=cash - settled if reported and settled is not None else None,
            settled_source=SettledCashSource.BROKER if reported else SettledCashSource.UNKNOWN,
            cash_account=cash_account,
            margin_used=dec(account.get("initial_margin"), "initial_margin"),
        )

    async def margin(self) -> MarginInfo:
        session = self._session
        client = session.require_client()
        account = payload_dict(await session.read(client.get_account, what="read the account"), "account")
        equity = required(account, "equity")
        initial = dec(account.get("initial_margin"), "initial_margin") or Decimal(0)
        maintenance = dec(account.get("maintenance_margin"), "maintenance_margin") or Decimal(0)
        session.refreshed()
        return MarginInfo(
            account=self._account,
            currency=currency_of(account),
            initial_margin=initial,
            maintenance_margin=maintenance,
            available_funds=equity - initial,
            excess_liquidity=equity - maintenance,
            leverage=dec(account.get("multiplier"), "multiplier") or Decimal(1),
        )

    async def positions(self) -> list[Position]:
        session = self._session
        client = session.require_client()
        listed = await session.read(client.get_all_positions, what="list positions")
        if not isinstance(listed, list):
            raise BrokerAPIError("Alpaca sent positions that are not a list", broker=self._account)
        try:
            positions = [position_from_payload(payload_dict(p, "position"), self._account) for p in listed]
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerAPIError(
                f"Alpaca sent a position that cannot be read: {unreadable(exc)}", broker=self._account
            ) from None
        session.refreshed()
        return positions
