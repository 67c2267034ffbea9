"""The receiver: provider callbacks and engagement events become notification workflow signals.

- `POST /twilio/status`: Twilio status callbacks. The `X-Twilio-Signature` is checked with the
  twilio package's validator against the public URL Twilio called; unsigned or forged callbacks
  get 403. A callback seen before (same message and status) is acknowledged and ignored.
- `GET /c/<token>`: click tracking. The token is signed and holds the target URL: the receiver
  signals `engagement` (clicked) and redirects there, and nowhere else.
- `POST /events`: apps report `opened` or `dismissed` with the signed event token they received in
  the push data (`tidings_token`). The same token and kind again is acknowledged and not signalled
  twice (apps retry on flaky networks; a captured request must not be replayable).
- `GET|POST /u/<token>`: one-click unsubscribe (RFC 8058) from the `List-Unsubscribe` header.

Every token is signed for one purpose and each route accepts only its own (`tidings.links`).
The receiver faces the internet, so bad input is refused before any work: bodies over
`MAX_BODY_BYTES` get 413 without being read whole, and bodies that are not UTF-8 form data
(Twilio) or a JSON object of the documented shape (`/events`) get 400.

A receipt for a notification that has already finished is kept (`ReceiptLog`), not lost.
"""

from __future__ import annotations

import hashlib
import html
import logging
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from twilio.request_validator import RequestValidator

