"""Prometheus metrics scraped from a worker after real notifications on a real Temporal dev server.

The worker's client runs on a Temporal runtime serving Prometheus on a free port (as
`[metrics] prometheus_address` sets up for `tidings worker`); the test sends notifications with
known outcomes to local providers (SMTP sink, HTTP endpoint, FCM stand-in) and checks that the
scraped counts are exactly what happened, with bounded labels only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR, StartedWorkflows, assert_histories_replay
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Phase, Recipient
from tidings.sandbox.fcm import FcmSandbox
from tidings.sandbox.http_endpoint import HttpEndpoint, ScriptedResponse
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import FcmSettings, Settings
from tidings.starters.client import TidingsClient
from tidings.telemetry.metrics import prometheus_runtime
from tidings.workers.worker import running_worker

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SDK_METRICS_ON_DASHBOARD = (
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_activity_execution_failed_total",
    "temporal_worker_task_slots_available",
    "temporal_workflow_completed_total",
)
"""The SDK's runtime metrics deploy/grafana/tidings-dashboard.json queries: all in a real scrape."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def metrics_address() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def runtime(metrics_address: str) -> Runtime:
    return prometheus_runtime(metrics_address)


async def scrape(address: str) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics", timeout=10)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def delta(before: Samples, after: Samples) -> Callable[..., float]:
    def change(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    return change


def request(
    notification_id: str, to: dict[str, Any] | str, channels: list[Any], **extra: Any
) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": [to],
        "channels": channels,
        "content": {"title": "Your order", "body": "shipped"},
        **extra,
    }


