"""A recording HTTP endpoint on loopback that answers with scripted status codes.

Stands in for a customer's webhook receiver: it keeps every request (headers and raw body), and
answers each request with the next scripted response, then 200 once the script runs out.
"""

from __future__ import annotations

import asyncio
from collections import deque
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
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class HttpEndpoint:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.script: deque[ScriptedResponse] = deque()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off"))
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
        self.requests.append(
            RecordedRequest(request.method, request.url.path, dict(request.headers), body)
        )
        scripted = self.script.popleft() if self.script else ScriptedResponse(200, body=b"ok")
        return Response(scripted.body, status_code=scripted.status, headers=scripted.headers)

    async def start(self) -> HttpEndpoint:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
