"""The provider activity: render one message and hand it to one destination's provider.

One activity per destination, so Temporal's retry policy retries only the destination that
failed. Provider failures become `ApplicationError`s whose type names the kind of failure
(`PermanentDeliveryError` is non-retryable; `ThrottledDeliveryError` carries the provider's
Retry-After as the next retry delay) and whose details tell the workflow which attempt this was.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from tidings.activities.providers.base import (
    DeliveryError,
    PermanentDeliveryError,
    Provider,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.providers.registry import SETTINGS_HINT
from tidings.activities.rendering import InlineRenderer, RenderedMessage, RenderError
from tidings.activities.store.base import SubscriberStore
from tidings.links import click_url, event_token, unsubscribe_url
from tidings.models import Channel, Content, DeliveryInput, DeliveryResult, Recipient
from tidings.telemetry import metrics
from tidings.telemetry.logs import delivery_fields, scrub_personal
from tidings.telemetry.tracing import provider_span

log = logging.getLogger(__name__)


class ProviderNotConfigured(PermanentDeliveryError):
    """The destination's provider has no settings on this worker (a permanent failure)."""


class Renderer(Protocol):
    def render(self, content: Content, recipient: Recipient, channel: Channel) -> RenderedMessage: ...


def failure_details(error: DeliveryError | RenderError, attempt: int) -> dict[str, Any]:
    details: dict[str, Any] = {"attempt": attempt, "kind": getattr(error, "kind", "permanent")}
    if isinstance(error, PermanentDeliveryError):
        details["deactivate_device"] = error.deactivate_device
        details["disable_endpoint"] = error.disable_endpoint
        if error.provider_timestamp:
            details["provider_timestamp"] = error.provider_timestamp.isoformat()
    return details


