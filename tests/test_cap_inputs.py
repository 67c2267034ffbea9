"""The boundaries of throttles and frequency caps: requests, settings and preferences refuse
bad values with a message that says what is expected (property-based)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tidings.models import CapRuleModel, Channel, NotificationRequest, Preferences, Throttle
from tidings.models.caps import iso_duration
from tidings.settings import Settings, SettingsError, load_settings

windows = st.integers(min_value=1, max_value=31 * 86400).map(lambda s: timedelta(seconds=s))


def request(**extra: object) -> dict[str, object]:
    return {"recipients": ["u1"], "channels": ["push"], "content": {"title": "hi"}, **extra}


@given(limit=st.integers(min_value=1, max_value=10_000), window=windows)
def test_cap_rules_round_trip_through_their_text(limit: int, window: timedelta) -> None:
    rule = CapRuleModel(limit=limit, window=window)
    text = str(rule)
    assert text == f"{limit}/{iso_duration(window)}"
    preferences = Preferences.model_validate({"frequency_caps": {"push": [text]}})
    assert preferences.frequency_caps[Channel.push] == [rule]


@given(text=st.text(max_size=30))
def test_any_text_is_a_rule_or_a_clear_error(text: str) -> None:
    try:
        Preferences.model_validate({"frequency_caps": {"email": [text]}})
    except ValidationError as exc:
        message = str(exc)
        assert any(
            hint in message
            for hint in ("LIMIT/ISO-DURATION", "ISO 8601 duration", "between 1 second and 31 days", "limit")
        ), message


@given(window=windows, limit=st.integers(min_value=1, max_value=10_000))
def test_a_valid_throttle_is_accepted(window: timedelta, limit: int) -> None:
    throttle = {"key": "login-alert", "limit": limit, "window": iso_duration(window)}
    parsed = NotificationRequest.model_validate(request(throttle=throttle))
    assert parsed.throttle == Throttle(key="login-alert", limit=limit, window=window)


@given(
    seconds=st.one_of(
        st.integers(min_value=-(10**9), max_value=0), st.integers(min_value=31 * 86400 + 1, max_value=10**9)
    )
)
def test_a_throttle_window_outside_one_second_to_31_days_is_refused(seconds: int) -> None:
    with pytest.raises(ValidationError, match="between 1 second and 31 days"):
        Throttle(key="k", window=timedelta(seconds=seconds))


@given(key=st.text(min_size=0, max_size=80))
def test_throttle_keys(key: str) -> None:
    try:
        Throttle(key=key, window=timedelta(hours=1))
    except ValidationError as exc:
        assert "a throttle key is 1-64 characters" in str(exc)
    else:
        assert 1 <= len(key) <= 64 and key[0].isascii() and key[0].isalnum()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"limit": 0, "window": "PT1H"}, "greater than or equal to 1"),
        ({"window": "PT1H"}, "key"),
        ({"key": "k", "window": "P32D"}, "between 1 second and 31 days"),
        ({"key": "k", "window": "soon"}, "window"),
        ({"key": "k", "window": "PT1H", "extra": 1}, "extra"),
    ],
)
def test_bad_throttles_are_refused_with_the_field(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotificationRequest.model_validate(request(throttle=bad))


def test_settings_name_the_bad_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_FREQUENCY_CAPS__PUSH", '["3 per hour"]')
    with pytest.raises(SettingsError, match=r"frequency_caps\.push\.0"):
        load_settings()
    monkeypatch.setenv("TIDINGS_FREQUENCY_CAPS__PUSH", '["3/PT1H", "10/P1D"]')
    monkeypatch.setenv("TIDINGS_FREQUENCY_CAPS__CATEGORY_POLICY", '{"marketing": "drop"}')
    caps = load_settings().frequency_caps
    assert [str(r) for r in caps.push] == ["3/PT1H", "10/P1D"]
    assert caps.policy_for("marketing") == "drop" and caps.policy_for("orders") == "defer"
    monkeypatch.delenv("TIDINGS_FREQUENCY_CAPS__PUSH")
    assert Settings().frequency_caps.push == []  # no cap unless configured
