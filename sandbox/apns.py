"""A local stand-in for the APNs provider API, over HTTP/2 (cleartext, prior knowledge).

It checks what Apple checks: HTTP/2 only; `POST /3/device/<hex token>`; a bearer provider token
that is an ES256 JWT signed by the team's key with the right `kid` and `iss`, no older than an
hour (`ExpiredProviderToken`), not replaced more often than every 20 minutes
(`TooManyProviderTokenUpdates`); `apns-topic` among the team's topics; valid `apns-push-type`,
`apns-priority`, `apns-id`, `apns-collapse-id`; a JSON payload with `aps` of at most 4096 bytes.
Answers use Apple's shape: 200 with `apns-id`, or `{"reason": ...}` (and `timestamp` on 410).

Tests script answers per device token with `fail(token, status, reason)`, and read `connections`
(distinct client connections) and `provider_tokens` (distinct JWTs seen).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import jwt
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tidings.sandbox.smtp import free_port

PUSH_TYPES = {
    "alert",
    "background",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "location",
    "pushtotalk",
}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{16,200}$")
MAX_PAYLOAD = 4096


@dataclass
class ScriptedReason:
    status: int
    reason: str
    timestamp_ms: int | None = None


@dataclass
class ApnsSandbox:
    team_id: str
    key_id: str
    public_key_pem: bytes
    topics: set[str]
    delivered: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    connections: set[tuple[str, int]] = field(default_factory=set)
    provider_tokens: list[str] = field(default_factory=list)
    http_versions: set[str] = field(default_factory=set)
    _script: dict[str, deque[ScriptedReason]] = field(default_factory=lambda: defaultdict(deque))
    _last_token_change: float = 0.0
    _renewal_allowed: bool = False
    _port: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def fail(
        self, device_token: str, status: int, reason: str, *, times: int = 1, timestamp_ms: int | None = None
    ) -> None:
        for _ in range(times):
            self._script[device_token].append(ScriptedReason(status, reason, timestamp_ms))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> ApnsSandbox:
        self._port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{self._port}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        config.keep_alive_max_requests = 10_000_000  # APNs keeps connections open for good
        app = Starlette(routes=[Route("/3/device/{token}", self._push, methods=["POST"])])
        self._task = asyncio.create_task(serve(app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self._port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return self
        raise RuntimeError("the APNs sandbox did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            await self._task

    async def _push(self, request: Request) -> Response:
        self.http_versions.add(request.scope.get("http_version", "?"))
        if request.scope.get("http_version") != "2":
            return _reason(405, "MethodNotAllowed")  # APNs speaks HTTP/2 only
        if request.client:
            self.connections.add((request.client.host, request.client.port))
        headers = request.headers
        apns_id = headers.get("apns-id")
        problem = self._check_token(headers.get("authorization", ""))
        if problem:
            return _reason(*problem)
        device_token = request.path_params["token"]
        body = await request.body()
        problem = _check_request(headers, device_token, body, self.topics)
        if problem:
            return _reason(*problem)
        self.attempts[device_token] += 1
        script = self._script.get(device_token)
        if script:
            scripted = script.popleft()
            if scripted.reason == "ExpiredProviderToken":
                self._renewal_allowed = True
            return _reason(scripted.status, scripted.reason, scripted.timestamp_ms)
        self.delivered.append({"token": device_token, "headers": dict(headers), "payload": json.loads(body)})
        return Response(
            status_code=200, headers={"apns-id": apns_id or "00000000-0000-0000-0000-000000000000"}
        )

    def _check_token(self, authorization: str) -> tuple[int, str] | None:
        if not authorization.startswith("bearer "):
            return 403, "MissingProviderToken"
        token = authorization.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self.public_key_pem, algorithms=["ES256"], options={"require": ["iat", "iss"]}
            )
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken"
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return 403, "InvalidProviderToken"
        if time.time() - float(claims["iat"]) > 3600:
            self._renewal_allowed = True
            return 403, "ExpiredProviderToken"
        if token not in self.provider_tokens:
            recent = time.time() - self._last_token_change < 20 * 60
            if self.provider_tokens and recent and not self._renewal_allowed:
                return 429, "TooManyProviderTokenUpdates"
            self.provider_tokens.append(token)
            self._last_token_change = time.time()
            self._renewal_allowed = False
        return None


def _check_request(headers: Any, device_token: str, body: bytes, topics: set[str]) -> tuple[int, str] | None:
    if not _HEX.match(device_token):
        return 400, "BadDeviceToken"
    topic = headers.get("apns-topic")
    if not topic:
        return 400, "MissingTopic"
    if topic not in topics:
        return 400, "TopicDisallowed"
    if headers.get("apns-push-type", "alert") not in PUSH_TYPES:
        return 400, "InvalidPushType"
    if headers.get("apns-priority", "10") not in ("10", "5", "1"):
        return 400, "BadPriority"
    apns_id = headers.get("apns-id")
    if apns_id is not None and not _UUID.match(apns_id):
        return 400, "BadMessageId"
    collapse = headers.get("apns-collapse-id")
    if collapse is not None and len(collapse.encode()) > 64:
        return 400, "BadCollapseId"
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        return 400, "BadExpirationDate"
    if not body:
        return 400, "PayloadEmpty"
    if len(body) > MAX_PAYLOAD:
        return 413, "PayloadTooLarge"
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, "BadPayload"
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        return 400, "PayloadEmpty"
    return None


def _reason(status: int, reason: str, timestamp_ms: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"reason": reason}
    if timestamp_ms is not None:
        body["timestamp"] = timestamp_ms
    return JSONResponse(body, status_code=status)
