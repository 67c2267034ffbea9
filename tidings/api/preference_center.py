"""The preference center: a recipient's channels, categories, quiet hours and time zone.

Two doors to one set of rules (`PreferenceView` / `PreferenceUpdate`):
- `GET|PUT /v1/me/preferences`: JSON, with a subscriber token (apps build their own page);
- `GET|POST /preferences/<link token>`: a server-rendered page (Jinja2, no front-end build)
  reached from the signed "Manage notification preferences" link in emails' footer, so it works
  without logging in. The link token is signed with `receiver.link_signing_key` for purpose
  `preferences` (the worker makes it, as it makes unsubscribe links) and expires
  (`api.preference_link_ttl`).

The form carries a CSRF token: an HMAC, under the link key, of the link token and the time it
was issued, valid for an hour; and a POST whose `Origin` is not the API's own is refused. A page
from elsewhere can therefore neither forge nor replay a submission.

Critical categories (`api.critical_categories`) are shown as not optional and cannot be turned
off. Topics the recipient is subscribed to are listed with an opt-out each (preference_topics).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field, ValidationError

from tidings.activities.store.base import UnknownRecipientError
from tidings.api.context import ApiContext, context
from tidings.api.preference_rules import check_opt_outs
from tidings.api.preference_topics import (
    MAX_TOPICS_SHOWN,
    check_topic_opt_outs,
    set_topic_opt_outs,
    topic_choices,
)
from tidings.api.problems import ApiProblem
from tidings.api.subscriber_auth import subscriber
from tidings.links import Purpose, verify_expiring
from tidings.models import Channel, Preferences, QuietHours, Recipient
from tidings.models.broadcasts import SubscribedTopic, TopicKey
from tidings.models.fields import Category, TimeZoneName

router = APIRouter(tags=["preferences"])
Context = Annotated[ApiContext, Depends(context)]
CSRF_TTL_SECONDS = 3600
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


class ChannelChoice(BaseModel):
    channel: Channel
    enabled: bool


class CategoryChoice(BaseModel):
    category: str
    enabled: bool
    critical: bool = Field(description="not optional: always delivered")


class PreferenceView(BaseModel):
    channels: list[ChannelChoice]
    categories: list[CategoryChoice]
    quiet_hours: QuietHours | None
    timezone: str
    topics: list[SubscribedTopic] = Field(
        description=f"topics subscribed to, in key order, with `opted_out`; at most {MAX_TOPICS_SHOWN}"
    )
    more_topics: bool = Field(
        description=f"subscribed to more than {MAX_TOPICS_SHOWN} topics: the rest are not listed"
    )


class PreferenceUpdate(BaseModel):
    """The whole choice: channels, categories and topics left out stay as they are."""

    channels: dict[Channel, bool] = Field(default_factory=dict)
    categories: dict[Category, bool] = Field(default_factory=dict)
    topic_opt_outs: dict[TopicKey, bool] = Field(
        default_factory=dict,
        description="topic key -> opted out; only topics subscribed to (else 422)",
    )
    quiet_hours: QuietHours | None = None
    timezone: TimeZoneName | None = None


async def view(ctx: ApiContext, recipient: Recipient) -> PreferenceView:
    prefs = recipient.preferences
    critical = set(ctx.settings.api.critical_categories)
    offered = dict.fromkeys(
        [*ctx.settings.api.critical_categories, *ctx.settings.api.preference_categories,
         *sorted(prefs.opted_out_categories)]
    )  # fmt: skip
    topics = await topic_choices(ctx.store, recipient.id)
    return PreferenceView(
        channels=[ChannelChoice(channel=c, enabled=c not in prefs.opted_out_channels) for c in Channel],
        categories=[
            CategoryChoice(category=c, enabled=c not in prefs.opted_out_categories, critical=c in critical)
            for c in offered
        ],
        quiet_hours=prefs.quiet_hours,
        timezone=recipient.timezone,
        topics=topics.topics,
        more_topics=topics.more,
    )


async def apply(ctx: ApiContext, recipient_id: str, update: PreferenceUpdate) -> Recipient:
    recipient = await _existing(ctx, recipient_id)
    await check_topic_opt_outs(ctx.store, recipient_id, update.topic_opt_outs)
    prefs = recipient.preferences.model_copy(deep=True)
    for channel, enabled in update.channels.items():
        (prefs.opted_out_channels.discard if enabled else prefs.opted_out_channels.add)(channel)
    for category, enabled in update.categories.items():
        (prefs.opted_out_categories.discard if enabled else prefs.opted_out_categories.add)(category)
    prefs.quiet_hours = update.quiet_hours
    prefs = Preferences.model_validate(prefs.model_dump())
    check_opt_outs(ctx.settings, prefs)
    recipient = await ctx.store.set_preferences(recipient_id, prefs)
    if update.timezone is not None and update.timezone != recipient.timezone:
        recipient = await ctx.store.set_timezone(recipient_id, update.timezone)
    await set_topic_opt_outs(ctx.store, recipient_id, update.topic_opt_outs)
    return recipient


async def _existing(ctx: ApiContext, recipient_id: str) -> Recipient:
    recipient = await ctx.store.get(recipient_id)
    if recipient is None:
        raise ApiProblem(404, "not found", "this subscriber no longer exists")
    return recipient


@router.get("/v1/me/preferences", response_model=PreferenceView)
async def my_preferences(ctx: Context, recipient_id: Annotated[str, Depends(subscriber)]) -> PreferenceView:
    return await view(ctx, await _existing(ctx, recipient_id))


@router.put("/v1/me/preferences", response_model=PreferenceView)
async def set_my_preferences(
    body: PreferenceUpdate, ctx: Context, recipient_id: Annotated[str, Depends(subscriber)]
) -> PreferenceView:
    try:
        return await view(ctx, await apply(ctx, recipient_id, body))
    except UnknownRecipientError:
        raise ApiProblem(404, "not found", "this subscriber no longer exists") from None


# -- the page


def _link_subscriber(ctx: ApiContext, token: str) -> str:
    key = ctx.link_key
    recipient_id = verify_expiring(key, token, Purpose.preferences) if key else None
    if recipient_id is None:
        raise ApiProblem(403, "invalid link", "this link is not valid (or has expired); ask for a new one")
    return recipient_id


def _csrf(key: bytes, link_token: str, issued: int) -> str:
    mac = hmac.new(key, f"csrf:{issued}:{link_token}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def _csrf_ok(key: bytes, link_token: str, value: str) -> bool:
    issued_text, _, _ = value.partition(".")
    if not issued_text.isdigit() or time.time() - int(issued_text) > CSRF_TTL_SECONDS:
        return False
    return hmac.compare_digest(value, _csrf(key, link_token, int(issued_text)))


async def _page(
    ctx: ApiContext, token: str, recipient: Recipient, message: str | None = None, status: int = 200
) -> Response:
    assert ctx.link_key is not None
    html = _templates.get_template("preferences.html").render(
        view=await view(ctx, recipient),
        max_topics=MAX_TOPICS_SHOWN,
        name=recipient.name,
        csrf=_csrf(ctx.link_key, token, int(time.time())),
        message=message,
    )
    return HTMLResponse(
        html, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


@router.get("/preferences/{token}", response_class=HTMLResponse, include_in_schema=False)
async def page(token: str, ctx: Context) -> Response:
    return await _page(ctx, token, await _existing(ctx, _link_subscriber(ctx, token)))


def _same_origin(ctx: ApiContext, request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")
    ours = urlsplit(ctx.settings.api.public_url)
    theirs = urlsplit(origin)
    host = request.headers.get("host", "")
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc) or theirs.netloc == host


@router.post("/preferences/{token}", response_class=HTMLResponse, include_in_schema=False)
async def submit(token: str, request: Request, ctx: Context) -> Response:
    recipient_id = _link_subscriber(ctx, token)
    assert ctx.link_key is not None
    form = await request.form()
    if not _same_origin(ctx, request) or not _csrf_ok(ctx.link_key, token, str(form.get("csrf", ""))):
        raise ApiProblem(
            403, "forbidden", "the form was not sent from this page (or is over an hour old); reload it"
        )
    recipient = await _existing(ctx, recipient_id)
    current = await view(ctx, recipient)
    shown = set(form.getlist("topic_shown"))  # a topic subscribed to after the page was made stays as it is
    start, end = str(form.get("quiet_start") or ""), str(form.get("quiet_end") or "")
    try:
        update = PreferenceUpdate.model_validate(
            {
                "channels": {c.channel: f"channel:{c.channel.value}" in form for c in current.channels},
                "categories": {
                    c.category: c.critical or f"category:{c.category}" in form for c in current.categories
                },
                "quiet_hours": {"start": start, "end": end} if start and end else None,
                "timezone": str(form.get("timezone") or recipient.timezone),
                "topic_opt_outs": {
                    t.key: f"topic:{t.key}" not in form for t in current.topics if t.key in shown
                },
            }
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await _page(ctx, token, recipient, f"Not saved: {problems}", status=422)
    return await _page(ctx, token, await apply(ctx, recipient_id, update), "Saved.")
