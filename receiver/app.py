"""The receiver: provider callbacks and engagement events become notification workflow signals.

- `POST /twilio/status`: Twilio status callbacks. The `X-Twilio-Signature` is checked with the
  twilio package's validator against the public URL Twilio called; unsigned or forged callbacks
  get 403. A callback seen before (same message and status) is acknowledged and ignored.
- `GET /c/<token>`: click tracking. The token is signed and holds the target URL: the receiver
  signals `engagement` (clicked) and redirects there, and nowhere else.
- `POST /events`: apps report `opened` or `dismissed` with the signed event token they received in
  the push data (`tidings_token`).

A receipt for a notification that has already finished is kept (`ReceiptLog`), not lost.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from twilio.request_validator import RequestValidator

from tidings.activities.store.base import ReceiptLog, SubscriberStore
from tidings.links import InvalidToken, verify_token
from tidings.models import DeliveryReceipt, Engagement, EngagementKind, ReceiptStatus
from tidings.settings import Settings

log = logging.getLogger(__name__)

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


class Receiver:
    def __init__(
        self, settings: Settings, client: Client, log_store: ReceiptLog, store: SubscriberStore | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._log = log_store
        self._store = store
        token = settings.twilio.auth_token
        self._twilio = RequestValidator(token.get_secret_value()) if token else None
        key = settings.receiver.link_signing_key
        self._link_key = key.get_secret_value().encode() if key else None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/twilio/status", self.twilio_status, methods=["POST"]),
                Route("/c/{token:path}", self.click, methods=["GET"]),
                Route("/events", self.event, methods=["POST"]),
                Route("/u/{token:path}", self.unsubscribe, methods=["GET", "POST"]),
                Route("/healthz", lambda _: Response("ok"), methods=["GET"]),
            ]
        )

    async def twilio_status(self, request: Request) -> Response:
        if self._twilio is None:
            return Response("twilio.auth_token is not configured", status_code=503)
        params = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        public = self._settings.receiver.public_url.rstrip("/")
        url = f"{public}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        if not self._twilio.validate(url, params, request.headers.get("x-twilio-signature", "")):
            return Response("forbidden: bad or missing X-Twilio-Signature", status_code=403)
        status = TWILIO_STATUSES.get(params.get("MessageStatus", ""))
        workflow_id = request.query_params.get("w")
        if status is None or not workflow_id:
            return Response(status_code=204)
        sid = params.get("MessageSid", "")
        if not await self._log.first_sighting(f"twilio:{sid}:{status.value}"):
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
        payload = self._verified(request.path_params["token"])
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
            body = await request.json()
            kind = EngagementKind(body["kind"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": 'send {"token": ..., "kind": "opened"|"dismissed"}'}, status_code=400
            )
        payload = self._verified(str(body.get("token", "")))
        if not payload:
            return JSONResponse({"error": "invalid token"}, status_code=403)
        event = Engagement(kind=kind, delivery_id=payload.get("d"), at=datetime.now(UTC))
        await self._signal(str(payload.get("w")), "engagement", event)
        return Response(status_code=204)

    async def unsubscribe(self, request: Request) -> Response:
        """List-Unsubscribe: GET shows a confirmation form, POST (one-click, RFC 8058) opts out."""
        payload = self._verified(request.path_params["token"])
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

    def _verified(self, token: str) -> dict[str, Any] | None:
        if self._link_key is None:
            return None
        try:
            return verify_token(self._link_key, token)
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


async def run_receiver(settings: Settings) -> None:
    """Serve the receiver with uvicorn until interrupted (`tidings receiver`)."""
    import uvicorn

    from tidings.activities.store.factory import open_store
    from tidings.workers.worker import connect

    store = await open_store(settings.store)
    try:
        receiver = Receiver(settings, await connect(settings), store.receipts, store)
        config = uvicorn.Config(
            receiver.app(), host=settings.receiver.host, port=settings.receiver.port, log_level="warning"
        )
        await uvicorn.Server(config).serve()
    finally:
        await store.aclose()
