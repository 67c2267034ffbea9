"""kill -9 of the worker mid-broadcast: the only re-sends are the deliveries that were in flight at
the kill, each with the same delivery id (`webhook-id`); every other recipient gets exactly one POST.

The worker runs in a subprocess (`tidings worker`) against a dev server; the webhook sink runs here
and counts POSTs per `webhook-id`; the store is one SQLite file both processes open.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Recipient
from tidings.models.broadcasts import BroadcastPhase, OutcomeStatus, Topic
from tidings.sandbox.http_endpoint import HttpEndpoint, ScriptedResponse
from tidings.starters.client import TidingsClient

AUDIENCE = 400
TIDINGS = Path(sys.executable).parent / "tidings"


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [str(TIDINGS), "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


async def test_kill_9_mid_broadcast_resends_only_what_was_in_flight(
    dev_env: WorkflowEnvironment, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    sink = await HttpEndpoint().start()
    # Each POST takes a moment to answer, so that some are in flight when the worker dies.
    sink.answer(*[ScriptedResponse(200, delay=0.05) for _ in range(AUDIENCE * 2)])
    store = await SqliteStore.open(tmp_path / "store.sqlite3")
    try:
        ids = [f"user-{i:04d}" for i in range(AUDIENCE)]
        for i in ids:
            await store.put(Recipient(id=i, webhook_url=f"{sink.url}/hooks/{i}"))
        await store.broadcasts.create_topic(Topic(key="all"))
        await store.broadcasts.subscribe("all", ids)
        task_queue = f"kill-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
            "TIDINGS_TEMPORAL__TASK_QUEUE": task_queue,
            "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
            "TIDINGS_WEBHOOK__TIMEOUT": "10",
            "TIDINGS_WORKER__GRACEFUL_SHUTDOWN_TIMEOUT": "PT1S",
        }
        workers.append(WorkerProcess(env, tmp_path / "worker.log"))
        tidings = TidingsClient(dev_env.client, task_queue=task_queue)
        handle = await tidings.broadcast(
            {
                "id": "kill-test",
                "topic": "all",
                "channels": ["webhook"],
                "content": {"title": "Durable"},
                "batch_size": 50,
                "window": 2,
                "rate": 80,
            }
        )
        await _until(lambda: len(sink.requests) >= AUDIENCE // 3, within=120)
        workers[0].kill()
        posted_at_kill = len(sink.requests)
        in_flight = {
            o.recipient_id
            for o in await store.broadcasts.list_outcomes("kill-test", OutcomeStatus.sending, limit=1000)
        }
        assert posted_at_kill < AUDIENCE, "the broadcast finished before the kill"
        assert in_flight, "nothing was in flight at the kill"
        workers.append(WorkerProcess(env, tmp_path / "worker.log"))
        progress = await asyncio.wait_for(handle.result(), timeout=240)

        assert progress.phase is BroadcastPhase.completed
        assert (progress.total, progress.sent, progress.failed, progress.pending) == (
            AUDIENCE,
            AUDIENCE,
            0,
            0,
        )
        posts = Counter(r.headers["webhook-id"] for r in sink.requests)
        by_recipient = Counter(r.path.rsplit("/", 1)[-1] for r in sink.requests)
        assert set(by_recipient) == set(ids), "every recipient got the broadcast"
        repeated = {recipient for recipient, n in by_recipient.items() if n > 1}
        assert repeated <= in_flight, "only deliveries in flight at the kill were sent again"
        print(f"posted at kill {posted_at_kill}, in flight {len(in_flight)}, repeated {len(repeated)}")
        assert max(by_recipient.values()) <= 2
        assert len(posts) == AUDIENCE, "a repeated delivery carries the same webhook-id"
        assert all(
            o.status is OutcomeStatus.sent
            for o in await store.broadcasts.list_outcomes("kill-test", limit=1000)
        )
    finally:
        await store.aclose()
        await sink.stop()


async def _until(condition: object, within: float) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
