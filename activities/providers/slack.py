"""Slack: an incoming webhook when the recipient has one, else `chat.postMessage` with the bot token.

Slack reports most Web API errors with HTTP 200 and `"ok": false`, so the body is always checked.
Errors that sending again cannot fix (`channel_not_found`, `invalid_auth`, ...) are permanent;
429 waits for `Retry-After`; 5xx and Slack's own transient errors retry.
"""

from __future__ import annotations

from typing import Any

import httpx

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ProviderReceipt,
    ThrottledDeliveryError,
    TransientDeliveryError,
    parse_retry_after,
    post,
)
from tidings.activities.rendering import RenderedMessage
from tidings.models import DeliveryInput
from tidings.settings import SlackSettings

TRANSIENT_ERRORS = {"service_unavailable", "internal_error", "fatal_error", "request_timeout", "rollup_error"}


class SlackProvider:
    name = "slack"

    def __init__(self, settings: SlackSettings, client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout)

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        payload: dict[str, Any] = {"text": message.chat_text or message.body or message.title or ""}
        blocks = message.platform_overrides.get("slack", {}).get("blocks")
        if blocks:
            payload["blocks"] = blocks
        recipient = delivery.recipient
        if recipient.slack_webhook_url:
            response = await self._post(recipient.slack_webhook_url, payload, {})
            return _webhook_receipt(response)
        token = self._settings.bot_token
        if token is None:
            raise PermanentDeliveryError("Slack chat.postMessage needs slack.bot_token")
        payload["channel"] = recipient.slack_channel
        url = f"{self._settings.api_base_url.rstrip('/')}/chat.postMessage"
        response = await self._post(url, payload, {"authorization": f"Bearer {token.get_secret_value()}"})
        return _api_receipt(response)

    async def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        return await post(self._client, "Slack", url, json=payload, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()


def _throttled(response: httpx.Response) -> ThrottledDeliveryError:
    return ThrottledDeliveryError(
        "Slack rate limit (429)", retry_after=parse_retry_after(response.headers.get("retry-after"))
    )


def _webhook_receipt(response: httpx.Response) -> ProviderReceipt:
    if response.status_code == 200:
        return ProviderReceipt(None)
    if response.status_code == 429:
        raise _throttled(response)
    error = response.text.strip()[:100] or str(response.status_code)
    if response.status_code >= 500 or error in TRANSIENT_ERRORS:
        raise TransientDeliveryError(f"Slack webhook answered {response.status_code} {error}")
    raise PermanentDeliveryError(f"Slack webhook answered {response.status_code} {error}")


def _api_receipt(response: httpx.Response) -> ProviderReceipt:
    if response.status_code == 429:
        raise _throttled(response)
    if response.status_code >= 500:
        raise TransientDeliveryError(f"Slack answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise TransientDeliveryError(f"Slack answered {response.status_code} without JSON") from None
    if body.get("ok"):
        return ProviderReceipt(f"{body.get('channel')}/{body.get('ts')}")
    error = str(body.get("error", "unknown_error"))
    if error == "ratelimited":
        raise _throttled(response)
    if error in TRANSIENT_ERRORS:
        raise TransientDeliveryError(f"Slack chat.postMessage: {error}")
    hint = "; check slack.bot_token" if error in ("invalid_auth", "not_authed", "missing_scope") else ""
    raise PermanentDeliveryError(f"Slack chat.postMessage: {error}{hint}")
