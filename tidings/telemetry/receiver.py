"""The receiver's metrics: callbacks by kind and verdict, served on the receiver's `/metrics`.

The receiver is not a worker and has no Temporal runtime of its own worth scraping, so it keeps
a `prometheus_client` registry. `tidings_receiver_callbacks_total{kind,verdict}`:

- kind: `twilio_status`, `click`, `event`, `unsubscribe`
- verdict: `accepted` (acted on: signalled, redirected, opted out, or shown the form),
  `duplicate` (seen before: acknowledged, not signalled again), `ignored` (a status Tidings does
  not track), `invalid` (400, 413), `forbidden` (403: bad signature or token), `not_found` (404:
  unknown or forged link), `unconfigured` (503), `error` (anything else, e.g. Temporal unreachable)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

Verdict = Literal[
    "accepted", "duplicate", "ignored", "invalid", "forbidden", "not_found", "unconfigured", "error"
]

REGISTRY = CollectorRegistry()
CALLBACKS = Counter(
    "tidings_receiver_callbacks",
    "Receiver callbacks by kind and verdict",
    ["kind", "verdict"],
    registry=REGISTRY,
)

_BY_STATUS: dict[int, Verdict] = {
    400: "invalid",
    403: "forbidden",
    404: "not_found",
    413: "invalid",
    503: "unconfigured",
}


def mark(request: Request, verdict: Verdict) -> None:
    """Name the verdict of a request whose status code alone does not tell (a duplicate is a 204)."""
    request.state.tidings_verdict = verdict


def verdict_for(request: Request, status: int) -> Verdict:
    marked: Verdict | None = getattr(request.state, "tidings_verdict", None)
    if marked is not None:
        return marked
    if status < 400:
        return "accepted"
    return _BY_STATUS.get(status, "error")


def counted(
    kind: str, handler: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """`handler`, counting each request it answers (or fails) under `kind`."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except HTTPException as exc:
            CALLBACKS.labels(kind, verdict_for(request, exc.status_code)).inc()
            raise
        except Exception:
            CALLBACKS.labels(kind, "error").inc()
            raise
        CALLBACKS.labels(kind, verdict_for(request, response.status_code)).inc()
        return response

    return endpoint


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
