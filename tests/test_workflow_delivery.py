"""Delivery behaviour through the real workflow: preferences, quiet hours, fallbacks, retries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.conftest import settled_status
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Phase, Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint, ScriptedResponse
from tidings.sandbox.smtp import SmtpSink
from tidings.starters.client import TidingsClient


def recipient(**extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"id": "user-7", "email": "grace@example.com", "timezone": "UTC"}
    value.update(extra)
    return value


def request(
    notification_id: str, to: dict[str, Any] | str, channels: list[Any], **extra: Any
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": notification_id,
        "recipients": [to],
        "channels": channels,
        "content": {"title": "Your code", "body": "123456", "data": {"k": "v"}},
    }
    value.update(extra)
    return value


def quiet_window(now: datetime, before: timedelta, after: timedelta) -> dict[str, str]:
    return {"start": (now - before).strftime("%H:%M"), "end": (now + after).strftime("%H:%M")}


async def test_opted_out_channel_is_skipped(tidings: TidingsClient, smtp_sink: SmtpSink) -> None:
    to = recipient(preferences={"opted_out_channels": ["email"]})
    [handle] = await tidings.send(request("pref-1", to, ["email"]))
    state = await handle.result()
    assert state.phase is Phase.skipped_by_preferences
    assert state.reason == "recipient opted out of email"
    assert not smtp_sink.received


async def test_opted_out_category(tidings: TidingsClient, smtp_sink: SmtpSink) -> None:
    to = recipient(preferences={"opted_out_categories": ["marketing"]})
    [handle] = await tidings.send(request("pref-2", to, ["email"], category="marketing"))
    assert (await handle.result()).phase is Phase.skipped_by_preferences
    [handle] = await tidings.send(request("pref-3", to, ["email"], category="orders"))
    assert (await handle.result()).phase is Phase.delivered


async def test_critical_overrides_opt_out_and_quiet_hours(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    prefs = {
        "opted_out_channels": ["email"],
        "quiet_hours": quiet_window(server_now, timedelta(hours=1), timedelta(hours=5)),
    }
    to = recipient(preferences=prefs)
    [handle] = await tidings.send(request("crit-1", to, ["email", "sms"], priority="critical"))
    state = await handle.result()
    # email overrides the opt-out; sms is never tried: there is no number
    assert state.phase is Phase.partially_delivered
    assert [d.channel for d in state.destinations] == ["email"]
    started = state.destinations[0].started_at
    assert started is not None and started < server_now + timedelta(minutes=5)
    assert len(smtp_sink.received) == 1


async def test_quiet_hours_defer_until_window_ends(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    to = recipient(
        preferences={"quiet_hours": quiet_window(server_now, timedelta(hours=1), timedelta(hours=3))}
    )
    [handle] = await tidings.send(request("quiet-1", to, ["email"]))
    status = await settled_status(handle)
    assert status.phase is Phase.waiting_quiet_hours
    assert status.quiet_hours_until is not None
    state = await handle.result()
    assert state.phase is Phase.delivered
    started = state.destinations[0].started_at
    assert started is not None and started >= server_now + timedelta(hours=2)
    assert len(smtp_sink.received) == 1


async def test_quiet_hours_wait_can_be_cancelled(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    to = recipient(
        preferences={"quiet_hours": quiet_window(server_now, timedelta(hours=1), timedelta(hours=3))}
    )
    [handle] = await tidings.send(request("quiet-2", to, ["email"]))
    assert (await settled_status(handle)).phase is Phase.waiting_quiet_hours
    assert (await tidings.cancel(handle.notification_id)).accepted
    state = await handle.result()
    assert state.phase is Phase.cancelled and not smtp_sink.received


async def test_expires_during_quiet_hours(
    tidings: TidingsClient, smtp_sink: SmtpSink, server_now: datetime
) -> None:
    to = recipient(
        preferences={"quiet_hours": quiet_window(server_now, timedelta(hours=1), timedelta(hours=4))}
    )
    expires = server_now + timedelta(hours=1)
    [handle] = await tidings.send(request("quiet-3", to, ["email"], expires_at=expires.isoformat()))
    state = await handle.result()
    assert state.phase is Phase.expired
    assert state.reason is not None and "expired" in state.reason
    assert not smtp_sink.received


async def test_recipient_from_store(tidings: TidingsClient, smtp_sink: SmtpSink, store: SqliteStore) -> None:
    await store.put(Recipient.model_validate(recipient(id="stored-1", email="stored@example.com")))
    [handle] = await tidings.send(request("store-1", "stored-1", ["email"]))
    assert (await handle.result()).phase is Phase.delivered
    assert smtp_sink.envelopes[0][1] == ["stored@example.com"]


async def test_unknown_recipient_fails_with_reason(tidings: TidingsClient) -> None:
    [handle] = await tidings.send(request("unknown-1", "nobody", ["email"]))
    state = await handle.result()
    assert state.phase is Phase.failed
    assert state.reason is not None and "unknown recipient 'nobody'" in state.reason


async def test_transient_errors_are_retried(tidings: TidingsClient, http_endpoint: HttpEndpoint) -> None:
    http_endpoint.answer(503, 502)
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(request("retry-1", to, ["webhook"]))
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert state.destinations[0].attempts == 3
    assert len(http_endpoint.requests) == 3
    # every attempt carries the same delivery id, so the receiver can deduplicate
    ids = {r.headers["webhook-id"] for r in http_endpoint.requests}
    assert ids == {state.destinations[0].delivery_id}


async def test_throttled_retry_waits_for_retry_after(
    tidings: TidingsClient, http_endpoint: HttpEndpoint
) -> None:
    http_endpoint.answer(ScriptedResponse(429, {"retry-after": "120"}))
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(request("throttle-1", to, ["webhook"]))
    state = await handle.result()
    assert state.phase is Phase.delivered
    dest = state.destinations[0]
    assert dest.attempts == 2
    assert dest.started_at is not None and dest.finished_at is not None
    assert dest.finished_at - dest.started_at >= timedelta(seconds=120)


async def test_retries_are_bounded(tidings: TidingsClient, http_endpoint: HttpEndpoint) -> None:
    http_endpoint.answer(*[500] * 10)
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(
        request("bounded-1", to, ["webhook"], retry={"webhook": {"maximum_attempts": 3}})
    )
    state = await handle.result()
    assert state.phase is Phase.failed
    dest = state.destinations[0]
    assert dest.attempts == 3 and dest.error_kind == "transient"
    assert dest.last_error is not None and "gave up after 3 attempts" in dest.last_error
    assert len(http_endpoint.requests) == 3


async def test_permanent_failure_falls_back(
    tidings: TidingsClient, http_endpoint: HttpEndpoint, smtp_sink: SmtpSink
) -> None:
    http_endpoint.answer(400)
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(request("fallback-1", to, [{"channel": "webhook", "fallback": ["email"]}]))
    state = await handle.result()
    assert state.phase is Phase.delivered
    webhook, email = state.destinations
    assert webhook.status == "failed" and webhook.error_kind == "permanent" and webhook.attempts == 1
    assert email.status == "sent" and email.fallback_from == "webhook"
    assert email.fallback_reason is not None and "answered 400" in email.fallback_reason
    assert len(http_endpoint.requests) == 1 and len(smtp_sink.received) == 1


async def test_exhausted_retries_fall_back(
    tidings: TidingsClient, http_endpoint: HttpEndpoint, smtp_sink: SmtpSink
) -> None:
    http_endpoint.answer(*[503] * 10)
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(
        request(
            "fallback-2",
            to,
            [{"channel": "webhook", "fallback": ["email"]}],
            retry={"webhook": {"maximum_attempts": 2}},
        )
    )
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert [d.status for d in state.destinations] == ["failed", "sent"]
    assert len(http_endpoint.requests) == 2


async def test_refused_email_fails_permanently_with_reason(
    tidings: TidingsClient, smtp_sink: SmtpSink
) -> None:
    smtp_sink.refuse["grace@example.com"] = "550 5.1.1 mailbox does not exist"
    [handle] = await tidings.send(request("refused-1", recipient(), ["email"]))
    state = await handle.result()
    assert state.phase is Phase.failed
    assert state.destinations[0].attempts == 1
    assert state.reason is not None and "550 5.1.1 mailbox does not exist" in state.reason


async def test_one_channel_fails_other_succeeds(
    tidings: TidingsClient, http_endpoint: HttpEndpoint, smtp_sink: SmtpSink
) -> None:
    http_endpoint.answer(404)
    to = recipient(webhook_url=f"{http_endpoint.url}/hook")
    [handle] = await tidings.send(request("partial-1", to, ["email", "webhook"]))
    state = await handle.result()
    assert state.phase is Phase.partially_delivered
    assert {d.channel: d.status for d in state.destinations} == {"email": "sent", "webhook": "failed"}


async def test_unconfigured_provider_fails_clearly(tidings: TidingsClient) -> None:
    to = recipient(devices=[{"id": "phone-1", "platform": "fcm", "token": "tok"}])
    [handle] = await tidings.send(request("noprov-1", to, ["push"]))
    state = await handle.result()
    assert state.phase is Phase.failed
    assert state.destinations[0].attempts == 1
    assert state.reason is not None and "set fcm.project_id" in state.reason


async def test_several_recipients_get_one_workflow_each(tidings: TidingsClient, smtp_sink: SmtpSink) -> None:
    handles = await tidings.send(
        {
            "id": "multi-1",
            "recipients": [
                recipient(id="a", email="a@example.com"),
                recipient(id="b", email="b@example.com"),
            ],
            "channels": ["email"],
            "content": {"title": "Hello"},
        }
    )
    assert [h.workflow_id for h in handles] == ["notification-multi-1~a", "notification-multi-1~b"]
    for h in handles:
        assert (await h.result()).phase is Phase.delivered
    assert sorted(e[1][0] for e in smtp_sink.envelopes) == ["a@example.com", "b@example.com"]


async def test_invalid_stored_profile_fails_with_reason(tidings: TidingsClient, store: SqliteStore) -> None:
    row = ("broken-1", "Nowhere/Land", "en", "2026-01-01T00:00:00+00:00")
    if isinstance(store, PostgresStore):  # TIDINGS_TEST_STORE=postgres
        insert = "INSERT INTO subscribers (id, timezone, locale, updated_at) VALUES (%s, %s, %s, %s)"
        await store.run(lambda conn: conn.execute(insert, row))
    else:
        insert = "INSERT INTO subscribers (id, timezone, locale, updated_at) VALUES (?, ?, ?, ?)"
        await store.write(lambda db: db.execute(insert, row))
    [handle] = await tidings.send(request("broken-profile-1", "broken-1", ["email"]))
    state = await handle.result()
    assert state.phase is Phase.failed
    assert state.reason is not None
    assert "cannot load recipient 'broken-1': the stored profile is invalid" in state.reason
    assert "timezone" in state.reason


async def test_gone_webhook_is_disabled_for_later_notifications(
    tidings: TidingsClient, store: SqliteStore, http_endpoint: HttpEndpoint, smtp_sink: SmtpSink
) -> None:
    url = f"{http_endpoint.url}/hook"
    await store.put(Recipient.model_validate(recipient(id="hooked", webhook_url=url)))
    http_endpoint.answer(410)
    [handle] = await tidings.send(request("gone-1", "hooked", ["webhook"]))
    state = await handle.result()
    assert state.phase is Phase.failed and state.destinations[0].attempts == 1
    assert any("disabled" in e.message for e in state.events)
    stored = await store.get("hooked")
    assert stored is not None and stored.webhook_disabled is not None and "410" in stored.webhook_disabled
    [handle] = await tidings.send(
        request("gone-2", "hooked", [{"channel": "webhook", "fallback": ["email"]}])
    )
    state = await handle.result()
    assert [d.channel for d in state.destinations] == ["email"]
    assert len(http_endpoint.requests) == 1
