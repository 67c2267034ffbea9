"""The HTTP API for services: API keys and scopes, notifications, problem details, OpenAPI.

Against the real app (httpx in process) with a worker on the time-skipping Temporal server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.api_support import ALLOWED_ORIGIN, ApiKeyMaker, bearer
from tests.conftest import BIN_DIR
from tidings.api.keys import Scope
from tidings.api.rate_limit import RateLimiter
from tidings.models import NotificationRequest, NotificationState, Phase

IN_APP = {
    "recipients": [{"id": "api-user", "email": "api-user@example.com"}],
    "channels": [{"channel": "in_app"}],
    "content": {"title": "Hello from the API"},
}


async def final_state(api: httpx.AsyncClient, key: str, notification_id: str) -> dict[str, Any]:
    for _ in range(300):
        response = await api.get(f"/v1/notifications/{notification_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        if state["phase"] in {p.value for p in Phase if p.is_final}:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{notification_id} did not finish: {state}")


async def test_send_status_and_idempotency(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    key = await api_key(Scope.send, Scope.read)
    headers = {**bearer(key), "Idempotency-Key": "api-order-1"}
    first = await api.post("/v1/notifications", json=IN_APP, headers=headers)
    assert first.status_code == 202, first.text
    [started] = first.json()["notifications"]
    assert started == {
        "notification_id": "api-order-1~api-user",
        "workflow_id": "notification-api-order-1~api-user",
        "recipient_id": "api-user",
        "existing": False,
    }
    again = await api.post("/v1/notifications", json=IN_APP, headers=headers)
    assert again.status_code == 202 and again.json()["notifications"][0]["existing"] is True
    state = await final_state(api, key, "api-order-1~api-user")
    assert state["phase"] == "delivered"
    NotificationState.model_validate(state)
    conflict = await api.post("/v1/notifications", json={**IN_APP, "id": "other"}, headers=headers)
    assert conflict.status_code == 422 and "Idempotency-Key" in conflict.json()["detail"]


async def test_cancel_and_reschedule(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, server_now: datetime
) -> None:
    key = await api_key(Scope.send, Scope.read)
    later = (server_now + timedelta(hours=5)).isoformat()
    body = {**IN_APP, "id": "api-scheduled", "schedule_at": later}
    assert (await api.post("/v1/notifications", json=body, headers=bearer(key))).status_code == 202
    nid = "api-scheduled~api-user"
    moved = await api.post(
        f"/v1/notifications/{nid}/reschedule",
        json={"schedule_at": (server_now + timedelta(hours=6)).isoformat()},
        headers=bearer(key),
    )
    assert moved.status_code == 200 and moved.json()["accepted"] is True, moved.text
    naive = await api.post(
        f"/v1/notifications/{nid}/reschedule",
        json={"schedule_at": "2030-01-01T09:00:00"},
        headers=bearer(key),
    )
    assert naive.status_code == 422
    cancelled = await api.post(
        f"/v1/notifications/{nid}/cancel", json={"reason": "order void"}, headers=bearer(key)
    )
    assert cancelled.status_code == 200 and cancelled.json()["accepted"] is True
    state = await final_state(api, key, nid)
    assert state["phase"] == "cancelled"
    gone = await api.post(f"/v1/notifications/{nid}/cancel", headers=bearer(key))
    assert gone.status_code in (404, 409)
    assert gone.headers["content-type"] == "application/problem+json"
    missing = await api.get("/v1/notifications/never-sent~nobody", headers=bearer(key))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_every_validation_problem_is_listed(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    key = await api_key(Scope.send)
    bad = {"recipients": [], "channels": [{"channel": "pigeon"}], "content": {"title": 5}, "priority": "max"}
    response = await api.post("/v1/notifications", json=bad, headers=bearer(key))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "invalid request"
    where = {tuple(e["loc"][1:3]) for e in problem["errors"]}
    assert {("recipients",), ("priority",)} <= {w[:1] for w in where}
    assert any(w[0] == "channels" for w in where) and any(w[0] == "content" for w in where)
    assert "pigeon" not in response.text.replace('"pigeon"', "")  # messages, not echoed input
    not_json = await api.post(
        "/v1/notifications", content=b"{", headers={**bearer(key), "content-type": "application/json"}
    )
    assert not_json.status_code == 422 and not_json.json()["errors"]


async def test_api_key_scopes_and_failures(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    reader = await api_key(Scope.read)
    for headers in (
        {},
        bearer("tdk_000000000000_" + "A" * 43),
        bearer("nonsense"),
        {"Authorization": "Basic x"},
    ):
        response = await api.post("/v1/notifications", json=IN_APP, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    wrong_secret = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
    assert (await api.get("/v1/notifications/x~y", headers=bearer(wrong_secret))).status_code == 401
    refused = await api.post("/v1/notifications", json=IN_APP, headers=bearer(reader))
    assert refused.status_code == 403 and "'send' scope" in refused.json()["detail"]
    assert (await api.get("/v1/subscribers/api-user", headers=bearer(reader))).status_code == 403


def test_token_bucket() -> None:
    limiter = RateLimiter(per_second=0.5, burst=2)
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 2]
    assert limiter.take("other") == 0


async def test_rate_limit_answers_429_with_retry_after(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    from tidings.api.app import context_of

    app = api._transport.app  # type: ignore[attr-defined]
    context_of(app).limiter = RateLimiter(per_second=0.1, burst=3)
    key = await api_key(Scope.read)
    codes = [(await api.get("/v1/notifications/x~y", headers=bearer(key))).status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    limited = await api.get("/v1/notifications/x~y", headers=bearer(key))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = await api_key(Scope.read)
    assert (await api.get("/v1/notifications/x~y", headers=bearer(other))).status_code == 404


async def test_cors_only_for_configured_origins(api: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = await api.options("/v1/inbox/counts", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = await api.options("/v1/inbox/counts", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    simple = await api.get("/v1/inbox/counts", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_body_size_limit(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    key = await api_key(Scope.send)
    huge = {**IN_APP, "content": {"title": "x", "body": "y" * 70_000}}
    response = await api.post("/v1/notifications", json=huge, headers=bearer(key))
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    chunked = await api.post("/v1/notifications", content=chunks(), headers=bearer(key))
    assert chunked.status_code == 413


def _without_null_defaults(schema: Any) -> Any:
    """FastAPI leaves `"default": null` out of the OpenAPI document (an absent default means the
    same there); that is the one difference it makes to pydantic's schemas, and the only one allowed."""
    if isinstance(schema, dict):
        return {k: _without_null_defaults(v) for k, v in schema.items() if not (k == "default" and v is None)}
    if isinstance(schema, list):
        return [_without_null_defaults(v) for v in schema]
    return schema


