"""What the workflow hands its activities, and what they answer: one destination per delivery."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from tidings.models.fields import AwareDatetime, Channel, Model, Priority
from tidings.models.recipients import Recipient
from tidings.models.requests import Content, RetrySpec
from tidings.redaction import redact_address


class Destination(Model):
    """One place a message goes: an address, a number, a device, an endpoint."""

    channel: Channel
    provider: str
    address: str = Field(description="where it goes; for devices, the device id")
    device_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.channel.value}:{self.provider}:{self.address}"

    @property
    def label(self) -> str:
        """A one-line name for the Web UI: 'fcm → device …a1b2', 'smtp → ada@example.com'."""
        if self.device_id is not None:
            tail = self.device_id if len(self.device_id) <= 8 else f"…{self.device_id[-4:]}"
            return f"{self.provider} → device {tail}"
        address = redact_address(self.address)
        address = address if len(address) <= 48 else f"{address[:47]}…"
        return f"{self.provider} → {address}"


def delivery_id_for(workflow_id: str, destination: Destination) -> str:
    """A deterministic id per (notification, destination) so providers can spot duplicates."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidings:{workflow_id}/{destination.key}"))


class DeliveryInput(Model):
    """The input of one provider activity: everything needed to send to one destination."""

    delivery_id: str
    workflow_id: str
    notification_id: str
    destination: Destination
    recipient: Recipient
    content: Content
    priority: Priority
    category: str | None = None
    expires_at: AwareDatetime | None = None
    recipient_stored: bool = Field(
        default=False,
        description="secret-bearing URLs are redacted in `recipient`; deliver reads them from the store",
    )


TryOutcome = Literal["trying", "sent", "failed", "moved_on", "skipped"]


class ProviderTry(Model):
    """One provider of a channel with several (failover), as far as this delivery got with it.

    `moved_on`: its budget ran out (or it was throttled beyond it) and the delivery went on to
    the next provider; `skipped`: its circuit was open, so it was not tried (`circuit_open_since`);
    `trying`: tried, failed retryably, still in play (the latest attempt is `last_attempt_at`)."""

    provider: str
    outcome: TryOutcome = "trying"
    attempts: int = 0
    first_attempt_at: AwareDatetime | None = None
    last_attempt_at: AwareDatetime | None = None
    reason: str | None = None
    circuit_open_since: AwareDatetime | None = None

    @property
    def summary(self) -> str:
        """One line for the Web UI: 'smtp skipped: circuit open since 12:00:03Z'."""
        if self.outcome == "skipped" and self.circuit_open_since is not None:
            return f"{self.provider} skipped: circuit open since {self.circuit_open_since.isoformat()}"
        line = f"{self.provider} {self.outcome.replace('_', ' ')}"
        if self.attempts:
            line += f" after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{line}: {self.reason}" if self.reason else line


class DeliveryResult(Model):
    provider: str
    provider_message_id: str | None = None
    attempt: int = 1
    accepted_at: AwareDatetime
    providers_tried: list[ProviderTry] = Field(
        default_factory=list, description="with several providers (failover): each one tried or skipped"
    )


ErrorKind = Literal["permanent", "transient", "throttled", "timeout"]


class PrepareInput(Model):
    """Input of the local activity that loads the recipient and evaluates quiet hours."""

    recipient_id: str
    recipient: Recipient | None = None
    channels: list[Channel]
    at: AwareDatetime


class Preparation(Model):
    recipient: Recipient | None
    recipient_stored: bool = Field(default=False, description="loaded from the store, secrets redacted")
    quiet_hours_until: AwareDatetime | None = None
    retry: dict[Channel, RetrySpec]
    push_success: Literal["any", "all"] = "any"


class DisableWebhookInput(Model):
    recipient_id: str
    url: str
    reason: str


class DeactivateDeviceInput(Model):
    recipient_id: str
    device_id: str
    reason: str
    provider_timestamp: AwareDatetime | None = None
