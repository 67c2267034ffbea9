"""ApnsProvider against the local HTTP/2 APNs stand-in (sandbox/apns.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.push_fixtures import TOPIC
from tidings.activities.providers.apns import ApnsProvider
from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.rendering import InlineRenderer
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient, delivery_id_for
from tidings.sandbox.apns import ApnsSandbox
from tidings.settings import ApnsSettings

Sandbox = tuple[ApnsSandbox, ApnsSettings]
TOKEN = "a1b2" * 16


def delivery(token: str = TOKEN, **extra: Any) -> DeliveryInput:
    recipient = Recipient(id="u1", devices=[{"id": "iphone", "platform": "apns", "token": token}])
    destination = Destination(channel=Channel.push, provider="apns", address="iphone", device_id="iphone")
    values: dict[str, Any] = {
        "delivery_id": delivery_id_for(f"notification-{token[:6]}", destination),
        "workflow_id": "notification-n1",
        "notification_id": "n1",
        "destination": destination,
        "recipient": recipient,
        "content": Content(title="Hello", body="World", data={"order": "123"}, collapse_key="orders"),
        "priority": Priority.high,
    }
    values.update(extra)
    return DeliveryInput.model_validate(values)


async def send(provider: ApnsProvider, d: DeliveryInput) -> str | None:
    message = InlineRenderer().render(d.content, d.recipient, Channel.push)
    return (await provider.send(d, message)).message_id


async def test_headers_payload_and_one_connection_one_token(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    provider = ApnsProvider(settings)
    expires = datetime.now(UTC) + timedelta(hours=1)
    tokens = [f"{i:04x}" * 16 for i in range(50)]
    try:
        ids = await asyncio.gather(*(send(provider, delivery(t, expires_at=expires)) for t in tokens))
    finally:
        await provider.aclose()
    assert len(sandbox.delivered) == 50
    assert sandbox.http_versions == {"2"}
    assert len(sandbox.connections) == 1  # streams multiplexed on one connection
    assert len(sandbox.provider_tokens) == 1 and provider.tokens.issued == 1
    first = next(d for d in sandbox.delivered if d["token"] == tokens[0])
    headers = first["headers"]
    assert headers["apns-topic"] == TOPIC and headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10" and headers["apns-collapse-id"] == "orders"
    assert headers["apns-expiration"] == str(int(expires.timestamp()))
    assert headers["apns-id"] == ids[0]
    assert first["payload"] == {
        "order": "123",
        "aps": {"alert": {"title": "Hello", "body": "World"}, "sound": "default"},
    }


async def test_background_push_and_overrides(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    provider = ApnsProvider(settings)
    content = Content(
        template_id="ignored-here", data={"sync": "1"},
        platform_overrides={"apns": {"payload": {"aps": {"badge": 3, "thread-id": "orders"}}}},
    )  # fmt: skip
    try:
        await send(provider, delivery(content=content, priority=Priority.low))
    finally:
        await provider.aclose()
    [sent] = sandbox.delivered
    assert sent["headers"]["apns-push-type"] == "background" and sent["headers"]["apns-priority"] == "5"
    assert sent["payload"]["aps"] == {"content-available": 1, "badge": 3, "thread-id": "orders"}


async def test_payload_over_4kb_is_refused_before_sending(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    provider = ApnsProvider(settings)
    try:
        with pytest.raises(PermanentDeliveryError, match=r"limit is 4096"):
            await send(provider, delivery(content=Content(title="x", data={"blob": "y" * 5000})))
    finally:
        await provider.aclose()
    assert not sandbox.attempts


@pytest.mark.parametrize(
    ("status", "reason", "kind", "deactivate"),
    [
        (400, "BadDeviceToken", PermanentDeliveryError, True),
        (400, "DeviceTokenNotForTopic", PermanentDeliveryError, False),
        (400, "TopicDisallowed", PermanentDeliveryError, False),
        (413, "PayloadTooLarge", PermanentDeliveryError, False),
        (429, "TooManyRequests", ThrottledDeliveryError, False),
        (500, "InternalServerError", TransientDeliveryError, False),
        (503, "ServiceUnavailable", TransientDeliveryError, False),
    ],
)
async def test_reasons_are_classified(
    apns_sandbox: Sandbox, status: int, reason: str, kind: type[Exception], deactivate: bool
) -> None:
    sandbox, settings = apns_sandbox
    sandbox.fail(TOKEN, status, reason)
    provider = ApnsProvider(settings)
    try:
        with pytest.raises(kind, match=reason) as info:
            await send(provider, delivery())
    finally:
        await provider.aclose()
    assert getattr(info.value, "deactivate_device", False) is deactivate


async def test_unregistered_carries_apples_timestamp(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    stamp = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    sandbox.fail(TOKEN, 410, "Unregistered", timestamp_ms=int(stamp.timestamp() * 1000))
    provider = ApnsProvider(settings)
    try:
        with pytest.raises(PermanentDeliveryError) as info:
            await send(provider, delivery())
    finally:
        await provider.aclose()
    assert info.value.deactivate_device and info.value.provider_timestamp == stamp


async def test_expired_provider_token_is_renewed_then_retried(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    provider = ApnsProvider(settings)
    try:
        await send(provider, delivery())
        sandbox.fail(TOKEN, 403, "ExpiredProviderToken")
        await send(provider, delivery())
    finally:
        await provider.aclose()
    assert len(sandbox.delivered) == 2
    assert len(sandbox.provider_tokens) == 2 and provider.tokens.issued == 2


async def test_sandbox_rejects_a_token_regenerated_too_often(apns_sandbox: Sandbox) -> None:
    """The sandbox is as strict as Apple: a fresh JWT per message is refused."""
    _, settings = apns_sandbox
    first = ApnsProvider(settings)
    second = ApnsProvider(settings)  # a second token source: a new JWT within 20 minutes
    try:
        await send(first, delivery())
        await asyncio.sleep(1.1)  # a different iat, so a different token
        with pytest.raises(ThrottledDeliveryError, match="TooManyProviderTokenUpdates"):
            await send(second, delivery())
    finally:
        await first.aclose()
        await second.aclose()


async def test_bad_key_file_is_a_clear_settings_error(tmp_path: Any) -> None:
    settings = ApnsSettings(team_id="T", key_id="K", private_key_file=tmp_path / "missing.p8")
    with pytest.raises(ValueError, match=r"cannot read apns\.private_key_file"):
        ApnsProvider(settings)


async def test_provider_token_never_appears_in_errors(apns_sandbox: Sandbox) -> None:
    sandbox, settings = apns_sandbox
    sandbox.fail(TOKEN, 500, "InternalServerError")
    provider = ApnsProvider(settings)
    try:
        with pytest.raises(TransientDeliveryError) as info:
            await send(provider, delivery())
    finally:
        await provider.aclose()
    assert sandbox.provider_tokens[0] not in str(info.value)
    assert json.dumps(sandbox.provider_tokens[0]) not in repr(info.value)
