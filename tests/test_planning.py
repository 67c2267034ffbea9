from __future__ import annotations

from tidings.models import Channel, Priority, Recipient
from tidings.planning import block_reason, destinations_for


def person(**extra: object) -> Recipient:
    return Recipient.model_validate({"id": "u1", "email": "u1@example.com", **extra})


def test_no_address_blocks_even_critical() -> None:
    reason = block_reason(Channel.sms, person(), Priority.critical, None)
    assert reason == "recipient u1 has no sms address"


def test_channel_opt_out() -> None:
    r = person(preferences={"opted_out_channels": ["email"]})
    assert block_reason(Channel.email, r, Priority.high, None) == "recipient opted out of email"
    assert block_reason(Channel.email, r, Priority.critical, None) is None


def test_category_channel_opt_out() -> None:
    r = person(preferences={"opted_out_category_channels": {"digest": ["email"]}})
    assert block_reason(Channel.email, r, Priority.normal, "digest") is not None
    assert block_reason(Channel.email, r, Priority.normal, "orders") is None
    assert block_reason(Channel.email, r, Priority.normal, None) is None


def test_push_fans_out_to_active_devices_only() -> None:
    r = person(
        devices=[
            {"id": "a", "platform": "fcm", "token": "t1"},
            {"id": "b", "platform": "apns", "token": "ab12"},
            {"id": "c", "platform": "fcm", "token": "t3", "active": False},
        ]
    )
    dests = destinations_for(r, Channel.push)
    assert [(d.provider, d.device_id) for d in dests] == [("fcm", "a"), ("apns", "b")]
    assert len({d.key for d in dests}) == 2


def test_in_app_needs_no_address() -> None:
    assert block_reason(Channel.in_app, person(), Priority.normal, None) is None
    assert [d.provider for d in destinations_for(person(), Channel.in_app)] == ["inbox"]
