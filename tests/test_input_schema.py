"""The workflow input's JSON Schema, which services in other languages build requests from."""

from __future__ import annotations

import json
from pathlib import Path

from tidings.workflows.inputs import input_schema

SCHEMA_FILE = Path(__file__).parent.parent / "docs" / "notification-input.schema.json"


def test_the_published_schema_matches_the_model() -> None:
    """Regenerate with `python -m tidings.workflows.inputs > docs/notification-input.schema.json`."""
    assert json.loads(SCHEMA_FILE.read_text()) == input_schema()


def test_the_schema_names_what_a_client_must_send() -> None:
    schema = input_schema()
    assert set(schema["required"]) == {"id", "recipient_id", "content", "channels"}
    channel_names = schema["$defs"]["Channel"]["enum"]
    assert channel_names == ["push", "email", "sms", "slack", "webhook", "in_app"]
