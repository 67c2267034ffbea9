"""`/v1/subscribers`: profiles, devices and preferences, for services with the `subscribers` scope;
plus the two credentials a service hands to a person: a subscriber token (for the inbox in their
browser or app) and a preference-center link.

Responses never carry a secret: webhook and Slack incoming-webhook URLs come back redacted
(`Recipient.without_secrets`), as they are in workflow history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel

from tidings.activities.store.base import ApiKeyRecord, UnknownRecipientError
from tidings.api.context import ApiContext, context
from tidings.api.keys import Scope
from tidings.api.preference_rules import check_opt_outs
from tidings.api.problems import ApiProblem
from tidings.api.service_auth import require
from tidings.links import Purpose, expiring_token, preferences_url
from tidings.models import Device, Preferences, Recipient
from tidings.models.fields import Identifier

router = APIRouter(prefix="/v1/subscribers", tags=["subscribers"])

SubscriberId = Annotated[Identifier, Path(description="the subscriber id (your user id)")]
Manager = Annotated[ApiKeyRecord, Depends(require(Scope.subscribers))]
Context = Annotated[ApiContext, Depends(context)]


class SubscriberToken(BaseModel):
    token: str
    expires_at: datetime


class PreferenceLink(BaseModel):
    url: str
    expires_at: datetime


async def _existing(ctx: ApiContext, recipient_id: str) -> Recipient:
    recipient = await ctx.store.get(recipient_id)
    if recipient is None:
        raise ApiProblem(404, "not found", f"no subscriber with id {recipient_id!r}")
    return recipient


def _shown(recipient: Recipient) -> Recipient:
    return recipient.without_secrets()


@router.put("/{recipient_id}", response_model=Recipient)
async def put_subscriber(recipient_id: SubscriberId, body: Recipient, ctx: Context, _: Manager) -> Recipient:
    """Create or replace a subscriber (devices and preferences included)."""
    if body.id != recipient_id:
        raise ApiProblem(422, "invalid request", "the body's id differs from the path's")
    check_opt_outs(ctx.settings, body.preferences)
    await ctx.store.put(body)
    return _shown(body)


@router.get("/{recipient_id}", response_model=Recipient)
async def get_subscriber(recipient_id: SubscriberId, ctx: Context, _: Manager) -> Recipient:
    return _shown(await _existing(ctx, recipient_id))


@router.delete("/{recipient_id}", status_code=204)
async def delete_subscriber(recipient_id: SubscriberId, ctx: Context, _: Manager) -> Response:
    if not await ctx.store.delete(recipient_id):
        raise ApiProblem(404, "not found", f"no subscriber with id {recipient_id!r}")
    return Response(status_code=204)


@router.put("/{recipient_id}/devices/{device_id}", response_model=list[Device])
async def put_device(
    recipient_id: SubscriberId,
    device_id: Annotated[Identifier, Path()],
    body: Device,
    ctx: Context,
    _: Manager,
) -> list[Device]:
    if body.id != device_id:
        raise ApiProblem(422, "invalid request", "the body's id differs from the path's")
    try:
        return (await ctx.store.add_device(recipient_id, body)).devices
    except UnknownRecipientError as exc:
        raise ApiProblem(404, "not found", str(exc)) from None


@router.delete("/{recipient_id}/devices/{device_id}", status_code=204)
async def delete_device(
    recipient_id: SubscriberId, device_id: Annotated[Identifier, Path()], ctx: Context, _: Manager
) -> Response:
    try:
        await ctx.store.remove_device(recipient_id, device_id)
    except LookupError as exc:  # no such subscriber, or no such device
        raise ApiProblem(404, "not found", str(exc.args[0] if exc.args else exc)) from None
    return Response(status_code=204)


@router.get("/{recipient_id}/preferences", response_model=Preferences)
async def get_preferences(recipient_id: SubscriberId, ctx: Context, _: Manager) -> Preferences:
    return (await _existing(ctx, recipient_id)).preferences


@router.put("/{recipient_id}/preferences", response_model=Preferences)
async def put_preferences(
    recipient_id: SubscriberId, body: Preferences, ctx: Context, _: Manager
) -> Preferences:
    check_opt_outs(ctx.settings, body)
    try:
        return (await ctx.store.set_preferences(recipient_id, body)).preferences
    except UnknownRecipientError as exc:
        raise ApiProblem(404, "not found", str(exc)) from None


@router.post("/{recipient_id}/token", response_model=SubscriberToken)
async def subscriber_token(recipient_id: SubscriberId, ctx: Context, _: Manager) -> SubscriberToken:
    """A token for this subscriber's browser or app: their inbox, stream and preferences only."""
    key = ctx.subscriber_key
    if key is None:
        raise ApiProblem(503, "subscriber tokens are not configured", "set api.subscriber_token_key")
    await _existing(ctx, recipient_id)
    token, expires = expiring_token(
        key, Purpose.subscriber, recipient_id, ctx.settings.api.subscriber_token_ttl
    )
    return SubscriberToken(token=token, expires_at=expires)


@router.post("/{recipient_id}/preference-link", response_model=PreferenceLink)
async def preference_link(recipient_id: SubscriberId, ctx: Context, _: Manager) -> PreferenceLink:
    """A signed link to this subscriber's preference center (works without logging in)."""
    key = ctx.link_key
    if key is None:
        raise ApiProblem(503, "links are not configured", "set receiver.link_signing_key")
    await _existing(ctx, recipient_id)
    url, expires = preferences_url(
        ctx.settings.api.public_url, key, recipient_id, ctx.settings.api.preference_link_ttl
    )
    return PreferenceLink(url=url, expires_at=expires)
