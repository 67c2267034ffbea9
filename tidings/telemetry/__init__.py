"""Tidings' observability: Prometheus metrics, OpenTelemetry traces and structured logs.

- `tidings.telemetry.metrics`: metric names and labels, the recorders the workflow and the
  `deliver` activity call, and the worker's Temporal runtime with its Prometheus endpoint.
- `tidings.telemetry.tracing`: OpenTelemetry tracing through Temporal's `TracingInterceptor`,
  on only when standard `OTEL_*` variables configure an exporter.
- `tidings.telemetry.logs`: JSON-lines logs with delivery context on every delivery log line.
- `tidings.telemetry.receiver`: the receiver's callback counter, served on its `/metrics`.

Nothing here carries personal data: metric labels are bounded (channel, provider, outcome, phase,
kind, verdict), span attributes are ids and provider names, and log lines mask addresses.
"""
