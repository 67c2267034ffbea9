"""SMS through Twilio Programmable Messaging, with httpx (never blocking the event loop).

Each message asks Twilio for status callbacks at the receiver (`receiver.public_url`), with the
workflow and delivery ids in the URL; Twilio signs the whole URL, so the receiver can trust them.
A recipient who replied STOP (error 21610) is opted out of SMS in the store, so later
notifications skip the channel.
"""

from __future__ import annotations

from urllib.parse import urlencode

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
from tidings.activities.store.base import SubscriberStore
from tidings.models import Channel, DeliveryInput
from tidings.settings import ReceiverSettings, TwilioSettings
from tidings.sms import segments

INVALID_TO = 21211
UNSUBSCRIBED = 21610
TOO_MANY_REQUESTS = 20429


class TwilioProvider:
    def __init__(
        self,
        settings: TwilioSettings,
        receiver: ReceiverSettings,
        store: SubscriberStore,
        client: httpx.AsyncClient | None = None,
        name: str = "twilio",
    ) -> None:
        """`name`: "twilio", or the name of a `[providers.NAME]` account of a channel with failover."""
        self.name = name
        if not (settings.account_sid and settings.auth_token):
            raise ValueError("Twilio needs twilio.account_sid and twilio.auth_token")
        if not (settings.from_number or settings.messaging_service_sid):
            raise ValueError("Twilio needs twilio.from_number or twilio.messaging_service_sid")
        self._settings = settings
        self._callback_base = (
            settings.status_callback_url or f"{receiver.public_url.rstrip('/')}/twilio/status"
        )
        self._store = store
        self._url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        )
        self._auth = (settings.account_sid, settings.auth_token.get_secret_value())
        self._client = client or httpx.AsyncClient(timeout=settings.timeout)

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        body = message.sms_text or message.body or message.title or ""
        count = segments(body)
        if count > self._settings.max_segments:
            raise PermanentDeliveryError(
                f"SMS text needs {count} segments; twilio.max_segments allows {self._settings.max_segments}"
            )
        callback_ids = {"w": delivery.workflow_id, "d": delivery.delivery_id}
        form = {
            "To": delivery.destination.address,
            "Body": body,
            "StatusCallback": f"{self._callback_base}?{urlencode(callback_ids)}",
        }
        if self._settings.messaging_service_sid:
            form["MessagingServiceSid"] = self._settings.messaging_service_sid
        else:
            form["From"] = self._settings.from_number or ""
        response = await post(self._client, "Twilio", self._url, data=form, auth=self._auth)
        if response.status_code in (200, 201):
            return ProviderReceipt(response.json().get("sid"))
        section = "twilio" if self.name == "twilio" else f"providers.{self.name}"
        error = _classify(response, section)
        if isinstance(error, TwilioPermanentError) and error.twilio_code == UNSUBSCRIBED:
            await self._store.opt_out_channel(delivery.recipient.id, Channel.sms)
        raise error

    async def aclose(self) -> None:
        await self._client.aclose()


class TwilioPermanentError(PermanentDeliveryError):
    """A permanent failure that remembers Twilio's error code."""

    def __init__(self, reason: str, twilio_code: int | None, *, provider_fault: bool = False) -> None:
        super().__init__(reason, provider_fault=provider_fault)
        self.twilio_code = twilio_code


def _classify(
    response: httpx.Response, section: str = "twilio"
) -> PermanentDeliveryError | TransientDeliveryError | ThrottledDeliveryError:
    status = response.status_code
    try:
        body = response.json()
        code = int(body.get("code")) if body.get("code") is not None else None
        text = str(body.get("message", ""))[:200]
    except (ValueError, TypeError):
        code, text = None, ""
    reason = f"Twilio {code or status}: {text}" if text else f"Twilio answered {status}"
    if status == 429 or code == TOO_MANY_REQUESTS:
        return ThrottledDeliveryError(
            reason, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status >= 500:
        return TransientDeliveryError(reason)
    if code == UNSUBSCRIBED:
        return TwilioPermanentError(f"{reason} (the recipient replied STOP; SMS is now opted out)", code)
    if code == INVALID_TO:
        return TwilioPermanentError(f"{reason} (invalid 'To' number)", code)
    if status == 401:
        return TwilioPermanentError(
            f"{reason}; check {section}.account_sid and {section}.auth_token", code, provider_fault=True
        )
    return TwilioPermanentError(reason, code)
