"""Compact payloads (tidings.payloads): fields equal to their default are left out, and every
model that crosses Temporal decodes back equal, from compact payloads and from the SDK's full
ones. The workflow input is fuzzed in tests/test_request_fuzz.py; these are the others, filled
in as a real notification fills them, with the edge that matters: fields whose value is None
without None being their default (`Preparation.recipient`) must still be written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from tidings.codec import with_codec
from tidings.models import (
    Channel,
    Content,
    DeactivateDeviceInput,
    DeliveryInput,
    DeliveryReceipt,
    DeliveryResult,
    DeliveryStatus,
    Destination,
    DestinationState,
    Engagement,
    NotificationState,
    Phase,
    Preparation,
    PrepareInput,
    Recipient,
    RetrySpec,
    SignalOutcome,
    StateEvent,
)

AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
RECIPIENT = Recipient.model_validate(
    {
        "id": "user-42",
        "email": "ada@example.com",
        "phone": "+4915112345678",
        "devices": [{"id": "d1", "platform": "fcm", "token": "t" * 20}],
        "timezone": "Europe/Berlin",
        "preferences": {"quiet_hours": {"start": "22:00", "end": "07:00"}, "opted_out_channels": ["sms"]},
    }
)
DESTINATION = Destination(channel=Channel.email, provider="smtp", address="ada@example.com")
SAMPLES: list[Any] = [
    DeliveryInput(
        delivery_id="d-1",
        workflow_id="notification-x~user-42",
        notification_id="x~user-42",
        destination=DESTINATION,
        recipient=RECIPIENT,
        content=Content(title="Hi", data={"k": "v"}, variables={"n": [1, None], "z": None}),
        priority="high",
        category="orders",
        expires_at=AT,
    ),
    DeliveryResult(provider="smtp", provider_message_id=None, attempt=3, accepted_at=AT),
    Preparation(recipient=None, retry={}),
    Preparation(
        recipient=RECIPIENT,
        recipient_stored=True,
        quiet_hours_until=AT,
        retry={Channel.email: RetrySpec(maximum_attempts=2, initial_interval=timedelta(seconds=3))},
        push_success="all",
    ),
    PrepareInput(recipient_id="user-42", recipient=None, channels=[Channel.email], at=AT),
    DeactivateDeviceInput(recipient_id="user-42", device_id="d1", reason="gone"),
    SignalOutcome(accepted=False, reason="notification is already delivered"),
    NotificationState(
        id="x~user-42",
        workflow_id="notification-x~user-42",
        recipient_id="user-42",
        phase=Phase.delivered,
        channels=[Channel.email],
        destinations=[
            DestinationState(
                channel=Channel.email,
                provider="smtp",
                destination="ada@example.com",
                delivery_id="d-1",
                status=DeliveryStatus.sent,
                attempts=1,
                started_at=AT,
            )
        ],
        events=[StateEvent(at=AT, message="delivered")],
        started_at=AT,
        finished_at=AT,
    ),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_models_decode_equal_from_compact_and_full_payloads(value: Any) -> None:
    compact = with_codec(None).payload_converter
    full = pydantic_data_converter.payload_converter
    for writer in (compact, full):
        for reader in (compact, full):
            assert reader.from_payload(writer.to_payload(value), type(value)) == value


def test_compact_payloads_leave_out_defaults_but_keep_meaningful_nones() -> None:
    compact = with_codec(None).payload_converter
    written = json.loads(compact.to_payload(SAMPLES[2]).data)
    assert written == {"recipient": None, "retry": {}}  # recipient has no default: kept
    full = pydantic_data_converter.payload_converter.to_payload(SAMPLES[0]).data
    assert len(compact.to_payload(SAMPLES[0]).data) < len(full) * 0.8


def test_what_operators_read_is_written_in_full() -> None:
    """`temporal workflow query --name status` and `workflow show` show every field of the state."""
    compact = with_codec(None).payload_converter
    state = json.loads(compact.to_payload(SAMPLES[-1]).data)
    assert state["phase"] == "delivered" and state["reason"] is None and "quiet_hours_until" in state
    assert json.loads(compact.to_payload(SignalOutcome(accepted=True)).data) == {
        "accepted": True,
        "reason": None,
    }


def test_receipts_and_engagement_round_trip() -> None:
    compact = with_codec(None).payload_converter
    for value, kind in (
        (DeliveryReceipt.model_validate({"delivery_id": "d-1", "status": "read", "at": AT}), DeliveryReceipt),
        (Engagement.model_validate({"delivery_id": "d-1", "kind": "clicked", "at": AT}), Engagement),
    ):
        assert compact.from_payload(compact.to_payload(value), kind) == value
