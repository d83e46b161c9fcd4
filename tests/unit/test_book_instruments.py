"""The execution book keys holdings and working orders by instrument, and adds up rows of one
instrument instead of keeping the last one."""

from __future__ import annotations

from decimal import Decimal

from brokers.book import Book
from brokers.instruments import Instrument
from brokers.models import AssetClass, Fill, Order, OrderRequest, OrderStatus, Position, Side
from brokers.risk import RiskEngine, RiskLimits

D = Decimal


class Account:
    def __init__(self, currency: str) -> None:
        self.currency = currency


class Prices:
    """Prices and account currencies written by hand."""

    def __init__(self, currencies: dict[str, str], prices: dict[str, Decimal] | None = None) -> None:
        self.currencies = currencies
        self.prices = prices or {}

    def last_price(self, instrument: Instrument | str, account: str | None = None) -> Decimal | None:
        wanted = instrument if isinstance(instrument, Instrument) else Instrument.stock(instrument)
        return self.prices.get(wanted.label)

    def get(self, name: str) -> Account:
        return Account(self.currencies[name])


def book(**currencies: str) -> Book:
    return Book(Prices(currencies or {"kite": "INR"}), None, "USD")  # type: ignore[arg-type]


def position(symbol: str, quantity: int, **fields: object) -> Position:
    return Position(symbol=symbol, quantity=D(quantity), **fields)  # type: ignore[arg-type]


def test_seed_adds_up_one_equity_reported_on_two_exchanges() -> None:
    # A demat holding listed on BSE, sold on NSE the same day: the account is flat.
    the_book = book(kite="INR")
    rows = [
        position("SBIN", 16, account="kite", currency="INR", exchange="BSE", avg_price=D(600)),
        position("SBIN", -16, account="kite", currency="INR", exchange="NSE", avg_price=D(610)),
    ]
    assert the_book.seed("kite", rows) == []
    assert the_book.position("kite", "SBIN") == 0
    rows.append(position("SBIN", 5, account="kite", currency="INR", exchange="NSE"))
    diffs = the_book.seed("kite", rows)
    assert the_book.position("kite", Instrument.stock("SBIN")) == 5
    assert [(d.symbol, d.book, d.broker) for d in diffs] == [("SBIN", D(0), D(5))]


def test_seed_adds_up_duplicate_rows_instead_of_keeping_the_last() -> None:
    the_book = book(us="USD")
    rows = [
        position("AAPL", 10, account="us"),
        position("AAPL", 5, account="us"),
        position("AAPL", 1, account="us"),
    ]
    assert the_book.seed("us", rows) == []
    assert the_book.position("us", "AAPL") == 16
    assert the_book.positions() == {("us", "AAPL"): D(16)}


def test_a_cfd_beside_a_stock_is_a_holding_of_its_own() -> None:
    the_book = book(ib="USD")
    rows = [
        position("AAPL", 100, account="ib"),
        position("AAPL", -100, account="ib", asset_class=AssetClass.CFD),
    ]
    assert the_book.seed("ib", rows) == []
    assert the_book.position("ib", "AAPL") == 100
    assert the_book.position("ib", Instrument("AAPL", AssetClass.CFD)) == -100
    assert the_book.positions() == {("ib", "AAPL"): D(100), ("ib", "AAPL CFD"): D(-100)}


def test_a_duplicate_that_cannot_be_added_is_reported_not_dropped() -> None:
    the_book = book(us="USD")
    rows = [
        position("AAPL", 10, account="us", currency="USD"),
        position("AAPL", 4, account="us", currency="EUR"),
        position("ES", 2, account="us", asset_class=AssetClass.FUTURE, multiplier=D(50)),
        position("ES", 3, account="us", asset_class=AssetClass.FUTURE, multiplier=D(5)),
    ]
    diffs = the_book.seed("us", rows)
    assert the_book.position("us", "AAPL") == 10
    assert the_book.position("us", Instrument("ES", AssetClass.FUTURE)) == 2
    assert len(diffs) == 2
    eur, mini = diffs
    assert (eur.account, eur.book, eur.broker) == ("us", D(0), D(4))
    assert "AAPL" in eur.symbol and "EUR" in eur.symbol and "USD" in eur.symbol
    assert (mini.book, mini.broker) == (D(0), D(3))
    assert "ES FUTURE" in mini.symbol and "multiplier 5" in mini.symbol
    # Reported again on every seed while the broker keeps reporting it.
    assert len(the_book.seed("us", rows)) == 2


def test_crypto_pair_spellings_are_one_holding() -> None:
    the_book = book(alpaca="USD")
    rows = [
        position("BTCUSD", 1, account="alpaca", asset_class=AssetClass.CRYPTO),
        position("BTC/USD", 2, account="alpaca", asset_class=AssetClass.CRYPTO),
    ]
    assert the_book.seed("alpaca", rows) == []
    assert the_book.position("alpaca", Instrument("BTC-USD", AssetClass.CRYPTO)) == 3


