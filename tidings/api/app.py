"""The HTTP API's ASGI app: `create_app(settings, store, client)`.

Rooms (one module each): `notifications` (services: send, status, cancel, reschedule),
`subscribers` (services: profiles, devices, preferences, subscriber tokens, preference links),
`inbox` (a subscriber's own inbox and its live stream), `preference_center` (JSON and the
server-rendered page), and `/static/tidings-inbox.js` (the `<tidings-inbox>` web component).
Errors are problem details (`problems`); services authenticate with API keys (`service_auth`),
subscribers with signed tokens (`subscriber_auth`).

The receiver (`tidings receiver`: provider callbacks, click tracking, one-click unsubscribe) stays
a service of its own rather than being mounted here: it must face the internet for Twilio and
mail clients and has nothing to do with API keys, while the service endpoints belong on a private
network; apart, each can be exposed, scaled and restarted on its own, and a flood of callbacks
never slows the API (or the reverse). Both read the same store and signing key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles

from tidings.activities.store.base import Store
from tidings.api import inbox, notifications, preference_center, problems, subscribers
from tidings.api.body_limit import BodyLimit
from tidings.api.context import ApiContext
from tidings.api.demo import demo_router
from tidings.api.live import InboxHub
from tidings.api.rate_limit import RateLimiter
from tidings.settings import Settings
from tidings.starters.client import TidingsClient

STATIC = Path(__file__).parent / "static"


def create_app(
    settings: Settings, store: Store, client: TidingsClient, *, demo_subscriber: str | None = None
) -> FastAPI:
    """The API. `demo_subscriber` adds `/demo` (a page with the inbox widget for that subscriber):
    `tidings dev` only."""
    api = settings.api
    app = FastAPI(
        title="Tidings API",
        version="1",
        summary="Send notifications, manage subscribers, and serve recipients' inboxes and preferences.",
        separate_input_output_schemas=False,
    )
    app.state.tidings = ApiContext(
        settings=settings,
        store=store,
        client=client,
        limiter=RateLimiter(api.rate_limit_per_second, api.rate_limit_burst),
        hub=InboxHub(store.inbox),
    )
    problems.install(app)
    for module in (notifications, subscribers, inbox, preference_center):
        app.include_router(module.router)
    if demo_subscriber is not None:
        app.include_router(demo_router(demo_subscriber))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/healthz", lambda: PlainTextResponse("ok"), include_in_schema=False)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(api.allowed_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Retry-After"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(BodyLimit, limit=api.max_body_bytes)
    return app


def context_of(app: FastAPI) -> ApiContext:
    ctx: ApiContext = app.state.tidings
    return ctx
