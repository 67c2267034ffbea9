"""The inbox widget and the preference center as a person uses them, in headless Chromium.

Playwright for Python drives Debian's `chromium` (no browser can be downloaded here). The page is
the `tidings dev` demo page (`/demo`) served by the real app on uvicorn, with the worker on the
time-skipping Temporal server. A screenshot of each step goes to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.api_support import ApiKeyMaker, bearer
from tidings.activities.store.base import Store
from tidings.api.app import context_of, create_app
from tidings.api.keys import Scope
from tidings.models import Recipient
from tidings.models.broadcasts import Topic
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import TidingsClient

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DEMO = "demo-user"


@pytest_asyncio.fixture
async def demo_server(
    api_settings: Settings, store: Store, tidings: TidingsClient
) -> AsyncIterator[UvicornServer]:
    await store.put(Recipient(id=DEMO, name="Demo User", email="demo@example.com"))
    app = create_app(api_settings, store, tidings, demo_subscriber=DEMO)
    server = UvicornServer(app)
    await server.start()
    try:
        yield server
    finally:
        await context_of(app).hub.aclose()
        await server.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def notification_phase(
    http: httpx.AsyncClient, key: str, notification_id: str, *, final: bool = True
) -> str:
    phase = ""
    for _ in range(300):
        state: dict[str, Any] = (
            await http.get(f"/v1/notifications/{notification_id}", headers=bearer(key))
        ).json()
        phase = str(state.get("phase", ""))
        if not final or phase not in ("scheduled", "sending", "waiting_quiet_hours"):
            return phase
        await asyncio.sleep(0.05)
    return phase


async def shoot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_inbox_widget_live_read_and_preferences(
    demo_server: UvicornServer,
    browser: Browser,
    api_key: ApiKeyMaker,
    smtp_sink: SmtpSink,
    store: Store,
    tmp_path: Path,
) -> None:
    key = await api_key(Scope.send, Scope.read, Scope.subscribers)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = await browser.new_page()
    async with httpx.AsyncClient(base_url=demo_server.url, timeout=30) as http:
        # 1. the demo page shows the bell, no badge yet
        await page.goto(f"{demo_server.url}/demo")
        bell = page.locator("tidings-inbox .bell")
        badge = page.locator("tidings-inbox .badge")
        await expect(bell).to_be_visible()
        await expect(badge).to_be_hidden()
        await page.wait_for_timeout(300)  # the widget's stream is open
        await shoot(page, shots, "1-bell")

        # 2. a notification sent through the API: in the badge within 2 s, no reload
        body = {
            "id": "browser-1", "recipients": [DEMO], "category": "comments",
            "channels": [{"channel": "in_app", "fallback": ["email"], "escalate_after": {"in_app": "PT10M"}}],
            "content": {"title": "Ada replied", "body": "Nice work!"},
        }  # fmt: skip
        sent = await http.post("/v1/notifications", json=body, headers=bearer(key))
        assert sent.status_code == 202
        await expect(badge).to_have_text("1", timeout=2000)  # the issue: within 2 s, no reload
        await shoot(page, shots, "2-badge")
        await bell.click()
        item = page.locator("tidings-inbox li.unread")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text("Ada replied")
        await shoot(page, shots, "3-list")

        # 3. clicking it marks it read, and the pending escalation to email stops
        await item.click()
        await expect(page.locator("tidings-inbox li.read")).to_have_count(1)
        await expect(badge).to_be_hidden()
        await shoot(page, shots, "4-read")
        assert await notification_phase(http, key, f"browser-1~{DEMO}") == "delivered"
        state = (await http.get(f"/v1/notifications/browser-1~{DEMO}", headers=bearer(key))).json()
        assert [d["channel"] for d in state["destinations"]] == ["in_app"]
        assert state["destinations"][0]["engagement"][0]["kind"] == "read"
        assert not smtp_sink.received

        # 4. the preference center: opt out of a category (the next one in it is skipped) and of a topic
        await store.broadcasts.create_topic(Topic(key="release-notes", name="Release notes"))
        await store.broadcasts.subscribe("release-notes", [DEMO])
        link = (await http.post(f"/v1/subscribers/{DEMO}/preference-link", headers=bearer(key))).json()["url"]
        path = urlsplit(link).path
        await page.goto(f"{demo_server.url}{path}")
        await expect(page.locator("text=security (always sent: not optional)")).to_be_visible()
        await page.locator('input[name="category:marketing"]').uncheck()
        await expect(page.locator("text=Release notes (release-notes)")).to_be_visible()
        await page.locator('input[name="topic:release-notes"]').uncheck()
        await shoot(page, shots, "5-preferences")
        await page.locator("button[type=submit]").click()
        await expect(page.locator(".message")).to_have_text("Saved.")
        await expect(page.locator('input[name="category:marketing"]')).not_to_be_checked()
        await expect(page.locator('input[name="topic:release-notes"]')).not_to_be_checked()
        assert await store.broadcasts.topic_opt_outs("release-notes", [DEMO]) == {DEMO}
        await shoot(page, shots, "6-saved")
        promo = {"id": "browser-2", "recipients": [DEMO], "category": "marketing",
                 "channels": [{"channel": "in_app"}], "content": {"title": "Sale!"}}  # fmt: skip
        assert (await http.post("/v1/notifications", json=promo, headers=bearer(key))).status_code == 202
        assert await notification_phase(http, key, f"browser-2~{DEMO}") == "skipped_by_preferences"

        # 5. a tampered link is refused
        token = path.removeprefix("/preferences/")
        tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        response = await page.goto(f"{demo_server.url}/preferences/{tampered}")
        assert response is not None and response.status == 403
        await expect(page.locator("body")).to_contain_text("not valid")
        await shoot(page, shots, "7-tampered")
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-bell.png", "2-badge.png", "3-list.png", "4-read.png", "5-preferences.png", "6-saved.png",
        "7-tampered.png",
    ]  # fmt: skip
