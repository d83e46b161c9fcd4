"""Logging in to Schwab: the address where the account holder allows the app, and the exchange
of the address the browser is sent back to for a token, kept in the keyring. A login lasts seven
days; running it again is how it is renewed."""

from __future__ import annotations

import importlib
import time
from typing import Any

from ...credentials import redact
from ...errors import AuthenticationError
from .session import store_token


def authorization_url(app_key: str, callback_url: str) -> tuple[str, str]:
    """The address to open, and the state the answer must carry."""
    auth = importlib.import_module("schwab.auth")
    context = auth.get_auth_context(app_key, callback_url)
    return str(context.authorization_url), str(context.state)


async def complete_login(
    account: str,
    *,
    app_key: str,
    app_secret: str,
    callback_url: str,
    state: str,
    received_url: str,
    base_url: str | None,
    request_timeout: float,
) -> dict[str, Any]:
    """Trade the code in ``received_url`` for a token and keep it; returns what was kept."""
    auth = importlib.import_module("schwab.auth")
    oauth = importlib.import_module("authlib.integrations.httpx_client")
    extra: dict[str, Any] = {"timeout": request_timeout}
    if base_url is not None:
        from .transport import Loopback

        extra["transport"] = Loopback(base_url)
    client = oauth.AsyncOAuth2Client(app_key, redirect_uri=callback_url, **extra)
    try:
        token = await client.fetch_token(
            auth.TOKEN_ENDPOINT,
            authorization_response=received_url,
            client_id=app_key,
            auth=(app_key, app_secret),
            state=state,
        )
    except Exception as exc:
        raise AuthenticationError(
            f"Schwab did not accept the login ({type(exc).__name__}: {redact(exc)[:200]}): open the address again and paste "
            "the address the browser lands on",
            broker=account,
        ) from None
    finally:
        await client.aclose()
    kept = {"creation_timestamp": int(time.time()), "token": dict(token)}
    store_token(account, kept)
    return kept
