"""The receiver over real HTTP: Twilio callbacks (valid, forged, replayed, late), clicks, app events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from tests.conftest import BIN_DIR
from tests.postgres_fixture import PostgresServer
from tidings.activities.inbox import InboxStore
from tidings.activities.store.base import ReceiptLog
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.links import Purpose, event_token, sign_token
from tidings.models import DeliveryStatus, Phase
from tidings.receiver.app import Receiver
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.smtp import SmtpSink, free_port
from tidings.sandbox.twilio import TwilioSandbox
from tidings.settings import Settings
from tidings.starters.client import NotificationHandle, NotificationNotFoundError, TidingsClient
from tidings.workers.worker import running_worker

SID, TOKEN = "AC" + "3" * 32, "receiver-auth-token-0123456789"
LINK_KEY = "link-signing-key-0123456789abcdef"
NUMBER = "+4915112345678"


@dataclass
class Stack:
    tidings: TidingsClient
    twilio: TwilioSandbox
    receiver_url: str
    log: ReceiptLog
    inbox: InboxStore
    temporal_address: str
    store_path: Path


@pytest_asyncio.fixture
async def stack(ts_env: WorkflowEnvironment, settings: Settings, store: SqliteStore) -> AsyncIterator[Stack]:
    twilio = await TwilioSandbox(SID, TOKEN).start()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "twilio": {
                "account_sid": SID,
                "auth_token": TOKEN,
                "from_number": "+15005550006",
                "base_url": twilio.url,
            },
            "receiver": {"public_url": public, "link_signing_key": LINK_KEY},
        }
    )
    log = store.receipts
    server = UvicornServer(Receiver(configured, ts_env.client, log).app(), port=port)
    await server.start()
    try:
        async with running_worker(ts_env.client, configured, store, task_queue="receiver-tests"):
            yield Stack(
                TidingsClient(ts_env.client, task_queue="receiver-tests"), twilio, public, log,
                store.inbox, ts_env.client.service_client.config.target_host,
                configured.store.sqlite_path,
            )  # fmt: skip
    finally:
        await server.stop()
        await twilio.stop()


async def first_sent(handle: NotificationHandle) -> str:
    for _ in range(200):
        state = await handle.status()
        if state.destinations and state.destinations[0].status is DeliveryStatus.sent:
            return state.destinations[0].delivery_id
        await asyncio.sleep(0.05)
    raise AssertionError("nothing was sent")


def escalating(notification_id: str, first: str) -> dict[str, object]:
    return {
        "id": notification_id,
        "recipients": [{"id": "r1", "phone": NUMBER, "email": "r1@example.com"}],
        "channels": [{"channel": first, "fallback": ["email"], "escalate_after": {first: "PT30M"}}],
        "content": {
            "title": "Your parcel",
            "body": "is out for delivery",
            "url": "https://shop.example.com/o/9",
        },
    }


async def test_twilio_callbacks_valid_forged_replayed_and_late(stack: Stack, smtp_sink: SmtpSink) -> None:
    [handle] = await stack.tidings.send(escalating("sms-receipts", "sms"))
    await first_sent(handle)
    [message] = stack.twilio.messages
    assert message["StatusCallback"].startswith(f"{stack.receiver_url}/twilio/status?w={handle.workflow_id}")
    assert "/c/" in message["Body"]  # the link is tracked

    response = await stack.twilio.send_status_callback(message["sid"], "delivered")
    assert response.status_code == 204
    replay = await stack.twilio.send_status_callback(message["sid"], "delivered")
    assert replay.status_code == 204
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            message["StatusCallback"],
            data={"MessageSid": message["sid"], "MessageStatus": "read", "AccountSid": SID},
            headers={"X-Twilio-Signature": base64.b64encode(b"not-a-signature").decode()},
        )
        unsigned = await client.post(message["StatusCallback"], data={"MessageSid": message["sid"]})
    assert forged.status_code == 403 and unsigned.status_code == 403

    state = await handle.status()
    assert [r.status for r in state.destinations[0].receipts] == ["delivered"]  # once, not replayed
    assert state.destinations[0].receipts[0].provider_message_id == message["sid"]

    state = await handle.result()  # nobody read it: escalates to email after 30 minutes
    assert [d.channel.value for d in state.destinations] == ["sms", "email"]
    late = await stack.twilio.send_status_callback(message["sid"], "read")
    assert late.status_code == 204
    [kept] = await stack.log.late_receipts(handle.workflow_id)
    assert kept.status == "read" and kept.provider_message_id == message["sid"]

    # and `tidings status` shows it beside the final state
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "status", handle.notification_id,
        env={**os.environ, "TIDINGS_TEMPORAL__ADDRESS": stack.temporal_address,
             "TIDINGS_STORE__SQLITE_PATH": str(stack.store_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    shown = json.loads(out)
    assert shown["phase"] == "delivered" and [r["status"] for r in shown["late_receipts"]] == ["read"]


async def test_click_redirects_only_where_we_linked_and_stops_escalation(
    stack: Stack, smtp_sink: SmtpSink
) -> None:
    [handle] = await stack.tidings.send(escalating("in-app-click", "in_app"))
    delivery_id = await first_sent(handle)
    [stored] = await stack.inbox.list("r1")
    assert stored.url is not None and stored.url.startswith(f"{stack.receiver_url}/c/")
    async with httpx.AsyncClient() as client:
        click = await client.get(stored.url)
        assert click.status_code == 302 and click.headers["location"] == "https://shop.example.com/o/9"
        # a token re-signed with another key, or tampered, or made up, goes nowhere
        evil = sign_token(
            b"guessed-key",
            Purpose.click,
            {"w": "notification-in-app-click", "d": delivery_id, "u": "https://evil.example"},
        )
        for path in (f"/c/{evil}", "/c/garbage", "/c/" + stored.url.rsplit("/c/", 1)[1][:-3] + "AAA"):
            refused = await client.get(f"{stack.receiver_url}{path}")
            assert refused.status_code == 404 and "location" not in refused.headers
    state = await handle.result()
    assert [d.channel.value for d in state.destinations] == ["in_app"]  # the click stopped escalation
    assert state.destinations[0].engagement[0].kind == "clicked"
    assert not smtp_sink.received


async def test_app_events_need_a_valid_token(stack: Stack, smtp_sink: SmtpSink) -> None:
    [handle] = await stack.tidings.send(escalating("app-event", "in_app"))
    delivery_id = await first_sent(handle)
    token = event_token(LINK_KEY.encode(), handle.workflow_id, delivery_id)
    async with httpx.AsyncClient() as client:
        bad = await client.post(f"{stack.receiver_url}/events", json={"token": token + "x", "kind": "opened"})
        malformed = await client.post(f"{stack.receiver_url}/events", json={"kind": "shrugged"})
        good = await client.post(f"{stack.receiver_url}/events", json={"token": token, "kind": "opened"})
    assert bad.status_code == 403 and malformed.status_code == 400 and good.status_code == 204
    state = await handle.result()
    assert state.phase is Phase.delivered and [d.channel.value for d in state.destinations] == ["in_app"]
    assert state.destinations[0].engagement[0].kind == "opened"


async def test_a_click_token_posted_to_events_is_refused_and_signals_nothing(
    stack: Stack, smtp_sink: SmtpSink
) -> None:
    """The click token is in every tracked message; as an "opened" report it would stop escalation."""
    [handle] = await stack.tidings.send(escalating("click-as-event", "in_app"))
    await first_sent(handle)
    [stored] = await stack.inbox.list("r1")
    assert stored.url is not None
    click_token = stored.url.rsplit("/c/", 1)[1]
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{stack.receiver_url}/events", json={"token": click_token, "kind": "opened"}
        )
    assert refused.status_code == 403
    state = await handle.result()
    assert [d.channel.value for d in state.destinations] == ["in_app", "email"]  # nothing stopped escalation
    assert state.destinations[0].engagement == []


async def test_a_replayed_event_is_acknowledged_and_signalled_once(stack: Stack, smtp_sink: SmtpSink) -> None:
    [handle] = await stack.tidings.send(escalating("event-replay", "in_app"))
    delivery_id = await first_sent(handle)
    token = event_token(LINK_KEY.encode(), handle.workflow_id, delivery_id)
    events = f"{stack.receiver_url}/events"
    async with httpx.AsyncClient() as client:
        # `dismissed` keeps the notification running (and escalating), so replays could land
        dismissed = [await client.post(events, json={"token": token, "kind": "dismissed"}) for _ in range(3)]
        assert [r.status_code for r in dismissed] == [204, 204, 204]
        # another kind with the same token is a different report
        assert (await client.post(events, json={"token": token, "kind": "opened"})).status_code == 204
        for _ in range(200):  # signals are handled in order: once `opened` is in, so is every replay
            state = await handle.status()
            if any(e.kind == "opened" for e in state.destinations[0].engagement):
                break
            await asyncio.sleep(0.05)
        assert [e.kind for e in state.destinations[0].engagement] == ["dismissed", "opened"]
        assert (await client.post(events, json={"token": token, "kind": "opened"})).status_code == 204
    state = await handle.result()
    assert [e.kind for e in state.destinations[0].engagement] == ["dismissed", "opened"]
    assert [d.channel.value for d in state.destinations] == ["in_app"]  # `opened` stopped escalation


async def test_receipts_reach_running_notifications_while_the_database_is_down(
    ts_env: WorkflowEnvironment,
    tidings: TidingsClient,
    private_postgres: PostgresServer,
    server_now: datetime,
) -> None:
    """Twilio does not retry a failed status callback: with the receipt log's database down, a
    receipt still reaches its running notification, and one that would have to be kept (its
    notification finished) gets 503 with Retry-After instead of an opaque 500."""
    store = await PostgresStore.open(await private_postgres.create_database(), connect_timeout=2)
    public = "https://hooks.example.com"
    configured = Settings.model_validate(
        {"twilio": {"account_sid": SID, "auth_token": TOKEN}, "receiver": {"public_url": public}}
    )
    app = Receiver(configured, ts_env.client, store.receipts, store).app()
    [handle] = await tidings.send(
        {"recipients": [{"id": "db-down", "email": "d@example.com"}], "channels": ["email"],
         "content": {"title": "Later"}, "schedule_at": (server_now + timedelta(days=1)).isoformat()}
    )  # fmt: skip

    async def callback(client: httpx.AsyncClient, workflow_id: str) -> httpx.Response:
        path = f"/twilio/status?w={workflow_id}&d=unknown-delivery"
        params = {"MessageSid": "SMdown", "MessageStatus": "delivered", "AccountSid": SID}
        signature = RequestValidator(TOKEN).compute_signature(f"{public}{path}", params)
        return await client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    try:
        private_postgres.stop()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public) as client:
            assert (await callback(client, handle.workflow_id)).status_code == 204
            gone = await callback(client, "notification-finished-long-ago")
            assert gone.status_code == 503 and gone.headers["retry-after"] == "30"
            assert private_postgres.password not in gone.text
        state = await handle.status()
        assert any(
            "receipt for an unknown delivery ignored: unknown-delivery" in e.message for e in state.events
        )
    finally:
        private_postgres.start()
        await store.aclose()
        with contextlib.suppress(NotificationNotFoundError):  # the test server may have skipped ahead
            await tidings.cancel(handle.notification_id)
