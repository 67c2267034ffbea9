"""A local stand-in for Twilio Programmable Messaging (create a Message, status callbacks).

It checks what Twilio checks: HTTP Basic auth with the account SID and auth token, the account
in the path, a form with `To` and `Body` and one of `From`/`MessagingServiceSid`. It answers 201
with a message resource, or Twilio's error JSON (`code`, `message`, `more_info`, `status`) for
numbers scripted with `fail(...)`. `send_status_callback` posts a status callback to a message's
`StatusCallback` URL, signed with `X-Twilio-Signature` as Twilio signs them.
"""

from __future__ import annotations

import base64
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.request_validator import RequestValidator

from tidings.sandbox.asgi_server import ServedOnLoopback, UvicornServer


@dataclass
class ScriptedError:
    status: int
    code: int
    message: str
    retry_after: int | None = None


@dataclass
class TwilioSandbox(ServedOnLoopback):
    account_sid: str
    auth_token: str
    messages: list[dict[str, str]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _script: dict[str, deque[ScriptedError]] = field(default_factory=lambda: defaultdict(deque))
    _server: UvicornServer | None = None

    def fail(
        self, to: str, status: int, code: int, message: str, *, times: int = 1, retry_after: int | None = None
    ) -> None:
        for _ in range(times):
            self._script[to].append(ScriptedError(status, code, message, retry_after))

    def routes(self) -> list[BaseRoute]:
        return [Route("/2010-04-01/Accounts/{account}/Messages.json", self._create, methods=["POST"])]

    async def _create(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if (
            request.headers.get("authorization") != expected
            or request.path_params["account"] != self.account_sid
        ):
            return _error(401, 20003, "Authenticate")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if "To" not in form:
            return _error(400, 21604, "A 'To' phone number is required.")
        if "Body" not in form and "MediaUrl" not in form:
            return _error(400, 21602, "Message body is required.")
        if "From" not in form and "MessagingServiceSid" not in form:
            return _error(400, 21603, "A 'From' phone number is required.")
        to = form["To"]
        self.attempts[to] += 1
        script = self._script.get(to)
        if script:
            err = script.popleft()
            headers = {"retry-after": str(err.retry_after)} if err.retry_after is not None else None
            return _error(err.status, err.code, err.message, headers)
        sid = "SM" + secrets.token_hex(16)
        self.messages.append({**form, "sid": sid})
        status = "accepted" if "MessagingServiceSid" in form else "queued"
        body = {"sid": sid, "status": status, "to": to, "from": form.get("From"), "body": form.get("Body"),
                "error_code": None, "error_message": None, "account_sid": self.account_sid}  # fmt: skip
        return JSONResponse(body, status_code=201)

    async def send_status_callback(
        self, sid: str, status: str, error_code: str | None = None
    ) -> httpx.Response:
        """Post Twilio's status callback for a message, signed with the auth token."""
        message = next(m for m in self.messages if m["sid"] == sid)
        url = message["StatusCallback"]
        params: dict[str, Any] = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account_sid,
                                  "To": message["To"], "From": message.get("From", "")}  # fmt: skip
        if error_code:
            params["ErrorCode"] = error_code
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        async with httpx.AsyncClient() as client:
            return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)
