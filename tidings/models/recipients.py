"""Who a notification goes to: a subscriber's profile, devices and preferences."""

from __future__ import annotations

import base64
import binascii
from datetime import time
from typing import Annotated

import phonenumbers
from pydantic import Field, field_validator, model_validator

from tidings.models.caps import CapRules
from tidings.models.fields import (
    MAX_DEVICES,
    MAX_RECIPIENT_BYTES,
    AwareDatetime,
    Channel,
    EmailAddress,
    HttpUrl,
    Identifier,
    Locale,
    Model,
    OneLine,
    Platform,
    TimeZoneName,
    _shown,
    serialized_size,
)
from tidings.redaction import redact_address


def _b64url_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


class WebPushKeys(Model):
    p256dh: str
    auth: str

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        raw = _b64url_bytes(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError(
                "p256dh must be a base64url uncompressed P-256 public key (65 bytes starting 0x04)"
            )
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if len(_b64url_bytes(value)) != 16:
            raise ValueError("auth must be a base64url 16-byte secret")
        return value


class WebPushSubscription(Model):
    """A browser's PushSubscription as returned by `subscription.toJSON()`."""

    endpoint: str
    keys: WebPushKeys

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://") or len(value) < 12:
            raise ValueError(f"a push subscription endpoint is an https URL, got {value[:60]!r}")
        return value


class Device(Model):
    """One app installation or browser subscription of a recipient."""

    id: Identifier
    platform: Platform
    token: str | None = Field(default=None, description="FCM registration token or APNs device token")
    subscription: WebPushSubscription | None = None
    app: str | None = Field(default=None, description="APNs topic / bundle id or app name")
    active: bool = True
    registered_at: AwareDatetime | None = None
    deactivated_reason: str | None = None

    @model_validator(mode="after")
    def _credentials_match_platform(self) -> Device:
        if self.platform is Platform.webpush:
            if self.subscription is None:
                raise ValueError("a webpush device needs a subscription {endpoint, keys: {p256dh, auth}}")
        elif not self.token:
            raise ValueError(f"a {self.platform.value} device needs a token")
        return self


class QuietHours(Model):
    """A daily window, in the recipient's local time, in which non-critical messages wait.

    `start` after `end` means the window crosses midnight (22:00-07:00).
    """

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        return self


class Preferences(Model):
    opted_out_channels: set[Channel] = Field(default_factory=set)
    opted_out_categories: set[str] = Field(default_factory=set)
    opted_out_category_channels: dict[str, set[Channel]] = Field(
        default_factory=dict, description="per category, the channels the recipient turned off"
    )
    quiet_hours: QuietHours | None = None
    frequency_caps: dict[Channel, CapRules] = Field(
        default_factory=dict,
        description='per channel, caps replacing the settings\' default, e.g. {"push": ["3/PT1H"]}; '
        "an empty list means no cap on that channel",
    )


class Recipient(Model):
    """A subscriber's profile: where and how they can be reached."""

    id: Identifier
    name: Annotated[OneLine, Field(max_length=200)] | None = None
    email: Annotated[EmailAddress, Field(max_length=254)] | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +4915112345678")
    webhook_url: HttpUrl | None = None
    webhook_disabled: str | None = Field(default=None, description="why the endpoint was disabled (410 Gone)")
    slack_webhook_url: HttpUrl | None = None
    slack_channel: str | None = Field(default=None, pattern=r"^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
    devices: list[Device] = Field(default_factory=list, max_length=MAX_DEVICES)
    timezone: TimeZoneName = "UTC"
    locale: Locale = "en"
    preferences: Preferences = Field(default_factory=Preferences)

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        """Normalise to E.164 ('+49 151 1234 5678' -> '+4915112345678'); refuse invalid numbers.

        This also runs inside the workflow sandbox while a workflow's input is decoded: the worker
        loads all of phonenumbers' metadata before it starts (`load_phone_metadata`), so nothing
        is lazily imported, and no lock taken, in there.
        """
        if value is None:
            return None
        if len(value) > 40:
            raise ValueError(f"{_shown(value)} is not a valid phone number")
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            if not value.strip().startswith("+"):
                raise ValueError(
                    f"phone numbers need the country code, e.g. +4915112345678; got {_shown(value)}"
                ) from None
            raise ValueError(f"{_shown(value)} is not a valid phone number") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError(f"{_shown(value)} is not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @model_validator(mode="after")
    def _within_budget(self) -> Recipient:
        if serialized_size(self, "the recipient") > MAX_RECIPIENT_BYTES:
            raise ValueError(f"a recipient profile is limited to {MAX_RECIPIENT_BYTES // 1024} KiB of JSON")
        return self

    def without_secrets(self) -> Recipient:
        """This profile with its secret-bearing URLs redacted (see `tidings.redaction`): what the
        workflow keeps of a stored recipient, so that the URLs never reach history."""
        return self.model_copy(
            update={
                "webhook_url": self.webhook_url and redact_address(self.webhook_url),
                "slack_webhook_url": self.slack_webhook_url and redact_address(self.slack_webhook_url),
            }
        )

    def has_address_for(self, channel: Channel) -> bool:
        match channel:
            case Channel.push:
                return any(d.active for d in self.devices)
            case Channel.email:
                return self.email is not None
            case Channel.sms:
                return self.phone is not None
            case Channel.slack:
                return self.slack_webhook_url is not None or self.slack_channel is not None
            case Channel.webhook:
                return self.webhook_url is not None and self.webhook_disabled is None
            case Channel.in_app:
                return True
