"""`/v1/inbox`: a subscriber's own in-app inbox, with a subscriber token (never an API key).

Every query and change is scoped by the token's subscriber inside the store's SQL (`WHERE
recipient_id = ...`): another subscriber's message is "not found", exactly like a message that
does not exist, so ids cannot be probed.

Marking read (one message, or all) signals `engagement` (read) to each message's notification,
so a pending escalation (in_app, then email after ten minutes unread) stops, as `tidings inbox
read` does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tidings.activities.store.base import (
    PRINTABLE,
    InboxCounts,
    InboxCursor,
    InboxMessage,
    InboxOrder,
    InboxQuery,
    InboxStateChange,
    InvalidCursorError,
)
from tidings.api.context import ApiContext, context
from tidings.api.problems import ApiProblem
from tidings.api.subscriber_auth import stream_subscriber, subscriber
from tidings.starters.inbox import signal_read

router = APIRouter(prefix="/v1/inbox", tags=["inbox"])

Context = Annotated[ApiContext, Depends(context)]
Subscriber = Annotated[str, Depends(subscriber)]
KEEPALIVE_SECONDS = 15.0


class InboxItem(BaseModel):
    """A message as its recipient sees it."""

    id: str = Field(description="the delivery id")
    category: str | None
    title: str | None
    body: str | None
    url: str | None
    data: dict[str, str]
    created_at: datetime
    read_at: datetime | None
    seen_at: datetime | None
    archived_at: datetime | None

    @classmethod
    def of(cls, message: InboxMessage) -> InboxItem:
        return cls(id=message.delivery_id, **message.model_dump(include=_SHOWN))


_SHOWN = {"category", "title", "body", "url", "data", "created_at", "read_at", "seen_at", "archived_at"}


class InboxPage(BaseModel):
    messages: list[InboxItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
    counts: InboxCounts


class Action(StrEnum):
    read = "read"
    unread = "unread"
    seen = "seen"
    archive = "archive"
    unarchive = "unarchive"


_CHANGES = {
    Action.read: InboxStateChange(read=True),
    Action.unread: InboxStateChange(read=False),
    Action.seen: InboxStateChange(seen=True),
    Action.archive: InboxStateChange(archived=True),
    Action.unarchive: InboxStateChange(archived=False),
}


@router.get("/messages", response_model=InboxPage)
async def list_messages(
    ctx: Context,
    recipient_id: Subscriber,
    order: InboxOrder = InboxOrder.unread_first,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    category: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
    archived: bool = False,
) -> InboxPage:
    try:
        after = InboxCursor.decode(cursor) if cursor else None
    except InvalidCursorError as exc:
        raise ApiProblem(422, "invalid cursor", str(exc)) from None
    query = InboxQuery(
        recipient_id=recipient_id,
        order=order,
        limit=limit,
        cursor=after,
        category=category,
        archived=archived,
    )
    messages = await ctx.store.inbox.query(query)
    last = InboxCursor.after(messages[-1]).encode() if len(messages) == limit else None
    return InboxPage(
        messages=[InboxItem.of(m) for m in messages],
        next_cursor=last,
        counts=await ctx.store.inbox.counts(recipient_id),
    )


@router.get("/counts", response_model=InboxCounts)
async def counts(ctx: Context, recipient_id: Subscriber) -> InboxCounts:
    return await ctx.store.inbox.counts(recipient_id)


@router.post("/messages/{delivery_id}/{action}", response_model=InboxItem)
async def change(
    ctx: Context,
    recipient_id: Subscriber,
    delivery_id: Annotated[str, Path(max_length=300, pattern=PRINTABLE)],
    action: Action,
) -> InboxItem:
    before = await ctx.store.inbox.change(recipient_id, delivery_id, InboxStateChange())
    message = await ctx.store.inbox.change(recipient_id, delivery_id, _CHANGES[action])
    if before is None or message is None:
        raise ApiProblem(404, "not found", "no such message in your inbox")
    if action is Action.read and before.read_at is None:
        await signal_read(ctx.client.client, message)
    return InboxItem.of(message)


@router.post("/read-all", response_model=InboxCounts)
async def read_all(ctx: Context, recipient_id: Subscriber) -> InboxCounts:
    changed = await ctx.store.inbox.read_all(recipient_id)
    await asyncio.gather(*(signal_read(ctx.client.client, m) for m in changed))
    return await ctx.store.inbox.counts(recipient_id)


def _event(name: str, data: BaseModel) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data.model_dump(mode='json'))}\n\n".encode()


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`counts` events"}},
)
async def stream(
    ctx: Context, subscriber: Annotated[tuple[str, float], Depends(stream_subscriber)]
) -> StreamingResponse:
    """Server-Sent Events: `counts` now, then after every change to this inbox (a new message, a
    read, an archive, from any process writing to the store); a comment every 15 s keeps proxies
    from closing the stream. The stream ends when its token expires (the page reconnects with a
    new token)."""
    recipient_id, expires = subscriber

    async def events() -> AsyncIterator[bytes]:
        async with ctx.hub.subscribe(recipient_id) as queue:
            yield b"retry: 2000\n\n"
            yield _event("counts", await ctx.store.inbox.counts(recipient_id))
            while (left := expires - time.time()) > 0:
                try:
                    counts = await asyncio.wait_for(queue.get(), min(KEEPALIVE_SECONDS, left))
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield _event("counts", counts)
            yield b"event: expired\ndata: {}\n\n"

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
