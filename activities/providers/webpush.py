"""Web Push (RFC 8030) with aes128gcm payload encryption (RFC 8291/8188) and VAPID (RFC 8292).

pywebpush's `webpush()` sends with `requests`, which would block the event loop, and its async
path needs aiohttp. So pywebpush only encrypts (`WebPusher.encode`), py_vapid signs the VAPID
token, and the request goes out on the worker's shared httpx client, like every other provider.
VAPID tokens are cached per push-service origin and reused until an hour before they expire.
"""

from __future__ import annotations

import json
import ssl
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from py_vapid import Vapid
from pywebpush import WebPusher

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ProviderReceipt,
    ThrottledDeliveryError,
    TransientDeliveryError,
    parse_retry_after,
    post,
    target_device,
)
from tidings.activities.rendering import RenderedMessage
from tidings.models import DeliveryInput, Priority
from tidings.settings import WebPushSettings

MAX_PLAINTEXT = 3993  # 4096 bytes on the wire minus the aes128gcm header, padding and tag
TOKEN_LIFETIME = 12 * 3600
URGENCY = {Priority.low: "low", Priority.normal: "normal", Priority.high: "high", Priority.critical: "high"}


def load_vapid(private_key: str) -> Vapid:
    """A VAPID key from settings: PEM, or base64url of the raw 32-byte key."""
    try:
        if private_key.lstrip().startswith("-----BEGIN"):
            return Vapid.from_pem(private_key.encode())
        return Vapid.from_string(private_key)
    except Exception:
        raise ValueError("webpush.vapid_private_key is not a P-256 key (PEM or base64url)") from None


class WebPushProvider:
    name = "webpush"

    def __init__(self, settings: WebPushSettings, client: httpx.AsyncClient | None = None) -> None:
        if settings.vapid_private_key is None:
            raise ValueError("Web Push needs webpush.vapid_private_key (tidings vapid generate)")
        self._vapid = load_vapid(settings.vapid_private_key.get_secret_value())
        self._subject = settings.vapid_subject
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(settings.ca_bundle)) if settings.ca_bundle else True
        )
        self._client = client or httpx.AsyncClient(timeout=settings.timeout, verify=verify)
        self._tokens: dict[str, tuple[str, float]] = {}

    def _authorization(self, origin: str) -> str:
        cached = self._tokens.get(origin)
        if cached and cached[1] - time.time() > 3600:
            return cached[0]
        expires = int(time.time()) + TOKEN_LIFETIME
        header = self._vapid.sign({"aud": origin, "exp": expires, "sub": self._subject})["Authorization"]
        self._tokens[origin] = (header, expires)
        return str(header)

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        device = target_device(delivery)
        assert device.subscription is not None
        subscription = device.subscription.model_dump()
        fields = {
            "title": message.title,
            "body": message.body,
            "url": message.url,
            "image": message.image,
            "data": message.data or None,
            "tag": message.collapse_key,
        }
        payload = json.dumps({k: v for k, v in fields.items() if v}, ensure_ascii=False).encode()
        if len(payload) > MAX_PLAINTEXT:
            raise PermanentDeliveryError(
                f"Web Push payload is {len(payload)} bytes; the limit is {MAX_PLAINTEXT}"
            )
        body = WebPusher(subscription).encode(payload, content_encoding="aes128gcm")["body"]
        endpoint = subscription["endpoint"]
        parts = urlsplit(endpoint)
        headers = {
            "authorization": self._authorization(f"{parts.scheme}://{parts.netloc}"),
            "ttl": str(_ttl(delivery.expires_at)),
            "urgency": URGENCY[delivery.priority],
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
        }
        if message.collapse_key:
            headers["topic"] = "".join(c for c in message.collapse_key if c.isalnum() or c in "-_")[:32]
        response = await post(
            self._client, f"push service {parts.netloc}", endpoint, content=body, headers=headers
        )
        return _receipt(response, parts.netloc)

    async def aclose(self) -> None:
        await self._client.aclose()


def _ttl(expires_at: datetime | None) -> int:
    if expires_at is None:
        return int(timedelta(days=28).total_seconds())
    return max(0, int((expires_at - datetime.now(UTC)).total_seconds()))


def _receipt(response: httpx.Response, host: str) -> ProviderReceipt:
    status = response.status_code
    if status in (200, 201, 202):
        return ProviderReceipt(response.headers.get("location"))
    reason = f"push service {host} answered {status}"
    if status in (404, 410):
        raise PermanentDeliveryError(f"{reason}; the subscription is gone", deactivate_device=True)
    if status == 413:
        raise PermanentDeliveryError(f"{reason}; payload too large")
    if status == 429:
        raise ThrottledDeliveryError(
            reason, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status >= 500:
        raise TransientDeliveryError(
            reason, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    raise PermanentDeliveryError(reason)
