"""Throttles and frequency caps: how many notifications a recipient may get per window.

- A request's `throttle` ({key, limit, window}) allows at most `limit` notifications per recipient
  and key in any sliding `window`; the excess ends in the final phase `throttled`.
- A frequency cap ("3/PT1H": at most 3 per hour) limits everything sent to a recipient on one
  channel, whatever the request. Settings give the default per channel, a recipient's
  preferences may replace it; `critical` notifications are never capped. What happens to the
  excess is chosen per category: `defer` (wait for the next free slot) or `drop` (`throttled`).

Counting happens in the store (see `activities/store/counters.py`): one reservation per
notification and counter, taken atomically under a per-recipient lock, right before sending.

Pure and free of I/O: imported inside Temporal's workflow sandbox.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from tidings.models.fields import AwareDatetime, Category, Channel, Model, Priority

MAX_CAP_WINDOW = timedelta(days=31)
MIN_CAP_WINDOW = timedelta(seconds=1)
MAX_CAP_LIMIT = 10_000
_THROTTLE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,63}$")
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)

CapPolicy = Literal["defer", "drop"]


def _check_window(value: timedelta) -> timedelta:
    if not MIN_CAP_WINDOW <= value <= MAX_CAP_WINDOW:
        raise ValueError("a window is between 1 second and 31 days (ISO 8601, e.g. PT1H or P1D)")
    return value


def _check_throttle_key(value: str) -> str:
    if not _THROTTLE_KEY.match(value):
        raise ValueError(
            "a throttle key is 1-64 characters of letters, digits and _ . : / @ -, "
            "starting with a letter or digit"
        )
    return value


Window = Annotated[timedelta, AfterValidator(_check_window)]
ThrottleKey = Annotated[str, AfterValidator(_check_throttle_key)]


class Throttle(Model):
    """At most `limit` notifications per recipient and `key` in any sliding `window`."""

    key: ThrottleKey
    limit: int = Field(default=1, ge=1, le=MAX_CAP_LIMIT)
    window: Window


def _rule_from_text(value: Any) -> Any:
    """`"3/PT1H"` → {limit: 3, window: PT1H}; dicts and rules pass through."""
    if not isinstance(value, str):
        return value
    count, sep, duration = value.partition("/")
    if not sep or not count.strip().isdigit():
        raise ValueError(f"a frequency cap is LIMIT/ISO-DURATION, e.g. '3/PT1H' or '10/P1D'; got {value!r}")
    try:
        window = _DURATION.validate_python(duration.strip())
    except ValidationError:
        raise ValueError(f"{duration.strip()!r} is not an ISO 8601 duration (e.g. PT1H, P1D)") from None
    return {"limit": int(count), "window": window}


class CapRuleModel(Model):
    """One frequency-cap rule: at most `limit` per sliding `window`. Written "3/PT1H"."""

    limit: int = Field(ge=1, le=MAX_CAP_LIMIT)
    window: Window

    def __str__(self) -> str:
        return f"{self.limit}/{iso_duration(self.window)}"


CapRule = Annotated[CapRuleModel, BeforeValidator(_rule_from_text)]
CapRules = Annotated[list[CapRule], Field(max_length=5)]


def iso_duration(window: timedelta) -> str:
    """PT1H, P1D, P1DT2H30M: how windows are written back (settings, preferences, reasons)."""
    seconds = int(window.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


class CounterLimit(Model):
    """One limit a reservation must fit: `counter` names what is counted per recipient
    (`channel:push`, `throttle:login-alert`); `what` says it in words for the reason."""

    counter: str
    limit: int
    window: timedelta
    what: str


class ReservationRequest(Model):
    """Reserve one slot in each counter for this notification, or none if any is full."""

    recipient_id: str
    notification_id: str
    at: AwareDatetime
    limits: list[CounterLimit]


class Refusal(Model):
    """Why a reservation was refused (`counter`: the first full one) and when the full counters
    free a slot."""

    counter: str
    reason: str
    next_slot: AwareDatetime


class CapCheck(Model):
    """What `prepare_notification` needs to reserve for a notification (part of its input)."""

    notification_id: str
    priority: Priority = Priority.normal
    category: Category | None = None
    throttle: Throttle | None = None
    primary_channels: list[Channel] = Field(default_factory=list)


class CapHold(Model):
    """A notification that may not be sent now: `until` is when to try again (policy `defer`);
    None means it ends `throttled` (a throttle, or a cap with policy `drop`)."""

    reason: str
    until: AwareDatetime | None = None
