"""Decoding the workflow's input and signals itself, so that nothing a client sends can wedge it.

The workflow and its signal handlers take `RawValue`s: the SDK hands over the payload without
decoding it, and these functions decode and validate it with the same pydantic models the Python
client uses. Whatever goes wrong (wrong JSON shape, unknown channel, nesting the decoder refuses,
an encoding that is not JSON) becomes `InvalidInput` with a readable message, which the workflow
records as its final state (input) or as an ignored-signal event (signals).
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from pydantic import ValidationError
from temporalio import workflow
from temporalio.api.common.v1 import Payload

from tidings.models import WORKFLOW_ID_PREFIX, Content, NotificationInput
from tidings.validation import validation_message

T = TypeVar("T")

SCHEMA_HINT = "see docs/notification-input.schema.json"
_MAX_DETAIL = 300


class InvalidInput(ValueError):
    """The payload cannot be used; the message says why (and never quotes the payload)."""


def decode_input(payload: Payload | None) -> NotificationInput:
    if payload is None:
        raise InvalidInput(f"invalid workflow input: NotificationWorkflow needs one argument ({SCHEMA_HINT})")
    request: NotificationInput = decode(payload, NotificationInput, f"workflow input ({SCHEMA_HINT})")
    return request


def decode(payload: Payload, type_hint: Any, what: str) -> Any:
    """Decode one payload into `type_hint` with the workflow's payload converter.

    Converters for other encodings (binary, protobuf) ignore the type hint, so the result is
    checked against it too.
    """
    try:
        value = workflow.payload_converter().from_payload(payload, type_hint)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc, what)) from None
    except Exception as exc:  # any decoding failure of foreign input: never fail the task
        detail = str(exc)
        if len(detail) > _MAX_DETAIL:
            detail = detail[:_MAX_DETAIL] + "…"
        raise InvalidInput(f"invalid {what}: cannot decode it ({type(exc).__name__}: {detail})") from None
    if not _matches(value, type_hint):
        encoding = payload.metadata.get("encoding", b"").decode(errors="replace")
        raise InvalidInput(f"invalid {what}: cannot decode it (a {encoding or 'payload'} value, not JSON)")
    return value


def _matches(value: Any, type_hint: Any) -> bool:
    return any(
        value is None if option is type(None) else isinstance(value, option)
        for option in (get_args(type_hint) or (type_hint,))
    )


def placeholder_input(workflow_id: str) -> NotificationInput:
    """A stand-in for input that did not validate: enough for the state to say what failed."""
    return NotificationInput.model_construct(
        id=workflow_id.removeprefix(WORKFLOW_ID_PREFIX),
        recipient_id="unknown",
        recipient=None,
        content=Content.model_construct(title=None, body=None),
        channels=[],
        retry={},
        category=None,
        schedule_at=None,
        expires_at=None,
    )


def input_schema() -> dict[str, Any]:
    """The JSON Schema of NotificationWorkflow's input, for clients in other languages.

    Written to docs/notification-input.schema.json (`python -m tidings.workflows.inputs`); a test
    keeps the file equal to the model. The workflow checks a few things a schema cannot say
    (single-line titles, nesting depth, size budgets, retry consistency) and reports them the same
    way as schema violations.
    """
    schema = NotificationInput.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://tidings.dev/schemas/notification-input.schema.json"
    return schema


if __name__ == "__main__":
    import json
    import sys

    json.dump(input_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
