"""What is held and traded: ``Instrument``, and the one set of rules for when two descriptions
name the same thing.

Two instruments are the same when their ``key`` is the same. The key is:

- the asset class: a CFD on AAPL is never AAPL stock, an option is never its underlying;
- the symbol in one spelling per asset class: a crypto or currency pair is ``BASE/QUOTE``
  (``BTCUSD``, ``BTC-USD`` and ``btc/usd`` are ``BTC/USD``; ``EUR.USD`` is ``EUR/USD``), a
  share class is written with a dot (``BRK B`` and ``BRK/B`` are ``BRK.B``), and a symbol
  followed by its own asset class is the bare symbol (a CFD ``AAPL CFD`` is the CFD ``AAPL``);
- for options and futures, the expiry, strike and right. An option written as an OCC code
  (``AAPL240119C00150000``, with or without the padding spaces) or as ``AAPL 20240119 150 C`` is
  read into its root, expiry, strike and right, so every spelling of one contract is one
  instrument whichever broker reported it. A symbol such as ``NIFTY24DECFUT`` or ``ES 202503``
  names its contract alone.

The exchange is not part of the key. A security listed on several venues is one holding: a Kite
equity bought on NSE and sold on BSE nets to what the demat account holds (the Kite adapter
already merges such rows by ISIN), and IB reports a stock routed through SMART under its primary
exchange. A derivative's symbol already names its one listing. The exchange is kept for routing
and display.

Neither are the trading currency and the multiplier: they describe how the instrument is paid
for, not what it is. The same share held at a USD account and at a EUR account (where a broker
reports it converted) is one instrument in two currencies; consolidation values each holding in
its own currency. Within one account, two rows of one instrument in different currencies or with
different multipliers cannot be added up, and whoever sums holdings reports them as a mismatch
(see ``summable``).

Quantities of options and futures are contracts; money is quantity x price x ``multiplier``
(``notional``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from .enums import AssetClass

__all__ = ["Instrument", "InstrumentKey", "normalize_symbol", "option_right"]

InstrumentKey = tuple[AssetClass, str, date | None, Decimal | None, str | None]
"""What makes two instruments the same: asset class, symbol, expiry, strike, right."""

# Quote currencies tried, longest first, when a pair is written without a separator.
_QUOTES = (
    "USDT",
    "USDC",
    "BUSD",
    "FDUSD",
    "DAI",
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "CHF",
    "CAD",
    "AUD",
    "NZD",
    "INR",
    "HKD",
    "SGD",
    "BTC",
    "ETH",
)
_PAIR_SEPARATORS = ("/", "-", ".", "_", ":", " ")
_PAIRS = (AssetClass.CRYPTO, AssetClass.FOREX)
_DERIVATIVES = (AssetClass.OPTION, AssetClass.FUTURE)
# OCC option codes (root, YYMMDD, C or P, strike x 1000 in 8 digits) and the spaced form.
_OCC = re.compile(r"([A-Z0-9.]{1,6})\s*(\d{2})(\d{2})(\d{2})([CP])(\d{8})")
_SPACED_OPTION = re.compile(r"([A-Z0-9.]{1,6})\s+(\d{4})(\d{2})(\d{2})\s+(\d+(?:\.\d+)?)\s*(C|P|CALL|PUT)")
_RIGHTS = {"C": "C", "CALL": "C", "CE": "C", "P": "P", "PUT": "P", "PE": "P"}


def _pair(symbol: str) -> str:
    for separator in _PAIR_SEPARATORS:
        base, found, quote = symbol.partition(separator)
        if found and base and quote:
            return f"{base}/{quote}"
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def normalize_symbol(symbol: str, asset_class: AssetClass) -> str:
    """The one spelling of ``symbol`` for ``asset_class`` that identities compare."""
    text = symbol.strip().upper()
    # A symbol written with its asset class after it ("AAPL CFD", as screens and some adapters
    # show it) names the same instrument as the bare symbol of that class.
    suffix = f" {asset_class.value}"
    if text.endswith(suffix) and len(text) > len(suffix):
        text = text[: -len(suffix)].rstrip()
    if asset_class in _PAIRS:
        return _pair(text)
    if asset_class is AssetClass.STOCK or asset_class is AssetClass.CFD:
        return text.replace(" ", ".").replace("/", ".")
    return text


def _option_terms(symbol: str) -> tuple[str, date, Decimal, str] | None:
    """Root, expiry, strike and right of an option symbol that spells them out, else None."""
    occ = _OCC.fullmatch(symbol)
    if occ is not None:
        root, yy, mm, dd, right, strike = occ.groups()
        terms = (root, 2000 + int(yy), int(mm), int(dd), Decimal(strike) / 1000, right)
    else:
        spaced = _SPACED_OPTION.fullmatch(symbol)
        if spaced is None:
            return None
        root, yyyy, mm, dd, strike_text, right = spaced.groups()
        terms = (root, int(yyyy), int(mm), int(dd), Decimal(strike_text), right[0])
    try:
        expiry = date(terms[1], terms[2], terms[3])
    except ValueError:
        return None  # not a date: the symbol is taken as it is written
    return terms[0], expiry, terms[4].normalize(), terms[5]


def option_right(value: str | None) -> str | None:
    """C or P for an option's right written any of the usual ways; None for none."""
    if value is None or not value.strip():
        return None
    text = value.strip().upper()
    right = _RIGHTS.get(text)
    if right is None:
        raise ValueError(f"an option right is C or P (CALL, PUT, CE, PE), not {value!r}")
    return right


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable thing. Equal and hashed by ``key`` alone (see the module's rules); the other
    fields travel with it. ``currency`` None means the currency of the account it is traded at."""

    symbol: str = field(compare=False)
    asset_class: AssetClass = field(default=AssetClass.STOCK, compare=False)
    exchange: str | None = field(default=None, compare=False)
    currency: str | None = field(default=None, compare=False)
    multiplier: Decimal = field(default=Decimal(1), compare=False)
    expiry: date | None = field(default=None, compare=False)
    strike: Decimal | None = field(default=None, compare=False)
    right: str | None = field(default=None, compare=False)
    key: InstrumentKey = field(init=False, repr=False)
    # Instruments key the book's dicts, looked up several times per order: hash the key once.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        asset_class = AssetClass(self.asset_class)
        symbol = normalize_symbol(self.symbol, asset_class)
        if not symbol:
            raise ValueError("an instrument needs a symbol")
        multiplier = Decimal(self.multiplier)
        if not multiplier.is_finite() or multiplier <= 0:
            raise ValueError(f"multiplier must be a positive number, not {self.multiplier}")
        derivative = asset_class in _DERIVATIVES
        expiry = self.expiry if derivative else None
        strike = Decimal(self.strike).normalize() if derivative and self.strike is not None else None
        right = option_right(self.right) if asset_class is AssetClass.OPTION else None
        terms = _option_terms(symbol) if asset_class is AssetClass.OPTION else None
        if terms is not None:
            root, spelled_expiry, spelled_strike, spelled_right = terms
            given = (expiry, strike, right)
            spelled = (spelled_expiry, spelled_strike, spelled_right)
            if any(mine is not None and mine != theirs for mine, theirs in zip(given, spelled, strict=True)):
                raise ValueError(
                    f"option {self.symbol} names {spelled_expiry} {spelled_strike:f} {spelled_right}, "
                    "which disagrees with the expiry, strike or right given beside it"
                )
            symbol, expiry, strike, right = root, spelled_expiry, spelled_strike, spelled_right
        exchange = self.exchange.strip().upper() or None if self.exchange is not None else None
        currency = self.currency.strip().upper() or None if self.currency is not None else None
        # Frozen: normalized values are set once, here, before anything can hash the instance.
        object.__setattr__(self, "asset_class", asset_class)
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "multiplier", multiplier)
        object.__setattr__(self, "expiry", expiry)
        object.__setattr__(self, "strike", strike)
        object.__setattr__(self, "right", right)
        object.__setattr__(self, "exchange", exchange)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "key", (asset_class, symbol, expiry, strike, right))
        object.__setattr__(self, "_hash", hash(self.key))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def stock(cls, symbol: str, currency: str | None = None, exchange: str | None = None) -> Instrument:
        return cls(symbol, AssetClass.STOCK, exchange=exchange, currency=currency)

    def in_currency(self, currency: str) -> Instrument:
        """This instrument traded in ``currency`` where it did not name one."""
        if self.currency is not None:
            return self
        if self.multiplier == 1 and self.key[2:] == (None, None, None):
            return instrument_of(self.symbol, self.asset_class, self.exchange, currency)
        return Instrument(
            self.symbol,
            self.asset_class,
            self.exchange,
            currency,
            self.multiplier,
            self.expiry,
            self.strike,
            self.right,
        )

    def notional(self, quantity: Decimal, price: Decimal) -> Decimal:
        """Money for ``quantity`` (contracts, for derivatives) at ``price`` per unit."""
        return quantity * price * self.multiplier

    def summable(self, other: Instrument) -> bool:
        """Whether quantities of the two can be added into one holding: the same instrument,
        paid for in the same currency, with the same multiplier."""
        return self == other and self.currency == other.currency and self.multiplier == other.multiplier

    @classmethod
    def from_label(cls, label: str) -> Instrument:
        """The instrument a ``label`` was written for (labels name stored rows): the inverse of
        ``label`` for every identity."""
        symbol, _, kind = label.strip().rpartition(" ")
        if not symbol or kind not in AssetClass.__members__:
            return cls.stock(label)
        asset_class = AssetClass(kind)
        words = symbol.split(" ")
        if asset_class is AssetClass.OPTION and len(words) >= 4:
            try:
                expiry, strike = date.fromisoformat(words[-3]), Decimal(words[-2])
            except ValueError:
                return cls(symbol, asset_class)
            return cls(" ".join(words[:-3]), asset_class, expiry=expiry, strike=strike, right=words[-1])
        if asset_class is AssetClass.FUTURE and len(words) >= 2:
            try:
                expiry = date.fromisoformat(words[-1])
            except ValueError:
                return cls(symbol, asset_class)
            return cls(" ".join(words[:-1]), asset_class, expiry=expiry)
        return cls(symbol, asset_class)

    @property
    def name(self) -> str:
        """The symbol, then the contract terms (``AAPL 2027-01-15 190 C``): what a table shows
        beside a column for the asset class."""
        parts = [self.symbol]
        if self.expiry is not None:
            parts.append(self.expiry.isoformat())
        if self.strike is not None:
            parts.append(f"{self.strike:f}")
        if self.right is not None:
            parts.append(self.right)
        return " ".join(parts)

    @property
    def label(self) -> str:
        """A short name for screens and reports, one per identity: ``name``, then the asset
        class unless it is a stock."""
        if self.asset_class is AssetClass.STOCK:
            return self.name
        return f"{self.name} {self.asset_class.value}"


@functools.lru_cache(maxsize=65536)
def instrument_of(
    symbol: str,
    asset_class: AssetClass,
    exchange: str | None = None,
    currency: str | None = None,
    multiplier: Decimal = Decimal(1),
    expiry: date | None = None,
    strike: Decimal | None = None,
    right: str | None = None,
) -> Instrument:
    """The instrument of these terms, built once: an instrument never changes, and orders and
    position rows ask for the same few over and over (every order several times, every
    position row at each read and each consolidation). Bounded, for a process fed endless
    distinct symbols."""
    return Instrument(symbol, asset_class, exchange, currency, multiplier, expiry, strike, right)
