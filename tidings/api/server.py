"""`tidings api`: serve the HTTP API with uvicorn until interrupted."""

from __future__ import annotations

from tidings.settings import Settings


async def run_api(settings: Settings) -> None:
    import uvicorn

    from tidings.activities.store.factory import store_session
    from tidings.api.app import context_of, create_app
    from tidings.starters.client import TidingsClient
    from tidings.telemetry.logs import configure_logging

    configure_logging(settings.logging.format)
    async with store_session(settings.store) as store:
        app = create_app(settings, store, await TidingsClient.connect(settings))
        # no access log: stream URLs carry subscriber tokens (EventSource cannot send headers)
        config = uvicorn.Config(
            app, host=settings.api.host, port=settings.api.port, log_level="warning", access_log=False
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await context_of(app).hub.aclose()
