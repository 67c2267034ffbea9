"""The HTTP API's costs: send throughput against `TidingsClient.send`, inbox listing latency with
10,000 messages, and SSE fan-out to 500 open streams.

- send: the same immediate in-app request, N times at a given concurrency, once through
  `TidingsClient.send` and once as `POST /v1/notifications` (API key checked, body validated,
  httpx over loopback to uvicorn) against one Temporal dev server; rounds alternate. Starting
  the workflow is what is timed (no worker runs: both sides pay the same for delivery).
- inbox: one subscriber with 10,000 messages (a tenth unread); every page of 20, unread first,
  walked by cursor through `GET /v1/inbox/messages`; p50/p99 per request, SQLite and PostgreSQL.
- fan-out: 500 `GET /v1/inbox/stream` connections for one subscriber; time from the store write
  (as a worker makes it) until the last stream has its `counts` event, SQLite (trigger + 0.2 s
  poll) and PostgreSQL (LISTEN/NOTIFY). The 500 clients run in the same process as the server.

    python -m bench.api [--count 300] [--concurrency 20] [--rounds 2] [--messages 10000] [--streams 500]
                        [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from sys import executable
from typing import Any

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tidings import search_attributes as sa
from tidings.activities.store.base import InboxMessage, Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.api.app import context_of, create_app
from tidings.api.keys import Scope, new_key
from tidings.links import Purpose, expiring_token
from tidings.sandbox.asgi_server import UvicornServer
from tidings.settings import Settings
from tidings.starters.client import TidingsClient

TEMPORAL = Path(executable).parent / "temporal"
TOKEN_KEY = "bench-subscriber-token-key-0123456789abcdef"
REQUEST = {
    "recipients": [{"id": "bench-user"}],
    "channels": [{"channel": "in_app"}],
    "content": {"title": "Benchmark", "body": "one of many"},
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def timed_many(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with gate:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(count)))
    return count / (time.perf_counter() - start)


def bench_settings(workdir: Path) -> Settings:
    return Settings.model_validate(
        {
            "store": {"sqlite_path": workdir / "bench.sqlite3"},
            "api": {
                "subscriber_token_key": TOKEN_KEY,
                "rate_limit_per_second": 1e6,
                "rate_limit_burst": 10**6,
            },
        }
    )


@contextlib.asynccontextmanager
async def served(settings: Settings, store: Store, client: TidingsClient) -> Any:
    app = create_app(settings, store, client)
    server = UvicornServer(app)
    await server.start()
    try:
        yield server
    finally:
        await context_of(app).hub.aclose()
        await server.stop()


async def send_throughput(args: argparse.Namespace, workdir: Path) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
    )
    settings = bench_settings(workdir)
    store = await SqliteStore.open(workdir / "send.sqlite3")
    try:
        tidings = TidingsClient(env.client, task_queue="bench-api-no-worker")
        text, record = new_key("bench", [Scope.send])
        await store.api_keys.create(record)
        async with served(settings, store, tidings) as server:
            limits = httpx.Limits(
                max_connections=args.concurrency, max_keepalive_connections=args.concurrency
            )
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http:
                headers = {"Authorization": f"Bearer {text}"}

                async def direct(i: int) -> None:
                    await tidings.send({**REQUEST, "id": f"d-{uuid.uuid4().hex}"})

                async def over_http(i: int) -> None:
                    response = await http.post(
                        "/v1/notifications",
                        json=REQUEST,
                        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                    )
                    assert response.status_code == 202, response.text

                rates: dict[str, list[float]] = {"direct": [], "api": []}
                await timed_many(20, 5, direct)  # warm up both paths
                await timed_many(20, 5, over_http)
                for _ in range(args.rounds):
                    rates["direct"].append(await timed_many(args.count, args.concurrency, direct))
                    rates["api"].append(await timed_many(args.count, args.concurrency, over_http))
        d, a = statistics.mean(rates["direct"]), statistics.mean(rates["api"])
        print(f"send ({args.count} x {args.rounds} rounds, concurrency {args.concurrency}):")
        print(f"  TidingsClient.send      {d:8.1f} notifications/s")
        print(f"  POST /v1/notifications  {a:8.1f} notifications/s")
        print(f"  ratio API / direct      {a / d:8.2f}")
    finally:
        await store.aclose()
        await env.shutdown()


async def open_stores(
    kind: str, workdir: Path, cleanup: contextlib.AsyncExitStack, count: int = 1
) -> list[Store]:
    """`count` store objects on one new database (as several processes would open it)."""
    stores: list[Store] = []
    if kind == "sqlite":
        path = workdir / f"{uuid.uuid4().hex[:6]}.sqlite3"
        for _ in range(count):
            stores.append(await SqliteStore.open(path))
    else:
        from tests.postgres_fixture import start_server

        server = start_server()
        cleanup.callback(server.remove)
        dsn = await server.create_database()
        for _ in range(count):
            stores.append(await PostgresStore.open(dsn, min_size=5, max_size=10))
    for store in stores:
        cleanup.push_async_callback(store.aclose)
    return stores


def messages(recipient_id: str, count: int) -> list[InboxMessage]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        InboxMessage(
            delivery_id=f"{recipient_id}-{i:06d}",
            recipient_id=recipient_id,
            notification_id=f"n{i}",
            workflow_id=f"notification-n{i}",
            category="orders" if i % 3 else "comments",
            title=f"Message {i}",
            body="A line of text as an inbox shows it.",
            created_at=start + timedelta(seconds=i),
            read_at=None if i % 10 == 0 else start + timedelta(days=1),
        )
        for i in range(count)
    ]


async def inbox_latency(kind: str, args: argparse.Namespace, workdir: Path) -> None:
    async with contextlib.AsyncExitStack() as cleanup:
        [store] = await open_stores(kind, workdir, cleanup)
        batch = messages("heavy", args.messages)
        for i in range(0, len(batch), 1000):
            await store.inbox.import_messages(batch[i : i + 1000])
        settings = bench_settings(workdir)
        token = expiring_token(TOKEN_KEY.encode(), Purpose.subscriber, "heavy", timedelta(hours=1))[0]
        async with served(settings, store, TidingsClient(None, task_queue="x")) as server:  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                headers = {"Authorization": f"Bearer {token}"}
                latencies: list[float] = []
                first_pages: list[float] = []
                for walk in range(2):
                    cursor: str | None = None
                    pages = 0
                    while True:
                        params = {"limit": "20", **({"cursor": cursor} if cursor else {})}
                        t0 = time.perf_counter()
                        response = await http.get("/v1/inbox/messages", params=params, headers=headers)
                        elapsed = time.perf_counter() - t0
                        assert response.status_code == 200, response.text
                        if walk:  # the first walk warms caches and prepared statements
                            latencies.append(elapsed)
                            if pages == 0:
                                first_pages.append(elapsed)
                        pages += 1
                        cursor = response.json()["next_cursor"]
                        if cursor is None:
                            break
                for _ in range(50):
                    t0 = time.perf_counter()
                    await http.get("/v1/inbox/messages", params={"limit": "20"}, headers=headers)
                    first_pages.append(time.perf_counter() - t0)
        print(
            f"inbox list, {kind}, {args.messages} messages, {pages} pages of 20 (unread first, by cursor):"
            f" p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms;"
            f" first page p50 {pct(first_pages, 0.5):.1f} ms"
        )


async def fan_out(kind: str, args: argparse.Namespace, workdir: Path) -> None:
    async with contextlib.AsyncExitStack() as cleanup:
        store, writer = await open_stores(kind, workdir, cleanup, 2)  # the API's, and a worker's
        settings = bench_settings(workdir)
        token = expiring_token(TOKEN_KEY.encode(), Purpose.subscriber, "crowd", timedelta(hours=1))[0]
        async with served(settings, store, TidingsClient(None, task_queue="x")) as server:  # type: ignore[arg-type]
            limits = httpx.Limits(
                max_connections=args.streams + 10, max_keepalive_connections=args.streams + 10
            )
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as http:
                ready = asyncio.Semaphore(0)
                got: list[float] = []

                async def listen() -> None:
                    async with http.stream("GET", "/v1/inbox/stream", params={"token": token}) as response:
                        events = 0
                        async for line in response.aiter_lines():
                            if line.startswith("data: "):
                                events += 1
                                if events == 1:
                                    ready.release()
                                else:
                                    got.append(time.perf_counter())
                                    return

                tasks = [asyncio.create_task(listen()) for _ in range(args.streams)]
                for _ in range(args.streams):
                    await ready.acquire()
                await asyncio.sleep(0.5)
                t0 = time.perf_counter()
                await writer.inbox.add(messages("crowd", 1)[0])
                await asyncio.wait_for(asyncio.gather(*tasks), 60)
        firsts = sorted(t - t0 for t in got)
        print(
            f"SSE fan-out, {kind}: one new message reached {len(got)} open streams;"
            f" first after {firsts[0] * 1000:.0f} ms, median {pct(firsts, 0.5):.0f} ms,"
            f" last after {firsts[-1] * 1000:.0f} ms"
        )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-api-") as folder:
        workdir = Path(folder)
        await send_throughput(args, workdir)
        for kind in args.stores:
            await inbox_latency(kind, args, workdir)
        for kind in args.stores:
            await fan_out(kind, args, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--stores", default="sqlite,postgres", type=lambda s: [k for k in s.split(",") if k])
    asyncio.run(main(parser.parse_args()))
