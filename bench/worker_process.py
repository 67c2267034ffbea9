"""The benchmark's workers in a process of their own, as production runs them.

`bench.notifications --worker-process` starts this module: it connects to the benchmark's dev
server and runs the Tidings worker and the baseline's worker until its standard input closes.
It also runs the baseline without the sandbox on `<baseline queue>-unsandboxed`, for reference.
It writes `ready` once they all poll, then `received <key> <time>` for every baseline activity, so
the parent can time the baseline (time.perf_counter is CLOCK_MONOTONIC, one clock per machine).
The parent reads this process's CPU time from /proc/<pid>/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.baseline import BaselineWorkflow
from tidings.activities.store.sqlite import SqliteStore
from tidings.codec import with_codec
from tidings.settings import Settings
from tidings.workers.worker import running_worker, workflow_runner


@activity.defn(name="bench_noop")
async def noop_reporting(key: str) -> None:
    """The baseline's no-op activity, telling the parent when it ran."""
    sys.stdout.write(f"received {key} {time.perf_counter()!r}\n")
    sys.stdout.flush()


async def main(
    address: str, tidings_queue: str, baseline_queue: str, workdir: Path, sdk_json_queue: str | None
) -> None:
    client = await Client.connect(address, data_converter=with_codec(None))
    settings = Settings.model_validate({"store": {"sqlite_path": workdir / "bench-worker.sqlite3"}})
    store = await SqliteStore.open(workdir / "bench-worker.sqlite3")
    baseline = Worker(
        client, task_queue=baseline_queue, workflows=[BaselineWorkflow], activities=[noop_reporting],
        workflow_runner=workflow_runner(), max_concurrent_activities=200,
    )  # fmt: skip
    # The same bare workflow without the sandbox, for reference (Tidings' workers run without it).
    unsandboxed = Worker(
        client, task_queue=f"{baseline_queue}-unsandboxed", workflows=[BaselineWorkflow],
        activities=[noop_reporting], workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_activities=200,
    )  # fmt: skip
    async with contextlib.AsyncExitStack() as workers:
        await workers.enter_async_context(baseline)
        await workers.enter_async_context(unsandboxed)
        await workers.enter_async_context(running_worker(client, settings, store, task_queue=tidings_queue))
        if sdk_json_queue:
            # The same worker writing payloads with the SDK's pydantic converter (every field).
            sdk_client = await Client.connect(address, data_converter=pydantic_data_converter)
            await workers.enter_async_context(
                running_worker(sdk_client, settings, store, task_queue=sdk_json_queue)
            )
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--tidings-queue", required=True)
    parser.add_argument("--baseline-queue", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--sdk-json-queue", default=None)
    args = parser.parse_args()
    asyncio.run(
        main(args.address, args.tidings_queue, args.baseline_queue, args.workdir, args.sdk_json_queue)
    )