from tidings.activities.store.base import ReceiptLog, StoreUnavailableError, SubscriberStore
from tidings.links import InvalidToken, Purpose, canonical_payload, verify_token
from tidings.models import DeliveryReceipt, Engagement, EngagementKind, ReceiptStatus
from tidings.settings import Settings
from tidings.telemetry.receiver import counted, mark, metrics_endpoint

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any route reads. Twilio status callbacks and app events are well under
1 KiB; anything near this is not one of them, and reading it whole would let anyone on the
internet make the receiver buffer as much memory as they care to send."""

TWILIO_STATUSES: dict[str, ReceiptStatus] = {
    "accepted": ReceiptStatus.queued,
    "queued": ReceiptStatus.queued,
    "sending": ReceiptStatus.sent,
    "sent": ReceiptStatus.sent,
    "delivered": ReceiptStatus.delivered,
    "undelivered": ReceiptStatus.undelivered,
    "failed": ReceiptStatus.failed,
    "canceled": ReceiptStatus.failed,
    "read": ReceiptStatus.read,
}


class EventReport(BaseModel):
    """The body of `POST /events`: exactly the documented shape, nothing else.

    Only `opened` and `dismissed` are apps' to report: `clicked` comes from the click-tracking link
    and `read` from the inbox, and `read` would stop an escalation the app has no say in.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    token: str
    kind: Literal["opened", "dismissed"]


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before anything is read; a body without
    one (chunked) is read in its chunks and refused once past the limit, so an oversized body is
    never held in memory whole.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared) if declared.isascii() and declared.isdigit() else -1
        except ValueError:  # more digits than int() converts: far over any limit
            length = limit + 1
        if length < 0:
            raise HTTPException(400, "bad Content-Length")
        if length > limit:
            raise HTTPException(413, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body over {limit} bytes")
    return bytes(body)


def event_replay_key(payload: dict[str, Any], kind: str) -> str:
    """The `ReceiptLog` key of one app event: a hash of the token's signed content and the kind.

    Hashed so the log never holds a usable token; from the signed content rather than the token
    text so that re-encodings of one token (base64 padding bits) count as the same token.
    """
    return f"event:{hashlib.sha256(canonical_payload(payload)).hexdigest()}:{kind}"


def twilio_tokens(settings: Settings) -> list[SecretStr]:
    """The auth tokens of every Twilio account the worker sends with (`[twilio]` and, for SMS
    failover, each `[providers.NAME] kind = "twilio"`): each signs its own status callbacks."""
    tokens = [settings.twilio.auth_token] if settings.twilio.auth_token else []
    tokens += [p.auth_token for p in settings.providers.values() if p.kind == "twilio" and p.auth_token]
    return tokens


class Receiver:
    def __init__(
        self, settings: Settings, client: Client, log_store: ReceiptLog, store: SubscriberStore | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._log = log_store
        self._store = store
        self._twilio = [RequestValidator(token.get_secret_value()) for token in twilio_tokens(settings)]
        key = settings.receiver.link_signing_key
        self._link_key = key.get_secret_value().encode() if key else None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/twilio/status", counted("twilio_status", self.twilio_status), methods=["POST"]),
                Route("/c/{token:path}", counted("click", self.click), methods=["GET"]),
                Route("/events", counted("event", self.event), methods=["POST"]),
                Route("/u/{token:path}", counted("unsubscribe", self.unsubscribe), methods=["GET", "POST"]),
                Route("/healthz", lambda _: Response("ok"), methods=["GET"]),
                Route("/metrics", metrics_endpoint, methods=["GET"]),
            ],
            exception_handlers={StoreUnavailableError: store_unavailable},
        )

    async def twilio_status(self, request: Request) -> Response:
        if not self._twilio:
            return Response("twilio.auth_token is not configured", status_code=503)
        body = await read_body(request)
        try:
            # every posted parameter, blank ones too: Twilio signs them all (e.g. `ErrorCode=`)
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except ValueError:
            return Response("body is not UTF-8 form data", status_code=400)
        params = ImmutableMultiDict(pairs)
        public = self._settings.receiver.public_url.rstrip("/")
        url = f"{public}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("x-twilio-signature", "")
        if not any(validator.validate(url, params, signature) for validator in self._twilio):
            return Response("forbidden: bad or missing X-Twilio-Signature", status_code=403)
        status = TWILIO_STATUSES.get(params.get("MessageStatus", ""))
        workflow_id = request.query_params.get("w")
        if status is None or not workflow_id:
            mark(request, "ignored")
            return Response(status_code=204)
        sid = params.get("MessageSid", "")
        key = f"twilio:{sid}:{status.value}"
        try:
            first = await self._log.first_sighting(key)
        except StoreUnavailableError:
            # Twilio does not retry a failed status callback: better a duplicate receipt in the
            # workflow's state than a lost one. Keeping a late receipt still needs the store.
            log.warning("receipt log unavailable: %s passed on without the duplicate check", key)
            first = True
        if not first:
            mark(request, "duplicate")
            return Response(status_code=204)  # a retried or replayed callback
        receipt = DeliveryReceipt(
            delivery_id=request.query_params.get("d"),
            provider_message_id=sid or None,
            status=status,
            error_code=params.get("ErrorCode") or None,
            at=datetime.now(UTC),
        )
        await self._signal(workflow_id, "delivery_receipt", receipt, late=receipt)
        return Response(status_code=204)

    async def click(self, request: Request) -> Response:
        payload = self._verified(request.path_params["token"], Purpose.click)
        target = payload.get("u") if payload else None
        if not payload or not isinstance(target, str) or not target.startswith(("https://", "http://")):
            return Response("unknown link", status_code=404)
        event = Engagement(
            kind=EngagementKind.clicked, delivery_id=payload.get("d"), url=target, at=datetime.now(UTC)
        )
        await self._signal(str(payload.get("w")), "engagement", event)
        return RedirectResponse(target, status_code=302)

    async def event(self, request: Request) -> Response:
        try:
            report = EventReport.model_validate_json(await read_body(request))
        except ValidationError as exc:
            return JSONResponse({"error": _first_problem(exc)}, status_code=400)
        payload = self._verified(report.token, Purpose.event)
        if not payload:
            return JSONResponse({"error": "invalid token"}, status_code=403)
        key = event_replay_key(payload, report.kind)
        if not await self._log.first_sighting(key):
            mark(request, "duplicate")
            return Response(status_code=204)  # an app's retry or a replay: already signalled
        event = Engagement(
            kind=EngagementKind(report.kind), delivery_id=payload.get("d"), at=datetime.now(UTC)
        )
        try:
            await self._signal(str(payload.get("w")), "engagement", event)
        except BaseException:
            # not signalled (Temporal unreachable): the app's retry must not pass for a replay
            await self._log.forget(key)
            raise
        return Response(status_code=204)

    async def unsubscribe(self, request: Request) -> Response:
        """List-Unsubscribe: GET shows a confirmation form, POST (one-click, RFC 8058) opts out."""
        if request.method == "POST":
            await read_body(request)  # the form (List-Unsubscribe=One-Click) says nothing more
        payload = self._verified(request.path_params["token"], Purpose.unsubscribe)
        if not payload or self._store is None:
            return Response("unknown link", status_code=404)
        recipient_id, category = str(payload.get("r")), str(payload.get("c"))
        if request.method == "GET":
            button = '<button name="List-Unsubscribe" value="One-Click">Unsubscribe</button>'
            form = f'<form method="post">{button}</form>'
            return HTMLResponse(f"<p>Stop {html.escape(category)} messages?</p>{form}")
        recipient = await self._store.get(recipient_id)
        if recipient is None:
            return Response("unknown link", status_code=404)
        prefs = recipient.preferences.model_copy(deep=True)
        prefs.opted_out_categories.add(category)
        await self._store.set_preferences(recipient_id, prefs)
        return HTMLResponse(f"<p>You will no longer get {html.escape(category)} messages.</p>")

    def _verified(self, token: str, purpose: Purpose) -> dict[str, Any] | None:
        if self._link_key is None:
            return None
        try:
            return verify_token(self._link_key, token, purpose)
        except InvalidToken:
            return None

    async def _signal(
        self, workflow_id: str, name: str, arg: BaseModel, late: DeliveryReceipt | None = None
    ) -> None:
        try:
            await self._client.get_workflow_handle(workflow_id).signal(name, arg)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            if late is not None:
                await self._log.keep_late(workflow_id, late)
            log.info("%s for finished notification %s kept", name, workflow_id)


def _first_problem(exc: ValidationError) -> str:
    """A short, specific reason for a 400 that never echoes the input (it may hold a token)."""
    error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in error["loc"])[:40]
    usage = 'send {"token": ..., "kind": "opened"|"dismissed"}'
    return f"{where}: {error['msg']}; {usage}" if where else f"{error['msg']}; {usage}"


async def run_receiver(settings: Settings) -> None:
    """Serve the receiver with uvicorn until interrupted (`tidings receiver`)."""
    import uvicorn

    from tidings.activities.store.factory import open_store
    from tidings.telemetry.logs import configure_logging
    from tidings.workers.worker import connect

    configure_logging(settings.logging.format)
    store = await open_store(settings.store)
    try:
        receiver = Receiver(settings, await connect(settings), store.receipts, store)
        config = uvicorn.Config(
            receiver.app(),
            host=settings.receiver.host,
            port=settings.receiver.port,
            log_level="warning",
            access_log=False,  # receiver URLs carry signed tokens
        )
        await uvicorn.Server(config).serve()
    finally:
        await store.aclose()


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down: say so, and when to try again, instead of an opaque 500."""
    log.warning("store unavailable while handling %s: %s", request.url.path, exc)
    return Response(
        "the store is unavailable; try again later", status_code=503, headers={"Retry-After": "30"}
    )
