"""The provider activity: render one message and hand it to one destination's provider.

One activity per destination, so Temporal's retry policy retries only the destination that
failed. Provider failures become `ApplicationError`s whose type names the kind of failure
(`PermanentDeliveryError` is non-retryable; `ThrottledDeliveryError` carries the provider's
Retry-After as the next retry delay) and whose details tell the workflow which attempt this was.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from tidings.activities.failover.chains import ProviderChains
from tidings.activities.failover.route import FailoverRoute, Failure, ledger_from, ledger_payload
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
        chains: ProviderChains | None = None,
    ) -> None:
        self._providers = providers
        self._chains = chains
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
        info = activity.info()
        route = None
        if self._chains is not None:
            route = self._chains.route(
                delivery.destination.provider,
                ledger_from(info.heartbeat_details),
                attempt=info.attempt,
                now=info.current_attempt_scheduled_time,
            )
        if route is None:
            try:
                return await self._send(delivery, delivery.destination.provider, info.attempt)
            except (DeliveryError, RenderError) as exc:
                raise application_error(exc, failure_details(exc, info.attempt)) from None
        return await self._send_routed(delivery, route, info)

    async def _send_routed(
        self, delivery: DeliveryInput, route: FailoverRoute, info: activity.Info
    ) -> DeliveryResult:
        """One attempt of a delivery whose channel has several providers (see failover.route).

        The ledger goes into the failure details (for the workflow's state) and into the
        heartbeat (for the next attempt); one heartbeat per attempt, so it is sent at once."""
        attempt = info.attempt
        attempt_started = time.monotonic()
        choice = route.choose(info.current_attempt_scheduled_time)
        try:
            result = await self._send(delivery, choice.provider, attempt)
        except RenderError as exc:
            raise application_error(exc, self._routed_details(exc, attempt, route)) from None
        except PermanentDeliveryError as exc:
            if not exc.provider_fault:
                route.refused_message(exc.reason)
            elif route.failed("provider_refused", exc.reason, _now(info, attempt_started)):
                raise self._moved_on(delivery, choice.provider, exc, route, info) from None
            raise application_error(exc, self._routed_details(exc, attempt, route)) from None
        except (TransientDeliveryError, ThrottledDeliveryError) as exc:
            failure: Failure = "throttled" if isinstance(exc, ThrottledDeliveryError) else "transient"
            if route.failed(failure, exc.reason, _now(info, attempt_started), exc.retry_after):
                raise self._moved_on(delivery, choice.provider, exc, route, info) from None
            activity.heartbeat(ledger_payload(route.tries))
            raise application_error(exc, self._routed_details(exc, attempt, route)) from None
        else:
            route.accepted()
        finally:
            route.abandoned()  # no verdict (cancelled, unrenderable): a no-op when one was recorded
        return result.model_copy(update={"providers_tried": route.tries})

    def _routed_details(
        self, exc: DeliveryError | RenderError, attempt: int, route: FailoverRoute
    ) -> dict[str, Any]:
        return {**failure_details(exc, attempt), "providers": ledger_payload(route.tries)}

    def _moved_on(
        self,
        delivery: DeliveryInput,
        provider: str,
        exc: DeliveryError,
        route: FailoverRoute,
        info: activity.Info,
    ) -> ApplicationError:
        """The next attempt goes to the next provider, soon: the retry policy's first interval,
        not its backoff (that was for the provider just left)."""
        channel = delivery.destination.channel.value
        metrics.provider_failover(channel, provider)
        log.warning(
            "delivery %s leaves provider %s for the next one",
            delivery.delivery_id,
            provider,
            extra=delivery_fields(
                delivery.workflow_id, delivery.delivery_id, channel, provider, info.attempt
            ),
        )
        activity.heartbeat(ledger_payload(route.tries))
        soon = info.retry_policy.initial_interval if info.retry_policy else timedelta(seconds=1)
        details = {**self._routed_details(exc, info.attempt, route), "kind": "transient"}
        return ApplicationError(
            f"{provider}: {exc.reason}", details, type="ProviderFailover", next_retry_delay=soon
        )

    async def _send(self, delivery: DeliveryInput, provider_name: str, attempt: int) -> DeliveryResult:
        """Render and send with one provider. Provider failures are logged, counted and re-raised
        as they are (`DeliveryError`, `RenderError`) for the caller to classify."""
        destination = delivery.destination
        channel = destination.channel.value
        fields = delivery_fields(delivery.workflow_id, delivery.delivery_id, channel, provider_name, attempt)
        provider = self._providers.get(provider_name)
        if provider is None:
            hint = SETTINGS_HINT.get(provider_name, f"the {provider_name} section")
            raise ApplicationError(
                f"provider {provider_name!r} is not configured on this worker; set {hint}",
                {"attempt": attempt, "kind": "permanent"},
                type="ProviderNotConfigured",
                non_retryable=True,
            )
        try:
            delivery = await self._with_stored_secrets(delivery)
            message = self._renderer.render(delivery.content, delivery.recipient, destination.channel)
            if self._links is not None:
                self._links.apply(delivery, message)
            with provider_span(delivery.delivery_id, channel, provider_name, attempt):
                receipt = await provider.send(delivery, message)
        except ThrottledDeliveryError as exc:
            metrics.provider_responded(channel, provider_name, "throttled")
            log.info(
                "delivery %s throttled by %s: %s",
                delivery.delivery_id,
                provider_name,
                scrub_personal(exc.reason, [destination.address, delivery.destination.address]),
                extra=fields,
            )
            raise
        except DeliveryError as exc:
            metrics.provider_responded(
                channel, provider_name, "permanent" if exc.kind == "permanent" else "transient"
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
        metrics.provider_accepted(channel, provider_name, accepted_at)
        log.info("delivery %s accepted by %s", delivery.delivery_id, provider_name, extra=fields)
        return DeliveryResult(
            provider=provider_name,
            provider_message_id=receipt.message_id,
            attempt=attempt,
            accepted_at=accepted_at,
        )


def application_error(exc: DeliveryError | RenderError, details: dict[str, Any]) -> ApplicationError:
    """The failure Temporal's retry policy acts on: its type names the kind of failure."""
    if isinstance(exc, RenderError):
        return ApplicationError(
            f"cannot render content: {exc}", details, type="RenderError", non_retryable=True
        )
    if isinstance(exc, ThrottledDeliveryError):
        return ApplicationError(
            exc.reason, details, type="ThrottledDeliveryError", next_retry_delay=exc.retry_after
        )
    return ApplicationError(
        exc.reason,
        details,
        type=type(exc).__name__,
        non_retryable=isinstance(exc, PermanentDeliveryError),
        next_retry_delay=exc.retry_after if isinstance(exc, TransientDeliveryError) else None,
    )


def _now(info: activity.Info, attempt_started: float) -> datetime:
    """The server's clock now (the attempt's scheduled time plus the time it has run), so that
    budgets hold on the time-skipping test server as on a real one."""
    return info.current_attempt_scheduled_time + timedelta(seconds=time.monotonic() - attempt_started)
