"""FcmProvider against the local FCM and OAuth stand-ins (sandbox/fcm.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.providers.fcm import FcmProvider
from tidings.activities.rendering import InlineRenderer
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient
from tidings.sandbox.fcm import FcmSandbox
from tidings.settings import FcmSettings

Sandbox = tuple[FcmSandbox, FcmSettings]


def delivery(token: str = "reg-token-1", **extra: Any) -> DeliveryInput:
    recipient = Recipient(id="u1", devices=[{"id": "phone", "platform": "fcm", "token": token}])
    values: dict[str, Any] = {
        "delivery_id": "d-1",
        "workflow_id": "notification-n1",
        "notification_id": "n1",
        "destination": Destination(channel=Channel.push, provider="fcm", address="phone", device_id="phone"),
        "recipient": recipient,
        "content": Content(title="Hello", body="World", data={"order": "123"}, collapse_key="orders"),
        "priority": Priority.high,
    }
    values.update(extra)
    return DeliveryInput.model_validate(values)


async def send(provider: FcmProvider, d: DeliveryInput) -> str | None:
    message = InlineRenderer().render(d.content, d.recipient, Channel.push)
    return (await provider.send(d, message)).message_id


async def test_message_mapping_and_one_token_for_many_sends(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    provider = FcmProvider(settings)
    expires = datetime.now(UTC) + timedelta(hours=2)
    try:
        ids = await asyncio.gather(
            *(send(provider, delivery(f"tok-{i}", expires_at=expires)) for i in range(20))
        )
    finally:
        await provider.aclose()
    assert sandbox.token_fetches == 1
    assert all(i and i.startswith("projects/tidings-test/messages/") for i in ids)
    message = next(m for m in sandbox.sent if m["token"] == "tok-0")
    assert message["notification"] == {"title": "Hello", "body": "World"}
    assert message["data"] == {"order": "123"}
    assert message["android"]["priority"] == "high" and message["android"]["collapse_key"] == "orders"
    assert 7100 <= int(message["android"]["ttl"].removesuffix("s")) <= 7200
    assert message["apns"]["headers"]["apns-priority"] == "10"


async def test_platform_overrides_are_merged(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    provider = FcmProvider(settings)
    content = Content(title="Hi", platform_overrides={"android": {"notification": {"channel_id": "orders"}}})
    try:
        await send(provider, delivery(content=content, priority=Priority.normal))
    finally:
        await provider.aclose()
    android = sandbox.sent[0]["android"]
    assert android == {"priority": "normal", "notification": {"channel_id": "orders"}}


async def test_expired_access_token_is_refreshed_once(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    provider = FcmProvider(settings)
    try:
        await send(provider, delivery())
        sandbox.revoke_access_tokens()
        await send(provider, delivery())
    finally:
        await provider.aclose()
    assert sandbox.token_fetches == 2 and len(sandbox.sent) == 2


@pytest.mark.parametrize(
    ("status", "code", "message", "kind", "deactivate"),
    [
        (404, "UNREGISTERED", "Requested entity was not found.", PermanentDeliveryError, True),
        (
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            PermanentDeliveryError,
            True,
        ),
        (400, "INVALID_ARGUMENT", "Message is too big", PermanentDeliveryError, False),
        (403, "SENDER_ID_MISMATCH", "SenderId mismatch", PermanentDeliveryError, True),
        (
            401,
            "THIRD_PARTY_AUTH_ERROR",
            "Auth error from APNS or Web Push Service",
            PermanentDeliveryError,
            False,
        ),
        (503, "UNAVAILABLE", "The service is currently unavailable.", TransientDeliveryError, False),
        (500, "INTERNAL", "Internal error encountered.", TransientDeliveryError, False),
    ],
)
async def test_errors_are_classified(
    fcm_sandbox: Sandbox, status: int, code: str, message: str, kind: type[Exception], deactivate: bool
) -> None:
    sandbox, settings = fcm_sandbox
    sandbox.fail("reg-token-1", status, code, message=message)
    provider = FcmProvider(settings)
    try:
        with pytest.raises(kind) as info:
            await send(provider, delivery())
    finally:
        await provider.aclose()
    assert code in str(info.value)
    assert getattr(info.value, "deactivate_device", False) is deactivate
    assert not sandbox.sent


async def test_quota_exceeded_honours_retry_after(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    sandbox.fail("reg-token-1", 429, "QUOTA_EXCEEDED", retry_after=120)
    sandbox.fail("reg-token-2", 429, "QUOTA_EXCEEDED", retry_after=5)
    provider = FcmProvider(settings)
    try:
        with pytest.raises(ThrottledDeliveryError) as first:
            await send(provider, delivery("reg-token-1"))
        with pytest.raises(ThrottledDeliveryError) as second:
            await send(provider, delivery("reg-token-2"))
    finally:
        await provider.aclose()
    assert first.value.retry_after == timedelta(seconds=120)
    assert second.value.retry_after == timedelta(minutes=1)  # FCM asks for at least a minute


async def test_transient_error_carries_retry_after(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    sandbox.fail("reg-token-1", 503, "UNAVAILABLE", retry_after=30)
    provider = FcmProvider(settings)
    try:
        with pytest.raises(TransientDeliveryError) as info:
            await send(provider, delivery())
    finally:
        await provider.aclose()
    assert info.value.retry_after == timedelta(seconds=30)


async def test_bad_service_account_file_is_a_clear_settings_error(tmp_path: Any) -> None:
    path = tmp_path / "sa.json"
    path.write_text('{"private_key": "-----BEGIN PRIVATE KEY-----secret"}')
    with pytest.raises(ValueError, match="cannot load the FCM service account") as info:
        FcmProvider(FcmSettings(project_id="p", service_account_file=path))
    assert "secret" not in str(info.value)


async def test_access_token_never_appears_in_errors(fcm_sandbox: Sandbox) -> None:
    sandbox, settings = fcm_sandbox
    sandbox.fail("reg-token-1", 500, "INTERNAL")
    provider = FcmProvider(settings)
    try:
        with pytest.raises(TransientDeliveryError) as info:
            await send(provider, delivery())
        token = await provider._tokens.token()
    finally:
        await provider.aclose()
    assert token not in str(info.value)
