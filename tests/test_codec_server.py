"""`tidings codec-server`: Temporal's codec server protocol, its access rules, and the operators'
tools through it: the stock `temporal` CLI (`--codec-endpoint`), the `tidings` CLI, and the Web UI
in headless Chromium, all against a real dev server whose history holds only ciphertext.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR, TEMPORAL_CLI, start_dev_server
from tests.test_web_ui import CHROMIUM, render, rendered_markdown
from tidings import search_attributes as sa
from tidings.activities.store.sqlite import SqliteStore
from tidings.codec import AesGcmCodec, data_converter_for, generate_key
from tidings.models import Phase
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.smtp import SmtpSink, free_port
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.starters.codec_server import CodecServer, endpoint_url
from tidings.workers.worker import running_worker

KEY = generate_key()
TOKEN = secrets.token_urlsafe(24)
UI_ORIGIN = "http://127.0.0.1:18233"
EMAIL = "grace.hopper@example.com"
TITLE = "Lab results available"


def codec() -> AesGcmCodec:
    return AesGcmCodec({"k1": base64.b64decode(KEY)}, "k1")


def payloads_json(*values: Any) -> str:
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(v).encode()) for v in values]
    return json_format.MessageToJson(Payloads(payloads=payloads))


def values_of(body: str) -> list[Any]:
    parsed = json_format.Parse(body, Payloads())
    return [json.loads(p.data) for p in parsed.payloads]


@pytest_asyncio.fixture
async def served() -> AsyncIterator[str]:
    server = CodecServer(codec(), TOKEN, [UI_ORIGIN], max_body_bytes=64 * 1024)
    uvicorn = UvicornServer(server.app())
    await uvicorn.start()
    try:
        yield uvicorn.url
    finally:
        await uvicorn.stop()


async def test_encode_then_decode_in_the_protocol_json(served: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
    async with httpx.AsyncClient() as http:
        encoded = await http.post(
            f"{served}/encode", content=payloads_json(EMAIL, {"t": TITLE}), headers=auth
        )
        assert encoded.status_code == 200, encoded.text
        assert EMAIL not in encoded.text and TITLE not in encoded.text
        [first, _] = json.loads(encoded.text)["payloads"]
        assert base64.b64decode(first["metadata"]["encoding"]) == b"binary/encrypted"
        assert base64.b64decode(first["metadata"]["encryption-key-id"]) == b"k1"
        # the token as the endpoint's first path segment, as the Web UI uses it; any depth works
        decoded = await http.post(f"{served}/{TOKEN}/default/decode", content=encoded.text)
        assert decoded.status_code == 200, decoded.text
        assert values_of(decoded.text) == [EMAIL, {"t": TITLE}]


async def test_refuses_without_the_token_and_from_other_origins(served: str) -> None:
    body = payloads_json("x")
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{served}/decode", content=body)).status_code == 401
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + ("y" if TOKEN.endswith("x") else "x")}
        assert (await http.post(f"{served}/decode", content=body, headers=wrong)).status_code == 401
        assert (await http.post(f"{served}/not-the-token/decode", content=body)).status_code == 401
        assert (await http.post(f"{served}/{TOKEN}/other", content=body)).status_code == 404
        evil = {"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
        refused = await http.post(f"{served}/decode", content=body, headers=evil)
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        preflight = await http.options(
            f"{served}/{TOKEN}/decode",
            headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type,x-namespace"},
        )  # fmt: skip
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "x-namespace" in preflight.headers["access-control-allow-headers"]
        evil_preflight = await http.options(f"{served}/decode", headers={"Origin": "https://evil.example"})
        assert evil_preflight.status_code == 403
        allowed = await http.post(f"{served}/{TOKEN}/decode", content=body, headers={"Origin": UI_ORIGIN})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_bad_bodies_and_undecryptable_payloads_fail_clearly(served: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as http:
        big = payloads_json("x" * 70_000)
        assert (await http.post(f"{served}/decode", content=big, headers=auth)).status_code == 413
        assert (await http.post(f"{served}/decode", content=b"{not json", headers=auth)).status_code == 400
        other = AesGcmCodec({"k9": os.urandom(32)}, "k9")
        [sealed] = await other.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
        body = json_format.MessageToJson(Payloads(payloads=[sealed]))
        answer = await http.post(f"{served}/decode", content=body, headers=auth)
        assert answer.status_code == 422 and "'k9'" in answer.json()["error"]
        # not encrypted: passes through unchanged
        passed = await http.post(f"{served}/decode", content=payloads_json("old"), headers=auth)
        assert values_of(passed.text) == ["old"]


# ---------------------------------------------------------------- operators' tools, end to end


@pytest_asyncio.fixture(scope="module")
async def codec_stack() -> AsyncIterator[tuple[WorkflowEnvironment, int, str]]:
    """A dev server whose Web UI decodes through a codec server (as `tidings dev` wires it)."""
    ui_port = free_port()
    server = CodecServer(
        codec(), TOKEN, [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"], 4 * 1024 * 1024
    )
    uvicorn = UvicornServer(server.app())
    await uvicorn.start()
    endpoint = endpoint_url("127.0.0.1", uvicorn.port, TOKEN)
    env = await start_dev_server(
        ui=True, ui_port=ui_port, dev_server_extra_args=["--ui-codec-endpoint", endpoint]
    )
    try:
        yield env, ui_port, endpoint
    finally:
        await env.shutdown()
        await uvicorn.stop()


def stack_settings(settings: Settings, address: str) -> Settings:
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "temporal": {"address": address},
            "codec": {
                "enabled": True,
                "keys": {"k1": KEY},
                "active_key": "k1",
                "hash_recipient_ids": True,
                "recipient_id_hash_key": "codec-server-test-hash-key",
            },
        }
    )


async def run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.e2e
async def test_operators_read_through_the_codec_and_nothing_without_it(
    codec_stack: tuple[WorkflowEnvironment, int, str],
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    env, _, endpoint = codec_stack
    address = env.client.service_client.config.target_host
    settings = stack_settings(settings, address)
    client = await Client.connect(address, data_converter=data_converter_for(settings))
    tidings = await TidingsClient.connect(settings)
    async with running_worker(client, settings, store):
        [done] = await tidings.send(
            {"id": "cs-done", "recipients": [{"id": "grace", "email": EMAIL}], "channels": ["email"],
             "content": {"title": TITLE}}
        )  # fmt: skip
        assert (await done.result()).phase is Phase.delivered
        [waiting] = await tidings.send(
            {"id": "cs-wait", "recipients": [{"id": "grace", "email": EMAIL}], "channels": ["email"],
             "content": {"title": TITLE}, "schedule_at": "2099-01-01T00:00:00+00:00"}
        )  # fmt: skip
        temporal = [str(TEMPORAL_CLI), "--address", address, "-o", "json"]
        codec_flags = ["--codec-endpoint", endpoint]

        # without the codec: ciphertext only
        code, raw, err = await run(*temporal[:1], "workflow", "show", "-w", done.workflow_id, *temporal[1:])
        assert code == 0, err
        sealed = "\n".join(payload_texts(json.loads(raw)))
        assert EMAIL not in sealed and TITLE not in sealed and EMAIL not in raw and TITLE not in raw
        assert "YmluYXJ5L2VuY3J5cHRlZA==" in raw  # binary/encrypted

        # the stock CLI through the codec server reads inputs, results and summaries
        code, shown, err = await run(
            *temporal[:1], "workflow", "show", "-w", done.workflow_id, *temporal[1:], *codec_flags
        )
        assert code == 0, err
        readable = "\n".join(payload_texts(json.loads(shown)))
        assert EMAIL in readable and TITLE in readable and "binary/encrypted" not in shown
        assert f"email to grace: {TITLE}" in readable  # the static summary
        # ... and query answers (the token as a header works too)
        code, queried, err = await run(
            *temporal[:1], "workflow", "query", "-w", waiting.workflow_id, "--name", "status", *temporal[1:],
            "--codec-endpoint", endpoint.rsplit("/", 1)[0], "--codec-auth", f"Bearer {TOKEN}",
        )  # fmt: skip
        assert code == 0, err
        answer = json.loads(queried)["queryResult"][0]
        assert answer["phase"] == "scheduled" and answer["recipient_id"] == "grace"

        # the tidings CLI, configured with the keys: status, and find by recipient through the hash
        cli_env = {
            **os.environ,
            "TIDINGS_SETTINGS": str(_empty_settings(tmp_path)),
            "TIDINGS_TEMPORAL__ADDRESS": address,
            "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "cli.sqlite3"),
            "TIDINGS_CODEC__ENABLED": "true",
            "TIDINGS_CODEC__KEYS": json.dumps({"k1": KEY}),
            "TIDINGS_CODEC__ACTIVE_KEY": "k1",
            "TIDINGS_CODEC__HASH_RECIPIENT_IDS": "true",
            "TIDINGS_CODEC__RECIPIENT_ID_HASH_KEY": "codec-server-test-hash-key",
        }
        tidings_cli = str(BIN_DIR / "tidings")
        code, status, err = await run(tidings_cli, "status", "cs-done~grace", env=cli_env)
        assert code == 0, err
        assert json.loads(status)["destinations"][0]["destination"] == EMAIL
        described = await env.client.get_workflow_handle(done.workflow_id).describe()
        assert described.typed_search_attributes.get(sa.RECIPIENT_ID) != "grace"
        found: list[str] = []
        for _ in range(50):  # visibility is eventually consistent
            code, listed, err = await run(tidings_cli, "find", "--recipient", "grace", env=cli_env)
            assert code == 0, err
            found = json.loads(listed)["notifications"]
            if len(found) == 2:
                break
            await asyncio.sleep(0.3)
        assert sorted(found) == ["cs-done~grace", "cs-wait~grace"]

        # a CLI with a different key fails clearly, naming the key id
        wrong_env = {**cli_env, "TIDINGS_CODEC__KEYS": json.dumps({"k1": generate_key()})}
        code, _, err = await run(tidings_cli, "status", "cs-done~grace", env=wrong_env)
        assert code != 0 and "key id 'k1' does not decrypt" in err and KEY not in err

        await tidings.cancel(waiting.notification_id)


def payload_texts(node: Any) -> list[str]:
    """Every payload's data in a `temporal -o json` answer, decoded from base64."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and isinstance(node.get("data"), str):
            found.append(base64.b64decode(node["data"]).decode(errors="replace"))
        for value in node.values():
            found += payload_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += payload_texts(value)
    return found


