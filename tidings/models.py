"""The data that crosses Tidings' boundaries: client requests, workflow input, activity input and
the queryable notification state.

These pydantic models are the single source of truth for validation. The client validates a
request here before any workflow starts, and the same models travel through Temporal with the
pydantic data converter, so what the workflow sees is exactly what was validated.

This module is imported inside Temporal's workflow sandbox: it must stay free of I/O.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticSerializationError

from tidings.redaction import redact_address

WORKFLOW_ID_PREFIX = "notification-"
RECIPIENT_SEPARATOR = "~"
DEFAULT_TASK_QUEUE = "notifications"

# Size budget of one notification. Temporal warns at 256 KB per payload and fails at 2 MB, and a
# workflow task's commands travel in one gRPC message (4 MB). Every `deliver` input carries the
# content and the part of the recipient its provider needs (for push, only the target device),
# and a notification runs at most MAX_CONCURRENT_DELIVERIES of them at once, so one workflow task
# schedules at most 10 x (64 KiB + a few KiB): well under both limits, whatever the device count.
MAX_CONTENT_BYTES = 64 * 1024
MAX_RECIPIENT_BYTES = 32 * 1024
MAX_DEVICES = 50
MAX_CONCURRENT_DELIVERIES = 10
# JSON nesting allowed in free-form values (template variables, platform overrides). The worker's
# JSON decoder refuses around 200 levels; real payloads need a handful.
MAX_NESTING = 16
MAX_TITLE_LENGTH = 1000
MAX_URL_LENGTH = 2048

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
_CATEGORY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
_LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,3}$")
_EMAIL_PATTERN = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_LINE_BREAKS = re.compile(r"[\r\n\x00\u2028\u2029\x85]")


class Channel(StrEnum):
    """A way to reach a recipient. A channel resolves to one or more destinations."""

    push = "push"
    email = "email"
    sms = "sms"
    slack = "slack"
    webhook = "webhook"
    in_app = "in_app"


class Platform(StrEnum):
    """The push service a device is registered with."""

    fcm = "fcm"
    apns = "apns"
    webpush = "webpush"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


class Phase(StrEnum):
    """Where a notification is in its life. The last six are final."""

    scheduled = "scheduled"
    waiting_quiet_hours = "waiting_quiet_hours"
    sending = "sending"
    delivered = "delivered"
    partially_delivered = "partially_delivered"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"
    skipped_by_preferences = "skipped_by_preferences"

    @property
    def is_final(self) -> bool:
        return self not in (Phase.scheduled, Phase.waiting_quiet_hours, Phase.sending)


class DeliveryStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


def _check_id(value: str) -> str:
    if not _ID_PATTERN.match(value):
        raise ValueError(
            "ids are 1-200 characters of letters, digits and _ . : @ -, starting with a letter or digit"
        )
    return value


def _check_category(value: str) -> str:
    if not _CATEGORY_PATTERN.match(value):
        raise ValueError(
            "categories are 1-100 characters of letters, digits and _ . : / -, "
            "starting with a letter or digit"
        )
    return value


def _check_timezone(value: str) -> str:
    problem = f"unknown IANA time zone {_shown(value)} (for example 'Europe/Berlin')"
    if len(value) > 64 or not value.isascii():
        raise ValueError(problem)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(problem) from None
    return value


def _check_locale(value: str) -> str:
    if not _LOCALE_PATTERN.match(value):
        raise ValueError(f"a locale is a language tag like 'en', 'de' or 'pt-BR', got {_shown(value)}")
    return value


def _check_one_line(value: str) -> str:
    if _LINE_BREAKS.search(value):
        raise ValueError("must be a single line (no CR, LF or NUL)")
    return value


def _check_http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")) or len(value) > MAX_URL_LENGTH:
        raise ValueError(f"expected an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValueError("a URL cannot contain spaces or control characters")
    return value


def _shown(value: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut so that a huge input cannot flood the message."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value`, found without recursion (so any depth is safe)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _check_json_value(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form values travel as JSON: bounded nesting, and no NaN or infinity (JSON has neither,
    so they would arrive in the worker as something else than what was validated)."""
    if nesting_depth(value) > MAX_NESTING:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (JSON has no NaN or infinity)")
    return value


def serialized_size(model: BaseModel, what: str) -> int:
    """The model's JSON size in bytes; text that is not valid Unicode (lone surrogates) is refused."""
    try:
        return len(model.__pydantic_serializer__.to_json(model))
    except PydanticSerializationError:
        raise ValueError(f"{what} contains text that is not valid Unicode (a lone surrogate)") from None


