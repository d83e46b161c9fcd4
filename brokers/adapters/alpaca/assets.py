"""Whether Alpaca lists an instrument: ``GET /v2/assets/{symbol}`` through alpaca-py's
``TradingClient.get_asset``.

Alpaca answers 404 for a symbol it has no asset for, and for one it has, the asset with its
``status`` (active or inactive) and ``tradable``: an inactive or untradable asset is listed, but
Alpaca takes no orders for it. Crypto pairs are asked for without their slash (``BTCUSD``):
alpaca-py puts the symbol into the path as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import OrderNotFoundError
from ...instruments import Instrument
from ...models import AssetClass
from ...quotes import Listing
from .session import AlpacaSession


async def asset_listing(session: AlpacaSession, instrument: Instrument) -> Listing | None:
    """LISTED, NOT_TRADABLE or NOT_LISTED from Alpaca's asset; a failed read raises (the
    caller's ``Listings`` turns it into "cannot tell")."""
    if instrument.asset_class not in (AssetClass.STOCK, AssetClass.CRYPTO):
        return None
    symbol = (
        instrument.symbol.replace("/", "")
        if instrument.asset_class is AssetClass.CRYPTO
        else instrument.symbol
    )
    client = session.require_client()
    try:
        asset = await session.call(client.get_asset, symbol, op="read", what=f"look up the asset {symbol}")
    except OrderNotFoundError:  # how the wire reads any 404: here, no such asset
        return Listing.NOT_LISTED
    if not isinstance(asset, Mapping):
        return None
    if asset.get("tradable") is True and asset.get("status", "active") == "active":
        return Listing.LISTED
    return Listing.NOT_TRADABLE
