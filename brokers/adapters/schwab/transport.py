"""An HTTP transport that sends every request to a test server instead of Schwab's host, paths
kept: schwab-py writes Schwab's host into every URL, and a test server speaks the same API."""

from __future__ import annotations

import httpx


class Loopback(httpx.AsyncBaseTransport):
    def __init__(self, root: str) -> None:
        self._target = httpx.URL(root)
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._target
        request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
