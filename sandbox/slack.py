"""A local stand-in for Slack: incoming webhooks and the `chat.postMessage` Web API method.

Incoming webhooks (`POST /services/<path>`) take JSON with `text` or `blocks` and answer `ok` or
a plain-text error with Slack's HTTP status. `POST /api/chat.postMessage` checks the bot token and
answers `{"ok": true, "ts": ...}` or `{"ok": false, "error": ...}` with HTTP 200, as Slack does.
Both answer 429 with `Retry-After` when scripted. Script answers with `fail(key, ...)`, where the
key is the webhook path or the channel.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tidings.sandbox.asgi_server import ServedOnLoopback, UvicornServer


@dataclass
class ScriptedAnswer:
    status: int
    error: str
    retry_after: int | None = None


@dataclass
class SlackSandbox(ServedOnLoopback):
    bot_token: str
    posted: list[dict[str, Any]] = field(default_factory=list)
    _script: dict[str, deque[ScriptedAnswer]] = field(default_factory=lambda: defaultdict(deque))
    _server: UvicornServer | None = None

    def fail(self, key: str, status: int, error: str, *, retry_after: int | None = None) -> None:
        self._script[key].append(ScriptedAnswer(status, error, retry_after))

    def webhook_url(self, path: str = "T000/B000/XXXX") -> str:
        return f"{self.url}/services/{path}"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/services/{path:path}", self._webhook, methods=["POST"]),
            Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
        ]

    async def _webhook(self, request: Request) -> Response:
        path = request.path_params["path"]
        scripted = self._next(path)
        if scripted:
            headers = {"retry-after": str(scripted.retry_after)} if scripted.retry_after else None
            return PlainTextResponse(scripted.error, status_code=scripted.status, headers=headers)
        try:
            payload = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return PlainTextResponse("no_text", status_code=400)
        self.posted.append({"via": "webhook", "path": path, **payload})
        return PlainTextResponse("ok")

    async def _post_message(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.bot_token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_json"})
        channel = str(payload.get("channel", ""))
        if not channel:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        scripted = self._next(channel)
        if scripted:
            if scripted.status == 429:
                return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429,
                                    headers={"retry-after": str(scripted.retry_after or 1)})  # fmt: skip
            return JSONResponse({"ok": False, "error": scripted.error}, status_code=scripted.status)
        if not (payload.get("text") or payload.get("blocks")):
            return JSONResponse({"ok": False, "error": "no_text"})
        self.posted.append({"via": "api", **payload})
        return JSONResponse({"ok": True, "channel": channel, "ts": f"{time.time():.6f}"})

    def _next(self, key: str) -> ScriptedAnswer | None:
        queue = self._script.get(key)
        return queue.popleft() if queue else None