def _empty_settings(tmp_path: Path) -> Path:
    path = tmp_path / "tidings.toml"
    path.write_text("")
    return path


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
async def test_web_ui_shows_the_decrypted_summary_through_the_codec_server(
    codec_stack: tuple[WorkflowEnvironment, int, str],
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
) -> None:
    env, ui_port, _ = codec_stack
    address = env.client.service_client.config.target_host
    settings = stack_settings(settings, address)
    client = await Client.connect(address, data_converter=data_converter_for(settings))
    async with running_worker(client, settings, store):
        [handle] = await TidingsClient(client).send(
            {"id": "cs-ui", "recipients": [{"id": "ui-grace", "email": EMAIL}], "channels": ["email"],
             "content": {"title": TITLE}, "category": "lab"}
        )  # fmt: skip
        assert (await handle.result()).phase is Phase.delivered
        raw = await env.client.get_workflow_handle(handle.workflow_id).describe()  # no codec
        stored = raw.raw_description.execution_config.user_metadata.summary
        assert stored.metadata["encoding"] == b"binary/encrypted" and TITLE.encode() not in stored.data
        run_id = raw.run_id
        base = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{handle.workflow_id}/{run_id}"
        metadata = rendered_markdown(await render(f"{base}/user-metadata"))
        assert f"email to ui-grace: {TITLE}" in metadata, metadata
        assert any("**Phase:** delivered" in m for m in metadata), metadata


