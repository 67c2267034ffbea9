"""Signed tokens for click-tracking links, app engagement events and unsubscribe links.

A token is base64url(JSON) + "." + base64url(HMAC-SHA256). The target URL of a click link is
inside the signed part, so the receiver only ever redirects where Tidings itself linked: an open
redirect is impossible.

Every token is bound to one purpose (`p` inside the signed payload: `click`, `event` or
`unsubscribe`) and each receiver route accepts only its own: all three share one signing key, so
without the purpose a click token taken from an email could be posted to `/events` as an "opened"
report, or be mistaken for an unsubscribe link.

The HTTP API's subscriber tokens and preference-center links use the same format with purposes
of their own (`subscriber`, `preferences`) and an expiry (`x`, Unix seconds) inside the signed part.

Tokens signed before purposes existed carry no `p`. They are still in emails and pushes already
sent (an unsubscribe link must keep working for as long as the message is read), so they are
accepted when their keys are exactly the legacy shape of that purpose: `{w, d, u}` for a click,
`{w, d}` for an event, `{r, c}` for an unsubscribe. The three shapes differ, so a legacy token still
fits exactly one route and cannot be used at another. Once messages sent before this release no
longer matter, `_LEGACY_SHAPES` can be emptied to refuse them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote


class InvalidToken(ValueError):
    pass


class Purpose(StrEnum):
    """What a token may be used for; the receiver route that accepts it."""

    click = "click"
    event = "event"
    unsubscribe = "unsubscribe"
    subscriber = "subscriber"
    """A subscriber's inbox session in the HTTP API (`tidings.api.subscriber_auth`); expires."""
    preferences = "preferences"
    """A link to a subscriber's preference center (emails' footer); expires."""


_LEGACY_SHAPES: dict[Purpose, frozenset[str]] = {
    Purpose.click: frozenset({"w", "d", "u"}),
    Purpose.event: frozenset({"w", "d"}),
    Purpose.unsubscribe: frozenset({"r", "c"}),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_payload(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: the same payload always gives the same token."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign_token(key: bytes, purpose: Purpose, payload: dict[str, Any]) -> str:
    body = _b64(canonical_payload({**payload, "p": purpose.value}))
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify_token(key: bytes, token: str, purpose: Purpose) -> dict[str, Any]:
    """The signed payload, if the signature is good and the token was made for `purpose`."""
    body, _, mac = token.partition(".")
    try:
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        # compared as text: only the canonical encoding is accepted, not its padding-bit variants
        if not mac or not hmac.compare_digest(mac.encode(), _b64(expected).encode()):
            raise InvalidToken("bad signature")
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(payload, dict):
        raise InvalidToken("malformed token")
    if "p" in payload:
        if payload["p"] != purpose.value:
            raise InvalidToken("token made for another purpose")
    elif purpose not in _LEGACY_SHAPES or set(payload) != _LEGACY_SHAPES[purpose]:
        raise InvalidToken("token made for another purpose")
    return payload


def click_url(public_url: str, key: bytes, workflow_id: str, delivery_id: str, target: str) -> str:
    token = sign_token(key, Purpose.click, {"w": workflow_id, "d": delivery_id, "u": target})
    return f"{public_url.rstrip('/')}/c/{quote(token)}"


def event_token(key: bytes, workflow_id: str, delivery_id: str) -> str:
    return sign_token(key, Purpose.event, {"w": workflow_id, "d": delivery_id})


def unsubscribe_url(public_url: str, key: bytes, recipient_id: str, category: str) -> str:
    token = sign_token(key, Purpose.unsubscribe, {"r": recipient_id, "c": category})
    return f"{public_url.rstrip('/')}/u/{token}"


def expiring_token(key: bytes, purpose: Purpose, recipient_id: str, ttl: timedelta) -> tuple[str, datetime]:
    """A token naming one subscriber, valid for `ttl`: `{"r": id, "x": expiry in Unix seconds}`."""
    expires = int(time.time() + ttl.total_seconds())
    return sign_token(key, purpose, {"r": recipient_id, "x": expires}), datetime.fromtimestamp(expires, UTC)


def verify_expiring(key: bytes, token: str, purpose: Purpose) -> str | None:
    """The subscriber id of a good, unexpired token made for `purpose`; None for anything else."""
    verified = verify_expiring_until(key, token, purpose)
    return verified[0] if verified else None


def verify_expiring_until(key: bytes, token: str, purpose: Purpose) -> tuple[str, float] | None:
    """(subscriber id, expiry in Unix seconds) of a good, unexpired token made for `purpose`."""
    try:
        payload = verify_token(key, token, purpose)
    except InvalidToken:
        return None
    recipient_id, expires = payload.get("r"), payload.get("x")
    if not isinstance(recipient_id, str) or type(expires) is not int or expires <= time.time():
        return None
    return recipient_id, float(expires)


def preferences_url(public_url: str, key: bytes, recipient_id: str, ttl: timedelta) -> tuple[str, datetime]:
    """The signed link to a subscriber's preference center (the API's `/preferences/<token>`)."""
    token, expires = expiring_token(key, Purpose.preferences, recipient_id, ttl)
    return f"{public_url.rstrip('/')}/preferences/{token}", expires
