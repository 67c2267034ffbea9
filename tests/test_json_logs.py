"""Structured logs: JSON lines with delivery context, and no personal data at INFO and above."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tidings.models import Phase
from tidings.sandbox.http_endpoint import HttpEndpoint, ScriptedResponse
from tidings.sandbox.smtp import SmtpSink
from tidings.starters.client import TidingsClient
from tidings.telemetry.logs import JsonFormatter, configure_logging, mask, scrub_personal

EMAIL = "grace.hopper@example.com"
SECRET = "s3cr3t-t0ken-abcdef123456"


async def test_delivery_lines_carry_context_and_no_personal_data(
    tidings: TidingsClient,
    http_endpoint: HttpEndpoint,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = f"{http_endpoint.url}/hook/{SECRET}"
    http_endpoint.answer(ScriptedResponse(429, {"Retry-After": "0"}), 400)
    request = {
        "id": "json-logs-1",
        "recipients": [{"id": "user-9", "email": EMAIL, "webhook_url": hook}],
        "channels": [{"channel": "webhook", "fallback": ["email"]}],
        "content": {"title": "Your code", "body": "987654"},
    }
    with caplog.at_level(logging.INFO):
        [handle] = await tidings.send(request)
        state = await handle.result()
    assert state.phase is Phase.delivered
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.levelno >= logging.INFO]

    delivery_lines = [line for line in lines if line["logger"] == "tidings.activities.delivery"]
    # throttled, then refused for good (webhook); accepted (email)
    assert [line["channel"] for line in delivery_lines] == ["webhook", "webhook", "email"]
    assert [line["attempt"] for line in delivery_lines] == [1, 2, 1]
    webhook, email = state.destinations
    for line in delivery_lines:
        assert line["workflow_id"] == "notification-json-logs-1~user-9"
        assert line["level"] == "INFO" and line["ts"].endswith("+00:00")
        destination = webhook if line["channel"] == "webhook" else email
        assert line["delivery_id"] == destination.delivery_id
        assert line["provider"] == destination.provider

    for line in lines:  # every logger, INFO and above: no address, secret or content
        if line["logger"] == "mail.log":
            continue  # aiosmtpd: the SMTP sink standing in for the mail server, not Tidings
        text = json.dumps(line)
        for personal in (EMAIL, SECRET, "987654", "Your code"):
            assert personal not in text, line


def test_configure_logging_switches_handlers_to_json_lines() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        configure_logging("text")
        assert not isinstance(handler.formatter, JsonFormatter)
        configure_logging("json")
        logging.getLogger("tidings.test").warning("hello %s", "world", extra={"delivery_id": "d-1"})
    finally:
        root.handlers = saved
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "hello world" and entry["delivery_id"] == "d-1"
    assert entry["level"] == "WARNING" and entry["logger"] == "tidings.test"


def test_masking() -> None:
    assert mask("ada@example.com") == "a…@example.com"
    assert mask("+4915112345678") == "+49…78"
    assert mask("fcm-device-token-123") == "fcm-…"
    assert SECRET not in mask(f"https://hooks.example.com/x/{SECRET}")
    text = scrub_personal("smtp refused ada@example.com and +49 151 1234 5678", [])
    assert "ada@example.com" not in text and "1234" not in text
