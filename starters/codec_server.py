"""`tidings codec-server`: Temporal's codec server protocol over the Tidings payload codec.

The Temporal Web UI and `temporal ... --codec-endpoint URL` POST `{"payloads": [...]}` (protobuf
JSON: bytes as base64) to `URL/decode` (and `URL/encode`, to send input from the UI or CLI), with
an `X-Namespace` header, and show what comes back. Only the last path segment names the
operation, as the protocol allows, so the endpoint may carry a prefix.

Access:
- every request needs the token `codec_server.auth_token`, either as `Authorization: Bearer
  <token>` (`temporal --codec-auth "Bearer <token>"`) or as the first path segment of the endpoint
  (`http://host:port/<token>`), because the Web UI sends no header of its own choosing (it
  only forwards its OIDC access token, which is not this token); compared in constant time;
- browsers get CORS answers for `codec_server.allowed_origins` only (the Web UI's origins);
  a request from any other origin is refused;
- bodies over `codec_server.max_body_bytes` are refused (413);
- nothing of a request (payloads, the token in the path) is logged: uvicorn's access log is off.

A payload that cannot be decrypted (unknown key id, wrong key) fails the request (422) with a
message naming the key id, never decoded to garbage.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from tidings.codec import AesGcmCodec, CodecError, codec_for
from tidings.settings import Settings

log = logging.getLogger(__name__)

OPERATIONS = ("encode", "decode")
CORS_HEADERS = "content-type,x-namespace,authorization"


class BodyTooLarge(Exception):
    pass


class CodecServer:
    def __init__(
        self, codec: AesGcmCodec, auth_token: str, allowed_origins: Sequence[str], max_body_bytes: int
    ) -> None:
        if not auth_token:
            raise ValueError("the codec server needs codec_server.auth_token")
        self.codec = codec
        self._token = auth_token.encode()
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.max_body_bytes = max_body_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> CodecServer:
        codec = codec_for(settings)
        if codec is None:
            raise ValueError("the codec server needs codec.enabled, codec.keys and codec.active_key")
        s = settings.codec_server
        if s.auth_token is None:
            raise ValueError(
                "the codec server needs codec_server.auth_token (TIDINGS_CODEC_SERVER__AUTH_TOKEN)"
            )
        return cls(codec, s.auth_token.get_secret_value(), s.allowed_origins, s.max_body_bytes)

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["POST", "OPTIONS"])],
        )

    def _cors(self, request: Request) -> dict[str, str] | None:
        """CORS headers for an allowed origin, {} for a request without Origin, None if refused."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if origin.rstrip("/") not in self.allowed_origins:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def _authorized(self, request: Request, prefix: list[str]) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        by_header = scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)
        by_path = bool(prefix) and hmac.compare_digest(prefix[0].encode(), self._token)
        return by_header or by_path

    async def handle(self, request: Request) -> Response:
        cors = self._cors(request)
        if cors is None:
            return JSONResponse({"error": "origin not allowed"}, status_code=403)
        segments = [s for s in request.path_params["path"].split("/") if s]
        if not segments or segments[-1] not in OPERATIONS:
            return JSONResponse({"error": "POST to .../encode or .../decode"}, status_code=404, headers=cors)
        if request.method == "OPTIONS":  # CORS preflight: no credentials are sent with it
            return Response(
                status_code=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
        if not self._authorized(request, segments[:-1]):
            denied = {"error": "missing or wrong codec server token"}
            return JSONResponse(denied, status_code=401, headers=cors)
        try:
            body = await self._body(request)
            payloads = json_format.Parse(body, Payloads())
        except BodyTooLarge:
            return JSONResponse(
                {"error": f"body over {self.max_body_bytes} bytes"}, status_code=413, headers=cors
            )
        except (json_format.ParseError, UnicodeDecodeError, ValueError):
            return JSONResponse(
                {"error": 'body must be {"payloads": [...]} in protobuf JSON'}, status_code=400, headers=cors
            )
        try:
            if segments[-1] == "encode":
                out = await self.codec.encode(payloads.payloads)
            else:
                out = await self.codec.decode(payloads.payloads)
        except CodecError as exc:
            log.warning("codec server: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=422, headers=cors)
        text = json_format.MessageToJson(Payloads(payloads=out), indent=None)
        return Response(text, media_type="application/json", headers=cors)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def endpoint_url(host: str, port: int, token: str | None = None) -> str:
    """The codec endpoint to give the Web UI: with the token as the path prefix when given."""
    base = f"http://{host}:{port}"
    return f"{base}/{token}" if token else base


async def run_codec_server(settings: Settings) -> None:
    """Serve the codec server with uvicorn until interrupted (`tidings codec-server`)."""
    import uvicorn

    server = CodecServer.from_settings(settings)
    s = settings.codec_server
    config = uvicorn.Config(
        server.app(), host=s.host, port=s.port, log_level="warning", access_log=False, lifespan="off"
    )
    print(
        json.dumps(
            {
                "codec_server": f"http://{s.host}:{s.port}",
                "keys": server.codec.key_ids,
                "active_key": server.codec.active_key,
                "allowed_origins": sorted(server.allowed_origins),
            }
        ),
        flush=True,
    )
    await uvicorn.Server(config).serve()
