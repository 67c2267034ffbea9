"""Bad input is refused at the client, with a specific message, before any workflow starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.models import Channel, Destination, delivery_id_for
from tidings.starters.client import InvalidRequestError, parse_request, split_by_recipient


def base(**extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "recipients": ["user-1"],
        "channels": ["email"],
        "content": {"title": "Hi"},
    }
    value.update(extra)
    return value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": ["pigeon"]}, "channels.0.channel: Input should be 'push', 'email'"),
        ({"channels": []}, "channels: List should have at least 1 item"),
        ({"recipients": []}, "recipients: List should have at least 1 item"),
        ({"content": {}}, "content needs a title or body, or a template_id"),
        (
            {"schedule_at": "2030-01-02T00:00:00+00:00", "expires_at": "2030-01-01T00:00:00+00:00"},
            "expires_at must be after schedule_at",
        ),
        ({"schedule_at": "2030-01-02T00:00:00"}, "timestamps need an explicit UTC offset"),
        ({"recipients": [{"id": "u", "timezone": "Mars/Olympus"}]}, "unknown IANA time zone 'Mars/Olympus'"),
        ({"recipients": [{"id": "u", "email": "not-an-address"}]}, "malformed email address"),
        ({"recipients": [{"id": "u", "phone": "0151 123"}]}, "phone"),
        ({"recipients": ["bad id with spaces"]}, "ids are 1-200 characters"),
        ({"channels": ["email", {"channel": "push", "fallback": ["email"]}]}, "appears more than once"),
        ({"priority": "urgent"}, "priority: Input should be"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"recipients": ["a", "a"]}, "a recipient is listed twice"),
    ],
)
def test_bad_requests_are_refused_with_a_specific_message(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(base(**change))
    assert message in str(info.value)


def test_one_recipient_keeps_the_id() -> None:
    [item] = split_by_recipient(parse_request(base(id="order-1")), datetime.now(UTC))
    assert item.workflow_id == "notification-order-1"


def test_missing_id_is_generated() -> None:
    [item] = split_by_recipient(parse_request(base()), datetime.now(UTC))
    assert item.workflow_id.startswith("notification-") and len(item.id) == 32


def test_delivery_ids_are_deterministic_per_destination() -> None:
    d1 = Destination(channel=Channel.email, provider="smtp", address="a@example.com")
    d2 = Destination(channel=Channel.email, provider="smtp", address="b@example.com")
    assert delivery_id_for("notification-x", d1) == delivery_id_for("notification-x", d1)
    assert delivery_id_for("notification-x", d1) != delivery_id_for("notification-x", d2)
    assert delivery_id_for("notification-x", d1) != delivery_id_for("notification-y", d1)


def test_expired_request_is_refused(tmp_path: Any) -> None:
    from temporalio.client import Client

    from tidings.starters.client import TidingsClient

    client = TidingsClient(Client.__new__(Client))
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with pytest.raises(InvalidRequestError, match="expires_at: already in the past"):
        client.validate(base(expires_at=past))
