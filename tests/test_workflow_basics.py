"""NotificationWorkflow on the time-skipping server: schedule, cancel, reschedule, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox.smtp import SmtpSink
from starters.client import TidingsClient
from tidings.models import Phase


def email_request(notification_id: str, **extra: object) -> dict[str, object]:
    request: dict[str, object] = {
        "id": notification_id,
        "recipients": [{"id": "user-42", "email": "ada@example.com", "name": "Ada"}],
        "channels": ["email"],
        "content": {"title": "Order #123 shipped", "body": "It is on its way."},
    }
    request.update(extra)
    return request


async def test_immediate_email_is_delivered(tidings: TidingsClient, smtp_sink: SmtpSink) -> None:
    [handle] = await tidings.send(email_request("basic-1"))
    state = await handle.result()
    assert state.phase is Phase.delivered, state
    [dest] = state.destinations
    assert dest.status == "sent" and dest.attempts == 1
    [message] = smtp_sink.received
    assert message["Subject"] == "Order #123 shipped"
    assert message["To"] == "Ada <ada@example.com>"
    assert dest.provider_message_id == message["Message-ID"]


async def test_three_days_ahead(tidings: TidingsClient, smtp_sink: SmtpSink) -> None:
    when = datetime.now(UTC) + timedelta(days=3)
    [handle] = await tidings.send(email_request("later-1", schedule_at=when.isoformat()))
    status = await handle.status()
    assert status.phase is Phase.scheduled and not smtp_sink.received
    state = await handle.result()
    assert state.phase is Phase.delivered
    sent_at = state.destinations[0].started_at
    assert sent_at is not None and sent_at >= when
    assert len(smtp_sink.received) == 1
