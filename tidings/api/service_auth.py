"""Services authenticate with an API key (`Authorization: Bearer tdk_...`) that holds scopes.

Every failure is the same 401 (missing, malformed, unknown, revoked or wrong secret): a caller
learns nothing about which keys exist. A key without the route's scope gets 403; a key over its
rate gets 429 with `Retry-After`. `last_used_at` is written at most once a minute per key and
process, so authentication is a read, not a write, on the hot path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.activities.store.base import ApiKeyRecord
from tidings.api.context import ApiContext, context
from tidings.api.keys import Scope, verify_key
from tidings.api.problems import ApiProblem

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="an API key: tdk_<id>_<secret>")
_TOUCH_EVERY = timedelta(minutes=1)


def require(scope: Scope) -> Callable[..., Awaitable[ApiKeyRecord]]:
    """A dependency: the calling key, which holds `scope`, and is within its rate."""

    async def authenticated(
        ctx: Annotated[ApiContext, Depends(context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKeyRecord:
        record = await verify_key(ctx.store.api_keys, credentials.credentials) if credentials else None
        if record is None:
            raise ApiProblem(
                401,
                "unauthorized",
                "send a valid API key as Authorization: Bearer tdk_...",
                {"WWW-Authenticate": "Bearer"},
            )
        if scope.value not in record.scopes:
            raise ApiProblem(403, "forbidden", f"this API key lacks the {scope.value!r} scope")
        wait = ctx.limiter.take(record.id)
        if wait:
            raise ApiProblem(
                429,
                "too many requests",
                f"rate limit of this API key; retry in {wait}s",
                {"Retry-After": str(wait)},
            )
        now = datetime.now(UTC)
        last = ctx.last_used.get(record.id)
        if last is None or now - last > _TOUCH_EVERY:
            ctx.last_used[record.id] = now
            await ctx.store.api_keys.touch(record.id, now)
        return record

    return authenticated
