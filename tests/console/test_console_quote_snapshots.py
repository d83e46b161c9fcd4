"""How quotes look: the order ticket and the watchlist with fixed quotes (handed to the screen's
board on the frozen clock, as a broker's stream would), wide and narrow, and a
stop-limit order's confirmation with both its prices. Update with ``--snapshot-update`` after
looking at the report, never blindly."""

from __future__ import annotations

from console_support import console, demo, settled, wait_for
from quote_support import feed

from brokers.quotes import QuoteState
from console.tui.screens.order_confirm import OrderConfirmScreen

WIDE = (160, 48)
NARROW = (100, 30)

# A morning of prices per symbol, oldest first.
PATHS = {
    "SPY": ["588.00", "588.90", "589.40", "589.10", "590.20", "590.80", "590.10"],
    "AAPL": ["225.10", "226.00", "226.40", "227.10", "226.90", "227.30", "227.50"],
    "TSLA": ["349.00", "347.50", "345.20", "344.00", "343.10", "342.50", "342.00"],
    "AMZN": ["200.10", "200.60", "201.00", "201.30"],
    "INFY": ["1860.00", "1866.50", "1870.25", "1872.00", "1875.40"],
}


async def frozen_quotes(pilot) -> None:
    app = pilot.app
    await settled(app, pilot)
    for symbol, path in PATHS.items():
        source, currency = ("paper-in", "INR") if symbol == "INFY" else ("paper-us", None)
        for price in path:
            feed(app, symbol, last=price, source=source, currency=currency)
    feed(app, "SPY", bid="590.05", ask="590.15", bid_size="400", ask_size="300", previous_close="585.50")
    feed(app, "AAPL", bid="227.45", ask="227.55", bid_size="300", ask_size="200", previous_close="224.80")
    feed(app, "TSLA", bid="341.90", ask="342.10", previous_close="350.00", state=QuoteState.DELAYED)
    feed(app, "AMZN", previous_close="199.00", state=QuoteState.SNAPSHOT)
    feed(
        app, "INFY", bid="1875.00", ask="1876.00", previous_close="1868.00", source="paper-in", currency="INR"
    )
    # TCS quoted an hour ago and not since: shown STALE.
    feed(app, "TCS", last="4120.00", previous_close="4100.00", source="paper-in", currency="INR", age=3600)
    app.order_entry.set_values(symbol="AAPL", quantity="10", type="LIMIT")
    await pilot.pause()
    app.order_entry.set_values(limit="227.00")
    await pilot.pause()
    app.show_quotes()
    app.watchlist.show_all()
    await pilot.pause()


def test_ticket_and_watchlist_wide(snap_compare):
    assert snap_compare(console(), terminal_size=WIDE, run_before=frozen_quotes)


def test_ticket_and_watchlist_narrow(snap_compare):
    assert snap_compare(console(), terminal_size=NARROW, run_before=frozen_quotes)


def test_stop_limit_confirmation_shows_both_prices(snap_compare):
    async def run_before(pilot) -> None:
        app = pilot.app
        await frozen_quotes(pilot)
        app.order_entry.set_values(type="STOP_LIMIT")
        await pilot.pause()
        app.order_entry.set_values(stop="226.50", limit="226.25")
        await pilot.pause()
        app.order_entry.action_submit()
        await wait_for(lambda: isinstance(app.screen, OrderConfirmScreen), pilot)

    assert snap_compare(console(demo(paper_us={"live": True})), terminal_size=NARROW, run_before=run_before)
