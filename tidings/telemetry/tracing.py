"""OpenTelemetry tracing through Temporal's `TracingInterceptor`, off unless `OTEL_*` configures it.

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none` turn it off. The exporters read the rest of the standard variables
themselves (headers, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`). OTLP goes over HTTP/protobuf
(`opentelemetry-exporter-otlp-proto-http`, installed with Tidings, so the worker image has it).

The interceptor goes on the client, so `TidingsClient.send` (span `tidings.send`) starts the
trace, the workflow's spans and each `deliver` activity's continue it, and each provider request
is a span `tidings.provider.send` with the delivery id, channel, provider and attempt as
attributes; no address, token, name or content is ever a span attribute.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as RecordingSpan
from opentelemetry.trace import Span, Status, StatusCode
from temporalio.client import Interceptor

from tidings.models import RECIPIENT_SEPARATOR

TRACER_NAME = "tidings"
PROVIDER_SPAN = "tidings.provider.send"
SEND_SPAN = "tidings.send"
WORKFLOW_ID_ATTRIBUTE = "temporalWorkflowID"  # set by Temporal's TracingInterceptor

_configured = False

P = ParamSpec("P")
R = TypeVar("R")


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing() -> bool:
    """Install the global tracer provider from `OTEL_*` once per process; False when tracing is off."""
    global _configured
    if _configured:
        return True
    if not tracing_configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "tidings"})
    provider = TracerProvider(resource=resource)
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    for name in filter(None, names):
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            exporter = OTLPSpanExporter()
        else:
            raise RuntimeError(f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none")
        provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter)))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def _without_recipient(workflow_id: str) -> str:
    """`notification-order-1~user-42` → `notification-order-1~…`: the recipient id stays out."""
    head, separator, _ = workflow_id.partition(RECIPIENT_SEPARATOR)
    return f"{head}{separator}…" if separator else workflow_id


class RedactingSpanProcessor(SpanProcessor):
    """Keeps personal data out of what Temporal's tracing interceptor records, before `inner`
    exports it: the workflow id loses its recipient id, an error status keeps only the
    exception's type (its message may quote an address), and exception events keep only their
    type. Our own spans already carry nothing personal."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: RecordingSpan, parent_context: Context | None = None) -> None:
        workflow_id = (span.attributes or {}).get(WORKFLOW_ID_ATTRIBUTE)
        if isinstance(workflow_id, str):
            span.set_attribute(WORKFLOW_ID_ATTRIBUTE, _without_recipient(workflow_id))
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        status = span.status
        if status.description:
            status = Status(status.status_code, status.description.split(":", 1)[0])
        events = [
            Event(e.name, {"exception.type": (e.attributes or {}).get("exception.type", "")}, e.timestamp)
            if e.name == "exception"
            else e
            for e in span.events
        ]
        self._inner.on_end(
            ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=span.resource,
                attributes=span.attributes,
                events=events,
                links=span.links,
                kind=span.kind,
                status=status,
                start_time=span.start_time,
                end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def shutdown_tracing() -> None:
    """Flush the spans still buffered (at worker shutdown)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _configured and callable(shutdown):
        shutdown()


def client_interceptors() -> list[Interceptor]:
    """The interceptors every Tidings client connects with: tracing when `OTEL_*` asks for it."""
    if not configure_tracing():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def traced(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Run an async function in a span, the parent of the workflow spans it starts."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with trace.get_tracer(TRACER_NAME).start_as_current_span(name):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def provider_span(delivery_id: str, channel: str, provider: str, attempt: int) -> Iterator[Span]:
    """One provider request. Failures set the status to the error's type only: provider messages
    can quote addresses, so neither they nor the exception are recorded."""
    attributes: dict[str, Any] = {
        "tidings.delivery_id": delivery_id,
        "tidings.channel": channel,
        "tidings.provider": provider,
        "tidings.attempt": attempt,
    }
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        PROVIDER_SPAN,
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
