"""A notification's queryable state (the `status` query and the workflow result), and the
signals and updates that change it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from tidings.models.deliveries import ErrorKind, ProviderTry
from tidings.models.fields import AwareDatetime, Channel, Model, Priority


class Phase(StrEnum):
    """Where a notification is in its life. The last six are final."""

    scheduled = "scheduled"
    waiting_quiet_hours = "waiting_quiet_hours"
    sending = "sending"
    delivered = "delivered"
    partially_delivered = "partially_delivered"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"
    skipped_by_preferences = "skipped_by_preferences"

    @property
    def is_final(self) -> bool:
        return self not in (Phase.scheduled, Phase.waiting_quiet_hours, Phase.sending)


class DeliveryStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


class ReceiptStatus(StrEnum):
    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    read = "read"


class DeliveryReceipt(Model):
    """A provider's report on a message after it accepted it (e.g. a Twilio status callback).

    Signal `delivery_receipt`. Matches a destination by `delivery_id` or `provider_message_id`.
    """

    delivery_id: str | None = None
    provider_message_id: str | None = None
    status: ReceiptStatus
    error_code: str | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _identifies_a_delivery(self) -> DeliveryReceipt:
        if not (self.delivery_id or self.provider_message_id):
            raise ValueError("a receipt needs delivery_id or provider_message_id")
        return self


class EngagementKind(StrEnum):
    opened = "opened"
    clicked = "clicked"
    read = "read"
    dismissed = "dismissed"


class Engagement(Model):
    """The recipient did something with the message. Signal `engagement`."""

    kind: EngagementKind
    delivery_id: str | None = None
    url: str | None = None
    at: AwareDatetime


class DestinationState(Model):
    channel: Channel
    provider: str
    destination: str
    device_id: str | None = None
    delivery_id: str
    status: DeliveryStatus = DeliveryStatus.pending
    attempts: int = 0
    last_error: str | None = None
    error_kind: ErrorKind | None = None
    provider_message_id: str | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    fallback_from: Channel | None = None
    fallback_reason: str | None = None
    provider_used: str | None = Field(
        default=None, description="with several providers (failover): the one that accepted the message"
    )
    providers_tried: list[ProviderTry] = Field(
        default_factory=list,
        description="with several providers (failover): each one tried or skipped, and why",
    )
    receipts: list[DeliveryReceipt] = Field(default_factory=list)
    engagement: list[Engagement] = Field(default_factory=list)


class StateEvent(Model):
    at: AwareDatetime
    message: str


class NotificationState(Model):
    """The queryable state of a notification, and its workflow's final result."""

    id: str
    workflow_id: str
    recipient_id: str
    phase: Phase = Phase.scheduled
    priority: Priority = Priority.normal
    category: str | None = None
    channels: list[Channel] = Field(default_factory=list)
    schedule_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    quiet_hours_until: AwareDatetime | None = None
    reason: str | None = None
    destinations: list[DestinationState] = Field(default_factory=list)
    events: list[StateEvent] = Field(default_factory=list)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None


class CancelRequest(Model):
    reason: str | None = None


class RescheduleRequest(Model):
    schedule_at: AwareDatetime


class SignalOutcome(Model):
    accepted: bool
    reason: str | None = None
