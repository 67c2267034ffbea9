"""Escalation (unread → next channel), engagement and receipt signals, on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from tidings.models import DeliveryReceipt, DeliveryStatus, Engagement, Phase
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.smtp import SmtpSink
from tidings.starters.client import NotificationHandle, TidingsClient


def escalating(notification_id: str, endpoint: HttpEndpoint) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": [{"id": "u9", "email": "u9@example.com", "webhook_url": f"{endpoint.url}/hook"}],
        "channels": [{"channel": "email", "fallback": ["webhook"], "escalate_after": {"email": "PT10M"}}],
        "content": {"title": "Your invoice", "body": "is ready"},
    }


async def first_destination_sent(handle: NotificationHandle) -> str:
    for _ in range(200):
        state = await handle.status()
        if state.destinations and state.destinations[0].status is DeliveryStatus.sent:
            return state.destinations[0].delivery_id
        await asyncio.sleep(0.05)
    raise AssertionError("the first channel was not delivered")


async def test_unread_escalates_to_next_channel(
    tidings: TidingsClient, smtp_sink: SmtpSink, http_endpoint: HttpEndpoint
) -> None:
    [handle] = await tidings.send(escalating("esc-1", http_endpoint))
    state = await handle.result()
    assert state.phase is Phase.delivered
    email, webhook = state.destinations
    assert email.status is DeliveryStatus.sent and webhook.status is DeliveryStatus.sent
    assert webhook.fallback_from == "email" and webhook.fallback_reason == "email not read within 10 minutes"
    assert webhook.started_at is not None and email.finished_at is not None
    assert webhook.started_at - email.finished_at >= timedelta(minutes=10)
    assert len(smtp_sink.received) == 1 and len(http_endpoint.requests) == 1


async def test_read_stops_escalation(
    tidings: TidingsClient, smtp_sink: SmtpSink, http_endpoint: HttpEndpoint, server_now: datetime
) -> None:
    [handle] = await tidings.send(escalating("esc-2", http_endpoint))
    delivery_id = await first_destination_sent(handle)
    await tidings.handle(handle.notification_id).signal(
        "engagement", Engagement(kind="read", delivery_id=delivery_id, at=server_now)
    )
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert [d.channel for d in state.destinations] == ["email"]
    assert state.destinations[0].engagement[0].kind == "read"
    assert not http_endpoint.requests


async def test_cancel_stops_escalation(
    tidings: TidingsClient, smtp_sink: SmtpSink, http_endpoint: HttpEndpoint
) -> None:
    [handle] = await tidings.send(escalating("esc-3", http_endpoint))
    await first_destination_sent(handle)
    assert (await tidings.cancel(handle.notification_id, "user called support")).accepted
    state = await handle.result()
    assert [d.channel for d in state.destinations] == ["email"]
    assert any("escalation after email stopped by cancel" in e.message for e in state.events)
    assert not http_endpoint.requests


async def test_receipts_are_shown_per_destination(
    tidings: TidingsClient, smtp_sink: SmtpSink, http_endpoint: HttpEndpoint, server_now: datetime
) -> None:
    [handle] = await tidings.send(escalating("esc-4", http_endpoint))
    delivery_id = await first_destination_sent(handle)
    receipt = DeliveryReceipt(delivery_id=delivery_id, status="delivered", at=server_now)
    await tidings.handle(handle.notification_id).signal("delivery_receipt", receipt)
    unknown = DeliveryReceipt(delivery_id="nope", status="delivered", at=server_now)
    await tidings.handle(handle.notification_id).signal("delivery_receipt", unknown)
    read = DeliveryReceipt(delivery_id=delivery_id, status="read", at=server_now)
    await tidings.handle(handle.notification_id).signal("delivery_receipt", read)
    state = await handle.result()
    assert [r.status for r in state.destinations[0].receipts] == ["delivered", "read"]
    assert any("receipt for an unknown delivery ignored: nope" in e.message for e in state.events)
    assert not http_endpoint.requests  # a read receipt stops escalation too
