"""Web Push to a local push service that verifies VAPID and decrypts with http_ece."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR
from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.providers.webpush import WebPushProvider
from tidings.activities.rendering import InlineRenderer
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import (
    Channel,
    Content,
    DeliveryInput,
    Destination,
    Phase,
    Priority,
    Recipient,
    WebPushSubscription,
)
from tidings.sandbox.webpush import WebPushSandbox
from tidings.settings import Settings, WebPushSettings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker


def vapid_key() -> str:
    raw = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest_asyncio.fixture
async def push_service() -> AsyncIterator[WebPushSandbox]:
    sandbox = await WebPushSandbox().start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def settings_for(sandbox: WebPushSandbox) -> WebPushSettings:
    return WebPushSettings.model_validate(
        {
            "vapid_private_key": vapid_key(),
            "vapid_subject": "mailto:ops@example.com",
            "ca_bundle": sandbox.ca_file,
        }
    )


def delivery(subscription: dict[str, Any], **extra: Any) -> DeliveryInput:
    recipient = Recipient.model_validate(
        {"id": "u1", "devices": [{"id": "firefox", "platform": "webpush", "subscription": subscription}]}
    )
    values: dict[str, Any] = {
        "delivery_id": "d-1", "workflow_id": "notification-n1", "notification_id": "n1",
        "destination": Destination(
            channel=Channel.push, provider="webpush", address="firefox", device_id="firefox"
        ),
        "recipient": recipient,
        "content": Content(title="Build green", body="main is deployable", url="https://ci.example.com/1",
                           collapse_key="ci-main"),
        "priority": Priority.high,
    }  # fmt: skip
    values.update(extra)
    return DeliveryInput.model_validate(values)


async def send(provider: WebPushProvider, d: DeliveryInput) -> str | None:
    try:
        return (
            await provider.send(d, InlineRenderer().render(d.content, d.recipient, Channel.push))
        ).message_id
    finally:
        await provider.aclose()


async def test_encrypted_payload_decrypts_with_an_independent_implementation(
    push_service: WebPushSandbox,
) -> None:
    subscription = push_service.subscribe("firefox")
    expires = datetime.now(UTC) + timedelta(hours=1)
    location = await send(
        WebPushProvider(settings_for(push_service)), delivery(subscription, expires_at=expires)
    )
    [received] = push_service.received
    assert received["title"] == "Build green" and received["body"] == "main is deployable"
    assert received["url"] == "https://ci.example.com/1" and received["tag"] == "ci-main"
    [headers] = push_service.headers
    assert headers["urgency"] == "high" and headers["topic"] == "ci-main"
    assert 3500 <= int(headers["ttl"]) <= 3600
    assert location is not None and location.endswith("/message/1")


@pytest.mark.parametrize(
    ("status", "kind", "deactivate"),
    [(404, PermanentDeliveryError, True), (410, PermanentDeliveryError, True),
     (413, PermanentDeliveryError, False), (429, ThrottledDeliveryError, False),
     (503, TransientDeliveryError, False)],
)  # fmt: skip
async def test_answers_are_classified(
    push_service: WebPushSandbox, status: int, kind: type[Exception], deactivate: bool
) -> None:
    subscription = push_service.subscribe("chrome")
    push_service.fail("chrome", status, retry_after=9)
    with pytest.raises(kind) as info:
        await send(WebPushProvider(settings_for(push_service)), delivery(subscription))
    assert getattr(info.value, "deactivate_device", False) is deactivate


async def test_stand_in_refuses_a_forged_vapid_token(push_service: WebPushSandbox) -> None:
    """The stand-in really checks: a token signed with another key than the one in k= is a 403."""
    subscription = push_service.subscribe("edge")
    signer, claimed = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    claims = {"aud": push_service.url, "exp": int(time.time()) + 3600, "sub": "mailto:ops@example.com"}
    token = jwt.encode(claims, signer, algorithm="ES256")
    k = (
        base64.urlsafe_b64encode(
            claimed.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        .rstrip(b"=")
        .decode()
    )
    headers = {"authorization": f"vapid t={token}, k={k}", "ttl": "60", "content-encoding": "aes128gcm"}
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(push_service.ca_file))
    ) as client:
        response = await client.post(subscription["endpoint"], content=b"x", headers=headers)
    assert response.status_code == 403 and "bad VAPID token" in response.text


async def test_oversized_payload_is_refused_before_sending(push_service: WebPushSandbox) -> None:
    subscription = push_service.subscribe("big")
    content = Content(title="x", body="y" * 5000)
    with pytest.raises(PermanentDeliveryError, match="limit is 3993"):
        await send(WebPushProvider(settings_for(push_service)), delivery(subscription, content=content))
    assert not push_service.received


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint": "http://push.example.com/x"}, "https URL"),
        ({"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "65 bytes"),
        (
            {"keys": {"p256dh": base64.urlsafe_b64encode(b"\x04" + b"1" * 64).decode(), "auth": "AAAA"}},
            "16-byte",
        ),
    ],
)
def test_malformed_subscriptions_are_refused(change: dict[str, Any], message: str) -> None:
    good = {"endpoint": "https://push.example.com/x", "keys": {
        "p256dh": base64.urlsafe_b64encode(b"\x04" + b"1" * 64).decode(),
        "auth": base64.urlsafe_b64encode(b"2" * 16).decode()}}  # fmt: skip
    WebPushSubscription.model_validate(good)
    with pytest.raises(ValidationError, match=message):
        WebPushSubscription.model_validate({**good, **change})


def test_bad_vapid_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a P-256 key") as info:
        WebPushProvider(WebPushSettings(vapid_private_key="not-a-key"))
    assert "not-a-key" not in str(info.value)


async def test_web_push_through_the_workflow(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    push_service: WebPushSandbox,
) -> None:
    configured = settings.model_copy(update={"webpush": settings_for(push_service)})
    live, gone = push_service.subscribe("live"), push_service.subscribe("gone")
    push_service.fail("gone", 410)
    await store.put(Recipient.model_validate({"id": "web-user", "devices": [
        {"id": "live", "platform": "webpush", "subscription": live},
        {"id": "gone", "platform": "webpush", "subscription": gone}]}))  # fmt: skip
    queue = f"webpush-{uuid.uuid4().hex[:8]}"
    async with running_worker(ts_env.client, configured, store, task_queue=queue):
        tidings = TidingsClient(ts_env.client, task_queue=queue)
        [handle] = await tidings.send(
            {
                "id": "webpush-1",
                "recipients": ["web-user"],
                "channels": ["push"],
                "content": {"title": "Hello web"},
            }
        )
        state = await handle.result()
    assert state.phase is Phase.delivered
    assert {d.device_id: d.status.value for d in state.destinations} == {"live": "sent", "gone": "failed"}
    assert [r["title"] for r in push_service.received] == ["Hello web"]
    stored = await store.get("web-user")
    assert stored is not None and {d.id: d.active for d in stored.devices} == {"live": True, "gone": False}


async def test_vapid_generate_keys_work_end_to_end(push_service: WebPushSandbox) -> None:
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"),
        "vapid",
        "generate",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    keys = json.loads(out)
    public = base64.urlsafe_b64decode(keys["application_server_key"] + "==")
    assert len(public) == 65 and public[0] == 4
    settings = WebPushSettings.model_validate(
        {"vapid_private_key": keys["vapid_private_key"], "ca_bundle": push_service.ca_file}
    )
    await send(WebPushProvider(settings), delivery(push_service.subscribe("generated")))
    assert len(push_service.received) == 1
    assert push_service.headers[0]["authorization"].endswith("k=" + keys["application_server_key"])
