"""The contract every provider implements, and the three kinds of failure it may report.

A provider turns one rendered message for one destination into one request to an outside
service. It never retries by itself: it classifies each failure so that Temporal's declared
retry policy can act on it.

- `PermanentDeliveryError`: sending again cannot help (bad address, unregistered token, content
  rejected). Non-retryable; the workflow moves on to the fallback channel. With
  `provider_fault`, the fault is the provider account's (credentials refused): a channel with
  several providers moves on to the next one instead.
- `TransientDeliveryError`: the service or the network failed; retry with backoff.
- `ThrottledDeliveryError`: the service asked us to slow down; retry after its Retry-After.

Error messages end up in workflow history and logs: never put a credential in one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from tidings.activities.rendering import RenderedMessage
from tidings.models import DeliveryInput, Device
from tidings.redaction import redact_url


class DeliveryError(Exception):
    kind: ClassVar[str]

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentDeliveryError(DeliveryError):
    kind = "permanent"

    def __init__(
        self,
        reason: str,
        *,
        deactivate_device: bool = False,
        provider_timestamp: datetime | None = None,
        disable_endpoint: bool = False,
        provider_fault: bool = False,
    ) -> None:
        super().__init__(reason)
        self.provider_fault = provider_fault
        self.deactivate_device = deactivate_device
        self.disable_endpoint = disable_endpoint
        self.provider_timestamp = provider_timestamp


class TransientDeliveryError(DeliveryError):
    kind = "transient"

    def __init__(self, reason: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ThrottledDeliveryError(DeliveryError):
    kind = "throttled"

    def __init__(self, reason: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RedactUrlsInHttpxLogs(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL may hold a credential (a Slack
    incoming webhook's path, `user:password@`, `?token=`). The filter shows them redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


logging.getLogger("httpx").addFilter(RedactUrlsInHttpxLogs())


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """Read an HTTP Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC

    delta = when - (now or datetime.now(UTC))
    return max(delta, timedelta(0))


async def post(client: httpx.AsyncClient, service: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST with the provider's client; a timeout or a network failure is a transient failure.

    `service` names the other side in the error ("FCM", "push service example.com"); the URL and
    the request's headers stay out of the message, so no credential can leak into it.
    """
    try:
        return await client.post(url, **kwargs)
    except httpx.TimeoutException:
        raise TransientDeliveryError(f"{service} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise TransientDeliveryError(f"cannot reach {service}: {type(exc).__name__}") from None


def target_device(delivery: DeliveryInput) -> Device:
    """The recipient's device this delivery is for (its token or subscription is validated)."""
    for device in delivery.recipient.devices:
        if device.id == delivery.destination.device_id:
            return device
    raise PermanentDeliveryError(
        f"recipient {delivery.recipient.id} has no device {delivery.destination.device_id!r}"
    )


class ProviderReceipt:
    """What a provider reports when the service accepted the message."""

    __slots__ = ("message_id",)

    def __init__(self, message_id: str | None) -> None:
        self.message_id = message_id


@runtime_checkable
class Provider(Protocol):
    """Sends to one kind of destination. `name` matches `Destination.provider`."""

    name: str

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt: ...

    async def aclose(self) -> None: ...
