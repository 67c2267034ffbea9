"""NotificationWorkflow on the time-skipping server: schedule, cancel, reschedule, expiry."""

from __future__ import annotations

from datetime import datetime, timedelta

from tidings.models import Phase
from tidings.sandbox.smtp import SmtpSink
from tidings.starters.client import TidingsClient


def email_request(notification_id: str, **extra: object) -> dict[str, object]:
    request: dict[str, object] = {
        "id": notification_id,
        "recipients": [{"id": "user-42", "email": "ada@example.com", "name": "Ada"}],
        "channels": ["email"],
        "content": {"title": "Order #123 shipped", "body": "It is on its way."},
    }
    request.update(extra)
    return request


async def test_immediate_email_is_delivered(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    [handle] = await tidings.send(email_request("basic-1"))
    state = await handle.result()
    assert state.phase is Phase.delivered, state
    [dest] = state.destinations
    assert dest.status == "sent" and dest.attempts == 1
    [message] = smtp_sink.received
    assert message["Subject"] == "Order #123 shipped"
    assert message["To"] == "Ada <ada@example.com>"
    assert dest.provider_message_id == message["Message-ID"]


async def test_three_days_ahead(tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime) -> None:
    when = server_now + timedelta(days=3)
    [handle] = await tidings.send(email_request("later-1", schedule_at=when.isoformat()))
    status = await handle.status()
    assert status.phase is Phase.scheduled and not smtp_sink.received
    state = await handle.result()
    assert state.phase is Phase.delivered
    sent_at = state.destinations[0].started_at
    assert sent_at is not None and sent_at >= when
    assert len(smtp_sink.received) == 1


async def test_past_schedule_sends_at_once(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    past = server_now - timedelta(hours=1)
    [handle] = await tidings.send(email_request("past-1", schedule_at=past.isoformat()))
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert len(smtp_sink.received) == 1


async def test_cancel_while_scheduled(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    when = server_now + timedelta(days=1)
    [handle] = await tidings.send(email_request("cancel-1", schedule_at=when.isoformat()))
    outcome = await tidings.cancel(handle.notification_id, "customer changed their mind")
    assert outcome.accepted
    state = await handle.result()
    assert state.phase is Phase.cancelled
    assert state.reason == "customer changed their mind"
    assert not smtp_sink.received


async def test_reschedule_later_then_earlier(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    first = server_now + timedelta(days=1)
    [handle] = await tidings.send(email_request("resched-1", schedule_at=first.isoformat()))
    later = first + timedelta(days=2)
    assert (await tidings.reschedule(handle.notification_id, later)).accepted
    assert (await handle.status()).schedule_at == later
    earlier = server_now + timedelta(hours=2)
    assert (await tidings.reschedule(handle.notification_id, earlier)).accepted
    state = await handle.result()
    assert state.phase is Phase.delivered
    started = state.destinations[0].started_at
    assert started is not None and earlier <= started < first
    assert len(smtp_sink.received) == 1


async def test_reschedule_past_expiry_is_refused(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    now = server_now
    [handle] = await tidings.send(
        email_request(
            "expire-1",
            schedule_at=(now + timedelta(hours=5)).isoformat(),
            expires_at=(now + timedelta(hours=6)).isoformat(),
        )
    )
    assert (await tidings.reschedule(handle.notification_id, now + timedelta(hours=7))).accepted is False
    # a signal can't be refused synchronously: it is ignored with the reason recorded
    await tidings.handle(handle.notification_id).signal("reschedule", "not a date")
    status = await handle.status()
    assert any("reschedule ignored: not an ISO 8601 timestamp" in e.message for e in status.events)
    state = await handle.result()
    assert state.phase is Phase.delivered  # expiry after the schedule does not stop it


async def test_reschedule_signal_past_expiry_is_ignored(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    now = server_now
    [handle] = await tidings.send(
        email_request(
            "expire-2",
            schedule_at=(now + timedelta(hours=1)).isoformat(),
            expires_at=(now + timedelta(hours=2)).isoformat(),
        )
    )
    await tidings.handle(handle.notification_id).signal("reschedule", (now + timedelta(days=1)).isoformat())
    state = await handle.result()
    # the reschedule past expiry was ignored, so it was sent at the original time
    assert state.phase is Phase.delivered
    assert any("reschedule ignored" in e.message for e in state.events)


async def test_closed_notification_is_reported_not_resent(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    [handle] = await tidings.send(email_request("late-cancel-1"))
    await handle.result()
    # the workflow has closed: no update can reach it
    [again] = await tidings.send(email_request("late-cancel-1"))
    assert again.existing
    assert len(smtp_sink.received) == 1


async def test_same_id_twice_sends_once(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    when = server_now + timedelta(minutes=30)
    [first] = await tidings.send(email_request("dup-1", schedule_at=when.isoformat()))
    [second] = await tidings.send(email_request("dup-1", schedule_at=when.isoformat()))
    assert not first.existing and second.existing
    assert second.workflow_id == first.workflow_id == "notification-dup-1~user-42"
    await first.result()
    [third] = await tidings.send(email_request("dup-1"))
    assert third.existing
    assert len(smtp_sink.received) == 1
