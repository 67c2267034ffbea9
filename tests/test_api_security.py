"""What the API never gives away: secrets in subscriber profiles, key hashes, tokens in errors,
another subscriber's stream, and no route answers without its credential."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api_support import ApiKeyMaker, bearer, subscriber_token
from tidings.activities.store.base import Store
from tidings.api.keys import Scope

HOOK_SECRET = "hooks-secret-0123456789"
PROFILE = {
    "id": "secretive",
    "email": "s@example.com",
    "webhook_url": f"https://hooks.example.com/in/{HOOK_SECRET}",
    "slack_webhook_url": f"https://hooks.slack.com/services/T000/B000/{HOOK_SECRET}",
}


async def test_profiles_come_back_without_their_secret_urls(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers)
    for response in (
        await api.put("/v1/subscribers/secretive", json=PROFILE, headers=bearer(key)),
        await api.get("/v1/subscribers/secretive", headers=bearer(key)),
    ):
        assert response.status_code == 200, response.text
        assert HOOK_SECRET not in response.text
        assert response.json()["email"] == "s@example.com"
    stored = await store.get("secretive")
    assert stored is not None and stored.webhook_url == PROFILE["webhook_url"]  # kept, only not shown
    bad = {**PROFILE, "webhook_url": f"ftp://hooks.example.com/{HOOK_SECRET}"}
    refused = await api.put("/v1/subscribers/secretive", json=bad, headers=bearer(key))
    assert refused.status_code == 422 and HOOK_SECRET not in refused.text


async def test_errors_never_echo_credentials(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    key = await api_key(Scope.read)
    revoked_looking = key[:-6] + "XXXXXX"
    for token in (revoked_looking, subscriber_token("x") + "tampered"):
        for path in ("/v1/notifications/a~b", "/v1/inbox/counts", f"/v1/inbox/stream?token={token}"):
            response = await api.get(path, headers=bearer(token))
            assert response.status_code == 401
            assert token not in response.text and key not in response.text


async def test_a_revoked_key_stops_at_once(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.read)
    assert (await api.get("/v1/notifications/a~b", headers=bearer(key))).status_code == 404
    [record] = [r for r in await store.api_keys.list() if key.startswith(f"tdk_{r.id}_")]
    assert await store.api_keys.revoke(record.id)
    assert (await api.get("/v1/notifications/a~b", headers=bearer(key))).status_code == 401
    assert record.secret_sha256 not in key and "tdk_" not in json.dumps(record.model_dump(mode="json"))


async def test_every_api_route_needs_a_credential(api: httpx.AsyncClient) -> None:
    """Walk the routes the OpenAPI document lists: each refuses a request that carries nothing."""
    paths = (await api.get("/openapi.json")).json()["paths"]
    checked = 0
    for template, operations in paths.items():
        path = template.replace("{notification_id}", "a~b").replace("{recipient_id}", "u")
        path = path.replace("{device_id}", "d").replace("{delivery_id}", "m").replace("{action}", "read")
        for method in operations:
            bodies: tuple[dict[str, Any], ...] = ({"json": {}}, {})
            for body in bodies:
                response = await api.request(method.upper(), path, **body)
                # 422 only where the request is malformed before anyone is asked who they are
                assert response.status_code in (401, 422), (method, path, response.status_code)
            checked += 1
    assert checked >= 15
