"""`/demo`: a page with `<tidings-inbox>` for one demo subscriber (only `tidings dev` turns it on).

The page gets a fresh subscriber token at each load (as an app's backend would hand one to its
page) and a link to the subscriber's preference center. "Send a test notification" starts an
in-app notification that escalates to email after two minutes unread, so marking it read in the
widget can be seen to stop the email. Nothing here is for production: it sends without an API key.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, RedirectResponse

from tidings.api.context import ApiContext, context
from tidings.links import Purpose, expiring_token, preferences_url

Context = Annotated[ApiContext, Depends(context)]


def demo_router(recipient_id: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/demo", response_class=HTMLResponse)
    async def page(ctx: Context) -> HTMLResponse:
        key, link_key = ctx.subscriber_key, ctx.link_key
        if key is None or link_key is None:
            return HTMLResponse("the demo needs api.subscriber_token_key and receiver.link_signing_key", 503)
        token, _ = expiring_token(
            key, Purpose.subscriber, recipient_id, ctx.settings.api.subscriber_token_ttl
        )
        link, _ = preferences_url("", link_key, recipient_id, ctx.settings.api.preference_link_ttl)
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tidings inbox demo</title>
<script type="module" src="/static/tidings-inbox.js"></script>
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:2rem}}
nav{{display:flex;justify-content:space-between;align-items:center;max-width:48rem}}</style></head><body>
<nav><strong>Tidings demo app</strong>
<tidings-inbox api="" token="{html.escape(token)}"></tidings-inbox></nav>
<p>Signed in as <code>{html.escape(recipient_id)}</code>.</p>
<form method="post" action="/demo/send"><button>Send a test notification</button></form>
<p><a href="{html.escape(link)}">Manage notification preferences</a></p></body></html>""",
            headers={"Cache-Control": "no-store"},
        )

    @router.post("/demo/send")
    async def send(ctx: Context) -> RedirectResponse:
        await ctx.client.send(
            {
                "recipients": [recipient_id],
                "channels": [
                    {"channel": "in_app", "fallback": ["email"], "escalate_after": {"in_app": "PT2M"}}
                ],
                "content": {
                    "title": "Hello from Tidings",
                    "body": "Read me within two minutes, or I email you.",
                },
                "category": "demo",
            }
        )
        return RedirectResponse("/demo", status_code=303)

    return router
