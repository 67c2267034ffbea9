"""The bare baseline for bench/notifications.py: a workflow that runs one no-op activity."""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow

from bench.arrivals import Arrivals

RECEIVED = Arrivals()


@activity.defn(name="bench_noop")
async def noop(key: str) -> None:
    RECEIVED[key] = time.perf_counter()


@workflow.defn(name="BaselineWorkflow")
class BaselineWorkflow:
    @workflow.run
    async def run(self, key: str) -> None:
        await workflow.execute_activity(noop, key, start_to_close_timeout=timedelta(seconds=30))
