"""The webhook channel: an HTTP POST of the notification as JSON to the recipient's endpoint.

Signed per Standard Webhooks when a secret is configured for the endpoint (`webhook.endpoint_secrets`)
or globally (`webhook.signing_secret`): `webhook-id` is the delivery id, stable across retries,
so receivers can deduplicate; each attempt carries a fresh `webhook-timestamp` and signature.
"""

from __future__ import annotations

import time
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ProviderReceipt,
    ThrottledDeliveryError,
    TransientDeliveryError,
    parse_retry_after,
    post,
)
from tidings.activities.rendering import RenderedMessage, canonical_json
from tidings.models import DeliveryInput
from tidings.redaction import redact_url
from tidings.settings import WebhookSettings
from tidings.webhook_signature import decode_secret, sign


class WebhookProvider:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False)
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
        response = await post(self._client, f"webhook {shown}", url, content=body, headers=headers, auth=auth)
        return _receipt_or_raise(response, shown)

    async def aclose(self) -> None:
        await self._client.aclose()


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """Move `user:password@` out of the URL into HTTP Basic auth, so that the URL httpx logs and
    puts in its errors holds no credential."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))


def _receipt_or_raise(response: httpx.Response, url: str) -> ProviderReceipt:
    status = response.status_code
    if 200 <= status < 300:
        return ProviderReceipt(response.headers.get("x-request-id"))
    reason = f"webhook {url} answered {status}"
    if status == 429:
        raise ThrottledDeliveryError(
            reason, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status == 410:
        raise PermanentDeliveryError(f"{reason} (endpoint gone; disabled)", disable_endpoint=True)
    if status in (408, 425) or status >= 500:
        raise TransientDeliveryError(reason)
    raise PermanentDeliveryError(reason)
