"""Run an ASGI app on loopback for the sandboxes: uvicorn (HTTP/1.1) or hypercorn (HTTP/2)."""

from __future__ import annotations

import asyncio
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute


class UvicornServer:
    """An ASGI app served by uvicorn on 127.0.0.1 and a free port, in this event loop."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None
    ) -> None:
        """`tls` is (certificate file, key file) to serve https."""
        self.host = host
        self.port = port
        self.scheme = "https" if tls else "http"
        certfile, keyfile = tls or (None, None)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                ssl_certfile=certfile,
                ssl_keyfile=keyfile,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task


class ServedOnLoopback:
    """Mixin for the stand-ins: serve `routes()` with uvicorn on 127.0.0.1 and a free port."""

    _server: UvicornServer | None

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return self._server.url

    async def start(self) -> Self:
        self._server = UvicornServer(Starlette(routes=self.routes()))
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()