async def test_cli_generates_keys_and_the_server_refuses_to_start_unconfigured(tmp_path: Path) -> None:
    tidings_cli = str(BIN_DIR / "tidings")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_SETTINGS"] = str(_empty_settings(tmp_path))
    code, out, err = await run(tidings_cli, "codec", "generate-key", env=env)
    assert code == 0, err
    assert len(base64.b64decode(out.strip(), validate=True)) == 32
    code, _, err = await run(tidings_cli, "codec-server", env=env)
    assert code == 2 and "needs codec.enabled" in err
    env |= {"TIDINGS_CODEC__ENABLED": "true", "TIDINGS_CODEC__KEYS": json.dumps({"k1": KEY}),
            "TIDINGS_CODEC__ACTIVE_KEY": "k1"}  # fmt: skip
    code, _, err = await run(tidings_cli, "codec-server", env=env)
    assert code == 2 and "needs codec_server.auth_token" in err and KEY not in err
    port = free_port()
    env |= {"TIDINGS_CODEC_SERVER__AUTH_TOKEN": TOKEN, "TIDINGS_CODEC_SERVER__PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        tidings_cli, "codec-server", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        started = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert started["keys"] == ["k1"] and TOKEN not in json.dumps(started)
        [sealed] = await codec().encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')])
        body = json_format.MessageToJson(Payloads(payloads=[sealed]))
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                try:
                    answer = await http.post(f"http://127.0.0.1:{port}/{TOKEN}/decode", content=body)
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
        assert answer.status_code == 200 and values_of(answer.text) == ["hi"]
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert TOKEN not in stderr.decode()
