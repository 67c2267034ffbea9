"""Apple Push Notification service, token-based auth over one long-lived HTTP/2 connection.

Apple wants a provider token (ES256 JWT: `kid` key id, `iss` team id, `iat`) renewed no more than
once every 20 minutes and no less than once an hour, and reused across requests: the provider
keeps one token for `apns.token_refresh_interval` (clamped to 20-60 minutes) and shares it, and
one httpx HTTP/2 client, among all concurrent sends of the worker, so requests multiplex as
streams on one connection instead of opening one per message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

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
from tidings.models import DeliveryInput, Device
from tidings.settings import ApnsSettings

PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
MAX_PAYLOAD = 4096
MIN_TOKEN_AGE = timedelta(minutes=20)
MAX_TOKEN_AGE = timedelta(minutes=60)

# Reasons that mean the device token is dead: stop sending to it.
DEAD_TOKEN_REASONS = {"BadDeviceToken", "Unregistered"}


class ApnsTokenSource:
    """One provider token, reused for its lifetime and renewed on demand after ExpiredProviderToken."""

    def __init__(self, team_id: str, key_id: str, private_key: str, lifetime: timedelta) -> None:
        self._team_id = team_id
        self._key_id = key_id
        self._private_key = private_key
        self._lifetime = min(max(lifetime, MIN_TOKEN_AGE), MAX_TOKEN_AGE - timedelta(minutes=5))
        self._token: str | None = None
        self._issued_at = 0.0
        self.issued = 0

    def token(self, *, stale: str | None = None) -> str:
        age = time.time() - self._issued_at
        if self._token is None or self._token == stale or age >= self._lifetime.total_seconds():
            self._issued_at = time.time()
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(self._issued_at)},
                self._private_key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self.issued += 1
        return self._token


class ApnsProvider:
    name = "apns"

    def __init__(self, settings: ApnsSettings, client: httpx.AsyncClient | None = None) -> None:
        if not (settings.team_id and settings.key_id and settings.private_key_file):
            raise ValueError("APNs needs apns.team_id, apns.key_id and apns.private_key_file")
        try:
            private_key = settings.private_key_file.read_text()
        except OSError as exc:
            raise ValueError(
                f"cannot read apns.private_key_file {settings.private_key_file}: {exc.strerror}"
            ) from None
        self.tokens = ApnsTokenSource(
            settings.team_id, settings.key_id, private_key, settings.token_refresh_interval
        )
        self._topic = settings.topic
        self._base = (settings.base_url or (SANDBOX if settings.use_sandbox else PRODUCTION)).rstrip("/")
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(settings.ca_bundle)) if settings.ca_bundle else True
        )
        # HTTP/2 only, as Apple requires; over cleartext (a local sandbox) with prior knowledge.
        self._client = client or httpx.AsyncClient(
            http1=False, http2=True, timeout=settings.timeout, verify=verify,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )  # fmt: skip
        self._token_lock = asyncio.Lock()

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        device = target_device(delivery)
        topic = device.app or self._topic
        if not topic:
            raise PermanentDeliveryError("no APNs topic: set apns.topic or the device's app (bundle id)")
        headers, payload = build_request(delivery, message, topic)
        token = self.tokens.token()
        response = await self._post(device, headers, payload, token)
        if response.status_code == 403 and _reason(response) == "ExpiredProviderToken":
            async with self._token_lock:
                token = self.tokens.token(stale=token)
            response = await self._post(device, headers, payload, token)
        if response.status_code == 200:
            return ProviderReceipt(response.headers.get("apns-id", delivery.delivery_id))
        raise classify(response)

    async def _post(
        self, device: Device, headers: dict[str, str], payload: bytes, token: str
    ) -> httpx.Response:
        url = f"{self._base}/3/device/{device.token}"
        headers = {**headers, "authorization": f"bearer {token}"}
        return await post(self._client, "APNs", url, content=payload, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()


def build_request(
    delivery: DeliveryInput, message: RenderedMessage, topic: str
) -> tuple[dict[str, str], bytes]:
    """Headers and JSON payload for one device; refuses payloads over Apple's 4 KB limit."""
    overrides = message.platform_overrides.get("apns", {})
    alert = {k: v for k, v in (("title", message.title), ("body", message.body)) if v}
    aps: dict[str, Any] = {}
    if alert:
        aps["alert"] = alert
        aps["sound"] = "default"
        if message.image:
            aps["mutable-content"] = 1
    else:
        aps["content-available"] = 1
    aps.update(overrides.get("payload", {}).get("aps", {}))
    payload: dict[str, Any] = {**message.data, "aps": aps}
    if message.url:
        payload.setdefault("url", message.url)
    if message.image:
        payload.setdefault("image", message.image)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_PAYLOAD:
        raise PermanentDeliveryError(f"APNs payload is {len(body)} bytes; the limit is {MAX_PAYLOAD}")
    background = not alert
    headers = {
        "apns-topic": topic,
        "apns-push-type": "background" if background else "alert",
        "apns-priority": "5" if background else "10",
        "apns-id": delivery.delivery_id,
        "content-type": "application/json",
    }
    if delivery.expires_at is not None:
        headers["apns-expiration"] = str(max(0, int(delivery.expires_at.timestamp())))
    if message.collapse_key:
        headers["apns-collapse-id"] = message.collapse_key.encode()[:64].decode(errors="ignore")
    headers.update({k: str(v) for k, v in overrides.get("headers", {}).items() if k.startswith("apns-")})
    return headers, body


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))
    except ValueError:
        return ""


def classify(
    response: httpx.Response,
) -> PermanentDeliveryError | TransientDeliveryError | ThrottledDeliveryError:
    status = response.status_code
    reason = _reason(response) or str(status)
    text = f"APNs {reason} ({status})"
    if reason in DEAD_TOKEN_REASONS:
        stamp = None
        if status == 410:
            try:
                stamp = datetime.fromtimestamp(int(response.json()["timestamp"]) / 1000, tz=UTC)
            except (KeyError, TypeError, ValueError):
                stamp = None
        return PermanentDeliveryError(f"{text}; the device token is no longer valid", deactivate_device=True,
                                      provider_timestamp=stamp)  # fmt: skip
    if status == 429:
        return ThrottledDeliveryError(
            text, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status >= 500:
        return TransientDeliveryError(
            text, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if reason in ("InvalidProviderToken", "MissingProviderToken", "ExpiredProviderToken"):
        return PermanentDeliveryError(f"{text}; check apns.team_id, apns.key_id and apns.private_key_file")
    return PermanentDeliveryError(text)
