"""Subscribers (browsers, apps) authenticate with a signed, expiring subscriber token.

A token is `tidings.links`' format with purpose `subscriber`: base64url of the JSON
`{"p": "subscriber", "r": <subscriber id>, "x": <expiry, Unix seconds>}` (keys sorted, no spaces),
a dot, and base64url of its HMAC-SHA256 under `api.subscriber_token_key`. The app's backend gets
one from `POST /v1/subscribers/{id}/token`, or computes it itself with the key (Novu's and
Knock's "HMAC" mode), and hands it to the browser. The token names its subscriber, so a browser
holding A's token can only ever reach A's inbox; it cannot be widened, and it expires.

Routes take it as `Authorization: Bearer <token>`; the event stream also takes `?token=`, since
`EventSource` cannot send headers (keep such tokens short-lived: URLs end up in access logs).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.api.context import ApiContext, context
from tidings.api.problems import ApiProblem
from tidings.links import Purpose, verify_expiring, verify_expiring_until

_bearer = HTTPBearer(auto_error=False, scheme_name="SubscriberToken", description="a subscriber token")


def verified_subscriber(key: bytes | None, token: str | None, purpose: Purpose) -> str | None:
    """The subscriber id of a good, unexpired token for `purpose`; None otherwise."""
    if key is None or not token:
        return None
    return verify_expiring(key, token, purpose)


def _unauthorized() -> ApiProblem:
    return ApiProblem(
        401, "unauthorized", "send a valid, unexpired subscriber token", {"WWW-Authenticate": "Bearer"}
    )


def _key(ctx: ApiContext) -> bytes:
    key = ctx.subscriber_key
    if key is None:
        raise ApiProblem(503, "subscriber tokens are not configured", "set api.subscriber_token_key")
    return key


async def subscriber(
    ctx: Annotated[ApiContext, Depends(context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """A dependency: the id of the subscriber whose token came in the Authorization header."""
    recipient_id = verified_subscriber(
        _key(ctx), credentials.credentials if credentials else None, Purpose.subscriber
    )
    if recipient_id is None:
        raise _unauthorized()
    return recipient_id


async def stream_subscriber(
    ctx: Annotated[ApiContext, Depends(context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(max_length=2048)] = None,
) -> tuple[str, float]:
    """As `subscriber`, also from `?token=` (for EventSource); with the token's expiry (Unix
    seconds), at which the stream ends: an open stream must not outlive its credential."""
    text = credentials.credentials if credentials else token
    verified = verify_expiring_until(_key(ctx), text, Purpose.subscriber) if text else None
    if verified is None:
        raise _unauthorized()
    return verified
