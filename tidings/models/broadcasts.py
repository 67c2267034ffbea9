"""Broadcasts: one notification to an audience (a topic, or a stored list of recipient ids).

The audience never travels through workflow history: the workflow only carries cursors (the last
recipient id of a page) and counters, and each batch activity reads its page from the store.

Pure and free of I/O: imported inside Temporal's workflow sandbox.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from tidings.models.fields import AwareDatetime, Identifier, Model, OneLine
from tidings.models.requests import _NotificationCommon

BROADCAST_WORKFLOW_PREFIX = "broadcast-"
MAX_BATCH_SIZE = 1000
MAX_WINDOW = 50
MAX_RATE = 100_000.0
_TOPIC_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


def _check_topic(value: str) -> str:
    if not _TOPIC_PATTERN.fullmatch(value):
        raise ValueError(
            "a topic key is 1-100 lowercase letters, digits, '_', '.' or '-', starting with a letter "
            f"or digit, e.g. 'release-notes' (got {value[:40]!r})"
        )
    return value


TopicKey = Annotated[str, AfterValidator(_check_topic)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE, description="deliveries per second")]


def broadcast_workflow_id(broadcast_id: str) -> str:
    return f"{BROADCAST_WORKFLOW_PREFIX}{broadcast_id}"


class Topic(Model):
    key: TopicKey
    name: Annotated[OneLine, Field(max_length=200)] | None = None
    created_at: datetime | None = None
    subscribers: int | None = Field(default=None, description="filled in by `show`")


class SubscribedTopic(Model):
    """A topic one subscriber is subscribed to, and whether they opted out of it (the preference
    center's list; `store.broadcasts.subscriber_topics`)."""

    key: TopicKey
    name: str | None = None
    opted_out: bool = False


class Audience(Model):
    """Who a broadcast goes to: every subscriber of `topic`, or the list stored for the broadcast
    (`broadcast_audience`, written by the client before the workflow starts)."""

    kind: Literal["topic", "list"]
    topic: TopicKey | None = None

    @model_validator(mode="after")
    def _topic_when_needed(self) -> Audience:
        if (self.kind == "topic") != (self.topic is not None):
            raise ValueError("a topic audience names its topic; a list audience names none")
        return self


class BroadcastRequest(_NotificationCommon):
    """What a service asks for: the usual notification fields, and an audience.

    `id` is the idempotency id: the workflow is `broadcast-<id>`, and starting it again sends nothing.
    """

    id: Identifier
    topic: TopicKey | None = None
    recipients: list[Identifier] | None = Field(default=None, min_length=1)
    rate: Rate | None = None
    batch_size: int = Field(default=200, ge=1, le=MAX_BATCH_SIZE)
    window: int = Field(default=4, ge=1, le=MAX_WINDOW, description="batches running at once")

    @model_validator(mode="after")
    def _one_audience(self) -> BroadcastRequest:
        if (self.topic is None) == (self.recipients is None):
            raise ValueError("a broadcast goes to a topic or to a list of recipients (exactly one)")
        if self.recipients is not None and len(set(self.recipients)) != len(self.recipients):
            raise ValueError("a recipient is listed twice")
        if any(step.escalate_after for step in self.channels):
            raise ValueError(
                "escalate_after needs a workflow per recipient to wait for the read: use `send` "
                "(a broadcast tries each step's fallbacks only when a channel fails)"
            )
        return self

    @property
    def audience(self) -> Audience:
        if self.topic is not None:
            return Audience(kind="topic", topic=self.topic)
        return Audience(kind="list")


class BroadcastCounters(Model):
    total: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = Field(default=0, description="skipped by preference (channel, category, topic opt-out)")
    deferred: int = Field(default=0, description="handed to a NotificationWorkflow to wait out quiet hours")

    def add(self, other: BroadcastCounters) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.deferred += other.deferred

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.deferred


class BroadcastPhase(StrEnum):
    scheduled = "scheduled"
    running = "running"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"
    failed = "failed"  # the input did not validate (a start from another client); nothing was sent


FINAL_BROADCAST_PHASES = frozenset(
    {BroadcastPhase.completed, BroadcastPhase.cancelled, BroadcastPhase.expired, BroadcastPhase.failed}
)


class BroadcastInput(_NotificationCommon):
    """The input of one BroadcastWorkflow run. The fields after `window` are the continuation:
    a run that continues as new passes its cursor and counters on, and nothing else."""

    id: Identifier
    audience: Audience
    rate: Rate | None = None
    batch_size: int = Field(default=200, ge=1, le=MAX_BATCH_SIZE)
    window: int = Field(default=4, ge=1, le=MAX_WINDOW)
    cursor: str = ""
    counters: BroadcastCounters | None = None
    paused: bool = False
    started_at: AwareDatetime | None = None
    batches: int = 0


class BroadcastProgress(Model):
    """The `progress` query: what the CLI's progress bar and `broadcast status` show."""

    id: str
    workflow_id: str
    phase: BroadcastPhase
    reason: str | None = None
    total: int
    sent: int
    failed: int
    skipped: int
    deferred: int
    pending: int
    rate: float | None = None
    batches: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BatchRange(Model):
    """One batch: the audience's recipients with ids in (after, upto]."""

    after: str
    upto: str


class PlanPagesInput(Model):
    broadcast_id: str
    audience: Audience
    after: str
    pages: int = Field(ge=1, le=1000)
    page_size: int = Field(ge=1, le=MAX_BATCH_SIZE)


class PlannedPages(Model):
    ranges: list[BatchRange]
    exhausted: bool


class AudienceSizeInput(Model):
    broadcast_id: str
    audience: Audience


class BatchInput(_NotificationCommon):
    """One batch activity: everything a recipient's delivery needs, but no recipient."""

    broadcast_id: str
    audience: Audience
    range: BatchRange
    rate: Rate | None = None
    concurrency: int = Field(default=50, ge=1, le=1000)


class OutcomeStatus(StrEnum):
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"
    deferred = "deferred"


FINAL_OUTCOMES = frozenset(
    {OutcomeStatus.sent, OutcomeStatus.failed, OutcomeStatus.skipped, OutcomeStatus.deferred}
)


class RecipientOutcome(Model):
    """One recipient's outcome in one broadcast: the per-recipient lookup and the checkpoint."""

    broadcast_id: str
    recipient_id: str
    status: OutcomeStatus
    reason: str | None = None
    delivery_ids: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


class CancelDeferredInput(Model):
    broadcast_id: str
    reason: str | None = None


BATCH_HEARTBEAT = timedelta(seconds=15)
