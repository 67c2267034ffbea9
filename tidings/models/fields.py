"""Building blocks of every model: the base class, the limits, the checked field types.

Pure and free of I/O: imported inside Temporal's workflow sandbox.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticSerializationError

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
