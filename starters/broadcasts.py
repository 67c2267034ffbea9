"""Starting and controlling broadcasts from Python (`TidingsClient.broadcast`) and the CLI.

Where `send` and `broadcast` split: `send` starts one NotificationWorkflow per recipient (at most
100 recipients a request). That gives each recipient its own history, live status query, receipts,
read-escalation and reschedule, and costs ~15-20 history events and a workflow per recipient. A
broadcast runs one workflow for the whole audience (a topic, or a list of any length), in batches
that read the audience from the store, with progress, pause/resume/cancel and a rate limit; each
recipient's outcome is a row in `broadcast_outcomes`. The client never switches by itself: use
`send` for transactional messages to a few people, `broadcast` (`send --topic` or
`--recipients-file`) for audiences.

An inline recipient list is written to the store (`broadcast_audience`, in chunks) before the
workflow starts, so it never travels through history. The client therefore needs the store for a
list broadcast (a topic broadcast needs none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tidings import search_attributes as sa
from tidings.activities.store.base import Store
from tidings.activities.templates import validate_template_content
from tidings.models import SignalOutcome
from tidings.models.broadcasts import (
    BroadcastInput,
    BroadcastPhase,
    BroadcastProgress,
    BroadcastRequest,
    broadcast_workflow_id,
)
from tidings.starters.updates import ask_update
from tidings.validation import validation_message

AUDIENCE_CHUNK = 1000
_LIVE = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW)


class InvalidBroadcastError(ValueError):
    """The broadcast was refused before anything started; `str()` says why."""


class BroadcastNotFoundError(LookupError):
    pass


def parse_broadcast(
    request: BroadcastRequest | dict[str, Any], templates_dir: Path | None = None
) -> BroadcastRequest:
    """Check a broadcast request completely (templates included) without a server."""
    if isinstance(request, BroadcastRequest):
        parsed = request
    else:
        try:
            parsed = BroadcastRequest.model_validate(request)
        except ValidationError as exc:
            raise InvalidBroadcastError(validation_message(exc, "broadcast request")) from None
    if parsed.content.template_id is not None:
        try:
            validate_template_content(parsed.content, templates_dir)
        except ValueError as exc:
            raise InvalidBroadcastError(f"invalid broadcast request:\n  content: {exc}") from None
    if parsed.expires_at is not None and parsed.expires_at <= datetime.now(UTC):
        raise InvalidBroadcastError("invalid broadcast request:\n  expires_at: already in the past")
    return parsed


def broadcast_input(request: BroadcastRequest) -> BroadcastInput:
    return BroadcastInput.model_validate(
        {**request.model_dump(exclude={"topic", "recipients"}), "audience": request.audience}
    )


def broadcast_summary(request: BroadcastRequest) -> str:
    channels = "+".join(step.channel.value for step in request.channels)
    who = f"topic {request.topic}" if request.topic else f"{len(request.recipients or [])} recipients"
    what = request.content.title or request.content.body or f"template {request.content.template_id}"
    if len(what) > 80:
        what = what[:79] + "…"
    return f"broadcast {channels} to {who}: {what}"


@dataclass(frozen=True)
class BroadcastHandle:
    """A started broadcast. `existing` is true when the id had already been used."""

    broadcast_id: str
    workflow_id: str
    existing: bool
    _client: Client

    @property
    def _handle(self) -> WorkflowHandle[Any, Any]:
        return self._client.get_workflow_handle(self.workflow_id)

    async def progress(self) -> BroadcastProgress:
        """Live progress of a running broadcast, or the final progress of a finished one."""
        handle = self._handle
        try:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.COMPLETED:
                return BroadcastProgress.model_validate(await handle.result())
            if description.status in (
                WorkflowExecutionStatus.RUNNING,
                WorkflowExecutionStatus.CONTINUED_AS_NEW,
            ):
                progress: BroadcastProgress = await handle.query("progress", result_type=BroadcastProgress)
                return progress
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise BroadcastNotFoundError(f"no broadcast with id {self.broadcast_id!r}") from None
            raise
        name = description.status.name if description.status else "unknown"
        raise BroadcastNotFoundError(
            f"broadcast {self.broadcast_id!r} ended as {name} without a final state; see its history"
        )

    async def result(self) -> BroadcastProgress:
        return BroadcastProgress.model_validate(await self._handle.result())

    async def pause(self) -> SignalOutcome:
        return await self._update("pause")

    async def resume(self) -> SignalOutcome:
        return await self._update("resume")

    async def cancel(self, reason: str | None = None) -> SignalOutcome:
        return await self._update("cancel", reason)

    async def set_rate(self, rate: float | None) -> SignalOutcome:
        return await self._update("set_rate", rate)

    async def _update(self, name: str, *args: Any) -> SignalOutcome:
        return await ask_update(
            self._handle,
            name,
            list(args),
            lambda: BroadcastNotFoundError(
                f"no running broadcast with id {self.broadcast_id!r} (it may have finished)"
            ),
        )


def broadcast_handle(client: Client, broadcast_id: str) -> BroadcastHandle:
    return BroadcastHandle(broadcast_id, broadcast_workflow_id(broadcast_id), True, client)


async def start_broadcast(
    client: Client,
    task_queue: str,
    request: BroadcastRequest,
    store: Store | None = None,
) -> BroadcastHandle:
    """Store the audience (a list), then start `broadcast-<id>`; the same id twice sends once."""
    workflow_id = broadcast_workflow_id(request.id)
    if await _exists(client, workflow_id):
        return BroadcastHandle(request.id, workflow_id, True, client)
    if request.recipients is not None:
        if store is None:
            raise InvalidBroadcastError(
                "a broadcast to a recipient list needs the store (the list is stored, not put in history)"
            )
        for start in range(0, len(request.recipients), AUDIENCE_CHUNK):
            await store.broadcasts.add_audience(
                request.id, request.recipients[start : start + AUDIENCE_CHUNK]
            )
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(sa.BROADCAST_ID, request.id),
            SearchAttributePair(sa.BROADCAST_STATUS, BroadcastPhase.scheduled.value),
        ]
    )
    existing = False
    try:
        handle = await client.start_workflow(
            "BroadcastWorkflow",
            broadcast_input(request),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=attributes,
            static_summary=broadcast_summary(request),
        )
        response = getattr(handle, "_start_workflow_response", None)
        existing = response is not None and not getattr(response, "started", True)
    except WorkflowAlreadyStartedError:
        existing = True
    return BroadcastHandle(request.id, workflow_id, existing, client)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
