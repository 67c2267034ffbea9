"""The Temporal Web UI explains a notification without reading code: checked in headless Chromium.

The UI renders summaries and details as Markdown through `/render?content=...` frames and the
activity summaries in the timeline; this test reads the DOM Chromium built after the UI's own
JavaScript fetched the workflow from the dev server.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import start_dev_server
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Phase
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.smtp import SmtpSink, free_port
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest_asyncio.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    ui_port = free_port()
    env = await start_dev_server(ui=True, ui_port=ui_port)
    try:
        yield env, ui_port
    finally:
        await env.shutdown()


async def render(url: str) -> str:
    """The DOM after the page's scripts ran (asynchronously: the worker answers on this loop)."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 120)
    return out.decode()


def rendered_markdown(html: str) -> list[str]:
    return [unquote(m) for m in re.findall(r'/render\?content=([^&"]+)', html)]


async def test_summaries_and_live_details_in_the_web_ui(
    ui_env: tuple[WorkflowEnvironment, int],
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    http_endpoint: HttpEndpoint,
) -> None:
    env, ui_port = ui_env
    http_endpoint.answer(400)
    async with running_worker(env.client, settings, store):
        tidings = TidingsClient(env.client)
        [handle] = await tidings.send(
            {
                "id": "ui-1",
                "recipients": [
                    {"id": "ui-user", "email": "ui@example.com", "webhook_url": f"{http_endpoint.url}/h"}
                ],
                "channels": [{"channel": "webhook", "fallback": ["email"]}],
                "content": {"title": "Invoice ready"},
                "category": "billing",
            }
        )
        state = await handle.result()
        assert state.phase is Phase.delivered
        run_id = (await env.client.get_workflow_handle(handle.workflow_id).describe()).run_id
        base = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{handle.workflow_id}/{run_id}"

        metadata = rendered_markdown(await render(f"{base}/user-metadata"))
        assert "webhook to ui-user: Invoice ready" in metadata
        assert any("**Channel plan:** webhook → email" in m for m in metadata)
        details = next(m for m in metadata if m.startswith("**Phase:**"))
        assert "**Phase:** delivered" in details
        assert "webhook/webhook" in details and "failed" in details and "answered 400" in details
        assert "email/smtp → ui@example.com: **sent**" in details and "(fallback from webhook)" in details

        history = await render(f"{base}/history")
        assert "smtp → ui@example.com (fallback from webhook)" in history
        assert f"webhook → {http_endpoint.url}/h" in history
