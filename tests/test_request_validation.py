"""Bad input is refused at the client, with a specific message, before any workflow starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.models import Channel, Destination, delivery_id_for
from tidings.starters.client import InvalidRequestError, parse_request, split_by_recipient


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


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
        # Found by fuzzing: each used to pass the client and then wedge the workflow or crash.
        (
            {"retry": {"email": {"initial_interval": -1}}},
            "retry.email.initial_interval: must be between 1 ms and 1 day",
        ),
        (
            {"retry": {"email": {"initial_interval": 10, "maximum_interval": 5}}},
            "maximum_interval must not be below initial_interval",
        ),
        ({"retry": {"email": {"start_to_close_timeout": -5}}}, "start_to_close_timeout"),
        ({"retry": {"email": {"maximum_interval": 0.5}}}, "retry.email: maximum_interval must not be below"),
        ({"category": "x" * 3000}, "categories are 1-100 characters"),
        ({"content": {"title": "\ud800"}}, "not valid Unicode"),
        ({"recipients": [{"id": "u", "timezone": "A" * 1000}]}, "unknown IANA time zone 'AAAA"),
        ({"content": {"title": "Hi\r\nBcc: victim@example.com"}}, "must be a single line"),
        ({"recipients": [{"id": "u", "name": "Ada\r\nBcc: x@example.com"}]}, "must be a single line"),
        ({"content": {"title": "Hi", "url": "javascript:alert(1)"}}, "expected an http(s) URL"),
        ({"content": {"title": "x", "body": "y" * 70_000}}, "the limit is 64 KiB"),
        ({"content": {"template_id": "welcome", "variables": {"a": _nested(40)}}}, "nested more than 16"),
        ({"recipients": [{"id": "u", "locale": "x" * 300}]}, "a locale is a language tag"),
        # found by the request fuzzer: JSON would carry these as null
        ({"content": {"title": "x", "variables": {"a": [float("inf")]}}}, "numbers must be finite"),
        ({"content": {"title": "x", "platform_overrides": {"apns": {"x": float("nan")}}}}, "must be finite"),
    ],
)
def test_bad_requests_are_refused_with_a_specific_message(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(base(**change))
    assert message in str(info.value)


def test_each_recipient_gets_the_id_with_its_recipient() -> None:
    [item] = split_by_recipient(parse_request(base(id="order-1")), datetime.now(UTC))
    assert item.id == "order-1~user-1"
    assert item.workflow_id == "notification-order-1~user-1"


def test_the_id_scheme_does_not_depend_on_how_many_recipients_there_are() -> None:
    """Sending id x to [a] and then to [a, b] must address a's notification both times."""
    now = datetime.now(UTC)
    [alone] = split_by_recipient(parse_request(base(id="x", recipients=["a"])), now)
    together = split_by_recipient(parse_request(base(id="x", recipients=["a", "b"])), now)
    assert alone.workflow_id == together[0].workflow_id == "notification-x~a"
    assert together[1].workflow_id == "notification-x~b"


def test_ids_cannot_collide_across_the_separator() -> None:
    """`a.b` to `c` and `a` to `b.c` are different notifications (`~` is not allowed in ids)."""
    now = datetime.now(UTC)
    [first] = split_by_recipient(parse_request(base(id="a.b", recipients=["c"])), now)
    [second] = split_by_recipient(parse_request(base(id="a", recipients=["b.c"])), now)
    assert first.workflow_id != second.workflow_id
    with pytest.raises(InvalidRequestError, match="id"):
        parse_request(base(id="a~b"))


def test_missing_id_is_generated() -> None:
    [item] = split_by_recipient(parse_request(base()), datetime.now(UTC))
    request_id, _, recipient_id = item.id.partition("~")
    assert item.workflow_id.startswith("notification-") and len(request_id) == 32
    assert recipient_id == "user-1"


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
