"""Refuse request bodies over `api.max_body_bytes` with 413, before reading them whole."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.api.problems import PROBLEM_JSON


class BodyLimit:
    """ASGI middleware: a declared Content-Length over the limit is refused at once; a chunked body
    is counted as it arrives and refused once past the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self._refuse(send, 413 if declared.isdigit() else 400)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    # Answer now and tell the app the client left: frameworks turn an exception
                    # raised while they parse a body into a 400 of their own.
                    refused = True
                    if not started:
                        await self._refuse(send, 413)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the app answers to the disconnect is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self._app(scope, counted, tracked)

    async def _refuse(self, send: Send, status: int) -> None:
        title = "request body too large" if status == 413 else "bad Content-Length"
        body = json.dumps(
            {
                "type": "about:blank",
                "title": title,
                "status": status,
                "detail": f"the limit is {self._limit} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