def _check_email(value: str) -> str:
    if not _EMAIL_PATTERN.match(value):
        raise ValueError(f"malformed email address {value!r}")
    return value


def _check_aware(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("timestamps need an explicit UTC offset, e.g. 2030-01-01T09:00:00+00:00")
    return value


def _check_notification_id(value: str) -> str:
    request_id, separator, recipient_id = value.partition(RECIPIENT_SEPARATOR)
    if not _ID_PATTERN.match(request_id) or (separator and not _ID_PATTERN.match(recipient_id)):
        raise ValueError("a notification id is <request id>~<recipient id> (each an id) or an id")
    return value


Identifier = Annotated[str, AfterValidator(_check_id)]
NotificationId = Annotated[str, AfterValidator(_check_notification_id)]
Category = Annotated[str, AfterValidator(_check_category)]
Locale = Annotated[str, AfterValidator(_check_locale)]
OneLine = Annotated[str, AfterValidator(_check_one_line)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
EmailAddress = Annotated[str, AfterValidator(_check_email)]
AwareDatetime = Annotated[datetime, AfterValidator(_check_aware)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


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


class Content(Model):
    """What to say: inline text, or a template id with variables (rendered by activities)."""

    title: Annotated[OneLine, Field(max_length=MAX_TITLE_LENGTH)] | None = None
    body: str | None = None
    data: dict[str, str] = Field(default_factory=dict, max_length=100)
    image: HttpUrl | None = None
    url: HttpUrl | None = None
    template_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
    variables: Annotated[dict[str, Any], AfterValidator(_check_json_value)] = Field(default_factory=dict)
    collapse_key: str | None = Field(default=None, max_length=200)
    platform_overrides: dict[
        Literal["android", "apns", "webpush", "slack"],
        Annotated[dict[str, Any], AfterValidator(_check_json_value)],
    ] = Field(
        default_factory=dict,
        description="merged into the FCM message's android/apns/webpush blocks (and the APNs payload)",
    )

    @model_validator(mode="after")
    def _something_to_say(self) -> Content:
        if self.template_id is None and not (self.title or self.body):
            raise ValueError("content needs a title or body, or a template_id")
        size = serialized_size(self, "the content")
        if size > MAX_CONTENT_BYTES:
            raise ValueError(
                f"content is {size // 1024} KiB of JSON; the limit is {MAX_CONTENT_BYTES // 1024} KiB "
                "(keep large bodies in a template and pass the variables)"
            )
        return self


class ChannelStep(Model):
    """One entry of the channel plan: a channel and what to try if it fails for good.

    `escalate_after` also moves on when a channel was delivered but not read in time, e.g.
    `{"channel": "in_app", "fallback": ["push", "email"],
      "escalate_after": {"in_app": "PT10M", "push": "PT1H"}}`: in-app first, push if unread
    after 10 minutes, email if still unread an hour later. A read, click or open stops it.
    """

    channel: Channel
    fallback: list[Channel] = Field(default_factory=list)
    escalate_after: dict[Channel, timedelta] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"channel": value}
        return value

    @model_validator(mode="after")
    def _no_repeats(self) -> ChannelStep:
        chain = [self.channel, *self.fallback]
        if len(set(chain)) != len(chain):
            raise ValueError(f"a fallback chain names a channel twice: {' -> '.join(c.value for c in chain)}")
        for channel, delay in self.escalate_after.items():
            if channel not in chain[:-1]:
                raise ValueError(
                    f"escalate_after names {channel.value!r}, which has no next channel in this step's chain"
                )
            if delay <= timedelta(0):
                raise ValueError(f"escalate_after for {channel.value!r} must be positive")
        return self


def _spoken(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds * 1000:g} ms"


def _duration_between(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(f"must be between {_spoken(low)} and {_spoken(high)}")
        return value

    return AfterValidator(check)


Interval = Annotated[timedelta, _duration_between(timedelta(milliseconds=1), timedelta(days=1))]
Timeout = Annotated[timedelta, _duration_between(timedelta(seconds=1), timedelta(days=30))]
ErrorTypeName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")]


class RetrySpec(Model):
    """A declarative retry policy for one channel's provider activity.

    Every field is bounded so that Temporal accepts the policy: a policy the server would refuse
    would fail every workflow task of the notification instead of failing the request.
    """

    initial_interval: Interval = timedelta(seconds=1)
    backoff_coefficient: float = Field(default=2.0, ge=1.0, le=100.0)
    maximum_interval: Interval = timedelta(minutes=5)
    maximum_attempts: int = Field(default=5, ge=1, le=100)
    start_to_close_timeout: Timeout = timedelta(seconds=30)
    schedule_to_close_timeout: Timeout = timedelta(hours=6)
    non_retryable_error_types: list[ErrorTypeName] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> RetrySpec:
        if self.maximum_interval < self.initial_interval:
            raise ValueError("maximum_interval must not be below initial_interval")
        if self.schedule_to_close_timeout < self.start_to_close_timeout:
            raise ValueError("schedule_to_close_timeout must not be below start_to_close_timeout")
        return self


class RetryOverride(Model):
    """Per-request changes to a channel's retry policy; unset fields keep the settings' values."""

    initial_interval: Interval | None = None
    backoff_coefficient: float | None = Field(default=None, ge=1.0, le=100.0)
    maximum_interval: Interval | None = None
    maximum_attempts: int | None = Field(default=None, ge=1, le=100)
    start_to_close_timeout: Timeout | None = None
    schedule_to_close_timeout: Timeout | None = None
    non_retryable_error_types: list[ErrorTypeName] | None = Field(default=None, max_length=20)

    def apply(self, base: RetrySpec) -> RetrySpec:
        """The merged policy; ValueError (a ValidationError) when the two do not fit together."""
        return RetrySpec.model_validate({**base.model_dump(), **self.model_dump(exclude_none=True)})


class _NotificationCommon(Model):
    content: Content
    channels: list[ChannelStep] = Field(min_length=1, max_length=len(Channel))
    priority: Priority = Priority.normal
    category: Category | None = None
    schedule_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    retry: dict[Channel, RetryOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _plan_and_times_are_consistent(self) -> _NotificationCommon:
        seen: set[Channel] = set()
        for step in self.channels:
            for channel in (step.channel, *step.fallback):
                if channel in seen:
                    raise ValueError(f"channel {channel.value!r} appears more than once in the channel plan")
                seen.add(channel)
        if self.schedule_at and self.expires_at and self.expires_at <= self.schedule_at:
            raise ValueError("expires_at must be after schedule_at")
        for channel, override in self.retry.items():
            try:
                override.apply(RetrySpec())
            except ValueError as exc:
                raise ValueError(f"retry.{channel.value}: {_first_error(exc)}") from None
        return self

    @property
    def all_channels(self) -> list[Channel]:
        return [c for step in self.channels for c in (step.channel, *step.fallback)]


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"]).removeprefix("Value error, ")
    return str(exc)


RecipientRef = Annotated[Identifier | Recipient, Field(union_mode="left_to_right")]


class NotificationRequest(_NotificationCommon):
    """What a service asks for: the client validates this before starting any workflow.

    `id` is the idempotency id. Each recipient gets the notification `<id>~<recipient id>`
    (workflow `notification-<id>~<recipient id>`), however many recipients the request lists, so
    sending the same id again, with the list grown or shrunk, never reaches anyone twice.
    """

    id: Identifier | None = None
    recipients: list[RecipientRef] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct_recipients(self) -> NotificationRequest:
        ids = [r if isinstance(r, str) else r.id for r in self.recipients]
        if len(set(ids)) != len(ids):
            raise ValueError("a recipient is listed twice")
        return self


class NotificationInput(_NotificationCommon):
    """The input of one NotificationWorkflow: one recipient, by id (from the store) or inline.

    Other clients (Go, TypeScript, the `temporal` CLI) build this JSON themselves: its schema is
    `docs/notification-input.schema.json`. The workflow validates it again and ends `failed` with
    the validation message when it does not fit.
    """

    id: NotificationId
    recipient_id: Identifier
    recipient: Recipient | None = None
    requested_at: AwareDatetime | None = None

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.id)


def workflow_id_for(notification_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{notification_id}"


def notification_id_for(request_id: str, recipient_id: str) -> str:
    """The notification id of one recipient of a request: `~` cannot occur in either part."""
    return f"{request_id}{RECIPIENT_SEPARATOR}{recipient_id}"


class Destination(Model):
    """One place a message goes: an address, a number, a device, an endpoint."""

    channel: Channel
    provider: str
    address: str = Field(description="where it goes; for devices, the device id")
    device_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.channel.value}:{self.provider}:{self.address}"

    @property
    def label(self) -> str:
        """A one-line name for the Web UI: 'fcm → device …a1b2', 'smtp → ada@example.com'."""
        if self.device_id is not None:
            tail = self.device_id if len(self.device_id) <= 8 else f"…{self.device_id[-4:]}"
            return f"{self.provider} → device {tail}"
        address = redact_address(self.address)
        address = address if len(address) <= 48 else f"{address[:47]}…"
        return f"{self.provider} → {address}"


def delivery_id_for(workflow_id: str, destination: Destination) -> str:
    """A deterministic id per (notification, destination) so providers can spot duplicates."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidings:{workflow_id}/{destination.key}"))


class DeliveryInput(Model):
    """The input of one provider activity: everything needed to send to one destination."""

    delivery_id: str
    workflow_id: str
    notification_id: str
    destination: Destination
    recipient: Recipient
    content: Content
    priority: Priority
    category: str | None = None
    expires_at: AwareDatetime | None = None
    recipient_stored: bool = Field(
        default=False,
        description="secret-bearing URLs are redacted in `recipient`; deliver reads them from the store",
    )


class DeliveryResult(Model):
    provider: str
    provider_message_id: str | None = None
    attempt: int = 1
    accepted_at: AwareDatetime


ErrorKind = Literal["permanent", "transient", "throttled", "timeout"]


class DestinationState(Model):
    channel: Channel
    provider: str
    destination: str
    device_id: str | None = None
    delivery_id: str
    status: DeliveryStatus = DeliveryStatus.pending
    attempts: int = 0
    last_error: str | None = None
    error_kind: ErrorKind | None = None
    provider_message_id: str | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    fallback_from: Channel | None = None
    fallback_reason: str | None = None
    receipts: list[DeliveryReceipt] = Field(default_factory=list)
    engagement: list[Engagement] = Field(default_factory=list)


class StateEvent(Model):
    at: AwareDatetime
    message: str


class NotificationState(Model):
    """The queryable state of a notification, and its workflow's final result."""

    id: str
    workflow_id: str
    recipient_id: str
    phase: Phase = Phase.scheduled
    priority: Priority = Priority.normal
    category: str | None = None
    channels: list[Channel] = Field(default_factory=list)
    schedule_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    quiet_hours_until: AwareDatetime | None = None
    reason: str | None = None
    destinations: list[DestinationState] = Field(default_factory=list)
    events: list[StateEvent] = Field(default_factory=list)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None


class CancelRequest(Model):
    reason: str | None = None


class RescheduleRequest(Model):
    schedule_at: AwareDatetime


class SignalOutcome(Model):
    accepted: bool
    reason: str | None = None


class PrepareInput(Model):
    """Input of the local activity that loads the recipient and evaluates quiet hours."""

    recipient_id: str
    recipient: Recipient | None = None
    channels: list[Channel]
    at: AwareDatetime


class Preparation(Model):
    recipient: Recipient | None
    recipient_stored: bool = Field(default=False, description="loaded from the store, secrets redacted")
    quiet_hours_until: AwareDatetime | None = None
    retry: dict[Channel, RetrySpec]
    push_success: Literal["any", "all"] = "any"


class DisableWebhookInput(Model):
    recipient_id: str
    url: str
    reason: str


class DeactivateDeviceInput(Model):
    recipient_id: str
    device_id: str
    reason: str
    provider_timestamp: AwareDatetime | None = None


class ReceiptStatus(StrEnum):
    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    read = "read"


class DeliveryReceipt(Model):
    """A provider's report on a message after it accepted it (e.g. a Twilio status callback).

    Signal `delivery_receipt`. Matches a destination by `delivery_id` or `provider_message_id`.
    """

    delivery_id: str | None = None
    provider_message_id: str | None = None
    status: ReceiptStatus
    error_code: str | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _identifies_a_delivery(self) -> DeliveryReceipt:
        if not (self.delivery_id or self.provider_message_id):
            raise ValueError("a receipt needs delivery_id or provider_message_id")
        return self


class EngagementKind(StrEnum):
    opened = "opened"
    clicked = "clicked"
    read = "read"
    dismissed = "dismissed"


class Engagement(Model):
    """The recipient did something with the message. Signal `engagement`."""

    kind: EngagementKind
    delivery_id: str | None = None
    url: str | None = None
    at: AwareDatetime


DestinationState.model_rebuild()
NotificationState.model_rebuild()
