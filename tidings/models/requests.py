"""What a service asks for (NotificationRequest) and what one workflow gets (NotificationInput)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tidings.models.caps import Throttle
from tidings.models.digest_spec import DigestSpec
from tidings.models.fields import (
    MAX_CONTENT_BYTES,
    MAX_TITLE_LENGTH,
    RECIPIENT_SEPARATOR,
    WORKFLOW_ID_PREFIX,
    AwareDatetime,
    Category,
    Channel,
    ErrorTypeName,
    HttpUrl,
    Identifier,
    Interval,
    Model,
    NotificationId,
    OneLine,
    Priority,
    Timeout,
    _check_json_value,
    serialized_size,
)
from tidings.models.recipients import Recipient


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
    throttle: Throttle | None = Field(
        default=None,
        description="at most `limit` per recipient and `key` in any `window`; the excess ends `throttled`",
    )

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
    digest: DigestSpec | None = Field(
        default=None,
        description="join the recipient's digest with this key instead of sending at once (see DigestSpec)",
    )

    @model_validator(mode="after")
    def _distinct_recipients(self) -> NotificationRequest:
        ids = [r if isinstance(r, str) else r.id for r in self.recipients]
        if len(set(ids)) != len(ids):
            raise ValueError("a recipient is listed twice")
        if self.digest is not None and (self.schedule_at or self.expires_at or self.throttle):
            raise ValueError(
                "a digest item cannot have schedule_at, expires_at or throttle (the digest is sent as one)"
            )
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
