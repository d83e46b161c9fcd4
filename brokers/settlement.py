"""When a trade's cash settles: the one table of settlement cycles, and the dates they give.

``RULES`` holds one row per asset class and market: how many business days after the trade date
the cash moves (T+0, T+1, T+2), which calendars' closed days are skipped, in which time zone the
trade date is counted, and the source the row is taken from. ``settlement_of`` turns an
execution time into its trade date, settlement date and the moment the cash counts as settled
(the start of the settlement date in the market's zone; at once for T+0); ``dated`` puts the
dates on a broker's fill, from its own execution time.

Closed days come from the ``holidays`` package's financial calendars (NYSE, the Federal Reserve,
NSE, BSE, CME, the ECB's TARGET, ...), imported on first use so that importing this module costs
nothing, and loaded on a background thread from start-up (``warm_up``; ``loaded`` waits for
them without holding up the event loop). A market the table does not know settles by its last row: T+2 on weekdays, the longest
cycle here, so that cash is never counted as settled earlier than it may be.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from .account_state import Fill
from .enums import AssetClass
from .instruments import Instrument, instrument_of

if TYPE_CHECKING:
    from holidays import HolidayBase

__all__ = [
    "CURRENCY_CALENDARS",
    "RULES",
    "Settlement",
    "SettlementRule",
    "business_days_after",
    "calendars_loaded",
    "dated",
    "is_business_day",
    "loaded",
    "market_of",
    "rule_for",
    "settlement_of",
    "warm_up",
]

log = logging.getLogger(__name__)

_STOCK, _OPTION, _FUTURE = AssetClass.STOCK, AssetClass.OPTION, AssetClass.FUTURE
_FOREX, _CRYPTO = AssetClass.FOREX, AssetClass.CRYPTO

US_EXCHANGES = frozenset(
    {"NYSE", "NASDAQ", "ARCA", "NYSEARCA", "AMEX", "BATS", "IEX", "SMART", "ISLAND", "CBOE", "BOX", "PHLX"}
)
INDIA_EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"})
US_FUTURES_EXCHANGES = frozenset({"CME", "CBOT", "NYMEX", "COMEX", "GLOBEX", "ECBOT", "NYBOT", "CFE"})

CURRENCY_CALENDARS: dict[str, str] = {
    # The calendar whose closed days a currency does not settle on: the central bank's payment
    # system where the ``holidays`` package has it (Fed, TARGET), else the main exchange of the
    # country, whose holidays are its bank holidays.
    "USD": "XFED",
    "EUR": "XECB",
    "GBP": "XLON",
    "JPY": "XJPX",
    "CHF": "XSWX",
    "CAD": "XTSE",
    "AUD": "XASX",
    "HKD": "XHKG",
    "SGD": "XSES",
    "INR": "XNSE",
}


@dataclass(frozen=True, slots=True)
class SettlementRule:
    """One row of ``RULES``. ``asset_class`` None is the row for whatever no other row covers.

    ``calendars`` are the ``holidays`` financial calendars whose closed days are not business
    days (a FOREX row adds those of the pair's two currencies). ``rollover`` is the local time
    from which an execution belongs to the next trade date (FX's 17:00 New York cut)."""

    asset_class: AssetClass | None
    market: str
    days: int
    calendars: tuple[str, ...]
    zone: str
    source: str
    rollover: time | None = None

    @property
    def cycle(self) -> str:
        return f"T+{self.days}"

    @property
    def key(self) -> str:
        return f"{self.asset_class.value if self.asset_class else 'ANY'} {self.market}"


RULES: tuple[SettlementRule, ...] = (
    SettlementRule(
        _STOCK,
        "US",
        1,
        ("XNYS", "XFED"),
        "America/New_York",
        "SEC Rule 15c6-1 as amended by Release 34-96930 (T+1 from 28 May 2024); no settlement on "
        "NYSE holidays nor on bank holidays when the market is open (FINRA's trade date / "
        "settlement date schedules for Columbus Day and Veterans Day)",
    ),
    SettlementRule(
        _OPTION,
        "US",
        1,
        ("XNYS", "XFED"),
        "America/New_York",
        "The Options Clearing Corporation settles option premiums on the business day after the "
        "trade (T+1); SEC Rule 15c6-1",
    ),
    SettlementRule(
        _STOCK,
        "IN",
        1,
        ("XNSE",),
        "Asia/Kolkata",
        "SEBI circular SEBI/HO/MRD2/DCAP/P/CIR/2021/628 (7 September 2021): T+1 rolling settlement, "
        "for every listed share since 27 January 2023",
    ),
    SettlementRule(
        _OPTION,
        "IN",
        1,
        ("XNSE",),
        "Asia/Kolkata",
        "NSE Clearing: premium of equity derivatives settled on T+1",
    ),
    SettlementRule(
        _FUTURE,
        "IN",
        1,
        ("XNSE",),
        "Asia/Kolkata",
        "NSE Clearing: daily mark-to-market of futures settled on T+1",
    ),
    SettlementRule(
        _FUTURE,
        "US",
        1,
        ("XCME",),
        "America/Chicago",
        "CME Clearing: the day's variation margin is paid the morning of the next business day; "
        "the trade date starts with the 17:00 Chicago session",
        time(17, 0),
    ),
    SettlementRule(
        _FOREX,
        "USD/CAD",
        1,
        ("XFED",),
        "America/New_York",
        "Market convention for spot USD/CAD: one business day (T+1), value date rolling at 17:00 New York",
        time(17, 0),
    ),
    SettlementRule(
        _FOREX,
        "*",
        2,
        (),
        "America/New_York",
        "Market convention for spot FX: two business days in both currencies (T+2), value date "
        "rolling at 17:00 New York (BIS, Triennial Survey definitions of spot)",
        time(17, 0),
    ),
    SettlementRule(
        _CRYPTO,
        "*",
        0,
        (),
        "UTC",
        "Crypto venues (Alpaca, Coinbase, Kraken) credit the proceeds on execution: no clearing cycle (T+0)",
    ),
    SettlementRule(
        None,
        "*",
        2,
        (),
        "UTC",
        "No rule for this market: T+2 on weekdays assumed, the longest cycle in this table, so "
        "cash is never counted as settled earlier than it may be",
    ),
)

_BY_KEY: dict[tuple[AssetClass | None, str], SettlementRule] = {
    (rule.asset_class, rule.market): rule for rule in RULES
}
_FALLBACK = _BY_KEY[(None, "*")]


class Settlement(NamedTuple):
    """When one execution's cash settles. ``settles_at`` is UTC."""

    trade_date: date
    settlement_date: date
    settles_at: datetime
    rule: SettlementRule

    def settled(self, now: datetime) -> bool:
        return now >= self.settles_at


def market_of(asset_class: AssetClass, symbol: str, exchange: str | None, currency: str | None) -> str:
    """The ``market`` of the row of ``RULES`` an instrument settles by ("US", "IN", a pair, "*";
    "" when the table has no row for it)."""
    exchange = (exchange or "").upper()
    currency = (currency or "").upper()
    if asset_class is _FOREX or asset_class is _CRYPTO:
        return "*"
    if asset_class is _FUTURE:
        if exchange in US_FUTURES_EXCHANGES or (not exchange and currency == "USD"):
            return "US"
        if exchange in INDIA_EXCHANGES or (not exchange and currency == "INR"):
            return "IN"
        return ""
    if asset_class is _STOCK or asset_class is _OPTION:
        if exchange in INDIA_EXCHANGES or (not exchange and currency == "INR"):
            return "IN"
        if exchange in US_EXCHANGES or (not exchange and currency == "USD"):
            return "US"
    return ""


@functools.lru_cache(maxsize=1024)
def rule_for(
    asset_class: AssetClass, symbol: str = "", exchange: str | None = None, currency: str | None = None
) -> SettlementRule:
    """The row of ``RULES`` that ``symbol`` of ``asset_class`` settles by (the last row when
    none fits)."""
    if asset_class is _FOREX:
        pair = Instrument(symbol, _FOREX).symbol if symbol else ""
        specific = _BY_KEY.get((_FOREX, pair))
        if specific is not None:
            return specific
    return _BY_KEY.get((asset_class, market_of(asset_class, symbol, exchange, currency)), _FALLBACK)


@functools.cache
def _calendar(code: str) -> HolidayBase:
    import holidays  # only when a date is first worked out: importing it takes a fifth of a second

    return holidays.financial_holidays(code)


_LOADED = threading.Event()


def calendars_loaded() -> bool:
    """Whether the calendars are loaded: a settlement date is then worked out without waiting."""
    return _LOADED.is_set()


@functools.cache
def warm_up() -> threading.Thread:
    """Load the calendars in a background thread, once: the import takes a fifth to half a
    second, which neither start-up nor the first fill should wait for on the event loop. Called
    as the runtime starts, and where fills are about to come (a cash account seen)."""
    thread = threading.Thread(target=_load_calendars, name="settlement-calendars", daemon=True)
    thread.start()
    return thread


async def loaded() -> None:
    """Until the calendars are loaded (starting the load if nothing has yet), waiting in a
    thread: the event loop goes on meanwhile. At once when they are."""
    if not _LOADED.is_set():
        await asyncio.to_thread(warm_up().join)


def _load_calendars() -> None:
    codes = {code for rule in RULES for code in rule.calendars} | set(CURRENCY_CALENDARS.values())
    today = date.today()
    try:
        for code in sorted(codes):
            # Membership fills in the year asked about (and the next, for a settlement across it).
            _ = (
                today in _calendar(code),
                today.replace(month=1, day=1, year=today.year + 1) in _calendar(code),
            )
    finally:
        # Set even if a calendar failed to load: that failure then surfaces, with its reason,
        # where a date is worked out, instead of every order waiting here.
        _LOADED.set()


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def is_business_day(day: date, calendars: tuple[str, ...]) -> bool:
    """A weekday on which none of ``calendars`` is closed."""
    if day.weekday() >= 5:
        return False
    return not any(day in _calendar(code) for code in calendars)


def business_days_after(day: date, days: int, calendars: tuple[str, ...]) -> date:
    """The ``days``-th business day after ``day`` (``day`` itself for 0)."""
    while days > 0:
        day += timedelta(days=1)
        if is_business_day(day, calendars):
            days -= 1
    return day


def _pair_calendars(symbol: str) -> tuple[str, ...]:
    base, _, quote = Instrument(symbol, _FOREX).symbol.partition("/")
    return tuple(CURRENCY_CALENDARS[c] for c in (base, quote) if c in CURRENCY_CALENDARS)


@functools.lru_cache(maxsize=4096)
def _dates(rule: SettlementRule, calendars: tuple[str, ...], local_day: date) -> tuple[date, date]:
    trade_day = local_day
    if rule.days:
        # An execution on a closed day (an evening session, a weekend) belongs to the next
        # business day's trade date.
        while not is_business_day(trade_day, calendars):
            trade_day += timedelta(days=1)
    return trade_day, business_days_after(trade_day, rule.days, calendars)


# (instrument's key, exchange, currency, quarter hour since the epoch) -> what settlement_of
# gives for any moment in that quarter hour (with None for a T+0 settlement moment, which is the
# execution's own). Local midnights and roll-over times fall on quarter hours in every zone of
# the table, so a quarter hour never holds two trade dates.
_RECENT: dict[tuple[object, ...], tuple[date, date, datetime | None, SettlementRule]] = {}
_RECENT_LIMIT = 4096


def settlement_of(instrument: Instrument, executed_at: datetime, currency: str | None = None) -> Settlement:
    """Trade date, settlement date and settlement moment of ``instrument`` executed at
    ``executed_at`` (aware). ``currency`` is the account's, for an instrument that names none."""
    currency = instrument.currency or currency
    key = (instrument.key, instrument.exchange, currency, int(executed_at.timestamp()) // 900)
    known = _RECENT.get(key)
    if known is None:
        known = _work_out(instrument, executed_at, currency)
        if len(_RECENT) >= _RECENT_LIMIT:
            _RECENT.clear()
        _RECENT[key] = known
    trade_day, settle_day, settles_at, rule = known
    if settles_at is None:
        settles_at = executed_at.astimezone(UTC)
    return Settlement(trade_day, settle_day, settles_at, rule)


def _work_out(
    instrument: Instrument, executed_at: datetime, currency: str | None
) -> tuple[date, date, datetime | None, SettlementRule]:
    rule = rule_for(instrument.asset_class, instrument.symbol, instrument.exchange, currency)
    calendars = rule.calendars
    if rule.asset_class is _FOREX:
        calendars = tuple(dict.fromkeys(calendars + _pair_calendars(instrument.symbol)))
    zone = _zone(rule.zone)
    local = executed_at.astimezone(zone)
    if rule.rollover is not None and local.time() >= rule.rollover:
        local += timedelta(days=1)
    trade_day, settle_day = _dates(rule, calendars, local.date())
    if rule.days == 0:
        return trade_day, settle_day, None, rule
    settles_at = datetime.combine(settle_day, time(0), tzinfo=zone).astimezone(UTC)
    return trade_day, settle_day, settles_at, rule


def dated(fill: Fill, *, exchange: str | None = None, currency: str | None = None) -> Fill:
    """``fill`` carrying its trade date and settlement date, worked out by the table from its
    own execution time; dates it carries already (the broker's word) are kept. ``exchange`` is
    where the broker says the contract is listed, when the fill does not name it; ``currency``
    the account's, for a fill whose instrument names none.

    Called as a broker reports the fill, on the event loop: while the calendars are still
    loading (a moment after start) the fill goes on undated rather than wait for them, and
    whoever needs its dates works them out from the table later (``settled_cash``)."""
    if (fill.trade_date is not None and fill.settlement_date is not None) or not _LOADED.is_set():
        return fill
    try:
        instrument = fill.instrument
        if exchange and not instrument.exchange:
            instrument = instrument_of(
                fill.symbol, fill.asset_class, exchange, fill.currency, fill.multiplier
            )
        settlement = settlement_of(instrument, fill.timestamp, instrument.currency or currency)
    except Exception:  # an execution is real money: never lost over its dates
        log.exception("fill %s could not be dated; it goes on without its dates", fill.fill_id)
        return fill
    return fill.model_copy(
        update={
            "trade_date": fill.trade_date or settlement.trade_date,
            "settlement_date": fill.settlement_date or settlement.settlement_date,
        }
    )
