"""Showing secret-bearing destinations without their secrets.

Some addresses are credentials: a Slack incoming-webhook URL lets anyone who reads it post to the
channel, and a webhook URL may carry `user:password@`, a `?token=` or a token as a path segment.
Everything a person or a log can read (state, events, errors, activity summaries, the Web UI's
details, log lines) shows `redact_address(...)` instead, which keeps enough to recognise the
endpoint (scheme, host, the path's readable segments) and drops the rest.

Pure and deterministic: the workflow calls these directly.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

HIDDEN = "…"

# A path segment that looks like a credential: long, and mixing letters with digits, or very long.
_SECRET_SEGMENT = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-.=+~%]{16,}$|^.{40,}$")


def redact_url(url: str) -> str:
    """`https://user:pw@hooks.example.com/T0/B0/abcDEF123456789xyz?token=x` →
    `https://…@hooks.example.com/T0/B0/…?…`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return HIDDEN
    if not parts.scheme or not host:
        return HIDDEN
    netloc = (f"{HIDDEN}@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    segments = [HIDDEN if _SECRET_SEGMENT.match(s) else s for s in parts.path.split("/")]
    if "hooks.slack.com" in host and len(segments) > 1:
        segments[-1] = HIDDEN  # the last segment of a Slack incoming webhook is its secret
    shown = f"{parts.scheme}://{netloc}{'/'.join(segments)}"
    if parts.query:
        shown += f"?{HIDDEN}"
    if parts.fragment:
        shown += f"#{HIDDEN}"
    return shown


def is_url(address: str) -> bool:
    return address.startswith(("https://", "http://"))


def redact_address(address: str) -> str:
    """The form of a destination address that may be shown: URLs lose their secrets."""
    return redact_url(address) if is_url(address) else address


def scrub(text: str, addresses: list[str]) -> str:
    """`text` with every secret-bearing address in `addresses` replaced by its redacted form."""
    for address in addresses:
        if is_url(address) and address in text:
            text = text.replace(address, redact_url(address))
    return text
