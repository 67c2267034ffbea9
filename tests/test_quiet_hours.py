from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from tidings.models import QuietHours
from tidings.quiet_hours import quiet_hours_end

NIGHT = QuietHours(start=time(22), end=time(7))
BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_outside_window_is_not_quiet() -> None:
    assert quiet_hours_end(berlin(2026, 6, 1, 12, 0), NIGHT, "Europe/Berlin") is None
    assert quiet_hours_end(berlin(2026, 6, 1, 7, 0), NIGHT, "Europe/Berlin") is None  # end is exclusive


def test_late_evening_waits_until_next_morning() -> None:
    end = quiet_hours_end(berlin(2026, 6, 1, 23, 30), NIGHT, "Europe/Berlin")
    assert end == berlin(2026, 6, 2, 7, 0)


def test_after_midnight_waits_until_same_morning() -> None:
    end = quiet_hours_end(berlin(2026, 6, 2, 3, 0), NIGHT, "Europe/Berlin")
    assert end == berlin(2026, 6, 2, 7, 0)


def test_start_is_inclusive() -> None:
    assert quiet_hours_end(berlin(2026, 6, 1, 22, 0), NIGHT, "Europe/Berlin") == berlin(2026, 6, 2, 7, 0)


def test_window_within_one_day() -> None:
    lunch = QuietHours(start=time(12), end=time(13, 30))
    assert quiet_hours_end(berlin(2026, 6, 1, 12, 45), lunch, "Europe/Berlin") == berlin(2026, 6, 1, 13, 30)
    assert quiet_hours_end(berlin(2026, 6, 1, 23, 0), lunch, "Europe/Berlin") is None


def test_evaluated_in_recipient_zone_not_server_zone() -> None:
    now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 06:30 in Tokyo, 23:30 in Berlin
    assert quiet_hours_end(now, NIGHT, "Asia/Tokyo") == datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
    assert quiet_hours_end(now, NIGHT, "Europe/Berlin") == datetime(2026, 6, 2, 5, 0, tzinfo=UTC)


def test_spring_forward_night_is_one_hour_shorter() -> None:
    # 29 March 2026: Berlin jumps from 02:00 CET to 03:00 CEST
    end = quiet_hours_end(berlin(2026, 3, 28, 23, 0), NIGHT, "Europe/Berlin")
    assert end == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 CEST


def test_fall_back_night_is_one_hour_longer() -> None:
    # 25 October 2026: Berlin falls back from 03:00 CEST to 02:00 CET
    end = quiet_hours_end(berlin(2026, 10, 24, 23, 0), NIGHT, "Europe/Berlin")
    assert end == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)  # 07:00 CET


def test_end_inside_skipped_hour_ends_at_the_jump() -> None:
    window = QuietHours(start=time(22), end=time(2, 30))
    end = quiet_hours_end(berlin(2026, 3, 28, 23, 0), window, "Europe/Berlin")
    assert end == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the moment of the jump


def test_end_inside_repeated_hour_is_first_occurrence() -> None:
    window = QuietHours(start=time(22), end=time(2, 30))
    end = quiet_hours_end(berlin(2026, 10, 24, 23, 0), window, "Europe/Berlin")
    assert end == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_hours_end(datetime(2026, 6, 1, 23, 0), NIGHT, "UTC")
