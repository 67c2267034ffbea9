"""Nothing stuck, nothing silent, nothing leaked: the defects an independent check found, kept closed.

All on the time-skipping server with a real worker:
- input from other clients that does not validate ends the notification `failed` with the reason;
- a phone number in the input no longer deadlocks the worker (inline, then stored);
- malformed signals are recorded as ignored, with the reason;
- a retry override that does not fit the worker's settings fails its destination, not the task;
- `status` shows the live attempt and last failure of a delivery that is retrying;
- secret-bearing URLs of a stored recipient stay out of history, state, summaries and logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment

from tests.conftest import quick_retry
from tidings.activities.store.base import Store
from tidings.models import Channel, NotificationState, Phase, Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.slack import SlackSandbox
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import NotificationNotFoundError, TidingsClient
from tidings.workers.worker import running_worker


def json_payload(value: str) -> RawValue:
    """A payload as any client would send it, built from JSON text (no Python model in between)."""
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=value.encode()))


def nested(depth: int) -> str:
    return '{"k": ' * depth + "1" + "}" * depth


def valid_input(**change: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": "other-client-1",
        "recipient_id": "u-1",
        "recipient": {"id": "u-1", "email": "u1@example.com"},
        "channels": ["email"],
        "content": {"title": "From Go"},
    }
    value.update(change)
    return value


async def start_raw(tidings: TidingsClient, *args: Any) -> NotificationState:
    handle = await tidings.client.start_workflow(
        "NotificationWorkflow",
        args=list(args),
        id=f"notification-raw-{uuid.uuid4().hex[:8]}",
        task_queue=tidings.task_queue,
        result_type=NotificationState,
    )
    result: NotificationState = await asyncio.wait_for(handle.result(), 30)
    return result


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json_payload('"hello"'), "invalid workflow input"),
        (json_payload(json.dumps(valid_input(channels=["pigeon"]))), "channels.0.channel"),
        (
            json_payload(json.dumps(valid_input(content={"title": "x", "variables": {"a": 1}, "bogus": 2}))),
            "bogus",
        ),
        (
            json_payload(json.dumps(valid_input(retry={"email": {"initial_interval": -1}}))),
            "retry.email.initial_interval",
        ),
        (
            json_payload(
                json.dumps(valid_input())[:-1]
                + ', "content": {"title": "x", "variables": '
                + nested(300)
                + "}}"
            ),
            "invalid workflow input",
        ),
        (RawValue(Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01")), "cannot decode it"),
    ],
    ids=["string", "unknown-channel", "unknown-field", "negative-retry", "nested-300", "binary"],
)
async def test_input_from_other_clients_that_does_not_validate_ends_failed(
    tidings: TidingsClient, payload: RawValue, reason: str
) -> None:
    state = await start_raw(tidings, payload)
    assert state.phase is Phase.failed
    assert state.reason is not None and reason in state.reason, state.reason
    assert "docs/notification-input.schema.json" in state.reason


async def test_a_start_without_input_ends_failed(tidings: TidingsClient) -> None:
    state = await start_raw(tidings)
    assert state.phase is Phase.failed and state.reason is not None
    assert "needs one argument" in state.reason


async def test_valid_input_from_another_client_is_delivered_and_searchable(
    tidings: TidingsClient, smtp_sink: SmtpSink
) -> None:
    """JSON built by hand (as a Go service would) runs, and gets the search attributes it lacked."""
    handle = await tidings.client.start_workflow(
        "NotificationWorkflow",
        json_payload(json.dumps(valid_input())),
        id="notification-other-client-1",
        task_queue=tidings.task_queue,
        result_type=NotificationState,
    )
    state: NotificationState = await handle.result()
    assert state.phase is Phase.delivered and len(smtp_sink.received) == 1
    attributes = (await handle.describe()).typed_search_attributes
    assert {p.key.name: p.value for p in attributes}["RecipientId"] == "u-1"


async def test_phone_numbers_do_not_deadlock_the_worker(
    tidings: TidingsClient, store: Store, smtp_sink: SmtpSink
) -> None:
    """Decoding a recipient's phone number inside the sandbox used to hold phonenumbers' lock forever."""
    inline = {"id": "phone-inline", "email": "p1@example.com", "phone": "+354 611 1234"}
    [first] = await tidings.send({"recipients": [inline], "channels": ["email"], "content": {"title": "Hi"}})
    assert (await asyncio.wait_for(first.result(), 30)).phase is Phase.delivered
    await store.put(Recipient(id="phone-stored", email="p2@example.com", phone="+679 777 1234"))
    [second] = await tidings.send(
        {"recipients": ["phone-stored"], "channels": ["email"], "content": {"title": "Hi"}}
    )
    assert (await asyncio.wait_for(second.result(), 30)).phase is Phase.delivered


async def test_malformed_signals_are_recorded_as_ignored(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    [handle] = await tidings.send(
        {
            "recipients": [{"id": "sig-1", "email": "s@example.com"}],
            "channels": ["email"],
            "content": {"title": "Later"},
            # not years ahead: a test waiting on a result lets the shared server skip to this timer
            "schedule_at": (server_now + timedelta(days=1)).isoformat(),
        }
    )
    workflow = tidings.handle(handle.notification_id)
    await workflow.signal("cancel", 42)
    await workflow.signal("delivery_receipt", {"status": "teleported"})
    await workflow.signal("engagement", "clicked")
    await workflow.signal("reschedule", 5)
    await workflow.signal("reschedule")
    state = await handle.status()
    messages = [e.message for e in state.events]
    assert state.phase is Phase.scheduled
    for signal in ("cancel", "delivery_receipt", "engagement", "reschedule"):
        assert any(m.startswith(f"{signal} ignored: invalid") for m in messages), (signal, messages)
    assert any("reschedule ignored: reschedule needs a timestamp" in m for m in messages)
    assert (await tidings.cancel(handle.notification_id, "done")).accepted
    assert (await handle.result()).phase is Phase.cancelled


@pytest_asyncio.fixture
async def strict_worker(
    ts_env: WorkflowEnvironment, tmp_path: Path, smtp_sink: SmtpSink, store: Store
) -> AsyncIterator[TidingsClient]:
    """A worker whose email retries start at 5 s: a request may not cap them at 2 s."""
    settings = Settings.model_validate(
        {
            "smtp": {"host": smtp_sink.host, "port": smtp_sink.port, "timeout": 5},
            "retry": {
                **{c: quick_retry() for c in Channel},
                Channel.email: quick_retry(initial_interval=timedelta(seconds=5)),
            },
        }
    )
    queue = f"strict-{uuid.uuid4().hex[:8]}"
    async with running_worker(ts_env.client, settings, store, task_queue=queue):
        yield TidingsClient(ts_env.client, task_queue=queue)


async def test_a_retry_override_that_does_not_fit_the_workers_settings_fails_the_destination(
    strict_worker: TidingsClient, smtp_sink: SmtpSink
) -> None:
    [handle] = await strict_worker.send(
        {
            "recipients": [{"id": "r-1", "email": "r@example.com"}],
            "channels": ["email"],
            "content": {"title": "Hi"},
            "retry": {"email": {"maximum_interval": "PT2S"}},
        }
    )
    state = await asyncio.wait_for(handle.result(), 30)
    assert state.phase is Phase.failed and not smtp_sink.received
    assert state.destinations[0].last_error is not None
    assert "retry override does not fit this worker's retry settings" in state.destinations[0].last_error
    assert "maximum_interval must not be below initial_interval" in state.destinations[0].last_error


async def test_status_shows_the_live_attempt_and_last_failure(
    tidings: TidingsClient, http_endpoint: HttpEndpoint
) -> None:
    http_endpoint.answer(500, 500, 500)
    [handle] = await tidings.send(
        {
            "recipients": [{"id": "live-1", "webhook_url": f"{http_endpoint.url}/hook"}],
            "channels": ["webhook"],
            "content": {"title": "Hi"},
            "retry": {
                "webhook": {"maximum_attempts": 10, "initial_interval": "PT1S", "maximum_interval": "PT1S"}
            },
        }
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        destinations = (await handle.status()).destinations
        if destinations and destinations[0].attempts >= 2 and destinations[0].last_error:
            [destination] = destinations
            break
        assert loop.time() < deadline, destinations
        await asyncio.sleep(0.2)
    assert destination.status == "sending"
    assert destination.last_error is not None and "answered 500" in destination.last_error
    state = await asyncio.wait_for(handle.result(), 30)
    assert state.phase is Phase.delivered and state.destinations[0].attempts == 4


SLACK_SECRET = "Zx9" + uuid.uuid4().hex
WEBHOOK_PASSWORD = "pw" + uuid.uuid4().hex
WEBHOOK_TOKEN = "tok" + uuid.uuid4().hex


async def test_secret_bearing_urls_stay_out_of_history_state_summaries_and_logs(
    ts_env: WorkflowEnvironment,
    tidings: TidingsClient,
    store: Store,
    http_endpoint: HttpEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    slack = await SlackSandbox("xoxb-unused").start()
    try:
        webhook = (
            f"http://hooks-user:{WEBHOOK_PASSWORD}@127.0.0.1:{http_endpoint.port}/hook?token={WEBHOOK_TOKEN}"
        )
        await store.put(
            Recipient(
                id="secretive",
                webhook_url=webhook,
                slack_webhook_url=slack.webhook_url(f"T1/B1/{SLACK_SECRET}"),
            )
        )
        http_endpoint.answer(400)  # the webhook fails for good: its error is recorded too
        [handle] = await tidings.send(
            {
                "recipients": ["secretive"],
                "channels": ["slack", "webhook"],
                "content": {"title": "Deploy done"},
            }
        )
        state = await asyncio.wait_for(handle.result(), 30)
    finally:
        await slack.stop()

    # the real URLs were used
    assert [p["path"] for p in slack.posted] == [f"T1/B1/{SLACK_SECRET}"]
    [request] = http_endpoint.requests
    assert request.query == f"token={WEBHOOK_TOKEN}" and request.headers["authorization"].startswith("Basic ")
    assert state.phase is Phase.partially_delivered

    # ... and shown nowhere
    workflow = ts_env.client.get_workflow_handle(handle.workflow_id)
    described = await workflow.describe()
    history = (await workflow.fetch_history()).to_json()
    seen = {
        "history": history,
        "state": state.model_dump_json(),
        "details": f"{described.static_summary} {described.static_details}",
        "logs": caplog.text,
    }
    for where, text in seen.items():
        for secret in (SLACK_SECRET, WEBHOOK_PASSWORD, WEBHOOK_TOKEN):
            assert secret not in text, f"{secret[:6]}… found in {where}"
    slack_state = next(d for d in state.destinations if d.channel is Channel.slack)
    webhook_state = next(d for d in state.destinations if d.channel is Channel.webhook)
    assert slack_state.destination.endswith("/services/T1/B1/…")
    assert webhook_state.destination == f"http://…@127.0.0.1:{http_endpoint.port}/hook?…"
    assert webhook_state.last_error is not None and "answered 400" in webhook_state.last_error


async def test_an_id_without_its_recipient_gets_a_hint(tidings: TidingsClient) -> None:
    with pytest.raises(NotificationNotFoundError, match=r"names its recipient: order-9~<recipient id>"):
        await tidings.status("order-9")
    with pytest.raises(NotificationNotFoundError, match=r"names its recipient"):
        await tidings.cancel("order-9")
