"""`tidings api` serves the API from the settings, against a real Temporal dev server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.api_support import SUBSCRIBER_KEY, bearer, subscriber_token
from tests.conftest import BIN_DIR
from tidings.sandbox.smtp import free_port

pytestmark = pytest.mark.e2e


async def test_tidings_api_serves_from_settings(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "TIDINGS_API__PORT": str(port),
        "TIDINGS_API__SUBSCRIBER_TOKEN_KEY": SUBSCRIBER_KEY,
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "api", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("tidings api did not start")
            assert (await http.get("/openapi.json")).json()["info"]["title"] == "Tidings API"
            counts = await http.get("/v1/inbox/counts", headers=bearer(subscriber_token("u")))
            assert counts.json() == {"unread": 0, "unseen": 0, "total": 0}
            assert (await http.post("/v1/notifications", json={})).status_code == 401
    finally:
        process.terminate()
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert SUBSCRIBER_KEY not in out.decode()