def _components(schema: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = _without_null_defaults({k: v for k, v in schema.items() if k != "$defs"})
    return shown


async def test_openapi_document_matches_the_models(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    components = document["components"]["schemas"]
    for model in (NotificationRequest, NotificationState):
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        assert components[model.__name__] == _components(expected), model.__name__
        for name, definition in expected.get("$defs", {}).items():
            assert components[name] == _without_null_defaults(definition), name
    send = document["paths"]["/v1/notifications"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotificationRequest"
    }
    assert any(p["name"] == "idempotency-key" for p in send["parameters"])
    status = document["paths"]["/v1/notifications/{notification_id}"]["get"]
    assert status["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotificationState"
    }
    assert {"ApiKey", "SubscriberToken"} <= set(document["components"]["securitySchemes"])
    assert "/v1/inbox/stream" in document["paths"] and "/v1/me/preferences" in document["paths"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "recipients": st.lists(st.text(max_size=12) | json_values, max_size=3),
        "channels": st.lists(
            st.sampled_from(["push", "email", "pigeon"]).map(lambda c: {"channel": c}) | json_values
        ),
        "content": st.dictionaries(st.sampled_from(["title", "body", "url", "x"]), json_values, max_size=3),
        "priority": st.sampled_from(["low", "critical", "max"]) | json_values,
        "schedule_at": st.text(max_size=30),
    },
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=request_like | json_values)
async def test_any_body_gets_202_or_a_problem(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, body: Any
) -> None:
    key = getattr(test_any_body_gets_202_or_a_problem, "_key", None) or await api_key(Scope.send)
    test_any_body_gets_202_or_a_problem._key = key  # type: ignore[attr-defined]
    response = await api.post("/v1/notifications", content=json.dumps(body), headers={
        **bearer(key), "content-type": "application/json"})  # fmt: skip
    assert response.status_code in (202, 422), response.text
    if response.status_code == 422:
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 422 and problem["title"]


def test_api_key_cli(tmp_path: Path) -> None:
    env = {**os.environ, "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "s.sqlite3")}

    def run(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [str(BIN_DIR / "tidings"), "api-key", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == code, done.stderr
        return done.stdout + done.stderr

    created = json.loads(run("create", "billing", "--scope", "send", "--scope", "read").split("\n#")[0])
    assert created["scopes"] == ["read", "send"] and created["key"].startswith(f"tdk_{created['id']}_")
    listed = run("list")
    assert created["id"] in listed and created["key"] not in listed and "sha256" not in listed
    assert json.loads(run("revoke", created["id"])) == {"id": created["id"], "revoked": True}
    assert "no unrevoked API key" in run("revoke", created["id"], code=2)
    assert "invalid choice" in run("create", "x", "--scope", "admin", code=2)


def test_api_settings_boundary() -> None:
    from tidings.settings import ApiSettings, SettingsError, load_settings

    assert ApiSettings.model_validate({"subscriber_token_key": ""}).subscriber_token_key is None
    with pytest.raises(SettingsError, match=r"api\.subscriber_token_key"):
        load_settings(api={"subscriber_token_key": "short"})
    with pytest.raises(SettingsError, match=r"api\.limit: unknown setting"):
        load_settings(api={"limit": 3})
    with pytest.raises(SettingsError, match=r"api\.rate_limit_per_second"):
        load_settings(api={"rate_limit_per_second": 0})
