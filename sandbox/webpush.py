"""A local Web Push service (RFC 8030) over TLS that checks VAPID and decrypts what it receives.

For each subscription it registers, it holds the browser side: a P-256 key pair and an auth
secret. A push must carry `TTL`, `Content-Encoding: aes128gcm` and a VAPID `Authorization`
(RFC 8292): an ES256 JWT that verifies against the `k=` public key, whose `aud` is this service's
origin, whose `exp` is in the future and at most 24 hours ahead, and whose `sub` is a `mailto:`
or `https:` contact. The body is then decrypted with http_ece (an implementation independent of
the sender's) and kept in `received`, so tests see exactly what a browser would show.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.tls import loopback_certificate

MAX_BODY = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


@dataclass
class WebPushSandbox:
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _browsers: dict[str, Browser] = field(default_factory=dict)
    _script: dict[str, deque[tuple[int, int | None]]] = field(default_factory=lambda: defaultdict(deque))
    _server: UvicornServer | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def subscribe(self, name: str) -> dict[str, Any]:
        """A new browser subscription, as `PushSubscription.toJSON()` gives it."""
        browser = Browser(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        self._browsers[name] = browser
        public = browser.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.url}/push/{name}",
            "keys": {"p256dh": _b64(public), "auth": _b64(browser.auth)},
        }

    def fail(self, name: str, status: int, *, retry_after: int | None = None) -> None:
        self._script[name].append((status, retry_after))

    async def start(self) -> WebPushSandbox:
        self._tmp = tempfile.TemporaryDirectory()
        cert, key = loopback_certificate(Path(self._tmp.name))
        self.ca_file = cert
        app = Starlette(routes=[Route("/push/{name}", self._push, methods=["POST"])])
        self._server = UvicornServer(app, tls=(str(cert), str(key)))
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()
        if self._tmp:
            self._tmp.cleanup()

    async def _push(self, request: Request) -> Response:
        name = request.path_params["name"]
        browser = self._browsers.get(name)
        if browser is None:
            return Response("no such subscription", status_code=404)
        problem = self._check_vapid(request.headers.get("authorization", ""))
        if problem:
            return Response(problem, status_code=403)
        if "ttl" not in request.headers or not request.headers["ttl"].isdigit():
            return Response("TTL header required", status_code=400)
        if request.headers.get("content-encoding") != "aes128gcm":
            return Response("Content-Encoding must be aes128gcm", status_code=415)
        urgency = request.headers.get("urgency", "normal")
        if urgency not in ("very-low", "low", "normal", "high"):
            return Response("bad Urgency", status_code=400)
        topic = request.headers.get("topic")
        if topic is not None and (len(topic) > 32 or not all(c.isalnum() or c in "-_" for c in topic)):
            return Response("bad Topic", status_code=400)
        body = await request.body()
        if len(body) > MAX_BODY:
            return Response("payload too large", status_code=413)
        script = self._script.get(name)
        if script:
            status, retry_after = script.popleft()
            return Response(
                status_code=status, headers={"retry-after": str(retry_after)} if retry_after else None
            )
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception:
            return Response("cannot decrypt", status_code=400)
        self.received.append({"subscription": name, **json.loads(plaintext)})
        self.headers.append(dict(request.headers))
        return Response(status_code=201, headers={"location": f"{self.url}/message/{len(self.received)}"})

    def _check_vapid(self, authorization: str) -> str | None:
        if not authorization.startswith("vapid "):
            return "missing VAPID authorization"
        fields = dict(part.strip().split("=", 1) for part in authorization[6:].split(",") if "=" in part)
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(fields["k"]))
            claims = jwt.decode(fields["t"], public, algorithms=["ES256"], audience=self.url)
        except (KeyError, ValueError, jwt.PyJWTError) as exc:
            return f"bad VAPID token: {type(exc).__name__}"
        if not 0 < float(claims["exp"]) - time.time() <= 24 * 3600:
            return "VAPID exp must be within 24 hours"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "VAPID sub must be a mailto: or https: contact"
        return None
