"""Provider failover and circuit breakers through the real workflow (time-skipping server):
two SMTP sinks and two Twilio stand-ins, the first of each failing when a test scripts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from twilio.request_validator import RequestValidator

from tests.conftest import quick_retry
from tidings.activities.providers.smtp import message_id_for
from tidings.activities.store.base import Store
from tidings.models import Channel, DeliveryStatus, DestinationState, NotificationState, Phase
from tidings.receiver.app import Receiver
from tidings.sandbox.smtp import SmtpSink
from tidings.sandbox.twilio import TwilioSandbox
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workflows.notification import current_details

EMAIL = "grace@example.com"
NUMBER = "+4915112345678"
FROM = "Tidings <notifications@tidings.example>"
PRIMARY = ("AC" + "1" * 32, "primary-token-" + "x" * 18)
BACKUP = ("AC" + "2" * 32, "backup-token-" + "y" * 19)
TRANSIENT = "421 4.3.0 mailbox temporarily unavailable, try again later"

# Breaker settings per test: a long cool-down unless the test watches it close.
BREAKER: dict[str, dict[str, Any]] = {}


@pytest.fixture
def backup_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest_asyncio.fixture
async def primary_twilio() -> AsyncIterator[TwilioSandbox]:
    sandbox = await TwilioSandbox(*PRIMARY).start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest_asyncio.fixture
async def backup_twilio() -> AsyncIterator[TwilioSandbox]:
    sandbox = await TwilioSandbox(*BACKUP).start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
def failover() -> dict[str, Any]:
    """The `[failover]` section; tests change it before `tidings` starts the worker."""
    return {"attempts": 2, "time": "PT5M", "breaker_threshold": 10, "breaker_cooldown": "PT10M"}


@pytest.fixture
def settings(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    backup_sink: SmtpSink,
    primary_twilio: TwilioSandbox,
    backup_twilio: TwilioSandbox,
    failover: dict[str, Any],
) -> Settings:
    twilio = {"from_number": "+15005550006", "timeout": 5}
    return Settings.model_validate(
        {
            "store": {"sqlite_path": tmp_path / "subscribers.sqlite3"},
            "smtp": {"host": smtp_sink.host, "port": smtp_sink.port, "timeout": 5, "from_address": FROM},
            "twilio": {
                "account_sid": PRIMARY[0], "auth_token": PRIMARY[1], "base_url": primary_twilio.url, **twilio,
            },
            "providers": {
                "smtp_backup": {
                    "kind": "smtp", "host": backup_sink.host, "port": backup_sink.port, "timeout": 5,
                },
                "twilio_backup": {
                    "kind": "twilio", "account_sid": BACKUP[0], "auth_token": BACKUP[1],
                    "base_url": backup_twilio.url, **twilio,
                },
            },
            "channels": {
                "email": {"providers": ["smtp", "smtp_backup"]},
                "sms": {"providers": ["twilio", "twilio_backup"]},
            },
            "failover": failover,
            "retry": {channel: quick_retry(maximum_attempts=5) for channel in Channel},
        }
    )  # fmt: skip


def request(notification_id: str, channel: str) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": [{"id": "user-7", "email": EMAIL, "phone": NUMBER, "timezone": "UTC"}],
        "channels": [channel],
        "content": {"title": "Your code", "body": "123456"},
    }


async def send(tidings: TidingsClient, notification_id: str, channel: str = "email") -> NotificationState:
    [handle] = await tidings.send(request(notification_id, channel))
    return await asyncio.wait_for(handle.result(), timeout=120)


def tried(destination: DestinationState) -> list[tuple[str, str, int]]:
    return [(t.provider, t.outcome, t.attempts) for t in destination.providers_tried]


async def test_email_fails_over_after_the_budget_with_the_same_delivery_id(
    tidings: TidingsClient, smtp_sink: SmtpSink, backup_sink: SmtpSink
) -> None:
    smtp_sink.refuse[EMAIL] = TRANSIENT
    state = await send(tidings, "fo-email-1")
    assert state.phase is Phase.delivered
    [d] = state.destinations
    assert d.status is DeliveryStatus.sent and d.provider == "smtp" and d.provider_used == "smtp_backup"
    assert d.attempts == 3
    assert tried(d) == [("smtp", "moved_on", 2), ("smtp_backup", "sent", 1)]
    reason = d.providers_tried[0].reason or ""
    assert reason.startswith("its budget of 2 attempts is used; last error: recipient refused: 421")
    assert smtp_sink.recipients_asked == [EMAIL, EMAIL] and not smtp_sink.received
    [message] = backup_sink.received
    assert message["X-Tidings-Delivery-Id"] == d.delivery_id
    assert message["Message-ID"] == message_id_for(d.delivery_id, FROM)  # backup inherits smtp.from_address
    assert d.provider_message_id == message["Message-ID"]
    # the Web UI's "Current Details", as the workflow set it
    raw = tidings.client.get_workflow_handle(state.workflow_id)
    metadata = await raw.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details
    assert details == current_details(state)
    assert "email/smtp → " in details and "sent**, 3 attempts via smtp_backup" in details
    assert "  - smtp moved on after 2 attempts: its budget of 2 attempts is used" in details


async def test_an_unknown_mailbox_does_not_fail_over(
    tidings: TidingsClient, smtp_sink: SmtpSink, backup_sink: SmtpSink
) -> None:
    smtp_sink.refuse[EMAIL] = "550 5.1.1 no such user"
    state = await send(tidings, "fo-email-2")
    assert state.phase is Phase.failed
    [d] = state.destinations
    assert d.error_kind == "permanent" and d.attempts == 1
    assert tried(d) == [("smtp", "failed", 1)]
    assert d.provider_used is None
    assert not backup_sink.recipients_asked and not backup_sink.received


@pytest.mark.parametrize("failover", [{"attempts": 4, "time": "PT2S"}])
async def test_the_time_budget_moves_on(
    tidings: TidingsClient, smtp_sink: SmtpSink, backup_sink: SmtpSink
) -> None:
    smtp_sink.refuse[EMAIL] = TRANSIENT
    state = await send(tidings, "fo-email-3")
    assert state.phase is Phase.delivered
    [d] = state.destinations
    assert d.provider_used == "smtp_backup"
    [smtp, backup] = d.providers_tried
    assert backup.outcome == "sent" and backup.attempts == 1
    assert smtp.outcome == "moved_on" and 1 <= smtp.attempts < 4
    assert (smtp.reason or "").startswith("its time budget of 2 seconds is used")
    assert len(smtp_sink.recipients_asked) == smtp.attempts and len(backup_sink.received) == 1


async def test_sms_fails_over_to_the_second_account(
    tidings: TidingsClient, primary_twilio: TwilioSandbox, backup_twilio: TwilioSandbox
) -> None:
    primary_twilio.fail(NUMBER, 503, 20503, "Service Unavailable", times=10)
    state = await send(tidings, "fo-sms-1", "sms")
    assert state.phase is Phase.delivered
    [d] = state.destinations
    assert d.provider_used == "twilio_backup" and tried(d) == [
        ("twilio", "moved_on", 2),
        ("twilio_backup", "sent", 1),
    ]
    assert primary_twilio.attempts[NUMBER] == 2 and not primary_twilio.messages
    [message] = backup_twilio.messages
    assert message["sid"] == d.provider_message_id
    assert f"d={d.delivery_id}" in message["StatusCallback"]  # the same delivery id on every provider


async def test_an_invalid_number_does_not_fail_over(
    tidings: TidingsClient, primary_twilio: TwilioSandbox, backup_twilio: TwilioSandbox
) -> None:
    primary_twilio.fail(NUMBER, 400, 21211, "The 'To' number is not a valid phone number.")
    state = await send(tidings, "fo-sms-2", "sms")
    assert state.phase is Phase.failed
    [d] = state.destinations
    assert d.error_kind == "permanent" and tried(d) == [("twilio", "failed", 1)]
    assert backup_twilio.attempts[NUMBER] == 0


async def test_a_refused_account_fails_over_at_once(
    tidings: TidingsClient, primary_twilio: TwilioSandbox, backup_twilio: TwilioSandbox
) -> None:
    primary_twilio.auth_token = "rotated-" + "z" * 24  # our credentials no longer work there
    state = await send(tidings, "fo-sms-3", "sms")
    assert state.phase is Phase.delivered
    [d] = state.destinations
    assert tried(d) == [("twilio", "moved_on", 1), ("twilio_backup", "sent", 1)]
    reason = d.providers_tried[0].reason or ""
    assert "check twilio.account_sid and twilio.auth_token" in reason
    assert PRIMARY[1] not in reason and "rotated" not in reason


@pytest.mark.parametrize("failover", [{"attempts": 2, "breaker_threshold": 2, "breaker_cooldown": "PT2S"}])
async def test_breaker_opens_skips_probes_and_closes(
    tidings: TidingsClient, smtp_sink: SmtpSink, backup_sink: SmtpSink
) -> None:
    smtp_sink.refuse[EMAIL] = TRANSIENT
    first = (await send(tidings, "fo-breaker-1")).destinations[0]
    assert tried(first) == [("smtp", "moved_on", 2), ("smtp_backup", "sent", 1)]  # 2 failures: open

    state = await send(tidings, "fo-breaker-2")
    [d] = state.destinations
    assert tried(d) == [("smtp", "skipped", 0), ("smtp_backup", "sent", 1)]
    assert d.attempts == 1 and len(smtp_sink.recipients_asked) == 2  # not even tried
    since = d.providers_tried[0].circuit_open_since
    assert since is not None
    assert f"  - smtp skipped: circuit open since {since.isoformat()}" in current_details(state)

    await asyncio.sleep(2.5)  # the cool-down passes; the probe still fails: open again
    probed = (await send(tidings, "fo-breaker-3")).destinations[0]
    assert tried(probed) == [("smtp", "skipped", 1), ("smtp_backup", "sent", 1)]
    assert len(smtp_sink.recipients_asked) == 3
    reopened = probed.providers_tried[0].circuit_open_since
    assert reopened is not None and reopened > since

    del smtp_sink.refuse[EMAIL]
    await asyncio.sleep(2.5)
    healed = (await send(tidings, "fo-breaker-4")).destinations[0]
    assert healed.provider_used == "smtp" and tried(healed) == [("smtp", "sent", 1)]
    after = (await send(tidings, "fo-breaker-5")).destinations[0]
    assert after.provider_used == "smtp" and tried(after) == [("smtp", "sent", 1)]
    assert len(smtp_sink.received) == 2 and len(backup_sink.received) == 3


async def test_the_receiver_accepts_status_callbacks_from_the_backup_account(
    tidings: TidingsClient, settings: Settings, store: Store, primary_twilio: TwilioSandbox
) -> None:
    primary_twilio.fail(NUMBER, 500, 20500, "Internal Server Error", times=10)
    [handle] = await tidings.send(
        {
            **request("fo-sms-4", "sms"),
            "channels": [{"channel": "sms", "fallback": ["email"], "escalate_after": {"sms": "PT1H"}}],
        }
    )
    for _ in range(600):
        state = await handle.status()
        if state.destinations and state.destinations[0].status is DeliveryStatus.sent:
            break
        await asyncio.sleep(0.1)
    [d] = state.destinations
    assert d.provider_used == "twilio_backup"
    app = Receiver(settings, tidings.client, store.receipts, store).app()
    public = settings.receiver.public_url.rstrip("/")
    path = f"/twilio/status?w={handle.workflow_id}&d={d.delivery_id}"
    params = {
        "MessageSid": d.provider_message_id or "",
        "MessageStatus": "delivered",
        "AccountSid": BACKUP[0],
    }

    async def post(token: str) -> int:
        signature = RequestValidator(token).compute_signature(f"{public}{path}", params)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public) as client:
            response = await client.post(path, data=params, headers={"X-Twilio-Signature": signature})
            return response.status_code

    assert await post("someone-else-" + "w" * 19) == 403
    assert await post(BACKUP[1]) == 204
    for _ in range(100):
        receipts = (await handle.status()).destinations[0].receipts
        if receipts:
            break
        await asyncio.sleep(0.1)
    assert [r.status.value for r in receipts] == ["delivered"]
    await tidings.cancel(handle.notification_id)


@pytest.mark.parametrize("failover", [{"attempts": 1}])
async def test_status_shows_the_providers_tried_while_retrying(
    tidings: TidingsClient, smtp_sink: SmtpSink, backup_sink: SmtpSink
) -> None:
    """`tidings status` (the client's status) reads the ledger from the retrying activity's
    heartbeat: the workflow only learns it when the activity ends."""
    smtp_sink.refuse[EMAIL] = TRANSIENT
    backup_sink.refuse[EMAIL] = TRANSIENT
    [handle] = await tidings.send(request("fo-live-1", "email"))
    for _ in range(300):
        live = (await tidings.status(handle.notification_id)).destinations
        if live and len(live[0].providers_tried) == 2:
            break
        await asyncio.sleep(0.1)
    [d] = live
    assert d.status is DeliveryStatus.sending
    assert tried(d)[0] == ("smtp", "moved_on", 1) and tried(d)[1][:2] == ("smtp_backup", "trying")
    del backup_sink.refuse[EMAIL]
    state = await asyncio.wait_for(handle.result(), timeout=120)
    assert state.phase is Phase.delivered and state.destinations[0].provider_used == "smtp_backup"
