"""The cost of frequency caps per notification: the reservation in `prepare_notification`.

Runs, against one Temporal dev server, the same immediate webhook notification (inline recipient,
delivered by the real worker to a local HTTP endpoint) through two workers on one store:
- `plain`: no cap (prepared in the workflow itself: nothing is reserved, the store is not touched);
- `capped`: the recipient carries `frequency_caps: {webhook: ["10000/PT1H", "10000/P1D"]}`: every
  notification reserves its slot in the store (one write transaction under the recipient's lock),
  inside the `prepare_notification` local activity (no extra server round trip; one marker event).
Then one notification over its cap, to show what a `throttled` one costs (history events).
Per store backend (`--stores sqlite,postgres`), rounds alternate to share the noise; it prints
notifications/s, p50/p99 start-to-endpoint latency, history events and the capped/plain ratios.

    python -m bench.caps_bench [--count 300] [--concurrency 20] [--rounds 2] [--stores sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.arrivals import Arrivals
from bench.notifications import TEMPORAL, Figures, history_size, measure, open_bench_store
from tidings import search_attributes as sa
from tidings.models import Phase
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

CAPS = ["10000/PT1H", "10000/P1D"]


async def main(count: int, concurrency: int, rounds: int, workdir: Path, stores: list[str]) -> None:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
    )
    received = Arrivals()
    endpoint = await HttpEndpoint(
        on_request=lambda r: received.__setitem__(r.query.removeprefix("k="), r.received_at)
    ).start()
    settings = Settings.model_validate({"store": {"sqlite_path": workdir / "caps.sqlite3"}})
    results: dict[str, list[Figures]] = {}
    throttled_events: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(env.shutdown)
        cleanup.push_async_callback(endpoint.stop)
        contenders: list[tuple[str, Callable[[str], Awaitable[None]]]] = []
        for kind in stores:
            store = await open_bench_store(kind, workdir, cleanup)
            for name, caps in (("plain", None), ("capped", CAPS)):
                queue = f"caps-{name}-{kind}"
                await cleanup.enter_async_context(
                    running_worker(env.client, settings, store, task_queue=queue)
                )
                client = TidingsClient(env.client, task_queue=queue, eager_start=True)
                contenders.append((f"{name}-{kind}", _starter(client, endpoint.url, caps)))
            throttled_events[kind] = await _throttled_history(
                TidingsClient(env.client, task_queue=f"caps-capped-{kind}"), endpoint.url
            )
        for _ in range(rounds):
            for name, start in contenders:
                seconds, latencies = await measure(name, count, concurrency, start, received)
                last = next(k for k in reversed(list(received)) if k.startswith(name))
                events, _ = await history_size(env.client, f"notification-{last}~{last}")
                results.setdefault(name, []).append(Figures(name, count, seconds, latencies, events))
    report(results, throttled_events, count, concurrency, stores)


def _starter(client: TidingsClient, url: str, caps: list[str] | None) -> Callable[[str], Awaitable[None]]:
    preferences = {"frequency_caps": {"webhook": caps}} if caps else {}

    async def start(key: str) -> None:
        await client.send(
            {
                "id": key,
                "recipients": [{"id": key, "webhook_url": f"{url}/hook?k={key}", "preferences": preferences}],
                "channels": ["webhook"],
                "content": {"title": "bench"},
            }
        )

    return start


async def _throttled_history(client: TidingsClient, url: str) -> int:
    """History events of a notification that a cap stopped (a recipient with a cap of one a day)."""
    recipient = {"id": "over-cap", "webhook_url": f"{url}/hook?k=over-cap",
                 "preferences": {"frequency_caps": {"webhook": ["1/P1D"]}}}  # fmt: skip
    phases = []
    for i in range(2):
        [handle] = await client.send({"id": f"over-{i}", "recipients": [recipient], "channels": ["webhook"],
                                      "content": {"title": "bench"}})  # fmt: skip
        phases.append((await handle.result()).phase)
        if phases[-1] is Phase.throttled:
            return len((await client.client.get_workflow_handle(handle.workflow_id).fetch_history()).events)
    raise AssertionError(f"expected the second to be throttled, got {phases}")


def report(
    results: dict[str, list[Figures]],
    throttled: dict[str, int],
    count: int,
    concurrency: int,
    stores: list[str],
) -> None:
    def merged(name: str) -> Figures:
        runs = results[name]
        latencies = [x for r in runs for x in r.latencies]
        return Figures(
            name, sum(r.count for r in runs), sum(r.seconds for r in runs), latencies, runs[-1].history_events
        )

    print(
        f"{count} notifications x {len(next(iter(results.values())))} rounds each, concurrency {concurrency}"
    )
    print(f"{'':16} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'history events':>15}")
    for f in map(merged, results):
        print(f"{f.name:16} {f.rate:8.1f} {f.pct(0.5):8.1f} {f.pct(0.99):8.1f} {f.history_events:15d}")
    for kind in stores:
        p, c = merged(f"plain-{kind}"), merged(f"capped-{kind}")
        print(
            f"ratio capped/plain ({kind}): throughput {c.rate / p.rate:.2f}x, p50 latency "
            f"{c.pct(0.5) / p.pct(0.5):.2f}x, p99 latency {c.pct(0.99) / p.pct(0.99):.2f}x; "
            f"a throttled notification's history: {throttled[kind]} events"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    parser.add_argument("--stores", default="sqlite", help="comma-separated: sqlite, postgres")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.concurrency, args.rounds, args.workdir, args.stores.split(",")))
