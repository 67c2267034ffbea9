"""Structured logs: one JSON object per line (`[logging] format = "json"`).

Every delivery log line carries `workflow_id`, `delivery_id`, `channel` and `provider` (passed as
`extra=delivery_fields(...)`), so a log search finds one delivery across retries and workers. No
personal data at INFO and above: log lines name destinations only masked (`mask`), never
content, and provider messages are scrubbed of the destination's address before they are logged.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from tidings.redaction import redact_url

DELIVERY_FIELDS = ("workflow_id", "delivery_id", "channel", "provider", "attempt")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d ]{6,}\d")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def mask(address: str) -> str:
    """`ada@example.com` → `a…@example.com`, `+4915112345678` → `+49…78`, URLs lose their secrets,
    device tokens keep only their first four characters."""
    if address.startswith(("https://", "http://")):
        return redact_url(address)
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}…@{domain}"
    if address.startswith("+"):
        return f"{address[:3]}…{address[-2:]}"
    return f"{address[:4]}…" if len(address) > 4 else "…"


def scrub_personal(text: str, addresses: list[str]) -> str:
    """`text` with the given addresses, and anything that looks like an email address or a phone
    number, masked: for provider messages, which may quote what they were sent to."""
    for address in addresses:
        if address and address in text:
            text = text.replace(address, mask(address))
    text = _EMAIL.sub(lambda m: mask(m.group(0)), text)
    return _PHONE.sub(lambda m: mask(m.group(0).replace(" ", "")), text)


def delivery_fields(
    workflow_id: str, delivery_id: str, channel: str, provider: str, attempt: int
) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "delivery_id": delivery_id,
        "channel": channel,
        "provider": provider,
        "attempt": attempt,
    }


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...extra fields, "exc_info"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(fmt: Literal["text", "json"]) -> None:
    """Switch the root logger's handlers to JSON lines (`json`); `text` leaves them as they are."""
    if fmt != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
