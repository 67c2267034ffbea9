"""What every route needs, built once by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fastapi import Request

from tidings.activities.store.base import Store
from tidings.api.live import InboxHub
from tidings.api.rate_limit import RateLimiter
from tidings.settings import Settings
from tidings.starters.client import TidingsClient


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    client: TidingsClient
    limiter: RateLimiter
    hub: InboxHub
    last_used: dict[str, datetime] = field(default_factory=dict)

    @property
    def subscriber_key(self) -> bytes | None:
        key = self.settings.api.subscriber_token_key
        return key.get_secret_value().encode() if key else None

    @property
    def link_key(self) -> bytes | None:
        """The receiver's link key: preference links are made by the worker, like unsubscribe links."""
        key = self.settings.receiver.link_signing_key
        return key.get_secret_value().encode() if key else None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.tidings
    return ctx
