"""TwilioProvider against the local Twilio Messages stand-in (sandbox/twilio.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.providers.twilio import TwilioProvider
from tidings.activities.rendering import InlineRenderer
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient
from tidings.sandbox.twilio import TwilioSandbox
from tidings.settings import ReceiverSettings, TwilioSettings
from tidings.sms import segments

SID, TOKEN = "AC" + "1" * 32, "auth-token-" + "x" * 22
NUMBER = "+4915112345678"


@pytest_asyncio.fixture
async def twilio() -> AsyncIterator[TwilioSandbox]:
    sandbox = await TwilioSandbox(SID, TOKEN).start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def provider(sandbox: TwilioSandbox, store: SqliteStore, **extra: Any) -> TwilioProvider:
    settings = TwilioSettings.model_validate(
        {
            "account_sid": SID,
            "auth_token": TOKEN,
            "from_number": "+15005550006",
            "base_url": sandbox.url,
            **extra,
        }
    )
    return TwilioProvider(settings, ReceiverSettings(public_url="https://hooks.example.com"), store)


def delivery(body: str = "Your code is 123456") -> DeliveryInput:
    return DeliveryInput(
        delivery_id="d-1", workflow_id="notification-n1", notification_id="n1",
        destination=Destination(channel=Channel.sms, provider="twilio", address=NUMBER),
        recipient=Recipient(id="u1", phone=NUMBER), content=Content(body=body), priority=Priority.high,
    )  # fmt: skip


async def send(p: TwilioProvider, d: DeliveryInput) -> str | None:
    try:
        return (await p.send(d, InlineRenderer().render(d.content, d.recipient, Channel.sms))).message_id
    finally:
        await p.aclose()


async def test_message_is_created_with_status_callback(twilio: TwilioSandbox, store: SqliteStore) -> None:
    sid = await send(provider(twilio, store), delivery())
    [message] = twilio.messages
    assert sid == message["sid"] and sid.startswith("SM")
    assert (
        message["To"] == NUMBER
        and message["Body"] == "Your code is 123456"
        and message["From"] == "+15005550006"
    )
    assert message["StatusCallback"] == "https://hooks.example.com/twilio/status?w=notification-n1&d=d-1"


async def test_messaging_service_instead_of_from(twilio: TwilioSandbox, store: SqliteStore) -> None:
    await send(provider(twilio, store, from_number=None, messaging_service_sid="MG" + "2" * 32), delivery())
    assert twilio.messages[0]["MessagingServiceSid"].startswith("MG") and "From" not in twilio.messages[0]


async def test_wrong_credentials_fail_permanently_without_the_token(
    twilio: TwilioSandbox, store: SqliteStore
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"check twilio\.account_sid") as info:
        await send(provider(twilio, store, auth_token="wrong-token"), delivery())
    assert "wrong-token" not in str(info.value)


async def test_stop_reply_opts_the_recipient_out(twilio: TwilioSandbox, store: SqliteStore) -> None:
    await store.put(Recipient(id="u1", phone=NUMBER))
    twilio.fail(NUMBER, 400, 21610, "Attempt to send to unsubscribed recipient")
    with pytest.raises(PermanentDeliveryError, match="21610"):
        await send(provider(twilio, store), delivery())
    recipient = await store.get("u1")
    assert recipient is not None and Channel.sms in recipient.preferences.opted_out_channels


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 21211, PermanentDeliveryError),
        (400, 21408, PermanentDeliveryError),
        (429, 20429, ThrottledDeliveryError),
        (500, 20500, TransientDeliveryError),
        (503, 20503, TransientDeliveryError),
    ],
)
async def test_errors_are_classified(
    twilio: TwilioSandbox, store: SqliteStore, status: int, code: int, kind: type[Exception]
) -> None:
    twilio.fail(NUMBER, status, code, "scripted", retry_after=7 if status == 429 else None)
    with pytest.raises(kind, match=str(code)) as info:
        await send(provider(twilio, store), delivery())
    if kind is ThrottledDeliveryError:
        assert info.value.retry_after == timedelta(seconds=7)  # type: ignore[attr-defined]


async def test_too_many_segments_is_refused_before_sending(twilio: TwilioSandbox, store: SqliteStore) -> None:
    with pytest.raises(PermanentDeliveryError, match="needs 3 segments"):
        await send(provider(twilio, store, max_segments=2), delivery("x" * 307))
    assert not twilio.attempts


def test_segments_count_gsm7_and_ucs2() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2 and segments("a" * 306) == 2
    assert segments("€" * 80) == 1 and segments("€" * 81) == 2  # extension characters count twice
    assert segments("ü" * 160) == 1  # in the GSM-7 alphabet
    assert segments("Привет" * 11) == 1 and segments("Привет" * 12) == 2  # UCS-2: 70 per single segment
    assert segments("😀" * 35) == 1 and segments("😀" * 36) == 2  # surrogate pairs count two units


@pytest.mark.parametrize(
    ("given", "expected"),
    [("+49 151 1234 5678", "+4915112345678"), ("+1 (415) 555-2671", "+14155552671")],
)
def test_phone_numbers_are_normalised(given: str, expected: str) -> None:
    assert Recipient(id="u", phone=given).phone == expected


@pytest.mark.parametrize(
    ("given", "message"), [("0151 1234567", "need the country code"), ("+49 123", "not a valid phone number")]
)
def test_bad_phone_numbers_are_refused(given: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Recipient(id="u", phone=given)
