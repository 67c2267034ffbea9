"""The digest's input boundary (request, spec, item): property-based, no server."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tidings.models import DigestItem, DigestSpec, NotificationRequest, digest_workflow_id
from tidings.models.caps import iso_duration
from tidings.quiet_hours import next_local_time

durations = st.one_of(
    st.none(),
    st.integers(min_value=-10, max_value=40 * 86400).map(
        lambda s: iso_duration(timedelta(seconds=s)) if s > 0 else "PT0S"
    ),
    st.sampled_from(["soon", "", "P1M", "PT10M"]),
)
KNOWN_PROBLEMS = (
    "a digest needs either a window",
    "no mode sliding",
    "needs max_window",
    "max_window must not be shorter",
    "max_window is for mode sliding",
    "between 1 second and 31 days",
    "max_items",
    "window",
    "until_local_time",
    "Input should be 'fixed' or 'sliding'",
)


@given(
    window=durations,
    max_window=durations,
    mode=st.sampled_from(["fixed", "sliding", "tumbling"]),
    max_items=st.integers(min_value=-5, max_value=600),
    until=st.one_of(st.none(), st.times().map(lambda t: t.strftime("%H:%M")), st.just("25:00")),
)
def test_a_digest_spec_is_valid_or_says_what_is_wrong(
    window: str | None, max_window: str | None, mode: str, max_items: int, until: str | None
) -> None:
    values: dict[str, Any] = {"key": "comments:post-9", "mode": mode, "max_items": max_items}
    for name, value in (("window", window), ("max_window", max_window), ("until_local_time", until)):
        if value is not None:
            values[name] = value
    try:
        spec = DigestSpec.model_validate(values)
    except ValidationError as exc:
        assert any(p in str(exc) for p in KNOWN_PROBLEMS), str(exc)
        return
    assert (spec.window is None) != (spec.until_local_time is None)
    assert 1 <= spec.max_items <= 500
    if spec.mode == "sliding":
        assert spec.max_window is not None and spec.window is not None and spec.max_window >= spec.window


@given(key=st.text(max_size=40), recipient=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_digest_workflow_ids_are_unambiguous(key: str, recipient: str) -> None:
    try:
        spec = DigestSpec(key=key, window=timedelta(minutes=1))
    except ValidationError:
        return
    workflow_id = digest_workflow_id(recipient, spec.key)
    assert workflow_id.removeprefix("digest-").split("~") == [recipient, spec.key]


@given(body=st.text(max_size=4000))
def test_an_item_is_at_most_2_kib(body: str) -> None:
    try:
        item = DigestItem(id="e1~u1", body=body)
    except ValidationError as exc:
        assert "digest item is" in str(exc) or "surrogate" in str(exc) or "Unicode" in str(exc)
    else:
        assert len(item.model_dump_json()) <= 2048


def test_a_digest_request_has_no_schedule_or_throttle() -> None:
    base = {
        "recipients": ["u1"],
        "channels": ["email"],
        "content": {"title": "x"},
        "digest": {"key": "k", "window": "PT1M"},
    }
    NotificationRequest.model_validate(base)
    with pytest.raises(ValidationError, match="cannot have schedule_at"):
        NotificationRequest.model_validate({**base, "throttle": {"key": "t", "window": "PT1H"}})
    with pytest.raises(ValidationError, match="cannot be named count"):
        NotificationRequest.model_validate(
            {**base, "digest": {"key": "k", "window": "PT1M", "variables": {"count": 1}}}
        )


@given(
    after=st.datetimes(timezones=st.just(__import__("datetime").UTC)),
    at=st.times(),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Lord_Howe"]),
)
def test_the_next_local_time_is_after_and_within_a_day(after: Any, at: time, zone: str) -> None:
    from zoneinfo import ZoneInfo

    try:
        end = next_local_time(after, at, zone)
    except OverflowError:
        return  # at the very end of datetime's range
    assert after < end <= after + timedelta(hours=26)
    local = end.astimezone(ZoneInfo(zone)).time()
    assert local >= at or local.hour == (at.hour + 1) % 24  # a skipped hour ends at the jump
