"""The client side of digests: turning a request with `digest` into signal-with-start calls, and
the handle to a recipient's digest (status with its items, cancel an item, cancel, reschedule).

Each recipient of the request adds one item, `<request id>~<recipient id>`, to the workflow
`digest-<recipient>~<key>`: signal-with-start starts it when no digest for that recipient and key
is collecting, and signals the running one otherwise, atomically on the server, so concurrent
events from any number of processes join one window. Sending the same request id again while
the digest collects adds nothing (the workflow ignores an item id it holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from tidings import search_attributes as sa
from tidings.models import (
    Content,
    DigestInput,
    DigestItem,
    DigestSpec,
    DigestState,
    NotificationInput,
    SignalOutcome,
    digest_variables,
    digest_workflow_id,
)
from tidings.starters.updates import ask_update
from tidings.validation import validation_message


class DigestNotFoundError(LookupError):
    pass


def digest_item_for(item: NotificationInput) -> DigestItem:
    """The item one recipient's event adds to their digest (ValueError when it is too large)."""
    return DigestItem.from_content(item.id, item.content, item.requested_at)


def digest_input_for(item: NotificationInput, spec: DigestSpec, recipient_search_value: str) -> DigestInput:
    """The digest workflow's input, used when this event starts the digest."""
    return DigestInput(
        recipient_id=item.recipient_id,
        recipient_search_value=recipient_search_value,
        recipient=item.recipient,
        digest=spec,
        channels=item.channels,
        priority=item.priority,
        category=item.category,
        retry=item.retry,
    )


def digest_content_for(spec: DigestSpec, sample: DigestItem) -> Content:
    """The digest message's content as the template will see it, with one item: the client
    try-renders it before anything starts."""
    return Content(
        template_id=spec.template_id, variables=digest_variables(spec.key, [sample], spec.variables)
    )


def items_or_error(inputs: list[NotificationInput]) -> list[DigestItem]:
    try:
        return [digest_item_for(i) for i in inputs]
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "digest item")) from None


@dataclass(frozen=True)
class DigestHandle:
    """A recipient's digest for one key; `item_id` is the item this call added (if any)."""

    client: Client
    recipient_id: str
    key: str
    item_id: str | None = None
    started: WorkflowHandle[Any, Any] | None = None  # the run this call signalled or started

    @property
    def workflow_id(self) -> str:
        return digest_workflow_id(self.recipient_id, self.key)

    def _handle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.workflow_id, result_type=DigestState)

    async def status(self) -> DigestState:
        """The collecting digest with its items, or the last one's final state."""
        handle = self._handle()
        try:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.RUNNING:
                state: DigestState = await handle.query("status", result_type=DigestState)
                return state
            if description.status is WorkflowExecutionStatus.COMPLETED:
                return DigestState.model_validate(await handle.result())
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise DigestNotFoundError(f"no digest {self.key!r} for {self.recipient_id!r}") from None
            raise
        status = description.status.name if description.status else "unknown"
        raise DigestNotFoundError(f"digest {self.workflow_id!r} ended as {status} without a final state")

    async def result(self) -> DigestState:
        """The final state of the digest this call joined, following the runs it continued as
        (items carried to a next window): the last run's state."""
        return DigestState.model_validate(await (self.started or self._handle()).result())

    async def cancel_item(self, item_id: str) -> SignalOutcome:
        return await self._update("cancel_item", item_id)

    async def cancel(self, reason: str | None = None) -> SignalOutcome:
        return await self._update("cancel", reason)

    async def reschedule(self, closes_at: datetime) -> SignalOutcome:
        if closes_at.utcoffset() is None:
            raise ValueError("closes_at needs a UTC offset, e.g. 2030-01-01T09:00:00+00:00")
        return await self._update("reschedule", closes_at.isoformat())

    async def _update(self, name: str, arg: Any) -> SignalOutcome:
        return await ask_update(
            self._handle(),
            name,
            [arg],
            lambda: DigestNotFoundError(
                f"no collecting digest {self.key!r} for {self.recipient_id!r} (it may have been sent)"
            ),
        )


def digest_search_attributes(recipient_value: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(sa.RECIPIENT_ID, recipient_value)])
