"""Firebase Cloud Messaging, HTTP v1 API.

One OAuth2 access token (from the service account, through google-auth) serves every concurrent
send of a worker: it is fetched once, refreshed a few minutes before it expires, and the refresh
(google-auth's blocking call) runs in a thread behind a lock, so concurrent sends neither block
the event loop nor fetch twice. Errors are classified from `details[].errorCode`, which FCM keeps
more precise than the top-level status.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
from google.oauth2 import service_account

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
from tidings.models import DeliveryInput, Device, Priority
from tidings.settings import FcmSettings

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
REFRESH_MARGIN = timedelta(minutes=5)
MAX_TTL = timedelta(seconds=2_419_200)
QUOTA_BACKOFF = timedelta(minutes=1)


class FcmTokenSource:
    """A cached OAuth2 access token shared by all sends of one provider."""

    def __init__(self, credentials: service_account.Credentials) -> None:
        self._credentials = credentials
        self._lock = asyncio.Lock()

    async def token(self, *, stale: str | None = None) -> str:
        """The current token; a new one when it nears expiry or when `stale` was rejected."""
        async with self._lock:
            current = self._credentials.token
            if current is None or current == stale or self._expiring():
                try:
                    await asyncio.to_thread(
                        self._credentials.refresh, google.auth.transport.requests.Request()
                    )
                except google.auth.exceptions.RefreshError as exc:
                    if getattr(exc, "retryable", False):
                        raise TransientDeliveryError("the OAuth token endpoint failed; will retry") from None
                    raise PermanentDeliveryError(
                        "the OAuth token endpoint refused the FCM service account; "
                        "check fcm.service_account_file"
                    ) from None
                except google.auth.exceptions.TransportError:
                    raise TransientDeliveryError("cannot reach the OAuth token endpoint") from None
            return str(self._credentials.token)

    def _expiring(self) -> bool:
        expiry: datetime | None = self._credentials.expiry  # naive UTC, as google-auth keeps it
        if expiry is None:
            return True
        return bool(expiry.replace(tzinfo=UTC) - datetime.now(UTC) < REFRESH_MARGIN)


class FcmProvider:
    name = "fcm"

    def __init__(self, settings: FcmSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.project_id or not settings.service_account_file:
            raise ValueError("FCM needs fcm.project_id and fcm.service_account_file")
        try:
            info = json.loads(settings.service_account_file.read_text())
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[FCM_SCOPE]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"cannot load the FCM service account from {settings.service_account_file}: "
                f"{type(exc).__name__}"
            ) from None
        self._tokens = FcmTokenSource(credentials)
        self._url = f"{settings.base_url.rstrip('/')}/v1/projects/{settings.project_id}/messages:send"
        self._client = client or httpx.AsyncClient(http2=True, timeout=settings.timeout)

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        device = target_device(delivery)
        body = {"message": build_message(device, delivery, message)}
        token = await self._tokens.token()
        response = await self._post(body, token)
        if response.status_code == 401 and _error_code(response) != "THIRD_PARTY_AUTH_ERROR":
            token = await self._tokens.token(stale=token)
            response = await self._post(body, token)
            if response.status_code == 401:
                raise PermanentDeliveryError(
                    "FCM rejected a freshly fetched OAuth token (401); check that the service account "
                    "may send with Firebase Cloud Messaging in project fcm.project_id"
                )
        if response.status_code == 200:
            return ProviderReceipt(response.json().get("name"))
        raise classify(response)

    async def _post(self, body: dict[str, Any], token: str) -> httpx.Response:
        return await post(
            self._client, "FCM", self._url, json=body, headers={"authorization": f"Bearer {token}"}
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def build_message(device: Device, delivery: DeliveryInput, message: RenderedMessage) -> dict[str, Any]:
    """Map a rendered message to an FCM v1 `Message` for one registration token."""
    assert device.token is not None
    fcm: dict[str, Any] = {"token": device.token}
    notification = {
        k: v for k, v in (("title", message.title), ("body", message.body), ("image", message.image)) if v
    }
    if notification:
        fcm["notification"] = notification
    data = dict(message.data)
    if message.url:
        data.setdefault("url", message.url)
    if data:
        fcm["data"] = data
    urgent = delivery.priority in (Priority.high, Priority.critical)
    android: dict[str, Any] = {"priority": "high" if urgent else "normal"}
    ttl = _ttl(delivery.expires_at)
    if ttl is not None:
        android["ttl"] = f"{int(ttl.total_seconds())}s"
    if message.collapse_key:
        android["collapse_key"] = message.collapse_key
    fcm["android"] = android
    apns_headers = {"apns-priority": "10" if urgent or notification else "5"}
    if message.collapse_key:
        apns_headers["apns-collapse-id"] = message.collapse_key[:64]
    if delivery.expires_at is not None:
        apns_headers["apns-expiration"] = str(int(delivery.expires_at.timestamp()))
    fcm["apns"] = {"headers": apns_headers}
    if ttl is not None:
        fcm["webpush"] = {"headers": {"TTL": str(int(ttl.total_seconds()))}}
    for platform, override in message.platform_overrides.items():
        fcm[platform] = _merge(fcm.get(platform, {}), override)
    return fcm


def _ttl(expires_at: datetime | None) -> timedelta | None:
    if expires_at is None:
        return None
    return max(timedelta(0), min(expires_at - datetime.now(UTC), MAX_TTL))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


def _error_code(response: httpx.Response) -> str | None:
    try:
        details = response.json().get("error", {}).get("details", [])
    except (ValueError, AttributeError):
        return None
    return next((d.get("errorCode") for d in details if isinstance(d, dict) and d.get("errorCode")), None)


def classify(
    response: httpx.Response,
) -> PermanentDeliveryError | TransientDeliveryError | ThrottledDeliveryError:
    """Turn an FCM error answer into the kind of failure it is."""
    status = response.status_code
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code = _error_code(response) or error.get("status") or str(status)
    text = str(error.get("message", ""))[:200]
    reason = f"FCM {code} ({status})" + (f": {text}" if text else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code == "UNREGISTERED":
        return PermanentDeliveryError(
            f"{reason}; the registration token is no longer valid", deactivate_device=True
        )
    if code == "SENDER_ID_MISMATCH":
        return PermanentDeliveryError(
            f"{reason}; the token belongs to another Firebase project than fcm.project_id",
            deactivate_device=True,
        )
    if code == "INVALID_ARGUMENT":
        about_token = "token" in text.lower()
        return PermanentDeliveryError(reason, deactivate_device=about_token)
    if code == "THIRD_PARTY_AUTH_ERROR":
        return PermanentDeliveryError(
            f"{reason}; check the APNs or Web Push credentials configured in Firebase"
        )
    if code == "QUOTA_EXCEEDED" or status == 429:
        return ThrottledDeliveryError(reason, retry_after=max(retry_after or QUOTA_BACKOFF, QUOTA_BACKOFF))
    if status >= 500 or code in ("UNAVAILABLE", "INTERNAL"):
        return TransientDeliveryError(reason, retry_after=retry_after)
    return PermanentDeliveryError(reason)
