"""DigestWorkflow: the events for one recipient and key in one window, sent as one notification.

One workflow per (recipient, key), on the deterministic id `digest-<recipient>~<key>`. Clients
add events with signal-with-start (signal `add_item`), so concurrent events, from any number of
processes, land in the one running workflow; Temporal serialises the signals. Its life:

1. Collect: the window opens at the first item and closes at its end (fixed, sliding capped by
   max_window, or the recipient's next local HH:MM), or at once when it holds max_items items or
   MAX_DIGEST_BYTES of them. Items can be cancelled one by one; a digest whose items are all
   cancelled ends `cancelled` without sending.
2. Send: the batch becomes one child NotificationWorkflow (notification id
   `digest.<key>.<12 hex>~<recipient>`), rendered once with the digest template, so preferences,
   quiet hours, fallbacks, caps and the notification's state apply as to any notification.
3. Carry over: items that arrived after the window closed (or beyond its cap) are carried into
   the next run by continue-as-new. The decision to end or continue is taken in the workflow task
   that last saw a signal: a signal that arrives while the workflow completes makes Temporal refuse
   the completion and redo the task with it, so no item is ever lost or sent twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from tidings import search_attributes as sa
    from tidings.activities.subscribers import SubscriberActivities
    from tidings.models import (
        Content,
        DigestInput,
        DigestItem,
        DigestPhase,
        DigestState,
        NextLocalTimeInput,
        NotificationInput,
        NotificationState,
        Phase,
        SignalOutcome,
        StateEvent,
        digest_variables,
        notification_id_for,
        workflow_id_for,
    )
    from tidings.models.digests import MAX_DIGEST_BYTES
    from tidings.workflows.inputs import InvalidInput, decode
    from tidings.workflows.notification import LOCAL_ACTIVITY_TIMEOUT, parse_schedule, search_attributes_for


_NO_INPUT = RawValue(Payload())


@workflow.defn(name="DigestWorkflow")
class DigestWorkflow:
    """Takes its input raw and validates it itself, like NotificationWorkflow: input from any
    client either runs or ends `failed` with the validation message (and the items it got)."""

    @workflow.init
    def __init__(self, request: RawValue = _NO_INPUT) -> None:
        self._invalid_input: str | None = None
        workflow_id = workflow.info().workflow_id
        try:
            if request is _NO_INPUT:
                raise InvalidInput("invalid digest input: DigestWorkflow needs one argument (a DigestInput)")
            self._request: DigestInput = decode(request.payload, DigestInput, "digest input")
            spec = self._request.digest
            self._state = DigestState(
                workflow_id=workflow_id,
                recipient_id=self._request.recipient_id,
                key=spec.key,
                window=spec.describe(),
                sequence=self._request.sequence,
            )
        except InvalidInput as exc:
            self._invalid_input = str(exc)
            self._state = DigestState(
                workflow_id=workflow_id, recipient_id="unknown", key="unknown", window="none"
            )
        self._closed = False
        self._next: list[DigestItem] = []
        self._seen: set[str] = set()
        self._version = 0
        self._closes_override: datetime | None = None
        self._child: workflow.ChildWorkflowHandle[Any, NotificationState] | None = None
        self._cancel_reason: str | None = None
        if self._invalid_input is None:
            carried = self._request.carried  # stamped when they arrived in an earlier run
            self._state.items = list(carried)
            self._seen = {item.id for item in carried}

    # ----------------------------------------------------------------- main line

    @workflow.run
    async def run(self, request: RawValue = _NO_INPUT) -> DigestState:
        if self._invalid_input is not None:
            self._closed = True
            self._state.phase = DigestPhase.failed
            self._state.reason = self._invalid_input
            self._event(f"failed: {self._invalid_input}")
            return self._state
        await workflow.wait_condition(lambda: bool(self._state.items) or self._closed)
        if self._state.items:
            await self._collect()
        self._closed = True
        batch, overflow = self._split(self._state.items)
        self._next = overflow + self._next
        self._state.items = batch
        self._state.next_items = [i.id for i in self._next]
        if batch:
            await self._send(batch)
        else:
            self._state.phase = DigestPhase.cancelled
            self._state.reason = self._cancel_reason or "every item was cancelled"
            self._event(f"cancelled: {self._state.reason}")
        if self._next:
            carried_on = {"carried": self._next, "sequence": self._request.sequence + 1}
            workflow.continue_as_new(self._request.model_copy(update=carried_on))
        return self._state

    async def _collect(self) -> None:
        first = self._state.items[0]
        assert first.received_at is not None
        self._state.opened_at = first.received_at
        spec = self._request.digest
        scheduled_end: datetime | None = None
        if spec.until_local_time is not None:
            scheduled_end = await workflow.execute_local_activity_method(
                SubscriberActivities.next_local_time,
                NextLocalTimeInput(
                    recipient_id=self._request.recipient_id,
                    recipient=self._request.recipient,
                    after=first.received_at,
                    local_time=spec.until_local_time,
                ),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                summary=f"next {spec.until_local_time.strftime('%H:%M')} of {self._request.recipient_id}",
            )
        self._event(f"window opened ({spec.describe()})")
        while self._state.items and not self._full():
            closes_at = self._closes_at(scheduled_end)
            self._state.closes_at = closes_at
            self._details()
            remaining = closes_at - workflow.now()
            if remaining <= timedelta(0):
                break
            if not await self._changed_within(remaining):
                break
        if self._state.items:
            self._event(f"window closed with {len(self._state.items)} item(s)")

    async def _changed_within(self, remaining: timedelta) -> bool:
        """Wait for an item, a cancellation or a reschedule; False when the window ran out first."""
        version = self._version
        try:
            await workflow.wait_condition(
                lambda: self._version != version, timeout=remaining, timeout_summary="digest window"
            )
        except TimeoutError:
            return False
        return True

    def _closes_at(self, scheduled_end: datetime | None) -> datetime:
        if self._closes_override is not None:
            return self._closes_override
        if scheduled_end is not None:
            return scheduled_end
        spec = self._request.digest
        opened = self._state.opened_at
        assert opened is not None and spec.window is not None
        if spec.mode == "fixed":
            return opened + spec.window
        assert spec.max_window is not None
        latest = max(i.received_at or opened for i in self._state.items)
        return min(latest + spec.window, opened + spec.max_window)

    def _full(self) -> bool:
        return (
            len(self._state.items) >= self._request.digest.max_items
            or _size(self._state.items) >= MAX_DIGEST_BYTES
        )

    def _split(self, items: list[DigestItem]) -> tuple[list[DigestItem], list[DigestItem]]:
        """The batch this window sends (within max_items and the byte budget) and the rest."""
        batch: list[DigestItem] = []
        size = 0
        for item in items:
            item_size = _size([item])
            if len(batch) >= self._request.digest.max_items or (
                batch and size + item_size > MAX_DIGEST_BYTES
            ):
                break
            batch.append(item)
            size += item_size
        return batch, items[len(batch) :]

    async def _send(self, batch: list[DigestItem]) -> None:
        request = self._request
        spec = request.digest
        notification_id = notification_id_for(
            f"digest.{spec.key}.{workflow.uuid4().hex[:12]}", request.recipient_id
        )
        variables = digest_variables(spec.key, batch, spec.variables)
        # within MAX_CONTENT_BYTES: items are cut at MAX_DIGEST_BYTES, digest variables at 4 KiB
        content = Content(template_id=spec.template_id, variables=variables)
        notification = NotificationInput(
            id=notification_id,
            recipient_id=request.recipient_id,
            recipient=request.recipient,
            content=content,
            channels=request.channels,
            priority=request.priority,
            category=request.category,
            retry=request.retry,
            requested_at=workflow.now(),
        )
        self._state.phase = DigestPhase.sending
        self._state.notification_id = notification_id
        summary = self._state.summary
        self._event(f"sending {summary} as notification {notification_id}")
        self._child = await workflow.start_child_workflow(
            "NotificationWorkflow",
            notification,
            id=workflow_id_for(notification_id),
            result_type=NotificationState,
            search_attributes=self._search_attributes(notification),
            static_summary=summary,
            static_details=f"**Digest:** {spec.key}, {len(batch)} items, window {spec.describe()}",
        )
        try:
            state = await self._child
        except ChildWorkflowError as err:
            self._state.phase = DigestPhase.sent
            self._state.reason = f"the digest notification ended without a state: {err.cause or err}"
            self._event(self._state.reason)
            return
        self._state.notification = state
        self._state.phase = DigestPhase.sent
        self._state.reason = f"notification {state.phase.value}" + (
            f": {state.reason}" if state.reason else ""
        )
        self._event(self._state.reason)

    def _search_attributes(self, notification: NotificationInput) -> TypedSearchAttributes:
        """What the client sets on a notification, with the RecipientId the client computed (so a
        hashed recipient id stays hashed: the workflow never sees the hash key)."""
        attributes = search_attributes_for(notification, Phase.scheduled)
        value = self._request.recipient_search_value
        return attributes.updated(SearchAttributePair(sa.RECIPIENT_ID, value)) if value else attributes

    # ----------------------------------------------------------------- signals, updates, query

    @workflow.signal(name="add_item")
    def add_item(self, raw: RawValue) -> None:
        """Add an event; an id already in this digest is ignored (a client's retry)."""
        try:
            item: DigestItem = decode(raw.payload, DigestItem, "digest item")
        except InvalidInput as exc:
            self._event(f"add_item ignored: {' '.join(str(exc).split())}")
            return
        if item.id in self._seen:
            return
        self._take(item)

    def _take(self, item: DigestItem) -> None:
        if item.received_at is None:
            item = item.model_copy(update={"received_at": workflow.now()})
        self._seen.add(item.id)
        if self._closed:
            self._next.append(item)
            self._state.next_items.append(item.id)
        else:
            self._state.items.append(item)
            self._version += 1
        self._details()

    @workflow.update(name="cancel_item")
    def cancel_item(self, item_id: str) -> SignalOutcome:
        kept = [i for i in self._next if i.id != item_id]
        if len(kept) != len(self._next):
            self._next = kept
            self._state.next_items = [i.id for i in kept]
        else:
            self._state.items = [i for i in self._state.items if i.id != item_id]
            self._version += 1
        self._seen.discard(item_id)
        self._event(f"item {item_id} cancelled")
        return SignalOutcome(accepted=True)

    @cancel_item.validator
    def _validate_cancel_item(self, item_id: str) -> None:
        if any(i.id == item_id for i in self._next):
            return
        if not any(i.id == item_id for i in self._state.items):
            raise ApplicationError(
                f"no item {item_id!r} in this digest", type="CancelRefused", non_retryable=True
            )
        if self._closed:
            raise ApplicationError(
                f"the digest with item {item_id!r} is already {self._state.phase.value}",
                type="CancelRefused",
                non_retryable=True,
            )

    @workflow.update(name="cancel")
    async def cancel(self, reason: str | None = None) -> SignalOutcome:
        """Cancel the digest: every item while it collects; the notification while it waits."""
        if not self._closed:
            self._cancel_reason = reason or "cancelled by request"
            self._state.items = []
            self._version += 1
            self._event("cancel requested" + (f": {reason}" if reason else ""))
            return SignalOutcome(accepted=True)
        if self._child is None:
            return SignalOutcome(accepted=False, reason=f"digest is already {self._state.phase.value}")
        await self._child.signal("cancel", reason)
        self._event("cancel forwarded to the digest notification" + (f": {reason}" if reason else ""))
        return SignalOutcome(accepted=True, reason="forwarded to the notification (refused once it sends)")

    @workflow.update(name="reschedule")
    def reschedule(self, closes_at: str) -> SignalOutcome:
        when = parse_schedule(closes_at)
        self._closes_override = when
        self._version += 1
        self._event(f"window rescheduled to close at {when.isoformat()}")
        return SignalOutcome(accepted=True)

    @reschedule.validator
    def _validate_reschedule(self, closes_at: str) -> None:
        try:
            parse_schedule(closes_at)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="RescheduleRefused", non_retryable=True) from None
        if self._closed or not self._state.items:
            raise ApplicationError(
                f"digest is {self._state.phase.value}, not collecting",
                type="RescheduleRefused",
                non_retryable=True,
            )

    @workflow.query(name="status")
    def status(self) -> DigestState:
        return self._state

    # ----------------------------------------------------------------- state

    def _event(self, message: str) -> None:
        self._state.events.append(StateEvent(at=workflow.now(), message=message))
        self._details()

    def _details(self) -> None:
        state = self._state
        lines = [f"**{state.summary}** ({state.phase.value}, window {state.window})"]
        if state.closes_at and state.phase is DigestPhase.collecting:
            lines.append(f"**Closes at:** {state.closes_at.isoformat()}")
        if state.notification_id:
            lines.append(f"**Notification:** {state.notification_id}")
        if state.next_items:
            lines.append(f"**Waiting for the next window:** {len(state.next_items)} item(s)")
        if state.events:
            lines.append(f"**Last event:** {state.events[-1].message}")
        workflow.set_current_details("\n".join(lines))


def _size(items: list[DigestItem]) -> int:
    return sum(len(item.model_dump_json()) for item in items)
