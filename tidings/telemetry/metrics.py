"""Tidings' Prometheus metrics, recorded through the Temporal SDK's metric meters.

The worker's Temporal runtime serves them with the SDK's own metrics on one Prometheus endpoint
(`[metrics] prometheus_address`). Every label is bounded: channel, provider, outcome, phase; no
recipient id, address, notification id or other unbounded value is ever a label. The meters add
`namespace`, `task_queue` and `workflow_type` / `activity_type`.

| Metric | Type | Labels | Recorded by |
|---|---|---|---|
| `tidings_deliveries_total` | counter | channel, provider, outcome | workflow, when a destination ends |
| `tidings_delivery_attempts` | histogram | channel, provider, outcome | workflow, when a destination ends |
| `tidings_delivery_latency_seconds` | histogram | channel, provider | `deliver`, on provider acceptance |
| `tidings_provider_responses_total` | counter | channel, provider, result | `deliver`, every attempt |
| `tidings_fallbacks_total` | counter | from_channel, to_channel | workflow, when it falls back |
| `tidings_escalations_total` | counter | from_channel, to_channel | workflow, when it escalates |
| `tidings_devices_deactivated_total` | counter | channel, provider | workflow, after deactivating |
| `tidings_notifications_total` | counter | phase | workflow, in its final phase |
| `tidings_provider_failovers_total` | counter | channel, provider | `deliver`, leaving a provider |
| `tidings_circuit_breaker_changes_total` | counter | provider, state | `deliver`, breaker changes |

Workflow-side recorders use `workflow.metric_meter()`, which records nothing while a workflow is
replayed, so a worker restart or cache eviction does not count anything twice; they add no
command, timer or marker to the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from temporalio import activity, workflow
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

DELIVERIES = "tidings_deliveries"  # exported with the `_total` suffix
DELIVERY_ATTEMPTS = "tidings_delivery_attempts"
DELIVERY_LATENCY = "tidings_delivery_latency_seconds"
PROVIDER_RESPONSES = "tidings_provider_responses"
FALLBACKS = "tidings_fallbacks"
ESCALATIONS = "tidings_escalations"
DEVICES_DEACTIVATED = "tidings_devices_deactivated"
NOTIFICATIONS = "tidings_notifications"
FAILOVERS = "tidings_provider_failovers"
BREAKER_CHANGES = "tidings_circuit_breaker_changes"

Outcome = Literal["sent", "failed-permanent", "failed-exhausted", "throttled"]
"""How one delivery (one destination of one notification) ended.

`failed-exhausted`: retryable failures until the retry policy gave up (attempts or time);
`throttled`: the provider was still throttling when the retry policy gave up."""

ProviderResult = Literal["accepted", "throttled", "transient", "permanent"]

HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    DELIVERY_LATENCY: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    DELIVERY_ATTEMPTS: [1, 2, 3, 4, 5, 6, 8, 10, 15, 20],
}


def outcome_of(error_kind: str | None) -> Outcome:
    """A failed destination's error kind as a delivery outcome."""
    if error_kind == "permanent":
        return "failed-permanent"
    if error_kind == "throttled":
        return "throttled"
    return "failed-exhausted"  # transient errors or timeouts until the retry policy gave up


# ----------------------------------------------------------------- the worker's runtime

_runtimes: dict[str, Runtime] = {}


def prometheus_runtime(bind_address: str) -> Runtime:
    """The Temporal runtime serving `/metrics` on `bind_address`: one per process and address.

    Counters get the `_total` suffix and durations are in seconds, as Prometheus expects."""
    runtime = _runtimes.get(bind_address)
    if runtime is None:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=bind_address,
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                    histogram_bucket_overrides=HISTOGRAM_BUCKETS,
                )
            )
        )
        _runtimes[bind_address] = runtime
    return runtime


def install_worker_runtime(prometheus_address: str) -> Runtime | None:
    """Make the Prometheus runtime the process default, before any client connects.

    Empty address: metrics are off and the SDK's default runtime stays."""
    if not prometheus_address:
        return None
    runtime = prometheus_runtime(prometheus_address)
    Runtime.set_default(runtime)
    return runtime


# ----------------------------------------------------------------- workflow side (replay-safe)


def _workflow_meter() -> MetricMeter:
    return workflow.metric_meter()


def delivery_finished(channel: str, provider: str, outcome: Outcome, attempts: int) -> None:
    labels = {"channel": channel, "provider": provider, "outcome": outcome}
    meter = _workflow_meter()
    meter.create_counter(DELIVERIES, "Deliveries by final outcome").add(1, labels)
    meter.create_histogram(DELIVERY_ATTEMPTS, "Provider attempts per finished delivery").record(
        max(attempts, 0), labels
    )


def fallback_taken(from_channel: str, to_channel: str) -> None:
    _workflow_meter().create_counter(FALLBACKS, "Fallbacks to the next channel after a failure").add(
        1, {"from_channel": from_channel, "to_channel": to_channel}
    )


def escalation_taken(from_channel: str, to_channel: str) -> None:
    _workflow_meter().create_counter(ESCALATIONS, "Escalations to the next channel when unread").add(
        1, {"from_channel": from_channel, "to_channel": to_channel}
    )


def device_deactivated(channel: str, provider: str) -> None:
    _workflow_meter().create_counter(DEVICES_DEACTIVATED, "Devices deactivated after provider errors").add(
        1, {"channel": channel, "provider": provider}
    )


def notification_finished(phase: str) -> None:
    _workflow_meter().create_counter(NOTIFICATIONS, "Notifications by final phase").add(1, {"phase": phase})


# ----------------------------------------------------------------- activity side


def provider_responded(channel: str, provider: str, result: ProviderResult) -> None:
    activity.metric_meter().create_counter(PROVIDER_RESPONSES, "Provider answers per attempt").add(
        1, {"channel": channel, "provider": provider, "result": result}
    )


def provider_accepted(channel: str, provider: str, accepted_at: datetime) -> None:
    """Count the acceptance and record the time since the delivery was scheduled: from the moment
    the workflow decided to send to this destination (its `deliver` activity was first scheduled),
    through every retry and backoff, to the provider's acceptance. Deliberate waits before it
    (schedule_at, quiet hours) are not delivery latency and are left out."""
    provider_responded(channel, provider, "accepted")
    waited = max(accepted_at - activity.info().scheduled_time, timedelta(0))
    activity.metric_meter().create_histogram_float(
        DELIVERY_LATENCY, "Seconds from a delivery's scheduling to provider acceptance"
    ).record(waited.total_seconds(), {"channel": channel, "provider": provider})


def provider_failover(channel: str, provider: str) -> None:
    """A delivery left `provider` for the next provider of its channel."""
    activity.metric_meter().create_counter(FAILOVERS, "Deliveries that left a provider for the next").add(
        1, {"channel": channel, "provider": provider}
    )


def breaker_changed(provider: str, state: str) -> None:
    """Provider names come from the settings file, so the label stays bounded."""
    if not activity.in_activity():
        return
    activity.metric_meter().create_counter(BREAKER_CHANGES, "Circuit breaker state changes").add(
        1, {"provider": provider, "state": state}
    )
