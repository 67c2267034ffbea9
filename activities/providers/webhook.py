"""The webhook channel: an HTTP POST of the notification as JSON to the recipient's endpoint.

Signed per Standard Webhooks when a secret is configured for the endpoint (`webhook.endpoint_secrets`)
or globally (`webhook.signing_secret`): `webhook-id` is the delivery id, stable across retries,
so receivers can deduplicate; each attempt carries a fresh `webhook-timestamp` and signature.

The POST goes through aiohttp, not httpx like the other HTTP providers: on a plain HTTP/1.1
keep-alive connection it costs about a tenth of httpx's CPU per request (0.2 ms against 1 to 2 ms
on this project's 2-core machine; see docs/perf-readme-section.md), and a webhook is the one
channel whose volume is the customer's own. Providers that need HTTP/2 (APNs) stay on httpx.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ProviderReceipt,
    ThrottledDeliveryError,
    TransientDeliveryError,
    parse_retry_after,
)
from tidings.activities.rendering import RenderedMessage, canonical_json
from tidings.models import DeliveryInput
from tidings.redaction import redact_url
from tidings.settings import WebhookSettings
from tidings.webhook_signature import decode_secret, sign


class WebhookProvider:
    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the loop
        self._default_key = (
            decode_secret(settings.signing_secret.get_secret_value()) if settings.signing_secret else None
        )
        self._keys = {
            url: decode_secret(s.get_secret_value()) for url, s in settings.endpoint_secrets.items()
        }

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        address = delivery.destination.address
        url, auth = split_credentials(address)
        body = canonical_json(
            {
                "type": "notification",
                "notification_id": delivery.notification_id,
                "delivery_id": delivery.delivery_id,
                "category": delivery.category,
                "priority": delivery.priority.value,
                "payload": message.webhook_json or {},
            }
        )
        headers = {"content-type": "application/json", "webhook-id": delivery.delivery_id}
        key = self._keys.get(address, self._default_key)
        if key is not None:
            timestamp = int(time.time())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(key, delivery.delivery_id, timestamp, body)
        shown = redact_url(address)
        if auth is not None:
            headers["authorization"] = auth
        status, response_headers = await self._post(shown, url, body, headers)
        return _receipt_or_raise(status, response_headers, shown)

    async def _post(
        self, shown: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str]]:
        """POST; a timeout or a network failure is a transient failure. The error names the
        endpoint redacted (`shown`) and the kind of failure, never the URL or the headers."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._settings.timeout))
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                return response.status, response.headers
        except TimeoutError:
            raise TransientDeliveryError(f"webhook {shown} did not answer in time") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise TransientDeliveryError(f"cannot reach webhook {shown}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def split_credentials(url: str) -> tuple[str, str | None]:
    """Move `user:password@` out of the URL into an HTTP Basic `Authorization` header value, so
    that the URL the client logs and puts in its errors holds no credential."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return bare, "Basic " + base64.b64encode(pair).decode()


def _receipt_or_raise(status: int, headers: Mapping[str, str], url: str) -> ProviderReceipt:
    if 200 <= status < 300:
        return ProviderReceipt(headers.get("x-request-id"))
    reason = f"webhook {url} answered {status}"
    if status == 429:
        raise ThrottledDeliveryError(reason, retry_after=parse_retry_after(headers.get("retry-after")))
    if status == 410:
        raise PermanentDeliveryError(f"{reason} (endpoint gone; disabled)", disable_endpoint=True)
    if status in (408, 425) or status >= 500:
        raise TransientDeliveryError(reason)
    raise PermanentDeliveryError(reason)
