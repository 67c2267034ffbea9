"""Signed tokens for click-tracking links and app engagement events.

A token is base64url(JSON) + "." + base64url(HMAC-SHA256). The target URL of a click link is
inside the signed part, so the receiver only ever redirects where Tidings itself linked: an open
redirect is impossible.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify_token(key: bytes, token: str) -> dict[str, Any]:
    body, _, mac = token.partition(".")
    try:
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not mac or not hmac.compare_digest(_unb64(mac), expected):
            raise InvalidToken("bad signature")
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(payload, dict):
        raise InvalidToken("malformed token")
    return payload


def click_url(public_url: str, key: bytes, workflow_id: str, delivery_id: str, target: str) -> str:
    token = sign_token(key, {"w": workflow_id, "d": delivery_id, "u": target})
    return f"{public_url.rstrip('/')}/c/{quote(token)}"


def event_token(key: bytes, workflow_id: str, delivery_id: str) -> str:
    return sign_token(key, {"w": workflow_id, "d": delivery_id})
