"""One trace per notification: `TidingsClient.send` → workflow → each provider request.

Spans go to an in-memory exporter through the global tracer provider (as `OTEL_*` configuration
sets it up for real processes), and the client carries Temporal's `TracingInterceptor`, as
`tidings.workers.worker.connect` adds it when tracing is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR, start_dev_server
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Phase
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.telemetry.tracing import PROVIDER_SPAN, SEND_SPAN, RedactingSpanProcessor, tracing_configured
from tidings.workers.worker import running_worker

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> Iterator[None]:
    provider = TracerProvider()
    provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(EXPORTER)))
    trace.set_tracer_provider(provider)  # once per process: no other test sets one
    yield


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


async def test_span_tree_of_a_notification_with_a_fallback(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    http_endpoint: HttpEndpoint,
    smtp_sink: SmtpSink,
) -> None:
    config = ts_env.client.config()
    config["interceptors"] = [*config["interceptors"], TracingInterceptor()]
    client = Client(**config)
    queue = f"trace-{uuid.uuid4().hex[:8]}"
    hook = f"{http_endpoint.url}/hook/s3cr3t-t0ken-abcdef123456"
    http_endpoint.answer(400)
    request = {
        "id": "trace-1",
        "recipients": [{"id": "user-7", "email": "grace@example.com", "webhook_url": hook}],
        "channels": [{"channel": "webhook", "fallback": ["email"]}],
        "content": {"title": "Your code", "body": "123456"},
    }
    EXPORTER.clear()
    async with running_worker(client, settings, store, task_queue=queue):
        [handle] = await TidingsClient(client, task_queue=queue).send(request)
        state = await handle.result()
    assert state.phase is Phase.delivered
    spans = list(EXPORTER.get_finished_spans())

    root = only(spans, SEND_SPAN)
    assert root.parent is None
    assert {s.context.trace_id for s in spans if s.context} == {root.context.trace_id}  # one trace
    [start] = children(spans, root)
    assert start.name == "StartWorkflow:NotificationWorkflow"
    # the workflow's spans (replay-safe, created as completed spans) hang off the start span
    workflow_spans = [s.name for s in children(spans, start)]
    assert {"RunWorkflow:NotificationWorkflow", "CompleteWorkflow:NotificationWorkflow"} <= set(
        workflow_spans
    )
    starts = [s for s in children(spans, start) if s.name == "StartActivity:deliver"]
    assert len(starts) == 2
    provider_spans = []
    for start_activity in starts:
        [run_activity] = children(spans, start_activity)
        assert run_activity.name == "RunActivity:deliver"
        [provider_span] = children(spans, run_activity)
        assert provider_span.name == PROVIDER_SPAN
        provider_spans.append(provider_span)

    by_provider = {str(s.attributes["tidings.provider"]): s for s in provider_spans if s.attributes}
    assert set(by_provider) == {"webhook", "smtp"}
    webhook, email = state.destinations
    for destination in (webhook, email):
        attributes = by_provider[destination.provider].attributes or {}
        assert attributes["tidings.delivery_id"] == destination.delivery_id
        assert attributes["tidings.channel"] == destination.channel.value
        assert attributes["tidings.attempt"] == 1
    assert by_provider["webhook"].status.status_code is StatusCode.ERROR
    assert by_provider["webhook"].status.description == "PermanentDeliveryError"
    assert by_provider["smtp"].status.status_code is StatusCode.UNSET
    # the fallback's activity starts after the failed one ended, in the same workflow span
    assert by_provider["smtp"].start_time and by_provider["webhook"].end_time
    assert by_provider["smtp"].start_time > by_provider["webhook"].end_time

    # no personal data or secret in any span attribute, event or status, Temporal's spans included
    # (their workflow id would carry the recipient id, their error status the provider's message)
    assert any(s.status.status_code is StatusCode.ERROR and s.name == "RunActivity:deliver" for s in spans)
    for span in spans:
        texts = [str(v) for v in (span.attributes or {}).values()]
        texts += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        texts.append(span.status.description or "")
        for text in texts:
            for personal in ("grace@example.com", "s3cr3t", "123456", "Your code", "user-7", "answered 400"):
                assert personal not in text, (span.name, text)


def test_tracing_is_off_unless_configured() -> None:
    assert not tracing_configured({})
    assert not tracing_configured({"OTEL_SERVICE_NAME": "tidings"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_configured({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_configured({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert not tracing_configured({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})


async def run_send(
    server: WorkflowEnvironment, tmp_path: Path, notification_id: str, **otel: str
) -> list[Any]:
    """`tidings send --request FILE` in its own process; every JSON value it printed."""
    request = {
        "id": notification_id,
        "recipients": [{"id": "user-8", "email": "ada@example.com"}],
        "channels": ["email"],
        "content": {"title": "Later"},
        "schedule_at": "2099-01-01T09:00:00+00:00",  # no worker needed: it only starts
    }
    path = tmp_path / f"{notification_id}.json"
    path.write_text(json.dumps(request))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIDINGS_"))},
        "TIDINGS_TEMPORAL__ADDRESS": server.client.service_client.config.target_host,
        "TIDINGS_TEMPORAL__TASK_QUEUE": f"trace-cli-{uuid.uuid4().hex[:8]}",
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        **otel,
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "send", "--request", str(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text, values, decoder = out.decode(), [], json.JSONDecoder()
    position = 0
    while (position := text.find("{", position)) >= 0:
        value, position = decoder.raw_decode(text, position)
        values.append(value)
    return values


async def test_cli_send_exports_its_trace_only_when_otel_is_configured(tmp_path: Path) -> None:
    # a dev server of its own: nothing runs these notifications, and on the shared time-skipping
    # server their pending workflow tasks would hold up time skipping for the tests after this one
    env = await start_dev_server()
    try:
        traced = await run_send(env, tmp_path, "trace-cli-1", OTEL_TRACES_EXPORTER="console")
        untraced = await run_send(env, tmp_path, "trace-cli-2")
    finally:
        await env.shutdown()
    spans = {v["name"]: v for v in traced if "context" in v and "name" in v}
    assert {"tidings.send", "StartWorkflow:NotificationWorkflow"} <= set(spans)
    send, start = spans["tidings.send"], spans["StartWorkflow:NotificationWorkflow"]
    assert start["context"]["trace_id"] == send["context"]["trace_id"]
    assert start["parent_id"] == send["context"]["span_id"]
    assert "ada@example.com" not in json.dumps(traced)
    assert any(v.get("workflow_id") == "notification-trace-cli-1~user-8" for v in traced)

    assert [v for v in untraced if "context" in v] == []
    assert any(v.get("workflow_id") == "notification-trace-cli-2~user-8" for v in untraced)
