"""Push through NotificationWorkflow on the time-skipping server, to the FCM and APNs stand-ins."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tidings.activities.store.sqlite import SqliteStore
from tidings.models import DeliveryStatus, Phase, Recipient
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.fcm import FcmSandbox
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import ApnsSettings, FcmSettings, Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

APNS_TOKEN = "ab12" * 16


@pytest_asyncio.fixture
async def push(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
    apns_sandbox: tuple[ApnsSandbox, ApnsSettings],
) -> AsyncIterator[TidingsClient]:
    configured = settings.model_copy(update={"fcm": fcm_sandbox[1], "apns": apns_sandbox[1]})
    await store.put(
        Recipient.model_validate(
            {
                "id": "phone-user",
                "email": "phone-user@example.com",
                "devices": [
                    {"id": "pixel", "platform": "fcm", "token": "fcm-pixel"},
                    {"id": "tablet", "platform": "fcm", "token": "fcm-tablet"},
                    {"id": "iphone", "platform": "apns", "token": APNS_TOKEN},
                ],
            }
        )
    )
    queue = f"push-{uuid.uuid4().hex[:8]}"
    async with running_worker(ts_env.client, configured, store, task_queue=queue):
        yield TidingsClient(ts_env.client, task_queue=queue)


def push_request(notification_id: str, fallback: list[str] | None = None) -> dict[str, object]:
    return {
        "id": notification_id,
        "recipients": ["phone-user"],
        "channels": [{"channel": "push", "fallback": fallback or []}],
        "content": {"title": "Order shipped", "body": "Arrives Friday"},
    }


async def test_push_fans_out_to_every_device(
    push: TidingsClient,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
    apns_sandbox: tuple[ApnsSandbox, ApnsSettings],
) -> None:
    [handle] = await push.send(push_request("push-1"))
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert {(d.provider, d.device_id, d.status) for d in state.destinations} == {
        ("fcm", "pixel", DeliveryStatus.sent),
        ("fcm", "tablet", DeliveryStatus.sent),
        ("apns", "iphone", DeliveryStatus.sent),
    }
    assert sorted(m["token"] for m in fcm_sandbox[0].sent) == ["fcm-pixel", "fcm-tablet"]
    [apns] = apns_sandbox[0].delivered
    iphone = next(d for d in state.destinations if d.device_id == "iphone")
    assert apns["headers"]["apns-id"] == iphone.delivery_id == iphone.provider_message_id


async def test_retries_never_resend_to_a_device_that_accepted(
    push: TidingsClient,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
    apns_sandbox: tuple[ApnsSandbox, ApnsSettings],
) -> None:
    fcm, _ = fcm_sandbox
    apns, _ = apns_sandbox
    fcm.fail("fcm-pixel", 503, "UNAVAILABLE", times=2)
    apns.fail(APNS_TOKEN, 429, "TooManyRequests")
    [handle] = await push.send(push_request("push-2"))
    state = await handle.result()
    assert state.phase is Phase.delivered
    attempts = {d.device_id: d.attempts for d in state.destinations}
    assert attempts == {"pixel": 3, "tablet": 1, "iphone": 2}
    assert fcm.attempts["fcm-tablet"] == 1 and fcm.attempts["fcm-pixel"] == 3
    assert [m["token"] for m in fcm.sent].count("fcm-tablet") == 1
    assert len(apns.delivered) == 1


async def test_dead_tokens_are_deactivated_and_push_falls_back(
    push: TidingsClient,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
    apns_sandbox: tuple[ApnsSandbox, ApnsSettings],
) -> None:
    fcm, _ = fcm_sandbox
    apns, _ = apns_sandbox
    fcm.fail("fcm-pixel", 404, "UNREGISTERED")
    fcm.fail(
        "fcm-tablet",
        400,
        "INVALID_ARGUMENT",
        message="The registration token is not a valid FCM registration token",
    )
    apns.fail(APNS_TOKEN, 410, "Unregistered", timestamp_ms=1_700_000_000_000)
    [handle] = await push.send(push_request("push-3", fallback=["email"]))
    state = await handle.result()
    assert state.phase is Phase.delivered
    pushes = [d for d in state.destinations if d.channel == "push"]
    assert all(d.status is DeliveryStatus.failed and d.attempts == 1 for d in pushes)
    [email] = [d for d in state.destinations if d.channel == "email"]
    assert email.status is DeliveryStatus.sent and email.fallback_from == "push"
    assert email.fallback_reason is not None and "UNREGISTERED" in email.fallback_reason
    assert len(smtp_sink.received) == 1
    recipient = await store.get("phone-user")
    assert recipient is not None
    assert {d.id: d.active for d in recipient.devices} == {"pixel": False, "tablet": False, "iphone": False}
    assert sum("deactivated" in e.message for e in state.events) == 3

    # the next notification skips the dead devices and goes straight to the fallback
    [again] = await push.send(push_request("push-4", fallback=["email"]))
    state = await again.result()
    assert [d.channel for d in state.destinations] == ["email"]
    assert fcm.attempts["fcm-pixel"] == 1


async def test_one_device_is_enough_by_default(
    push: TidingsClient, fcm_sandbox: tuple[FcmSandbox, FcmSettings]
) -> None:
    fcm, _ = fcm_sandbox
    fcm.fail("fcm-pixel", 404, "UNREGISTERED")
    [handle] = await push.send(push_request("push-5", fallback=["email"]))
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert "email" not in [d.channel for d in state.destinations]


async def test_throttled_apns_waits_for_retry_after(
    push: TidingsClient, apns_sandbox: tuple[ApnsSandbox, ApnsSettings]
) -> None:
    apns, _ = apns_sandbox
    apns.fail(APNS_TOKEN, 503, "ServiceUnavailable")
    [handle] = await push.send(push_request("push-6"))
    state = await handle.result()
    iphone = next(d for d in state.destinations if d.device_id == "iphone")
    assert iphone.status is DeliveryStatus.sent and iphone.attempts == 2
    assert iphone.finished_at is not None and iphone.started_at is not None
    assert iphone.finished_at - iphone.started_at >= timedelta(seconds=1)


async def test_push_success_all_needs_every_device(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
    apns_sandbox: tuple[ApnsSandbox, ApnsSettings],
) -> None:
    fcm, fcm_settings = fcm_sandbox
    strict = settings.model_copy(update={"fcm": fcm_settings, "apns": apns_sandbox[1], "push_success": "all"})
    devices = [{"id": name, "platform": "fcm", "token": f"fcm-{name}"} for name in ("a", "b")]
    two_phones = {"id": "two-phones", "email": "t@example.com", "devices": devices}
    await store.put(Recipient.model_validate(two_phones))
    fcm.fail("fcm-b", 404, "UNREGISTERED")
    queue = f"push-all-{uuid.uuid4().hex[:8]}"
    async with running_worker(ts_env.client, strict, store, task_queue=queue):
        tidings = TidingsClient(ts_env.client, task_queue=queue)
        [handle] = await tidings.send(
            {"id": "push-all-1", "recipients": ["two-phones"], "content": {"title": "Hi"},
             "channels": [{"channel": "push", "fallback": ["email"]}]}
        )  # fmt: skip
        state = await handle.result()
    assert [d.channel.value for d in state.destinations].count("email") == 1
    assert len(smtp_sink.received) == 1


async def test_many_devices_are_delivered_at_most_ten_at_a_time(
    push: TidingsClient, store: SqliteStore, fcm_sandbox: tuple[FcmSandbox, FcmSettings]
) -> None:
    """A workflow task never schedules more than 10 deliveries (each input carries the content)."""
    devices = [{"id": f"d{n}", "platform": "fcm", "token": f"fcm-{n}"} for n in range(23)]
    await store.put(Recipient.model_validate({"id": "gadgets", "devices": devices}))
    [handle] = await push.send(
        {"recipients": ["gadgets"], "channels": ["push"], "content": {"title": "Hi", "body": "x" * 20_000}}
    )
    state = await handle.result()
    assert state.phase is Phase.delivered and len(state.destinations) == 23
    assert sorted(m["token"] for m in fcm_sandbox[0].sent) == sorted(d["token"] for d in devices)
    history = await push.client.get_workflow_handle(handle.workflow_id).fetch_history()
    scheduled_per_task: list[int] = []
    for event in history.events:
        if event.HasField("workflow_task_completed_event_attributes"):
            scheduled_per_task.append(0)
        elif event.HasField("activity_task_scheduled_event_attributes"):
            scheduled_per_task[-1] += 1
            inputs = event.activity_task_scheduled_event_attributes.input.payloads
            assert b'"devices":[{' in inputs[0].data and inputs[0].data.count(b'"platform"') == 1
    assert max(scheduled_per_task) == 10 and sum(scheduled_per_task) == 23