class LinkTracking:
    """Rewrites a message's link to a signed click-tracking URL on the receiver, and gives apps a
    signed token (`data.tidings_token`) to report opens and dismissals with.

    Each token is signed for its purpose (click, event, unsubscribe; see `tidings.links`), so a
    token lifted from one place is refused by every receiver route but its own."""

    def __init__(self, public_url: str, key: bytes) -> None:
        self._public_url = public_url
        self._key = key

    def apply(self, delivery: DeliveryInput, message: RenderedMessage) -> None:
        if message.url:
            original = message.url
            tracked = click_url(
                self._public_url, self._key, delivery.workflow_id, delivery.delivery_id, original
            )
            message.url = tracked
            for part in ("text", "html", "sms_text", "chat_text", "body"):
                value = getattr(message, part)
                if value and original in value:
                    setattr(message, part, value.replace(original, tracked))
        if delivery.destination.channel is Channel.email and message.unsubscribable and delivery.category:
            url = unsubscribe_url(self._public_url, self._key, delivery.recipient.id, delivery.category)
            message.headers = {
                **message.headers,
                "List-Unsubscribe": f"<{url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        if delivery.destination.channel is Channel.push:
            message.data = {
                **message.data,
                "tidings_token": event_token(self._key, delivery.workflow_id, delivery.delivery_id),
            }


class DeliveryActivities:
    def __init__(
        self,
        providers: dict[str, Provider],
        renderer: Renderer | None = None,
        links: LinkTracking | None = None,
        store: SubscriberStore | None = None,
    ) -> None:
        self._providers = providers
        self._renderer: Renderer = renderer or InlineRenderer()
        self._links = links
        self._store = store

    async def _with_stored_secrets(self, delivery: DeliveryInput) -> DeliveryInput:
        """Read the secret-bearing URLs (webhook, Slack incoming webhook) that the workflow only
        holds redacted from the store, at send time, so that they never enter history."""
        if (
            not delivery.recipient_stored
            or delivery.destination.channel not in (Channel.webhook, Channel.slack)
            or self._store is None
        ):
            return delivery
        recipient = await self._store.get(delivery.recipient.id)
        if recipient is None:
            raise PermanentDeliveryError(f"recipient {delivery.recipient.id} was removed from the store")
        if delivery.destination.channel is Channel.webhook:
            address = recipient.webhook_url
        else:
            address = recipient.slack_webhook_url or recipient.slack_channel
        if not address:
            raise PermanentDeliveryError(
                f"recipient {recipient.id} no longer has a {delivery.destination.channel.value} address"
            )
        destination = delivery.destination.model_copy(update={"address": address})
        return delivery.model_copy(update={"recipient": recipient, "destination": destination})

    @activity.defn(name="deliver")
    async def deliver(self, delivery: DeliveryInput) -> DeliveryResult:
        attempt = activity.info().attempt
        try:
            return await self.send(delivery, attempt)
        except ProviderNotConfigured as exc:
            raise ApplicationError(
                exc.reason,
                {"attempt": attempt, "kind": "permanent"},
                type="ProviderNotConfigured",
                non_retryable=True,
            ) from None
        except RenderError as exc:
            raise ApplicationError(
                f"cannot render content: {exc}",
                failure_details(exc, attempt),
                type="RenderError",
                non_retryable=True,
            ) from None
        except ThrottledDeliveryError as exc:
            raise ApplicationError(
                exc.reason,
                failure_details(exc, attempt),
                type="ThrottledDeliveryError",
                next_retry_delay=exc.retry_after,
            ) from None
        except DeliveryError as exc:
            raise ApplicationError(
                exc.reason,
                failure_details(exc, attempt),
                type=type(exc).__name__,
                non_retryable=isinstance(exc, PermanentDeliveryError),
                next_retry_delay=exc.retry_after if isinstance(exc, TransientDeliveryError) else None,
            ) from None

    async def send(self, delivery: DeliveryInput, attempt: int) -> DeliveryResult:
        """Render one message and hand it to its provider, once: the one path every delivery takes
        (the `deliver` activity, and each recipient of a broadcast batch).

        Raises `ProviderNotConfigured`, `RenderError` or the provider's `DeliveryError`; the
        caller decides what a failure means (Temporal's retry policy, or the batch's own)."""
        destination = delivery.destination
        channel = destination.channel.value
        fields = delivery_fields(
            delivery.workflow_id, delivery.delivery_id, channel, destination.provider, attempt
        )
        provider = self._providers.get(destination.provider)
        if provider is None:
            hint = SETTINGS_HINT.get(destination.provider, f"the {destination.provider} section")
            raise ProviderNotConfigured(
                f"provider {destination.provider!r} is not configured on this worker; set {hint}"
            )
        try:
            delivery = await self._with_stored_secrets(delivery)
            message = self._renderer.render(delivery.content, delivery.recipient, destination.channel)
            if self._links is not None:
                self._links.apply(delivery, message)
            with provider_span(delivery.delivery_id, channel, destination.provider, attempt):
                receipt = await provider.send(delivery, message)
        except ThrottledDeliveryError as exc:
            metrics.provider_responded(channel, destination.provider, "throttled")
            log.info(
                "delivery %s throttled by %s: %s",
                delivery.delivery_id,
                destination.provider,
                scrub_personal(exc.reason, [destination.address, delivery.destination.address]),
                extra=fields,
            )
            raise
        except DeliveryError as exc:
            metrics.provider_responded(
                channel, destination.provider, "permanent" if exc.kind == "permanent" else "transient"
            )
            log.info(
                "delivery %s %s failure: %s",
                delivery.delivery_id,
                exc.kind,
                scrub_personal(exc.reason, [destination.address, delivery.destination.address]),
                extra=fields,
            )
            raise
        accepted_at = datetime.now(UTC)
        metrics.provider_accepted(channel, destination.provider, accepted_at)
        log.info("delivery %s accepted by %s", delivery.delivery_id, destination.provider, extra=fields)
        return DeliveryResult(
            provider=destination.provider,
            provider_message_id=receipt.message_id,
            attempt=attempt,
            accepted_at=accepted_at,
        )
