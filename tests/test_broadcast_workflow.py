"""BroadcastWorkflow on the time-skipping server: per-recipient semantics in batches, one POST per
delivery id, progress, idempotency, pause/resume/cancel, rate, continue-as-new."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus

from tidings.activities.broadcast import cancel_deferred_notifications, recipient_workflow_id
from tidings.activities.store.base import Store
from tidings.models import (
    Channel,
    Destination,
    NotificationState,
    Phase,
    Preferences,
    Priority,
    QuietHours,
    Recipient,
    delivery_id_for,
)
from tidings.models.broadcasts import MAX_RATE, BroadcastPhase, BroadcastProgress, OutcomeStatus, Topic
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.starters.broadcasts import BroadcastNotFoundError, InvalidBroadcastError
from tidings.starters.client import TidingsClient
from tidings.workflows import broadcast as broadcast_workflow
from tidings.workflows.broadcast import check_rate


def request(broadcast_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": broadcast_id,
        "channels": ["webhook"],
        "content": {"title": "Release 2.0", "body": "What is new"},
        **extra,
    }


async def subscribers(store: Store, endpoint: HttpEndpoint, count: int, topic: str = "news") -> list[str]:
    ids = [f"user-{i:03d}" for i in range(count)]
    for i in ids:
        await store.put(Recipient(id=i, webhook_url=f"{endpoint.url}/hooks/{i}"))
    await store.broadcasts.create_topic(Topic(key=topic))
    await store.broadcasts.subscribe(topic, ids)
    return ids


def posts_by_delivery(endpoint: HttpEndpoint) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in endpoint.requests)


async def test_topic_broadcast_honours_each_recipients_preferences(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint
) -> None:
    ids = await subscribers(store, http_endpoint, 23)
    b = store.broadcasts
    await b.set_topic_opt_out("news", "user-001")  # topic opt-out: skipped
    await store.set_preferences("user-002", Preferences(opted_out_channels={Channel.webhook}))
    await store.set_preferences("user-003", Preferences(opted_out_categories={"product"}))
    await b.subscribe("news", ["ghost"])  # not in the subscriber store: failed
    handle = await tidings.broadcast(
        request("rel-1", topic="news", category="product", batch_size=5, window=2), store
    )
    assert not handle.existing
    progress = await handle.result()
    assert progress.phase is BroadcastPhase.completed
    assert (progress.total, progress.sent, progress.skipped, progress.failed) == (24, 20, 3, 1)
    assert progress.pending == 0
    posts = posts_by_delivery(http_endpoint)
    sent_to = [i for i in ids if i not in ("user-001", "user-002", "user-003")]
    expected = {
        delivery_id_for(
            recipient_workflow_id("rel-1", i),
            Destination(
                channel=Channel.webhook, provider="webhook", address=f"{http_endpoint.url}/hooks/{i}"
            ),
        )
        for i in sent_to
    }
    assert set(posts) == expected and set(posts.values()) == {1}
    skipped = await b.outcome("rel-1", "user-001")
    assert (
        skipped is not None
        and skipped.status is OutcomeStatus.skipped
        and "topic 'news'" in (skipped.reason or "")
    )
    ghost = await b.outcome("rel-1", "ghost")
    assert (
        ghost is not None
        and ghost.status is OutcomeStatus.failed
        and "unknown recipient" in (ghost.reason or "")
    )
    sent = await b.outcome("rel-1", "user-010")
    assert sent is not None and sent.status is OutcomeStatus.sent and len(sent.delivery_ids) == 1
    assert [o.recipient_id for o in await b.list_outcomes("rel-1", OutcomeStatus.failed)] == ["ghost"]


async def test_the_same_id_twice_sends_once(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint
) -> None:
    ids = await subscribers(store, http_endpoint, 6)
    first = await tidings.broadcast(request("twice", recipients=ids[:4]), store)
    await first.result()
    again = await tidings.broadcast(request("twice", recipients=ids), store)
    assert again.existing
    assert (await again.progress()).sent == 4
    assert len(http_endpoint.requests) == 4
    with pytest.raises(InvalidBroadcastError, match="needs the store"):
        await tidings.broadcast(request("no-store", recipients=ids))
    with pytest.raises(InvalidBroadcastError, match="exactly one"):
        await tidings.broadcast(request("neither"))
    escalating = [{"channel": "webhook", "fallback": ["email"], "escalate_after": {"webhook": "PT1H"}}]
    with pytest.raises(InvalidBroadcastError, match="escalate_after needs a workflow per recipient"):
        await tidings.broadcast(request("escalate", topic="news", channels=escalating))


async def test_critical_priority_and_fallbacks(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint, smtp_sink: object
) -> None:
    await store.put(
        Recipient(
            id="opted",
            webhook_url=f"{http_endpoint.url}/hooks/opted",
            preferences=Preferences(opted_out_channels={Channel.webhook}),
        )
    )
    await store.put(
        Recipient(id="gone", webhook_url=f"{http_endpoint.url}/hooks/gone", email="gone@example.com")
    )
    http_endpoint.answer(410)  # the first POST (only "gone" is posted before "opted"? order by id)
    handle = await tidings.broadcast(
        request(
            "fallback",
            recipients=["gone"],
            channels=[{"channel": "webhook", "fallback": ["email"]}],
        ),
        store,
    )
    progress = await handle.result()
    assert progress.sent == 1
    gone = await store.get("gone")
    assert gone is not None and gone.webhook_disabled  # endpoint disabled after 410, email used
    critical = await tidings.broadcast(
        request("crit", recipients=["opted"], priority=Priority.critical.value), store
    )
    assert (await critical.result()).sent == 1


async def test_pause_resume_rate_and_cancel(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint
) -> None:
    ids = await subscribers(store, http_endpoint, 40)
    handle = await tidings.broadcast(request("ctl", topic="news", batch_size=4, window=1, rate=4), store)
    await _until(lambda: len(http_endpoint.requests) > 0)
    assert (await handle.pause()).accepted
    await asyncio.sleep(2.5)  # the running batch (4 recipients at 4/s) finishes
    paused = len(http_endpoint.requests)
    assert paused <= 8
    await asyncio.sleep(1.5)
    assert len(http_endpoint.requests) == paused
    progress = await handle.progress()
    assert progress.phase is BroadcastPhase.paused and progress.pending > 0
    refused = await handle.set_rate(-1)
    assert not refused.accepted and "above 0" in (refused.reason or "")
    assert (await handle.set_rate(40)).accepted
    assert (await handle.resume()).accepted
    await _until(lambda: len(http_endpoint.requests) >= paused + 8)
    assert (await handle.cancel("wrong audience")).accepted
    final = await handle.result()
    assert final.phase is BroadcastPhase.cancelled and final.reason == "wrong audience"
    assert 0 < final.sent < len(ids)
    assert final.sent == len(http_endpoint.requests)
    assert set(posts_by_delivery(http_endpoint).values()) == {1}
    with pytest.raises(BroadcastNotFoundError, match="may have finished"):
        await handle.pause()


async def test_continue_as_new_keeps_counting(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broadcast_workflow, "MAX_BATCHES_PER_RUN", 2)
    await subscribers(store, http_endpoint, 25)
    handle = await tidings.broadcast(request("can", topic="news", batch_size=3, window=2), store)
    progress = await handle.result()
    assert (progress.total, progress.sent, progress.pending) == (25, 25, 0)
    assert progress.batches == 9
    assert set(posts_by_delivery(http_endpoint).values()) == {1} and len(http_endpoint.requests) == 25
    latest = await tidings.client.get_workflow_handle(handle.workflow_id).describe()
    assert latest.status is WorkflowExecutionStatus.COMPLETED
    first_run_id = latest.raw_description.workflow_execution_info.first_run_id
    assert first_run_id and first_run_id != latest.run_id
    first = tidings.client.get_workflow_handle(handle.workflow_id, run_id=first_run_id)
    first_history = await first.fetch_history()
    assert first_history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert len(first_history.events) < 60  # 2 batches of 3: bounded, whatever the audience


async def test_quiet_hours_defer_to_a_notification_workflow(
    tidings: TidingsClient, store: Store, http_endpoint: HttpEndpoint
) -> None:
    always_quiet = QuietHours(start=time(0, 0), end=time(23, 59))
    await store.put(
        Recipient(
            id="sleepy",
            webhook_url=f"{http_endpoint.url}/hooks/sleepy",
            timezone="UTC",
            preferences=Preferences(quiet_hours=always_quiet),
        )
    )
    await store.put(Recipient(id="awake", webhook_url=f"{http_endpoint.url}/hooks/awake"))
    handle = await tidings.broadcast(request("night", recipients=["awake", "sleepy"]), store)
    progress = await handle.result()
    assert (progress.sent, progress.deferred) == (1, 1)
    deferred = await store.broadcasts.outcome("night", "sleepy")
    assert deferred is not None and deferred.status is OutcomeStatus.deferred
    waiting = tidings.client.get_workflow_handle(recipient_workflow_id("night", "sleepy"))
    assert (await waiting.describe()).status is WorkflowExecutionStatus.RUNNING
    assert not [r for r in http_endpoint.requests if r.path.endswith("/sleepy")]
    # the broadcast finished; its deferred recipient still waits, and can still be cancelled
    assert await cancel_deferred_notifications(tidings.client, store, "night", "called off") == 1
    state = NotificationState.model_validate(await waiting.result())
    assert state.phase is Phase.cancelled and state.reason == "called off"


async def _until(condition: object, within: float = 30.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5)))
def test_a_rate_is_a_positive_number_up_to_the_limit(value: object) -> None:
    """`set_rate` (signal and update) takes any JSON value from any client: it is accepted exactly
    when it is None (unlimited) or a number in (0, MAX_RATE]; anything else is a clear ValueError."""
    ok = value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_RATE
    )
    if ok:
        assert check_rate(value) == (None if value is None else float(value))  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match="deliveries per second"):
            check_rate(value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs one argument"),
        (["release notes for everyone"], "invalid broadcast input"),
        ([{"id": "b-1", "channels": ["webhook"], "content": {"body": "x"}}], "audience"),
        (
            [{"id": "b-1", "audience": {"kind": "topic"}, "channels": ["pager"], "content": {"body": "x"}}],
            "channels",
        ),
    ],
)
async def test_input_from_another_client_that_does_not_validate_ends_failed(
    tidings: TidingsClient, args: list[object], message: str
) -> None:
    """A start from any client (a Go service, `temporal workflow start`) with bad input ends
    `failed` with the validation message, instead of failing its workflow task forever."""
    handle = await tidings.client.start_workflow(
        "BroadcastWorkflow",
        args=args,
        id=f"broadcast-raw-{uuid.uuid4().hex[:8]}",
        task_queue=tidings.task_queue,
        result_type=BroadcastProgress,
    )
    progress: BroadcastProgress = await asyncio.wait_for(handle.result(), 30)
    assert progress.phase is BroadcastPhase.failed
    assert progress.reason is not None and message in progress.reason
    assert progress.sent == 0 and progress.total == 0
