"""Fixtures for the HTTP API tests: the real app (FastAPI) over the real store and a TidingsClient
whose worker runs against a real Temporal server (the `tidings` fixture).

- `api_settings`: `settings` plus the API's keys, origins and limits.
- `api_app`: the app; `api`: an httpx client on it (in process, ASGITransport); `served_api`: the
  app on a real uvicorn server (streams, browsers).
- `api_key(*scopes)`: a stored key's text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from tidings.activities.store.base import Store
from tidings.api.app import context_of, create_app
from tidings.api.keys import Scope, new_key
from tidings.links import Purpose, expiring_token
from tidings.sandbox.asgi_server import UvicornServer
from tidings.settings import Settings
from tidings.starters.client import TidingsClient

SUBSCRIBER_KEY = "subscriber-token-key-for-tests-0123456789"
LINK_KEY = "link-signing-key-for-tests"
ALLOWED_ORIGIN = "https://app.example.com"

ApiKeyMaker = Callable[..., Awaitable[str]]


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    values = settings.model_dump()
    values["api"] = {
        "subscriber_token_key": SUBSCRIBER_KEY,
        "allowed_origins": [ALLOWED_ORIGIN],
        "critical_categories": ["security"],
        "preference_categories": ["marketing", "comments"],
        "max_body_bytes": 64 * 1024,
    }
    values["receiver"] = {**values["receiver"], "link_signing_key": LINK_KEY}
    return Settings.model_validate(values)


@pytest_asyncio.fixture
async def api_app(api_settings: Settings, store: Store, tidings: TidingsClient) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings, store, tidings)
    try:
        yield app
    finally:
        await context_of(app).hub.aclose()


@pytest_asyncio.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8090") as client:
        yield client


@pytest_asyncio.fixture
async def served_api(api_app: FastAPI) -> AsyncIterator[UvicornServer]:
    server = UvicornServer(api_app)
    await server.start()
    try:
        yield server
    finally:
        await context_of(api_app).hub.aclose()
        await server.stop()


@pytest_asyncio.fixture
async def api_key(store: Store) -> ApiKeyMaker:
    async def make(*scopes: Scope, name: str = "test") -> str:
        text, record = new_key(name, list(scopes))
        await store.api_keys.create(record)
        return text

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def subscriber_token(recipient_id: str, ttl: timedelta = timedelta(minutes=10)) -> str:
    return expiring_token(SUBSCRIBER_KEY.encode(), Purpose.subscriber, recipient_id, ttl)[0]


def flipped(signature: str) -> str:
    """A signature with its first character changed: always another MAC, never the same one."""
    return ("B" if signature[0] == "A" else "A") + signature[1:]
