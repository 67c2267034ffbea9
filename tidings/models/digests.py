"""Digests: many events for one recipient and key become one message at the end of a window.

A request with `digest` does not start a NotificationWorkflow per recipient: the client
signals-with-start one DigestWorkflow per (recipient, key) (workflow id `digest-<recipient>~<key>`)
with the event as an item. The window opens on the first item and closes

- `fixed`: `window` after it opened;
- `sliding`: `window` after the latest item, but never later than `max_window` after it opened;
- scheduled (`until_local_time`, e.g. "08:00"): at the recipient's next 08:00 in their time zone;
- early, when it holds `max_items` items (or MAX_DIGEST_ITEM_BYTES x max_items of them).

Then the digest is sent once as a child NotificationWorkflow (preferences, quiet hours,
fallbacks, caps and state as for any notification) with the digest template's variables
`items`, `count`, `first`, `last` and `key`. Items that arrive after the window closed, or beyond
its cap, open the next window (the workflow continues as new carrying them).

Pure and free of I/O: imported inside Temporal's workflow sandbox.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from tidings.models.digest_spec import DigestSpec
from tidings.models.fields import (
    MAX_TITLE_LENGTH,
    AwareDatetime,
    Category,
    Channel,
    HttpUrl,
    Identifier,
    Model,
    NotificationId,
    OneLine,
    Priority,
    _check_json_value,
    serialized_size,
)
from tidings.models.recipients import Recipient
from tidings.models.requests import ChannelStep, Content, RetryOverride
from tidings.models.state import NotificationState, StateEvent

DIGEST_WORKFLOW_PREFIX = "digest-"
# One item's budget: the rendered digest travels as one notification's content (64 KiB).
MAX_DIGEST_ITEM_BYTES = 2 * 1024
MAX_DIGEST_BYTES = 48 * 1024


class DigestItem(Model):
    """One event of a digest: what the digest template shows of it."""

    id: NotificationId = Field(description="the event's notification id, <request id>~<recipient id>")
    title: Annotated[OneLine, Field(max_length=MAX_TITLE_LENGTH)] | None = None
    body: str | None = None
    url: HttpUrl | None = None
    data: dict[str, str] = Field(default_factory=dict, max_length=50)
    variables: Annotated[dict[str, Any], AfterValidator(_check_json_value)] = Field(default_factory=dict)
    requested_at: AwareDatetime | None = None
    received_at: AwareDatetime | None = Field(default=None, description="set by the digest workflow")

    @model_validator(mode="after")
    def _small(self) -> DigestItem:
        size = serialized_size(self, "a digest item")
        if size > MAX_DIGEST_ITEM_BYTES:
            raise ValueError(
                f"a digest item is {size} bytes of JSON; the limit is {MAX_DIGEST_ITEM_BYTES} "
                "(the digest is sent as one message: keep items short)"
            )
        return self

    @classmethod
    def from_content(cls, item_id: str, content: Content, requested_at: Any = None) -> DigestItem:
        return cls(
            id=item_id,
            title=content.title,
            body=content.body,
            url=content.url,
            data=content.data,
            variables=content.variables,
            requested_at=requested_at,
        )


class DigestInput(Model):
    """The input of one DigestWorkflow run: the recipient, the digest and how to send it (taken
    from the request that opened the digest), and items carried over from the previous window."""

    recipient_id: Identifier
    recipient: Recipient | None = None
    digest: DigestSpec
    channels: list[ChannelStep] = Field(min_length=1)
    priority: Priority = Priority.normal
    category: Category | None = None
    retry: dict[Channel, RetryOverride] = Field(default_factory=dict)
    recipient_search_value: str | None = Field(
        default=None,
        description="the RecipientId search attribute of the digest notification (hashed when the "
        "client hashes recipient ids); None: the recipient id",
    )
    carried: list[DigestItem] = Field(default_factory=list)
    sequence: int = Field(default=0, ge=0, description="how many digests this workflow id sent before")

    @property
    def workflow_id(self) -> str:
        return digest_workflow_id(self.recipient_id, self.digest.key)


def digest_workflow_id(recipient_id: str, key: str) -> str:
    """`digest-<recipient>~<key>`: `~` occurs in neither (both are ids), so the id is unambiguous."""
    return f"{DIGEST_WORKFLOW_PREFIX}{recipient_id}~{key}"


class NextLocalTimeInput(Model):
    """Input of the local activity that finds a scheduled digest's end in the recipient's zone."""

    recipient_id: str
    recipient: Recipient | None = None
    after: AwareDatetime
    local_time: time


class DigestPhase(StrEnum):
    collecting = "collecting"
    sending = "sending"
    sent = "sent"
    cancelled = "cancelled"
    failed = "failed"  # the workflow's input did not validate (a client other than Tidings')


class DigestState(Model):
    """The `status` query of a digest, and its workflow's result."""

    workflow_id: str
    recipient_id: str
    key: str
    window: str
    phase: DigestPhase = DigestPhase.collecting
    sequence: int = 0
    opened_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None
    items: list[DigestItem] = Field(default_factory=list)
    next_items: list[str] = Field(default_factory=list, description="ids waiting for the next window")
    notification_id: str | None = None
    notification: NotificationState | None = Field(default=None, description="the sent digest's final state")
    reason: str | None = None
    events: list[StateEvent] = Field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def summary(self) -> str:
        return f"digest of {self.count} to {self.recipient_id}: {self.key}"


def digest_variables(key: str, items: list[DigestItem], extra: dict[str, Any]) -> dict[str, Any]:
    """What the digest template receives."""
    shown = [item.model_dump(mode="json", exclude={"requested_at"}) for item in items]
    return {**extra, "items": shown, "count": len(shown), "first": shown[0], "last": shown[-1], "key": key}
