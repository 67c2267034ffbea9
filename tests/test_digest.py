"""Digests through the real DigestWorkflow and its child NotificationWorkflow (time-skipping
server): windows, caps, cancellation, carry-over, scheduled digests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tidings import search_attributes as sa
from tidings.activities.store.base import Store
from tidings.models import DigestPhase, DigestState, Phase
from tidings.starters.client import InvalidRequestError, TidingsClient
from tidings.starters.digests import DigestHandle


def event(to: str | dict[str, Any], title: str, **digest: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"key": "comments:post-9", "window": "PT10M"}
    spec.update(digest)
    return {
        "id": f"ev-{uuid.uuid4().hex[:10]}",
        "recipients": [to],
        "channels": ["in_app"],
        "content": {"title": title, "body": f"{title} body"},
        "digest": spec,
    }


def someone(name: str = "digest-user", **extra: Any) -> dict[str, Any]:
    """An inline recipient with an id of its own per test (digest ids are per recipient)."""
    return {"id": f"{name}-{uuid.uuid4().hex[:6]}", **extra}


async def add(tidings: TidingsClient, request: dict[str, Any]) -> DigestHandle:
    [handle] = await tidings.add_to_digest(request)
    return handle


async def collecting(handle: DigestHandle, count: int) -> None:
    for _ in range(200):
        state = await handle.status()
        if state.phase is DigestPhase.collecting and len(state.items) == count and state.closes_at:
            return
        await _pause()
    raise AssertionError(f"digest did not collect {count} items: {state}")


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def finished(handle: DigestHandle, ts_env: WorkflowEnvironment) -> DigestState:
    """The digest's final state, moving the test server's clock to each window's end.

    Waiting on the workflow's result would let the shared time-skipping server jump far ahead
    once the chain of runs ends; this moves it only as far as the windows need."""
    workflow = tidings_handle(handle)
    sending = 0
    for _ in range(600):
        if (await workflow.describe()).status is WorkflowExecutionStatus.COMPLETED:
            return await handle.status()
        state = await handle.status()
        now = await ts_env.get_current_time()
        sending = sending + 1 if state.phase is DigestPhase.sending else 0
        if state.phase is DigestPhase.collecting and state.closes_at and state.closes_at > now:
            await ts_env.sleep(state.closes_at - now + timedelta(seconds=1))
        elif sending > 40:  # the notification waits (quiet hours): move the clock on
            await ts_env.sleep(timedelta(minutes=10))
            sending = 0
        else:
            await _pause()
    raise AssertionError(f"digest did not finish: {state}")


def tidings_handle(handle: DigestHandle) -> WorkflowHandle[Any, Any]:
    return handle.client.get_workflow_handle(handle.workflow_id)


async def test_a_fixed_window_sends_one_digest_with_every_item(
    tidings: TidingsClient, store: Store, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    handles = [await add(tidings, event(to, f"comment {i}")) for i in range(3)]
    handle = handles[0]
    assert {h.workflow_id for h in handles} == {f"digest-{to['id']}~comments:post-9"}
    await collecting(handle, 3)
    state = await handle.status()
    assert [i.title for i in state.items] == ["comment 0", "comment 1", "comment 2"]
    assert state.opened_at is not None and state.closes_at == state.opened_at + timedelta(minutes=10)
    assert state.summary == f"digest of 3 to {to['id']}: comments:post-9"
    final = await finished(handle, ts_env)
    assert final.phase is DigestPhase.sent and final.notification is not None
    assert final.notification.phase is Phase.delivered
    [message] = await store.inbox.list(to["id"])
    assert message.title == "3 new updates" and message.body == "comment 2 and 2 more"
    assert message.notification_id == final.notification_id
    child = await tidings.client.get_workflow_handle(message.workflow_id).describe()
    assert child.typed_search_attributes.get(sa.RECIPIENT_ID) == to["id"]
    assert await child.static_summary() == f"digest of 3 to {to['id']}: comments:post-9"


async def test_the_same_event_twice_is_one_item(tidings: TidingsClient, ts_env: WorkflowEnvironment) -> None:
    to = someone()
    request = event(to, "once")
    handle = await add(tidings, request)
    await add(tidings, request)
    await add(tidings, event(to, "twice"))
    await collecting(handle, 2)
    # every test finishes its digests: a timer left on the shared server would fire with no worker
    assert [i.title for i in (await finished(handle, ts_env)).items] == ["once", "twice"]


async def test_cancelling_items_removes_them_and_all_of_them_cancels_the_digest(
    tidings: TidingsClient, store: Store, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    first = await add(tidings, event(to, "keep"))
    second = await add(tidings, event(to, "drop"))
    await collecting(first, 2)
    assert second.item_id is not None and first.item_id is not None
    assert (await second.cancel_item(second.item_id)).accepted
    refused = await second.cancel_item("nope~" + to["id"])
    assert not refused.accepted and "no item" in (refused.reason or "")
    final = await finished(first, ts_env)
    assert [i.title for i in final.items] == ["keep"]
    assert [m.title for m in await store.inbox.list(to["id"])] == ["1 new update"]

    other = someone()
    only = await add(tidings, event(other, "a"))
    await collecting(only, 1)
    assert only.item_id is not None
    assert (await only.cancel_item(only.item_id)).accepted
    cancelled = await finished(only, ts_env)
    assert cancelled.phase is DigestPhase.cancelled and cancelled.reason == "every item was cancelled"
    assert await store.inbox.list(other["id"]) == []


async def test_cancel_the_whole_digest(
    tidings: TidingsClient, store: Store, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    handle = await add(tidings, event(to, "a"))
    await add(tidings, event(to, "b"))
    await collecting(handle, 2)
    assert (await tidings.digest(to["id"], "comments:post-9").cancel("changed my mind")).accepted
    final = await finished(handle, ts_env)
    assert final.phase is DigestPhase.cancelled and final.reason == "changed my mind"
    assert await store.inbox.list(to["id"]) == []


async def test_max_items_closes_early_and_the_rest_opens_the_next_digest(
    tidings: TidingsClient, store: Store, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    handles = [await add(tidings, event(to, f"c{i}", max_items=2)) for i in range(5)]
    final = await finished(handles[0], ts_env)  # follows the runs the digest continued as
    assert final.phase is DigestPhase.sent and final.sequence == 2
    titles = sorted(m.title or "" for m in await store.inbox.list(to["id"]))
    assert titles == ["1 new update", "2 new updates", "2 new updates"]


async def test_a_sliding_window_moves_with_each_item_up_to_max_window(
    tidings: TidingsClient, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    spec = {"window": "PT10M", "mode": "sliding", "max_window": "PT25M"}
    handle = await add(tidings, event(to, "a", **spec))
    await collecting(handle, 1)
    opened = (await handle.status()).opened_at
    assert opened is not None
    await ts_env.sleep(timedelta(minutes=8))
    await add(tidings, event(to, "b", **spec))
    await collecting(handle, 2)
    state = await handle.status()
    last = state.items[-1].received_at
    assert last is not None and state.closes_at == last + timedelta(minutes=10)
    await ts_env.sleep(timedelta(minutes=8))
    await add(tidings, event(to, "c", **spec))
    await collecting(handle, 3)
    assert (await handle.status()).closes_at == opened + timedelta(minutes=25)  # capped by max_window
    assert len((await finished(handle, ts_env)).items) == 3


async def test_a_scheduled_digest_closes_at_the_recipients_next_local_morning(
    tidings: TidingsClient, server_now: datetime, ts_env: WorkflowEnvironment
) -> None:
    to = someone(timezone="Europe/Berlin")
    handle = await add(tidings, event(to, "overnight", window=None, until_local_time="08:00"))
    await collecting(handle, 1)
    state = await handle.status()
    assert state.closes_at is not None and state.opened_at is not None
    local = state.closes_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.time() == time(8, 0)
    assert timedelta(0) < state.closes_at - state.opened_at <= timedelta(hours=24)
    assert state.window == "until 08:00 local time"
    final = await finished(handle, ts_env)
    assert final.notification is not None and final.notification.phase is Phase.delivered
    assert final.notification.finished_at is not None
    assert final.notification.finished_at >= state.closes_at.astimezone(UTC)


async def test_quiet_hours_still_apply_to_the_digest(
    tidings: TidingsClient, server_now: datetime, ts_env: WorkflowEnvironment
) -> None:
    start = (server_now + timedelta(minutes=5)).strftime("%H:%M")
    end = (server_now + timedelta(hours=2)).strftime("%H:%M")
    to = someone(timezone="UTC", preferences={"quiet_hours": {"start": start, "end": end}})
    handle = await add(tidings, event(to, "late"))
    final = await finished(handle, ts_env)
    assert final.notification is not None and final.notification.phase is Phase.delivered
    assert any("quiet hours" in e.message for e in final.notification.events)


async def test_reschedule_moves_the_window_end(
    tidings: TidingsClient, server_now: datetime, ts_env: WorkflowEnvironment
) -> None:
    to = someone()
    handle = await add(tidings, event(to, "a"))
    await collecting(handle, 1)
    later = server_now + timedelta(hours=3)
    assert (await handle.reschedule(later)).accepted
    assert (await handle.status()).closes_at == later
    assert (await finished(handle, ts_env)).notification is not None


async def test_send_refuses_a_digest_request_and_bad_digests_are_refused(tidings: TidingsClient) -> None:
    import pytest

    with pytest.raises(InvalidRequestError, match="add_to_digest"):
        await tidings.send(event(someone(), "x"))
    with pytest.raises(InvalidRequestError, match="needs max_window"):
        await tidings.add_to_digest(event(someone(), "x", mode="sliding"))
    with pytest.raises(InvalidRequestError, match=r"digest item is .* bytes"):
        big = event(someone(), "x")
        big["content"]["body"] = "x" * 3000
        await tidings.add_to_digest(big)


async def test_input_from_another_client_that_does_not_validate_ends_failed(tidings: TidingsClient) -> None:
    handle = await tidings.client.start_workflow(
        "DigestWorkflow",
        {
            "recipient_id": "u1",
            "digest": {"key": "k", "mode": "sliding", "window": "PT1M"},
            "channels": ["email"],
        },
        id=f"digest-foreign-{uuid.uuid4().hex[:6]}~k",
        task_queue=tidings.task_queue,
        start_signal="add_item",
        start_signal_args=[{"id": "e1~u1", "title": "hello"}],
    )
    state = DigestState.model_validate(await handle.result())
    assert state.phase is DigestPhase.failed
    assert state.reason is not None and "needs max_window" in state.reason


async def test_a_cancel_reaches_the_digest_notification_while_it_waits_for_quiet_hours(
    tidings: TidingsClient, server_now: datetime, ts_env: WorkflowEnvironment
) -> None:
    start = (server_now - timedelta(minutes=5)).strftime("%H:%M")
    end = (server_now + timedelta(hours=3)).strftime("%H:%M")
    to = someone(timezone="UTC", preferences={"quiet_hours": {"start": start, "end": end}})
    handle = await add(tidings, event(to, "late", window="PT1M"))
    await collecting(handle, 1)
    await ts_env.sleep(timedelta(minutes=2))
    for _ in range(200):
        state = await handle.status()
        if state.phase is DigestPhase.sending and state.notification_id:
            child = await tidings.status(state.notification_id)
            if child.phase is Phase.waiting_quiet_hours:
                break
        await _pause()
    outcome = await handle.cancel("not tonight")
    assert outcome.accepted, outcome
    final = await finished(handle, ts_env)
    assert final.notification is not None and final.notification.phase is Phase.cancelled
    assert final.notification.reason == "not tonight"
