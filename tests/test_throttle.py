"""Throttles and frequency caps through the real workflow, on both store backends.

The counters live in the store, so each test runs on SQLite and on PostgreSQL (`store` below is
parametrized; the conftest's `tidings` worker uses it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import settled_status
from tidings.activities.store.base import Store
from tidings.models import Phase
from tidings.settings import Settings
from tidings.starters.client import NotificationHandle, TidingsClient

Opener = Callable[..., Awaitable[Store]]


@pytest_asyncio.fixture
async def store(store_opener: Opener) -> AsyncIterator[Store]:
    yield await store_opener()


def capped(settings: Settings, **caps: Any) -> Settings:
    values = settings.model_dump()
    values["frequency_caps"] = caps
    return Settings.model_validate(values)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return capped(settings, in_app=["3/PT1H", "10/P1D"], policy="drop", category_policy={"digest": "defer"})


def request(to: str, **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": f"cap-{uuid.uuid4().hex[:10]}",
        "recipients": [{"id": to}],
        "channels": ["in_app"],
        "content": {"title": "Something happened"},
    }
    value.update(extra)
    return value


async def test_fifty_at_once_against_a_cap_of_three_deliver_exactly_three(
    tidings: TidingsClient, store: Store, ts_env: WorkflowEnvironment
) -> None:
    sent = await asyncio.gather(*(tidings.send(request("busy-user")) for _ in range(50)))
    # Nothing here waits on a timer: without skipping, the test server cannot jump ahead while
    # fifty local activities (which it does not see) queue on a loaded machine.
    with ts_env.auto_time_skipping_disabled():
        states = await asyncio.gather(*(handle.result() for [handle] in sent))
    phases = [s.phase for s in states]
    assert phases.count(Phase.delivered) == 3, phases
    assert phases.count(Phase.throttled) == 47, phases
    throttled = next(s for s in states if s.phase is Phase.throttled)
    assert throttled.reason is not None
    assert throttled.reason.startswith("frequency cap in_app 3/PT1H: 3 sent in the last PT1H")
    assert not throttled.destinations  # nothing was tried
    assert len(await store.inbox.list("busy-user", page_size=100)) == 3


async def test_critical_is_never_capped_nor_counted(tidings: TidingsClient, store: Store) -> None:
    for _ in range(3):
        [handle] = await tidings.send(request("alerted"))
        assert (await handle.result()).phase is Phase.delivered
    [handle] = await tidings.send(request("alerted", priority="critical"))
    assert (await handle.result()).phase is Phase.delivered
    [handle] = await tidings.send(request("alerted"))
    assert (await handle.result()).phase is Phase.throttled


async def test_a_throttle_allows_its_limit_per_key_and_window(tidings: TidingsClient) -> None:
    throttle = {"key": "login-alert", "limit": 1, "window": "PT1H"}
    [first] = await tidings.send(request("login-user", throttle=throttle, priority="critical"))
    assert (await first.result()).phase is Phase.delivered
    [second] = await tidings.send(request("login-user", throttle=throttle, priority="critical"))
    state = await second.result()
    assert state.phase is Phase.throttled
    assert state.reason == "throttle 'login-alert' (1 per PT1H): 1 sent in the last PT1H"
    other_key = {**throttle, "key": "password-changed"}
    [third] = await tidings.send(request("login-user", throttle=other_key, priority="critical"))
    assert (await third.result()).phase is Phase.delivered


async def test_a_recipients_caps_replace_the_default(tidings: TidingsClient) -> None:
    uncapped = {"id": "no-caps", "preferences": {"frequency_caps": {"in_app": []}}}
    for _ in range(4):
        [handle] = await tidings.send({**request("no-caps"), "recipients": [uncapped]})
        assert (await handle.result()).phase is Phase.delivered
    one_a_day = {"id": "strict", "preferences": {"frequency_caps": {"in_app": ["1/P1D"]}}}
    phases = []
    for _ in range(2):
        [handle] = await tidings.send({**request("strict"), "recipients": [one_a_day]})
        phases.append((await handle.result()).phase)
    assert phases == [Phase.delivered, Phase.throttled]


async def four_in_a_row(tidings: TidingsClient, to: str) -> list[NotificationHandle]:
    """Four notifications of category `digest` (policy `defer`), each past its first task."""
    handles = []
    for _ in range(4):
        [handle] = await tidings.send(request(to, category="digest"))
        handles.append(handle)
        await settled_status(handle)
    return handles


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
async def test_defer_waits_durably_for_the_next_slot(tidings: TidingsClient) -> None:
    """Category `digest` has policy `defer`: the fourth waits until the first leaves the hour."""
    handles = await four_in_a_row(tidings, "patient")
    waiting = await handles[3].status()
    assert waiting.phase is Phase.waiting_frequency_cap, waiting
    assert "waiting for the next slot" in waiting.events[-1].message
    states = [await h.result() for h in handles]
    assert [s.phase for s in states] == [Phase.delivered] * 4
    first_started, last_sent = states[0].started_at, states[3].finished_at
    assert first_started is not None and last_sent is not None
    assert last_sent - first_started >= timedelta(hours=1)


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
async def test_a_waiting_notification_can_be_cancelled(tidings: TidingsClient) -> None:
    handles = await four_in_a_row(tidings, "cancelling")
    outcome = await tidings.cancel(handles[3].notification_id, "not needed")
    assert outcome.accepted
    state = await handles[3].result()
    assert state.phase is Phase.cancelled and state.reason == "not needed"
