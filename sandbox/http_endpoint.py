"""A recording HTTP endpoint on loopback that answers with scripted status codes.

Stands in for a customer's webhook receiver: it keeps every request (headers and raw body), and
answers each request with the next scripted response, then 200 once the script runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.perf_counter)


@dataclass
class ScriptedResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class HttpEndpoint:
    def __init__(
        self, host: str = "127.0.0.1", on_request: Callable[[RecordedRequest], None] | None = None
    ) -> None:
        self.host = host
        self.on_request = on_request
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.script: deque[ScriptedResponse] = deque()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off")
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def answer(self, *responses: ScriptedResponse | int) -> None:
        """Queue responses for the next requests (a bare int is a status with no body)."""
        for r in responses:
            self.script.append(r if isinstance(r, ScriptedResponse) else ScriptedResponse(r))

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        recorded = RecordedRequest(
            request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        scripted = self.script.popleft() if self.script else ScriptedResponse(200, body=b"ok")
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        return Response(scripted.body, status_code=scripted.status, headers=scripted.headers)

    async def start(self) -> HttpEndpoint:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn offers no "started" event
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
