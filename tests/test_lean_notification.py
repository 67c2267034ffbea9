"""The hot path of an immediate notification to an inline recipient: prepared in the workflow,
one search-attribute update, and the worker's per-channel retry settings still applied.

See docs/perf-readme-section.md for the measurements behind each of these choices.
"""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from tidings import search_attributes as sa
from tidings.models import Channel, Phase
from tidings.settings import Settings
from tidings.starters.client import NotificationHandle, TidingsClient

INLINE = {"id": "user-42", "email": "ada@example.com"}
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def request(notification_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": notification_id,
        "recipients": [INLINE],
        "channels": ["email"],
        "content": {"title": "Order #123 shipped"},
        **extra,
    }


async def history_of(tidings: TidingsClient, handle: NotificationHandle) -> WorkflowHistory:
    return await tidings.client.get_workflow_handle(handle.workflow_id).fetch_history()


def markers(history: WorkflowHistory) -> list[str]:
    return [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


def upserts(history: WorkflowHistory) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES for e in history.events)


async def test_inline_recipient_is_prepared_in_the_workflow_with_one_attribute_update(
    tidings: TidingsClient, settings: Settings
) -> None:
    [handle] = await tidings.send(request("lean-1"))
    state = await handle.result()
    assert state.phase is Phase.delivered, state
    history = await history_of(tidings, handle)
    assert LOCAL_ACTIVITY_MARKER not in markers(history)  # no prepare_notification
    assert markers(history) == []
    assert upserts(history) == 1  # `sending` was set at start; only the final phase is updated
    assert len(history.events) == 12  # the bare one-activity workflow's 11, and that update
    description = await tidings.client.get_workflow_handle(handle.workflow_id).describe()
    assert description.typed_search_attributes.get(sa.NOTIFICATION_STATUS) == "delivered"
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    # The worker's retry settings for email, as prepare_notification would have returned them.
    expected = settings.retry_for(Channel.email)
    assert scheduled.retry_policy.maximum_attempts == expected.maximum_attempts
    assert scheduled.retry_policy.initial_interval.ToTimedelta() == expected.initial_interval


async def test_a_request_retry_override_still_applies_on_the_hot_path(tidings: TidingsClient) -> None:
    [handle] = await tidings.send(request("lean-2", retry={"email": {"maximum_attempts": 2}}))
    assert (await handle.result()).phase is Phase.delivered
    history = await history_of(tidings, handle)
    [attempts] = [
        e.activity_task_scheduled_event_attributes.retry_policy.maximum_attempts
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert attempts == 2


async def test_quiet_hours_still_go_through_prepare_notification(tidings: TidingsClient) -> None:
    """Quiet hours depend on the time zone rules, so their evaluation stays a recorded activity,
    unless the notification is critical (which ignores quiet hours)."""
    quiet = {**INLINE, "preferences": {"quiet_hours": {"start": "00:00", "end": "23:59"}}}
    [handle] = await tidings.send(request("lean-3", recipients=[quiet], priority="critical"))
    assert (await handle.result()).phase is Phase.delivered
    assert LOCAL_ACTIVITY_MARKER not in markers(await history_of(tidings, handle))
    [handle] = await tidings.send(request("lean-4", recipients=[quiet]))
    history_markers: list[str] = []
    for _ in range(300):
        history_markers = markers(await history_of(tidings, handle))
        if LOCAL_ACTIVITY_MARKER in history_markers:
            break
        await asyncio.sleep(0.1)
    assert history_markers == [LOCAL_ACTIVITY_MARKER]
    await tidings.cancel(handle.notification_id, "test over")  # refused if it was 23:59 and sent
    assert (await handle.result()).phase in (Phase.cancelled, Phase.delivered)


def test_an_immediate_notification_starts_as_sending_and_a_scheduled_one_as_scheduled() -> None:
    from tidings.starters.client import validate_request
    from tidings.workflows.notification import initial_phase

    [now] = validate_request(request("lean-5"))
    [later] = validate_request(request("lean-6", schedule_at="2030-01-01T09:00:00+00:00"))
    assert initial_phase(now) is Phase.sending
    assert initial_phase(later) is Phase.scheduled


def test_default_frequency_caps_send_an_inline_recipient_through_the_store() -> None:
    """The workers' default caps need the store's counters: a client that knows them starts a
    notification they may apply to as `scheduled`, so the workflow prepares it with the store (and
    a replay on a worker with other settings takes the same path, from the start event)."""
    from tidings.models import Channel
    from tidings.starters.client import validate_request
    from tidings.workflows.notification import initial_phase

    [plain] = validate_request(request("lean-7"))
    [critical] = validate_request(request("lean-8", priority="critical"))
    channel = plain.channels[0].channel
    other = next(c for c in Channel if c is not channel)
    assert initial_phase(plain, frozenset({channel})) is Phase.scheduled
    assert initial_phase(plain, frozenset({other})) is Phase.sending
    assert initial_phase(critical, frozenset({channel})) is Phase.sending  # never capped
