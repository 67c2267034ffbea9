"""API keys: `tdk_<id>_<secret>`, shown once, stored as the SHA-256 of the secret.

The id is public (it names the key in `tidings api-key list`, logs and rate limiting); the secret
is 32 random bytes, so a plain SHA-256 is enough (there is nothing to brute-force, unlike a
password) and a lookup is one indexed read plus a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from tidings.activities.store.base import ApiKeyRecord, ApiKeyStore

PREFIX = "tdk_"
_KEY = re.compile(r"^tdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Scope(StrEnum):
    send = "send"
    """start, cancel and reschedule notifications"""
    read = "read"
    """read notifications' states"""
    subscribers = "subscribers"
    """manage subscribers, devices and preferences; issue subscriber tokens and preference links"""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, scopes: list[Scope]) -> tuple[str, ApiKeyRecord]:
    """A new key: the full key text (to show once) and the record to store."""
    if not name.strip() or len(name) > 100:
        raise ValueError("an API key name is 1-100 characters")
    if not scopes:
        raise ValueError("an API key needs at least one scope: " + ", ".join(s.value for s in Scope))
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        id=key_id,
        name=name,
        secret_sha256=_digest(secret),
        scopes=sorted({s.value for s in scopes}),
        created_at=datetime.now(UTC),
    )
    return f"{PREFIX}{key_id}_{secret}", record


def parse_key(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.match(text)
    return (match.group(1), match.group(2)) if match else None


async def verify_key(keys: ApiKeyStore, text: str) -> ApiKeyRecord | None:
    """The stored record of a valid, unrevoked key; None for anything else."""
    parsed = parse_key(text)
    if parsed is None:
        return None
    key_id, secret = parsed
    record = await keys.get(key_id)
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_sha256, _digest(secret)):
        return None
    return record
