"""Digests are exact under concurrency: 200 events for one recipient and key, sent at once from
four client processes (each with its own connection) against a real Temporal dev server, end up
in exactly one digest with all 200, or with a cap of 150 in one digest of 150 and one of 50:
no item lost, none twice, never two partial digests for one window."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tidings.activities.store.base import Store
from tidings.models import NotificationInput
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

pytestmark = pytest.mark.e2e

SENDER = """
import asyncio, os, sys, time
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from tidings.starters.client import TidingsClient

async def main(target, task_queue, recipient, first, count, max_items, window, go_at):
    client = await Client.connect(target, data_converter=pydantic_data_converter)
    tidings = TidingsClient(client, task_queue=task_queue)
    await asyncio.sleep(max(0.0, go_at - time.time()))  # every process starts at the same moment
    async def one(i):
        await tidings.add_to_digest({
            "id": f"comment-{i}", "recipients": [{"id": recipient}], "channels": ["in_app"],
            "content": {"title": f"comment {i}"},
            "digest": {"key": "comments:post-9", "window": window, "max_items": max_items},
        })
    await asyncio.gather(*(one(i) for i in range(first, first + count)))

a = sys.argv[1:]
asyncio.run(main(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6], float(a[7])))
# skip interpreter teardown, as `tidings` does: the SDK's native threads can crash it (sdk-python #300)
sys.stdout.flush()
os._exit(0)
"""


@pytest_asyncio.fixture
async def live(
    dev_env: WorkflowEnvironment, settings: Settings, store: Store
) -> AsyncIterator[TidingsClient]:
    task_queue = f"digest-{uuid.uuid4().hex[:8]}"
    async with running_worker(dev_env.client, settings, store, task_queue=task_queue):
        yield TidingsClient(dev_env.client, task_queue=task_queue)


async def send_from_four_processes(
    dev_env: WorkflowEnvironment, live: TidingsClient, recipient: str, max_items: int, window: str
) -> None:
    target = dev_env.client.service_client.config.target_host
    go_at = time.time() + 3.0
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            target,
            live.task_queue,
            recipient,
            str(50 * p),
            "50",
            str(max_items),
            window,
            str(go_at),
            stderr=asyncio.subprocess.PIPE,
        )
        for p in range(4)
    ]
    for process in processes:
        _, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()


async def digests_sent(live: TidingsClient, store: Store, recipient: str, expected: int) -> list[list[str]]:
    """The item ids of each digest the recipient got, once `expected` digests arrived."""
    handle = live.digest(recipient, "comments:post-9")
    workflow = live.client.get_workflow_handle(handle.workflow_id)
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        messages = await store.inbox.list(recipient, page_size=100)
        done = (await workflow.describe()).status is WorkflowExecutionStatus.COMPLETED
        if len(messages) >= expected and done:
            break
        assert asyncio.get_running_loop().time() < deadline, f"{len(messages)} digests so far"
        await asyncio.sleep(0.2)
    batches = []
    for message in sorted(messages, key=lambda m: m.created_at):
        history = await live.client.get_workflow_handle(message.workflow_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        [notification] = await live.client.data_converter.decode(started.input.payloads, [NotificationInput])
        items: list[dict[str, Any]] = notification.content.variables["items"]
        assert notification.content.variables["count"] == len(items)
        batches.append([item["id"] for item in items])
    return batches


async def test_two_hundred_at_once_from_four_processes_make_one_digest(
    dev_env: WorkflowEnvironment, live: TidingsClient, store: Store
) -> None:
    recipient = f"busy-{uuid.uuid4().hex[:6]}"
    # the window is long: only the 200th item can close it, so a lost item fails the test
    await send_from_four_processes(dev_env, live, recipient, max_items=200, window="PT1H")
    [batch] = await digests_sent(live, store, recipient, expected=1)
    assert sorted(batch) == sorted(f"comment-{i}~{recipient}" for i in range(200))
    [message] = await store.inbox.list(recipient)
    assert message.title == "200 new updates"


async def test_a_cap_of_150_makes_one_digest_of_150_and_the_next_of_50(
    dev_env: WorkflowEnvironment, live: TidingsClient, store: Store
) -> None:
    recipient = f"busier-{uuid.uuid4().hex[:6]}"
    await send_from_four_processes(dev_env, live, recipient, max_items=150, window="PT10S")
    batches = await digests_sent(live, store, recipient, expected=2)
    assert [len(b) for b in batches] == [150, 50]
    every = [item for batch in batches for item in batch]
    assert sorted(every) == sorted(f"comment-{i}~{recipient}" for i in range(200))  # none lost, none twice