async def test_scraped_counts_match_what_happened(
    dev_env: WorkflowEnvironment,
    runtime: Runtime,
    metrics_address: str,
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    http_endpoint: HttpEndpoint,
    fcm_sandbox: tuple[FcmSandbox, FcmSettings],
) -> None:
    started = StartedWorkflows()
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=[started],
    )
    fcm, fcm_settings = fcm_sandbox
    configured = settings.model_copy(update={"fcm": fcm_settings})
    await store.put(
        Recipient.model_validate(
            {
                "id": "phone-user",
                "email": "phone-user@example.com",
                "devices": [{"id": "pixel", "platform": "fcm", "token": "fcm-pixel"}],
            }
        )
    )
    fcm.fail("fcm-pixel", 404, "UNREGISTERED")
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:6]
    ada = {"id": "user-42", "email": "ada@example.com"}
    hooked = {"id": "user-43", "email": "grace@example.com", "webhook_url": f"{http_endpoint.url}/hook"}
    before = await scrape(metrics_address)
    async with running_worker(client, configured, store, task_queue=queue):
        tidings = TidingsClient(client, task_queue=queue)
        # 1. email sent at the first attempt
        [plain] = await tidings.send(request(f"m-email-{run}", ada, ["email"]))
        assert (await plain.result()).phase is Phase.delivered
        # 2. webhook refused for good (400), falls back to email, which is sent
        http_endpoint.answer(400)
        [fallback] = await tidings.send(
            request(f"m-fallback-{run}", hooked, [{"channel": "webhook", "fallback": ["email"]}])
        )
        assert (await fallback.result()).phase is Phase.delivered
        # 3. webhook failing (503) until its 2 attempts are used up
        http_endpoint.answer(503, 503)
        retry = {"webhook": {"maximum_attempts": 2, "initial_interval": "PT0.1S"}}
        [exhausted] = await tidings.send(request(f"m-exhausted-{run}", hooked, ["webhook"], retry=retry))
        assert (await exhausted.result()).phase is Phase.failed
        # 4. webhook still throttling (429) when its 2 attempts are used up
        http_endpoint.answer(*[ScriptedResponse(429, {"Retry-After": "0"})] * 2)
        [throttled] = await tidings.send(request(f"m-throttled-{run}", hooked, ["webhook"], retry=retry))
        assert (await throttled.result()).phase is Phase.failed
        # 5. email unread within a second: escalates to the webhook, which accepts
        http_endpoint.answer(200)
        steps = [{"channel": "email", "fallback": ["webhook"], "escalate_after": {"email": "PT1S"}}]
        [escalated] = await tidings.send(request(f"m-escalate-{run}", hooked, steps))
        assert (await escalated.result()).phase is Phase.delivered
        # 6. the only device is gone: deactivated, push falls back to email
        [dead] = await tidings.send(
            request(f"m-push-{run}", "phone-user", [{"channel": "push", "fallback": ["email"]}])
        )
        assert (await dead.result()).phase is Phase.delivered

    change = delta(before, await scrape(metrics_address))
    deliveries = "tidings_deliveries_total"
    assert change(deliveries, channel="email", provider="smtp", outcome="sent") == 4
    assert change(deliveries, channel="webhook", provider="webhook", outcome="sent") == 1
    assert change(deliveries, channel="webhook", provider="webhook", outcome="failed-permanent") == 1
    assert change(deliveries, channel="webhook", provider="webhook", outcome="failed-exhausted") == 1
    assert change(deliveries, channel="webhook", provider="webhook", outcome="throttled") == 1
    assert change(deliveries, channel="push", provider="fcm", outcome="failed-permanent") == 1
    assert change(deliveries) == 9

    attempts = "tidings_delivery_attempts"
    assert change(f"{attempts}_count") == 9
    assert change(f"{attempts}_sum", outcome="failed-exhausted") == 2
    assert change(f"{attempts}_sum", outcome="throttled") == 2
    assert change(f"{attempts}_sum", outcome="sent") == 5
    assert change(f"{attempts}_bucket", outcome="sent", le="1") == 5

    latency = "tidings_delivery_latency_seconds"
    assert change(f"{latency}_count", channel="email", provider="smtp") == 4
    assert change(f"{latency}_count", channel="webhook", provider="webhook") == 1
    assert 0 < change(f"{latency}_sum") < 60

    responses = "tidings_provider_responses_total"
    assert change(responses, channel="webhook", result="throttled") == 2
    assert change(responses, channel="webhook", result="transient") == 2
    assert change(responses, channel="webhook", result="permanent") == 1
    assert change(responses, result="accepted") == 5

    assert change("tidings_fallbacks_total", from_channel="webhook", to_channel="email") == 1
    assert change("tidings_fallbacks_total", from_channel="push", to_channel="email") == 1
    assert change("tidings_fallbacks_total") == 2
    assert change("tidings_escalations_total", from_channel="email", to_channel="webhook") == 1
    assert change("tidings_escalations_total") == 1
    assert change("tidings_devices_deactivated_total", channel="push", provider="fcm") == 1
    assert change("tidings_notifications_total", phase="delivered") == 4
    assert change("tidings_notifications_total", phase="failed") == 2
    assert change("tidings_notifications_total") == 6

    after = await scrape(metrics_address)
    # the SDK's own runtime metrics are on the same endpoint
    assert total(after, "temporal_workflow_completed_total", task_queue=queue) >= 6
    assert total(after, "temporal_activity_execution_latency_count", task_queue=queue) >= 1
    scraped = {name for name, _ in after}
    assert set(SDK_METRICS_ON_DASHBOARD) <= scraped, set(SDK_METRICS_ON_DASHBOARD) - scraped
    # bounded labels only: no recipient id, address, notification or workflow id anywhere
    for (name, labels), _ in after.items():
        if name.startswith("tidings_"):
            assert {k for k, _ in labels} <= {
                "channel", "provider", "outcome", "result", "from_channel", "to_channel", "phase",
                "le", "namespace", "task_queue", "workflow_type", "activity_type", "service_name",
            }, name  # fmt: skip
            for _, value in labels:
                assert "user-" not in value and "@" not in value and run not in value, (name, value)
    await assert_histories_replay(client, started.ids)


async def test_replay_records_no_metrics(
    dev_env: WorkflowEnvironment,
    runtime: Runtime,
    metrics_address: str,
    settings: Settings,
    store: SqliteStore,
) -> None:
    """A worker restart replays a running notification's history: nothing is counted again."""
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    steps = [{"channel": "email", "fallback": ["in_app"], "escalate_after": {"email": "PT3S"}}]
    to = {"id": "user-44", "email": "ada@example.com"}
    before = await scrape(metrics_address)
    async with running_worker(client, settings, store, task_queue=queue):
        [handle] = await TidingsClient(client, task_queue=queue).send(
            request(f"m-replay-{uuid.uuid4().hex[:6]}", to, steps)
        )
        for _ in range(100):  # the email is sent; the workflow waits for the escalation
            if (await handle.status()).destinations:
                break
            await asyncio.sleep(0.1)
    # a new worker (new cache) picks the notification up by replaying what happened so far
    async with running_worker(client, settings, store, task_queue=queue):
        assert (await handle.result()).phase is Phase.delivered
    change = delta(before, await scrape(metrics_address))
    assert change("tidings_deliveries_total", channel="email", outcome="sent") == 1
    assert change("tidings_deliveries_total", channel="in_app", outcome="sent") == 1
    assert change("tidings_escalations_total") == 1
    assert change("tidings_notifications_total", phase="delivered") == 1