def test_fills_move_the_holding_of_the_instrument_their_order_trades() -> None:
    the_book = book(ib="USD")
    request = OrderRequest(symbol="AAPL", side=Side.SELL, quantity=D(100), asset_class=AssetClass.CFD)
    the_book.track(Order(request=request, account="ib", status=OrderStatus.ACCEPTED))
    assert the_book.pending("ib", Instrument("AAPL", AssetClass.CFD), Side.SELL) == 100
    assert the_book.pending("ib", "AAPL", Side.SELL) == 0
    fill = Fill(
        fill_id="f1",
        account="ib",
        symbol="AAPL",
        side=Side.SELL,
        quantity=D(100),
        price=D(190),
        client_order_id=request.client_order_id,
    )
    assert the_book.add_fill("ib", fill)
    assert the_book.position("ib", Instrument("AAPL", AssetClass.CFD)) == -100
    assert the_book.position("ib", "AAPL") == 0


def test_max_position_counts_the_instrument_not_the_symbol() -> None:
    the_book = book(ib="USD")
    the_book.seed("ib", [position("AAPL", -100, account="ib", asset_class=AssetClass.CFD)])
    engine = RiskEngine(RiskLimits(max_position=D(50)))
    # The CFD short is not a stock position: buying 50 shares is within the limit.
    assert engine.check(OrderRequest(symbol="AAPL", side=Side.BUY, quantity=D(50)), "ib", the_book) is None
    the_book.seed("ib", [position("AAPL", 40, account="ib"), position("AAPL", 10, account="ib")])
    refused = engine.check(OrderRequest(symbol="AAPL", side=Side.BUY, quantity=D(1)), "ib", the_book)
    assert refused is not None
    assert "AAPL" in refused.reason and "51" in refused.reason


def test_a_refused_request_that_names_no_instrument_is_tracked_without_one() -> None:
    the_book = book(us="USD")
    shell = OrderRequest.model_construct(symbol="", side=Side.BUY, quantity=D(0), client_order_id="TCSHELL")
    refused = Order.for_request(shell, "us")
    refused.reject("INVALID_ORDER", "quantity must be positive")
    the_book.track(refused)
    assert the_book.open_orders("us") == 0


def test_a_fill_of_an_order_placed_elsewhere_moves_the_holding_of_what_it_traded() -> None:
    # No order here says what was traded: the fill itself does (a CFD executed in TWS).
    the_book = book(ib="USD")
    the_book.seed("ib", [position("AAPL", 100, account="ib")])
    cfd_fill = Fill(
        fill_id="x1",
        account="ib",
        symbol="AAPL",
        side=Side.SELL,
        quantity=D(100),
        price=D(190),
        asset_class=AssetClass.CFD,
    )
    assert the_book.add_fill("ib", cfd_fill)
    assert the_book.position("ib", "AAPL") == 100
    assert the_book.position("ib", Instrument("AAPL", AssetClass.CFD)) == -100


def test_realised_profit_of_contracts_takes_the_multiplier() -> None:
    option = "AAPL270115C00190000"
    the_book = book(ib="USD")
    terms = {"account": "ib", "symbol": option, "asset_class": AssetClass.OPTION, "multiplier": D(100)}
    the_book.add_fill("ib", Fill(fill_id="o1", side=Side.BUY, quantity=D(2), price=D(3), **terms))  # type: ignore[arg-type]
    the_book.add_fill("ib", Fill(fill_id="o2", side=Side.SELL, quantity=D(2), price=D("3.5"), **terms))  # type: ignore[arg-type]
    # Two contracts of 100 shares each, closed 0.50 higher: 100 dollars, not 1.
    assert the_book.daily_pnl("ib") == D(100)


def test_an_option_is_never_valued_at_its_underlyings_price() -> None:
    option = Instrument("AAPL270115C00190000", AssetClass.OPTION, multiplier=D(100))
    prices = Prices({"ib": "USD"}, {"AAPL": D(200), option.label: D(4)})
    the_book = Book(prices, None, "USD")  # type: ignore[arg-type]
    the_book.seed(
        "ib",
        [
            position(
                "AAPL270115C00190000",
                1,
                account="ib",
                asset_class=AssetClass.OPTION,
                multiplier=D(100),
                avg_price=D(3),
            )
        ],
    )
    prices.prices[option.label] = D(5)
    # Marked at 4 when first seen, 5 now: one contract of 100 is up 100, whatever AAPL does.
    assert the_book.daily_pnl("ib") == D(100)


def test_a_stored_baseline_label_names_the_instrument_it_was_written_for() -> None:
    for instrument in (
        Instrument.stock("BRK.B"),
        Instrument("AAPL", AssetClass.CFD),
        Instrument("AAPL270115C00190500", AssetClass.OPTION),
        Instrument("ES 202503", AssetClass.FUTURE),
        Instrument("BTC/USD", AssetClass.CRYPTO),
        Instrument("XYZ WAR", AssetClass.OTHER),
    ):
        assert Instrument.from_label(instrument.label) == instrument, instrument.label
