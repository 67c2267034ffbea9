"""The Tidings client: how services start, inspect, cancel and reschedule notifications.

Every request is validated here, before any workflow starts, so bad input fails at the caller
with a specific message. Starting is idempotent: the workflow id is derived from the request's
id, so sending the same id twice attaches to (or reports) the first notification.

    async with await TidingsClient.connect() as tidings:
        [handle] = await tidings.send({"id": "order-123-shipped", "recipients": ["user-42"],
                                       "channels": ["push", "email"],
                                       "content": {"title": "Order #123 shipped"}})
        state = await handle.status()
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import DataConverter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tidings import search_attributes as sa
from tidings.activities.failover.route import ledger_from
from tidings.activities.store.base import Store
from tidings.activities.templates import validate_template_content
from tidings.codec import recipient_hash_key, recipient_search_value
from tidings.models import (
    DEFAULT_TASK_QUEUE,
    RECIPIENT_SEPARATOR,
    WORKFLOW_ID_PREFIX,
    Channel,
    DeliveryInput,
    DeliveryStatus,
    NotificationInput,
    NotificationRequest,
    NotificationState,
    Phase,
    Recipient,
    SignalOutcome,
    notification_id_for,
    workflow_id_for,
)
from tidings.models.broadcasts import BroadcastRequest
from tidings.settings import Settings, load_settings
from tidings.starters.broadcasts import BroadcastHandle, broadcast_handle, parse_broadcast, start_broadcast
from tidings.starters.digests import (
    DigestHandle,
    digest_content_for,
    digest_input_for,
    digest_search_attributes,
    items_or_error,
)
from tidings.starters.updates import ask_update
from tidings.telemetry.tracing import SEND_SPAN, traced
from tidings.validation import validation_message as validation_message
from tidings.workflows.notification import NotificationWorkflow, initial_phase, search_attributes_for


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InvalidRequestError(ValueError):
    """The request was refused before anything started. `str()` lists every problem."""


class NotificationNotFoundError(LookupError):
    pass


def _id_hint(notification_id: str) -> str:
    if RECIPIENT_SEPARATOR in notification_id:
        return ""
    return f"; a notification id names its recipient: {notification_id}~<recipient id>"


def parse_request(request: NotificationRequest | dict[str, Any]) -> NotificationRequest:
    if isinstance(request, NotificationRequest):
        return request
    try:
        return NotificationRequest.model_validate(request)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from None


def split_by_recipient(request: NotificationRequest, now: datetime) -> list[NotificationInput]:
    """One workflow input per recipient, with the notification id `<id>~<recipient id>`."""
    base_id = request.id or uuid.uuid4().hex
    common = request.model_dump(exclude={"id", "recipients", "digest"})
    inputs = []
    for ref in request.recipients:
        recipient = ref if isinstance(ref, Recipient) else None
        recipient_id = ref.id if isinstance(ref, Recipient) else ref
        notification_id = notification_id_for(base_id, recipient_id)
        inputs.append(
            NotificationInput.model_validate(
                {
                    **common,
                    "id": notification_id,
                    "recipient_id": recipient_id,
                    "recipient": recipient.model_dump() if recipient else None,
                    "requested_at": now,
                }
            )
        )
    return inputs


def static_summary(request: NotificationInput) -> str:
    """One line the Web UI shows for the workflow: 'push+email to user-42: Order #123 shipped'."""
    channels = "+".join(step.channel.value for step in request.channels)
    content = request.content
    what = content.title or content.body or (f"template {content.template_id}" if content.template_id else "")
    if len(what) > 80:
        what = what[:79] + "…"
    when = f" at {request.schedule_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if request.schedule_at else ""
    return f"{channels} to {request.recipient_id}: {what}{when}"


def static_details(request: NotificationInput) -> str:
    plan = ", ".join(" → ".join(c.value for c in (step.channel, *step.fallback)) for step in request.channels)
    lines = [
        f"**Recipient:** {request.recipient_id}",
        f"**Channel plan:** {plan}",
        f"**Priority:** {request.priority.value}"
        + (f", category {request.category}" if request.category else ""),
    ]
    if request.schedule_at:
        lines.append(f"**Scheduled for:** {request.schedule_at.isoformat()}")
    if request.expires_at:
        lines.append(f"**Expires at:** {request.expires_at.isoformat()}")
    return "\n".join(lines)


def validate_request(
    request: NotificationRequest | dict[str, Any], templates_dir: Path | None = None
) -> list[NotificationInput]:
    """Check a request completely, templates included, and return the per-recipient inputs.

    Needs no server: the CLI calls it before connecting, so bad input never waits on a network.
    """
    parsed = parse_request(request)
    if parsed.content.template_id is not None and parsed.digest is None:
        try:
            validate_template_content(parsed.content, templates_dir)
        except ValueError as exc:
            raise InvalidRequestError(f"invalid notification request:\n  content: {exc}") from None
    now = datetime.now(UTC)
    if parsed.expires_at is not None and parsed.expires_at <= now:
        raise InvalidRequestError("invalid notification request:\n  expires_at: already in the past")
    inputs = split_by_recipient(parsed, now)
    if parsed.digest is not None:
        try:
            [sample, *_] = items_or_error(inputs)
            validate_template_content(digest_content_for(parsed.digest, sample), templates_dir)
        except ValueError as exc:
            raise InvalidRequestError(f"invalid notification request:\n  digest: {exc}") from None
    return inputs


async def with_live_attempts(
    state: NotificationState,
    handle: WorkflowHandle[Any, Any],
    description: WorkflowExecutionDescription,
    converter: DataConverter,
) -> NotificationState:
    """Fill in the attempt under way, the last failure and (failover) the providers tried so far
    of each delivery that is retrying.

    The workflow learns an activity's attempts only when it ends; the server knows them while it
    retries (its pending activities). Which delivery a pending activity is comes from the input it
    was scheduled with, read from history only when a delivery is retrying at all.
    """
    pending = {p.activity_id: p for p in description.raw_description.pending_activities if p.attempt > 1}
    if not pending:
        return state
    delivery_of: dict[str, str] = {}
    async for event in handle.fetch_history_events():
        if not event.HasField("activity_task_scheduled_event_attributes"):
            continue
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_id in pending and scheduled.activity_type.name == "deliver":
            [delivery] = await converter.decode(scheduled.input.payloads, [DeliveryInput])
            delivery_of[delivery.delivery_id] = scheduled.activity_id
    for destination in state.destinations:
        activity = pending.get(delivery_of.get(destination.delivery_id, ""))
        if activity is None or destination.status is not DeliveryStatus.sending:
            continue
        destination.attempts = activity.attempt
        if activity.HasField("last_failure") and activity.last_failure.message:
            destination.last_error = activity.last_failure.message
        if activity.HasField("heartbeat_details") and activity.heartbeat_details.payloads:
            # failover: the ledger the last attempt left (providers moved on from, skipped)
            ledger = await converter.decode(activity.heartbeat_details.payloads)
            destination.providers_tried = ledger_from(ledger) or destination.providers_tried
    return state


@dataclass(frozen=True)
class NotificationHandle:
    """A started notification. `existing` is true when the id had already been used."""

    notification_id: str
    workflow_id: str
    recipient_id: str
    existing: bool
    _handle: WorkflowHandle[Any, Any]
    _converter: DataConverter

    async def status(self) -> NotificationState:
        """The live state, with the attempt and last failure of deliveries that are retrying."""
        state = await self._handle.query(NotificationWorkflow.status)
        return await with_live_attempts(state, self._handle, await self._handle.describe(), self._converter)

    async def result(self) -> NotificationState:
        result = await self._handle.result()
        return NotificationState.model_validate(result)


class TidingsClient:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        templates_dir: Path | None = None,
        eager_start: bool = False,
        recipient_hash_key: bytes | None = None,
        capped_channels: frozenset[Channel] = frozenset(),
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.templates_dir = templates_dir
        self.eager_start = eager_start
        # codec.hash_recipient_ids: `RecipientId` holds HMAC-SHA256(key, id), set and queried here
        self.recipient_hash_key = recipient_hash_key
        # channels the workers' default frequency caps ([frequency_caps]) apply to: notifications
        # on them go through the store's counters (see `initial_phase`)
        self.capped_channels = capped_channels

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> TidingsClient:
        from tidings.workers.worker import connect

        settings = settings or load_settings()
        return cls.for_settings(await connect(settings), settings)

    @classmethod
    def for_settings(cls, client: Client, settings: Settings) -> TidingsClient:
        """A client over an open Temporal connection, configured as `settings` say: task queue,
        templates, recipient-id hashing and the channels with default frequency caps."""
        return cls(
            client,
            task_queue=settings.temporal.task_queue,
            templates_dir=settings.templates.directory,
            recipient_hash_key=recipient_hash_key(settings),
            capped_channels=settings.frequency_caps.capped_channels(),
        )

    async def __aenter__(self) -> TidingsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def validate(self, request: NotificationRequest | dict[str, Any]) -> list[NotificationInput]:
        """Check a request completely, templates included, and return the per-recipient inputs."""
        return validate_request(request, self.templates_dir)

    @traced(SEND_SPAN)
    async def send(self, request: NotificationRequest | dict[str, Any]) -> list[NotificationHandle]:
        """Validate, then start one NotificationWorkflow per recipient (idempotent by id).

        A request with `digest` goes through `add_to_digest` instead."""
        inputs = self.validate(request)
        if parse_request(request).digest is not None:
            raise InvalidRequestError("a request with `digest` joins a digest: use add_to_digest()")
        return [await self._start(item) for item in inputs]

    async def add_to_digest(self, request: NotificationRequest | dict[str, Any]) -> list[DigestHandle]:
        """Validate, then add the event to each recipient's digest for the request's key, with
        signal-with-start on `digest-<recipient>~<key>` (see tidings/starters/digests.py)."""
        parsed = parse_request(request)
        spec = parsed.digest
        if spec is None:
            raise InvalidRequestError("add_to_digest needs a request with `digest` ({key, window, ...})")
        inputs = self.validate(parsed)
        handles = []
        for item, digest_item in zip(inputs, items_or_error(inputs), strict=True):
            searched_as = recipient_search_value(self.recipient_hash_key, item.recipient_id)
            digest = digest_input_for(item, spec, searched_as)
            started: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                "DigestWorkflow",
                digest,
                id=digest.workflow_id,
                task_queue=self.task_queue,
                start_signal="add_item",
                start_signal_args=[digest_item],
                search_attributes=digest_search_attributes(searched_as),
                static_summary=f"digest to {item.recipient_id}: {spec.key}",
                static_details=f"**Digest:** {spec.key}, window {spec.describe()}",
            )
            handles.append(DigestHandle(self.client, item.recipient_id, spec.key, item.id, started))
        return handles

    def digest(self, recipient_id: str, key: str) -> DigestHandle:
        """The handle to a recipient's digest for `key` (status, cancel_item, cancel, reschedule)."""
        return DigestHandle(self.client, recipient_id, key)

    async def _start(self, item: NotificationInput) -> NotificationHandle:
        existing = False
        try:
            # By name: the workflow takes its input raw (it validates it itself), so its Python
            # signature does not name the input model.
            handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                "NotificationWorkflow",
                item,
                result_type=NotificationState,
                id=item.workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=self._search_attributes(item),
                static_summary=static_summary(item),
                static_details=static_details(item),
                request_eager_start=self.eager_start,
            )
            # With USE_EXISTING the server answers `started=false` when it attached to a running one.
            response = getattr(handle, "_start_workflow_response", None)
            existing = response is not None and not getattr(response, "started", True)
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle_for(NotificationWorkflow.run, item.workflow_id)
            existing = True
        return NotificationHandle(
            item.id, item.workflow_id, item.recipient_id, existing, handle, self.client.data_converter
        )

    def _search_attributes(self, item: NotificationInput) -> TypedSearchAttributes:
        attributes = search_attributes_for(item, initial_phase(item, self.capped_channels))
        if self.recipient_hash_key is None:
            return attributes
        hashed = recipient_search_value(self.recipient_hash_key, item.recipient_id)
        return attributes.updated(SearchAttributePair(sa.RECIPIENT_ID, hashed))

    def recipient_query(self, recipient_id: str, status: Phase | None = None) -> str:
        """The visibility query for a recipient's notifications (hashed like the attribute)."""
        value = recipient_search_value(self.recipient_hash_key, recipient_id)
        query = f"WorkflowType = 'NotificationWorkflow' AND RecipientId = {_quoted(value)}"
        if status is not None:
            query += f" AND NotificationStatus = {_quoted(status.value)}"
        return query

    async def find(self, recipient_id: str, status: Phase | None = None, limit: int = 100) -> list[str]:
        """The notification ids of a recipient's notifications, found through the
        `RecipientId` search attribute (visibility is eventually consistent: a notification
        started a moment ago may be missing)."""
        ids: list[str] = []
        query = self.recipient_query(recipient_id, status)
        async for execution in self.client.list_workflows(query, limit=limit):
            ids.append(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
        return ids

    async def broadcast(
        self, request: BroadcastRequest | dict[str, Any], store: Store | None = None
    ) -> BroadcastHandle:
        """Validate, store the recipient list (if any, in `store`), and start one BroadcastWorkflow
        (`broadcast-<id>`, idempotent by id). See tidings.starters.broadcasts for send vs broadcast."""
        parsed = parse_broadcast(request, self.templates_dir)
        return await start_broadcast(self.client, self.task_queue, parsed, store)

    def broadcast_handle(self, broadcast_id: str) -> BroadcastHandle:
        return broadcast_handle(self.client, broadcast_id)

    def handle(self, notification_id: str) -> WorkflowHandle[Any, NotificationState]:
        return self.client.get_workflow_handle_for(NotificationWorkflow.run, workflow_id_for(notification_id))

    async def status(self, notification_id: str) -> NotificationState:
        """The live state of a running notification, or the final state of a finished one.

        A finished notification's state is its workflow result, which needs no worker to read.
        """
        handle = self.handle(notification_id)
        try:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.RUNNING:
                state = await handle.query(NotificationWorkflow.status)
                return await with_live_attempts(state, handle, description, self.client.data_converter)
            if description.status is WorkflowExecutionStatus.COMPLETED:
                return NotificationState.model_validate(await handle.result())
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise NotificationNotFoundError(
                    f"no notification with id {notification_id!r}{_id_hint(notification_id)}"
                ) from None
            raise
        status_name = description.status.name if description.status else "unknown"
        raise NotificationNotFoundError(
            f"notification {notification_id!r} ended as {status_name} without a final state; "
            "see its history in the Temporal Web UI"
        )

    async def cancel(self, notification_id: str, reason: str | None = None) -> SignalOutcome:
        """Cancel a waiting notification; refused (accepted=False) once delivery started."""
        return await self._update(notification_id, "cancel", reason)

    async def reschedule(self, notification_id: str, schedule_at: datetime) -> SignalOutcome:
        if schedule_at.utcoffset() is None:
            raise InvalidRequestError("schedule_at needs a UTC offset, e.g. 2030-01-01T09:00:00+00:00")
        return await self._update(notification_id, "reschedule", schedule_at.isoformat())

    async def _update(self, notification_id: str, update: str, arg: Any) -> SignalOutcome:
        return await ask_update(
            self.handle(notification_id),
            update,
            [arg],
            lambda: NotificationNotFoundError(
                f"no running notification with id {notification_id!r} (it may have finished)"
                f"{_id_hint(notification_id)}"
            ),
        )
