"""What a broker reports about an account: executions (``Fill``), positions, balances, margin,
and the account's health as the manager sees it.

Account names and currency codes follow the library's one rule for each
(``brokers.identifiers``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from .clock import utcnow
from .enums import AssetClass, CaseInsensitiveEnum, ConnectionState, Side
from .identifiers import AccountName, CurrencyCode
from .instruments import Instrument, instrument_of, option_right

__all__ = ["AccountStatus", "Balance", "Fill", "MarginInfo", "Position", "SettledCashSource"]


class Fill(BaseModel):
    """One execution. ``fill_id`` is unique per broker: applying it twice changes nothing.
    What was traded is ``instrument``: a fill in an AAPL CFD or option is never a fill in AAPL
    shares, whether or not the order behind it is known here."""

    model_config = ConfigDict(frozen=True)

    fill_id: str
    account: AccountName
    # Checked by field, not by building the instrument in a validator: fills are made on the
    # order path, and a model validator costs more than every other check of a fill together.
    symbol: str = Field(pattern=r"\S")
    side: Side
    quantity: Decimal = Field(gt=0)
    price: Decimal = Field(gt=0)
    commission: Decimal = Decimal(0)
    currency: CurrencyCode = "USD"
    broker_order_id: str | None = None
    client_order_id: str | None = None
    timestamp: AwareDatetime = Field(default_factory=utcnow)
    asset_class: AssetClass = AssetClass.STOCK
    multiplier: Decimal = Field(default=Decimal(1), gt=0)
    exchange: str | None = None
    expiry: date | None = None
    strike: Decimal | None = None
    right: str | None = None

    # The trade date and the day its cash settles (``brokers.settlement``); None where the
    # broker did not say and nothing has worked them out yet.
    trade_date: date | None = None
    settlement_date: date | None = None

    @field_validator("right")
    @classmethod
    def _right(cls, value: str | None) -> str | None:
        return option_right(value)

    @property
    def instrument(self) -> Instrument:
        return _instrument(self)


def _instrument(row: Fill | Position) -> Instrument:
    """What a fill or a position row is in: built once per set of terms (``instrument_of``)."""
    return instrument_of(
        row.symbol,
        row.asset_class,
        row.exchange,
        row.currency,
        row.multiplier,
        row.expiry,
        row.strike,
        row.right,
    )


class Position(BaseModel):
    """Quantity is signed: negative is short. For options and futures it counts contracts, and
    money is quantity x price x ``multiplier``. What is held is ``instrument``."""

    symbol: str
    quantity: Decimal
    # None: the broker does not know what the position cost (coins deposited at a crypto venue),
    # and neither does its unrealised P&L.
    avg_price: Decimal | None = Decimal(0)
    account: AccountName = ""
    asset_class: AssetClass = AssetClass.STOCK
    currency: CurrencyCode = "USD"
    last_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)
    multiplier: Decimal = Decimal(1)
    exchange: str | None = None
    # Contract terms of an option or future, where the broker gives them apart from the symbol.
    expiry: date | None = None
    strike: Decimal | None = None
    right: str | None = None
    # What the broker itself says of the day, where it does (None: it does not): the price the
    # day's P&L is counted from, its own figure for that P&L (Alpaca's intraday P&L, Kite's
    # m2m), and the profit or loss taken today (Kite's ``realised``, IB's ``realizedPNL``).
    # ``brokers.pnl`` prefers these to the figures worked out from the fills, and keeps both.
    previous_close: Decimal | None = None
    day_pnl: Decimal | None = None
    realized_today: Decimal | None = None

    @model_validator(mode="after")
    def _names_an_instrument(self) -> Position:
        # At the edge, where a broker's row is read: a row that names no instrument (a blank
        # symbol, a right that is neither call nor put) is refused there, with the reason, and
        # never reaches the book or consolidation.
        self.instrument  # noqa: B018  (built only to be checked)
        return self

    @property
    def instrument(self) -> Instrument:
        return _instrument(self)

    @property
    def market_value(self) -> Decimal | None:
        if self.last_price is None:
            return None
        return self.quantity * self.last_price * self.multiplier

    @property
    def unrealized_pnl(self) -> Decimal | None:
        if self.last_price is None or self.avg_price is None:
            return None
        return (self.last_price - self.avg_price) * self.quantity * self.multiplier

    def pnl_at(self, price: Decimal) -> Decimal | None:
        """The unrealised P&L at ``price``; None when the cost is unknown."""
        if self.avg_price is None:
            return None
        return (price - self.avg_price) * self.quantity * self.multiplier

    @property
    def cost_basis(self) -> Decimal | None:
        if self.avg_price is None:
            return None
        return self.quantity * self.avg_price * self.multiplier


class SettledCashSource(CaseInsensitiveEnum):
    """Where a balance's split of cash into settled and unsettled came from."""

    BROKER = "BROKER"  # the broker reported it (IB SettledCash, Kite's margins, ...)
    COMPUTED = "COMPUTED"  # worked out here from the fills and their settlement dates
    UNKNOWN = "UNKNOWN"  # neither: the split is not known


class Balance(BaseModel):
    """``settled_cash`` is cash that has settled and ``unsettled_cash`` what is still to settle
    (sale proceeds to come in, less purchases to be paid), both in ``currency``; most brokers
    count both in ``cash`` (Kite keeps the day's sale proceeds outside it until they settle).
    None: not known. ``settled_source`` says where the split came from;
    ``computed_settled_cash`` is the figure worked out from the fills when the broker's own
    differs from it (shown, never silently dropped). ``cash_account``: the account may spend
    only settled cash."""

    account: AccountName
    currency: CurrencyCode = "USD"
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    timestamp: AwareDatetime = Field(default_factory=utcnow)
    settled_cash: Decimal | None = None
    unsettled_cash: Decimal | None = None
    settled_source: SettledCashSource = SettledCashSource.UNKNOWN
    computed_settled_cash: Decimal | None = None
    cash_account: bool = False
    # Margin the open positions tie up (initial margin), in ``currency``; None: not reported.
    margin_used: Decimal | None = None

    @property
    def settlement_disagreement(self) -> Decimal | None:
        """Broker's settled cash less the computed figure, when both are known and differ."""
        if self.settled_cash is None or self.computed_settled_cash is None:
            return None
        difference = self.settled_cash - self.computed_settled_cash
        return difference or None


class MarginInfo(BaseModel):
    account: AccountName
    currency: CurrencyCode = "USD"
    initial_margin: Decimal = Decimal(0)
    maintenance_margin: Decimal = Decimal(0)
    available_funds: Decimal = Decimal(0)
    excess_liquidity: Decimal = Decimal(0)
    leverage: Decimal = Decimal(1)
    timestamp: AwareDatetime = Field(default_factory=utcnow)


class AccountStatus(BaseModel):
    """Health of one account as the manager sees it."""

    name: AccountName
    broker_type: str = "sim"
    live: bool = False
    state: ConnectionState = ConnectionState.DISCONNECTED
    last_error: str | None = None
    last_refresh: AwareDatetime | None = None
    latency_ms: float | None = None
    session_expires_at: AwareDatetime | None = None
    currency: CurrencyCode = "USD"
    # When the figures were true as the broker reports it (a position export's file time); None
    # when they are as of ``last_refresh``.
    as_of: AwareDatetime | None = None

    @property
    def session_time_left(self) -> float | None:
        if self.session_expires_at is None:
            return None
        return (self.session_expires_at - utcnow()).total_seconds()
