"""`/v1/notifications`: what `TidingsClient` does, over HTTP, for services with an API key.

`POST /v1/notifications` takes exactly `TidingsClient.send`'s request (`NotificationRequest`);
an `Idempotency-Key` header is its `id`, so a retried POST attaches to the notifications the
first one started instead of sending again (the response says `existing: true`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path
from pydantic import AwareDatetime, BaseModel, Field

from tidings.activities.store.base import ApiKeyRecord
from tidings.api.context import ApiContext, context
from tidings.api.keys import Scope
from tidings.api.problems import ApiProblem, Problem
from tidings.api.service_auth import require
from tidings.models import NotificationRequest, NotificationState, SignalOutcome
from tidings.models.fields import Identifier, NotificationId

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

NotificationIdPath = Annotated[NotificationId, Path(description="<request id>~<recipient id>")]
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (401, 403, 422, 429, 503)
}


class StartedNotification(BaseModel):
    notification_id: str
    workflow_id: str
    recipient_id: str
    existing: bool = Field(description="the id had been used: nothing new was started")


class SendResponse(BaseModel):
    notifications: list[StartedNotification]


class CancelBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class RescheduleBody(BaseModel):
    schedule_at: AwareDatetime


def _idempotent(request: NotificationRequest, key: str | None) -> NotificationRequest:
    if key is None:
        return request
    if request.id is not None and request.id != key:
        raise ApiProblem(422, "invalid request", "the Idempotency-Key header and the body's id differ")
    return request.model_copy(update={"id": key})


@router.post("", status_code=202, response_model=SendResponse, responses=ERRORS)
async def send(
    request: NotificationRequest,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[ApiKeyRecord, Depends(require(Scope.send))],
    idempotency_key: Annotated[
        Identifier | None, Header(description="the request's id: the same key never sends twice")
    ] = None,
) -> SendResponse:
    handles = await ctx.client.send(_idempotent(request, idempotency_key))
    return SendResponse(
        notifications=[
            StartedNotification(
                notification_id=h.notification_id,
                workflow_id=h.workflow_id,
                recipient_id=h.recipient_id,
                existing=h.existing,
            )
            for h in handles
        ]
    )


@router.get("/{notification_id}", response_model=NotificationState, responses=ERRORS)
async def status(
    notification_id: NotificationIdPath,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[ApiKeyRecord, Depends(require(Scope.read))],
) -> NotificationState:
    return await ctx.client.status(notification_id)


def _outcome(outcome: SignalOutcome) -> SignalOutcome:
    if not outcome.accepted:
        raise ApiProblem(409, "refused", outcome.reason)
    return outcome


@router.post("/{notification_id}/cancel", response_model=SignalOutcome, responses=ERRORS)
async def cancel(
    notification_id: NotificationIdPath,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[ApiKeyRecord, Depends(require(Scope.send))],
    body: CancelBody | None = None,
) -> SignalOutcome:
    return _outcome(await ctx.client.cancel(notification_id, body.reason if body else None))


@router.post("/{notification_id}/reschedule", response_model=SignalOutcome, responses=ERRORS)
async def reschedule(
    notification_id: NotificationIdPath,
    body: RescheduleBody,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[ApiKeyRecord, Depends(require(Scope.send))],
) -> SignalOutcome:
    return _outcome(await ctx.client.reschedule(notification_id, body.schedule_at))
