"""A local stand-in for Google's OAuth token endpoint and the FCM HTTP v1 send API.

It checks what the real services check:
- `POST /token`: a JWT-bearer grant whose RS256 assertion is signed by the service account's key,
  issued by its `client_email`, for the FCM scope, not expired. Answers an access token.
- `POST /v1/projects/{project}/messages:send`: a live bearer token from `/token`, the right
  project, and the message schema (exactly one target, string data, valid android priority and
  ttl, known fields). Errors come back in FCM's JSON shape with `details[].errorCode`.

Tests script failures per registration token with `fail(token, status, error_code, ...)`.
Point a service-account JSON's `token_uri` at `token_url` and `fcm.base_url` at `url`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tidings.sandbox.asgi_server import ServedOnLoopback, UvicornServer

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
_MESSAGE_FIELDS = {
    "token",
    "topic",
    "condition",
    "notification",
    "data",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "name",
}
_NOTIFICATION_FIELDS = {"title", "body", "image"}


@dataclass
class ScriptedError:
    status: int
    error_code: str
    message: str = "scripted failure"
    retry_after: int | None = None


@dataclass
class FcmSandbox(ServedOnLoopback):
    project_id: str
    client_email: str
    public_key_pem: bytes
    token_lifetime: int = 3600
    token_fetches: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _tokens: dict[str, float] = field(default_factory=dict)
    _script: dict[str, deque[ScriptedError]] = field(default_factory=lambda: defaultdict(deque))
    _server: UvicornServer | None = None

    def fail(
        self,
        registration_token: str,
        status: int,
        error_code: str,
        *,
        times: int = 1,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` sends to this token with an FCM error."""
        for _ in range(times):
            self._script[registration_token].append(
                ScriptedError(status, error_code, message or f"scripted {error_code}", retry_after)
            )

    def revoke_access_tokens(self) -> None:
        """Make every issued access token invalid, as when one expires early (next send: 401)."""
        self._tokens.clear()

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
        ]

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(
                assertion,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "iat", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        if claims["iss"] != self.client_email:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "unknown issuer"}, status_code=400
            )
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        self.token_fetches += 1
        token = "ya29.sandbox-" + secrets.token_urlsafe(24)
        self._tokens[token] = time.time() + self.token_lifetime
        return JSONResponse(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    async def _send(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or self._tokens.get(token, 0) < time.time():
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None)
        if request.path_params["project"] != self.project_id:
            return _error(403, "PERMISSION_DENIED", "Permission denied on the project.", None)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", None)
        problem = _schema_problem(body)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT")
        message = body["message"]
        target = message.get("token")
        if target is not None:
            self.attempts[target] += 1
            script = self._script.get(target)
            if script:
                err = script.popleft()
                headers = {"retry-after": str(err.retry_after)} if err.retry_after is not None else None
                return _error(err.status, _status_for(err.status), err.message, err.error_code, headers)
        self.sent.append(message)
        return JSONResponse({"name": f"projects/{self.project_id}/messages/{secrets.token_hex(8)}"})


def _schema_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return "Missing required field: message"
    message = body["message"]
    unknown = set(message) - _MESSAGE_FIELDS
    if unknown:
        return f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r} at 'message'"
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return "Exactly one of token, topic or condition must be specified"
    data = message.get("data", {})
    if not isinstance(data, dict) or any(not isinstance(v, str) for v in data.values()):
        return "Invalid value at 'message.data': data values must be strings"
    notification = message.get("notification", {})
    if set(notification) - _NOTIFICATION_FIELDS:
        return "Invalid JSON payload received. Unknown name in 'message.notification'"
    android = message.get("android", {})
    if "priority" in android and android["priority"] not in ("normal", "high", "NORMAL", "HIGH"):
        return f"Invalid value at 'message.android.priority': {android['priority']!r}"
    if "ttl" in android and not _TTL.match(str(android["ttl"])):
        return f"Invalid value at 'message.android.ttl': {android['ttl']!r}"
    return None


_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _status_for(http_status: int) -> str:
    return _GRPC_STATUS.get(http_status, "UNKNOWN")


def _error(
    status: int, grpc_status: str, message: str, error_code: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
        if error_code
        else []
    )
    body = {"error": {"code": status, "message": message, "status": grpc_status, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)
