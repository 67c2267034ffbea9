"""Quiet hours: when a recipient's local daily window of silence ends.

Pure functions over aware datetimes, so they are unit-tested directly. Time zone rules come
from the IANA database (zoneinfo, backed by the tzdata package); the worker evaluates them in a
local activity so that a tzdata update never changes a workflow's replayed decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tidings.models import QuietHours


def in_window(local_time: time, window: QuietHours) -> bool:
    """Whether a wall-clock time lies in the window (start inclusive, end exclusive)."""
    if window.start < window.end:
        return window.start <= local_time < window.end
    return local_time >= window.start or local_time < window.end


def quiet_hours_end(now: datetime, window: QuietHours | None, timezone: str) -> datetime | None:
    """The instant the quiet window that contains `now` ends, or None when `now` is not quiet.

    Wall-clock rules: the window ends the first time the recipient's clock reads `end` or later.
    On a spring-forward day where `end` falls in the skipped hour, that is the moment of the jump;
    on a fall-back day where `end` occurs twice, it is the first occurrence.
    """
    if window is None:
        return None
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if not in_window(wall, window):
        return None
    end_date = local.date()
    if window.start > window.end and wall >= window.start:
        end_date += timedelta(days=1)
    return _first_instant_at_or_after(datetime.combine(end_date, window.end), zone)


def next_local_time(after: datetime, wall_time: time, timezone: str) -> datetime:
    """The first instant after `after` at which the recipient's clock reads `wall_time` (a
    scheduled digest's end: "the next 08:00"), with the same DST rules as quiet hours."""
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    day = local.date()
    if local.time().replace(tzinfo=None) >= wall_time:
        day += timedelta(days=1)
    return _first_instant_at_or_after(datetime.combine(day, wall_time), zone)


def _first_instant_at_or_after(wall: datetime, zone: ZoneInfo) -> datetime:
    candidate = wall.replace(tzinfo=zone, fold=0)
    round_trip = candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip == wall:
        return candidate.astimezone(UTC)
    # `wall` does not exist (skipped by a DST jump): find the jump, minute by minute.
    instant = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    for _ in range(24 * 60):
        if instant.astimezone(zone).replace(tzinfo=None) >= wall:
            return instant
        instant += timedelta(minutes=1)
    raise AssertionError("no time zone skips more than a day")