async def test_tidings_worker_serves_metrics_and_logs_json_lines(
    dev_env: WorkflowEnvironment, smtp_sink: SmtpSink, tmp_path: Any
) -> None:
    """`tidings worker` with `[metrics] prometheus_address` and `[logging] format = "json"`."""
    address = f"127.0.0.1:{free_port()}"
    queue = f"metrics-cli-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIDINGS_"))},
        "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "TIDINGS_TEMPORAL__TASK_QUEUE": queue,
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "TIDINGS_SMTP__HOST": smtp_sink.host,
        "TIDINGS_SMTP__PORT": str(smtp_sink.port),
        "TIDINGS_METRICS__PROMETHEUS_ADDRESS": address,
        "TIDINGS_LOGGING__FORMAT": "json",
    }
    worker = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "-v", "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        tidings = TidingsClient(dev_env.client, task_queue=queue)
        [handle] = await tidings.send(
            request(f"m-cli-{uuid.uuid4().hex[:6]}", {"id": "user-45", "email": "ada@example.com"}, ["email"])
        )
        state = await asyncio.wait_for(handle.result(), 60)
        assert state.phase is Phase.delivered
        samples = await scrape(address)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    # a fresh process: the counts are exactly this one notification
    assert total(samples, "tidings_deliveries_total") == 1
    assert total(samples, "tidings_deliveries_total", channel="email", provider="smtp", outcome="sent") == 1
    assert total(samples, "tidings_notifications_total", phase="delivered") == 1
    assert total(samples, "temporal_workflow_completed_total", task_queue=queue) == 1

    lines = [json.loads(line) for line in err.decode().splitlines()]  # every line is JSON
    [accepted] = [line for line in lines if line.get("delivery_id")]
    [destination] = state.destinations
    assert accepted["delivery_id"] == destination.delivery_id
    assert accepted["workflow_id"] == state.workflow_id
    assert (accepted["channel"], accepted["provider"], accepted["level"]) == ("email", "smtp", "INFO")
    assert "ada@example.com" not in err.decode()


async def test_failover_and_breaker_metrics(
    dev_env: WorkflowEnvironment,
    runtime: Runtime,
    metrics_address: str,
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
) -> None:
    """The first relay refuses for now (421): the delivery leaves it after its one-attempt budget,
    which also opens its circuit (threshold 1); the backup relay sends."""
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    with SmtpSink() as backup:
        configured = Settings.model_validate(
            {
                **settings.model_dump(exclude={"providers", "channels", "failover"}),
                "providers": {"relay_b": {"kind": "smtp", "host": backup.host, "port": backup.port}},
                "channels": {"email": {"providers": ["smtp", "relay_b"]}},
                "failover": {"attempts": 1, "breaker_threshold": 1},
            }
        )
        smtp_sink.refuse["ada@example.com"] = "421 4.3.0 try again later"
        queue = f"metrics-{uuid.uuid4().hex[:8]}"
        before = await scrape(metrics_address)
        async with running_worker(client, configured, store, task_queue=queue):
            tidings = TidingsClient(client, task_queue=queue)
            [handle] = await tidings.send(
                request(
                    f"m-failover-{uuid.uuid4().hex[:6]}",
                    {"id": "user-42", "email": "ada@example.com"},
                    ["email"],
                )
            )
            assert (await handle.result()).phase is Phase.delivered
        assert len(backup.received) == 1
    change = delta(before, await scrape(metrics_address))
    assert change("tidings_provider_failovers_total", channel="email", provider="smtp") == 1
    assert change("tidings_circuit_breaker_changes_total", provider="smtp", state="open") == 1
    assert change("tidings_provider_responses_total", provider="smtp", result="transient") == 1
    assert change("tidings_provider_responses_total", provider="relay_b", result="accepted") == 1
    assert change("tidings_deliveries_total", channel="email", provider="relay_b", outcome="sent") == 1
