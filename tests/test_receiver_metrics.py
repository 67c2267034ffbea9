"""The receiver counts callbacks by kind and verdict on its own `/metrics` (a real HTTP server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from tidings.activities.store.sqlite import SqliteStore
from tidings.links import click_url, event_token
from tidings.receiver.app import Receiver
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.smtp import free_port
from tidings.settings import Settings

KEY = "receiver-metrics-link-key-0123456789"


@pytest_asyncio.fixture
async def receiver(ts_env: WorkflowEnvironment, settings: Settings, store: SqliteStore) -> AsyncIterator[str]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    configured = Settings.model_validate(
        {**settings.model_dump(), "receiver": {"public_url": public, "link_signing_key": KEY}}
    )
    server = UvicornServer(Receiver(configured, ts_env.client, store.receipts, store).app(), port=port)
    await server.start()
    try:
        yield public
    finally:
        await server.stop()


async def callbacks(http: httpx.AsyncClient, url: str) -> dict[tuple[str, str], float]:
    response = await http.get(f"{url}/metrics")
    assert response.status_code == 200
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tidings_receiver_callbacks_total":
                counts[(sample.labels["kind"], sample.labels["verdict"])] = sample.value
    return counts


async def test_callbacks_by_kind_and_verdict(receiver: str) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as http:
        before = await callbacks(http, receiver)
        token = event_token(KEY.encode(), "notification-gone~user-1", "d-1")
        # an app event for a finished (here: unknown) notification, then the same again
        assert (
            await http.post(f"{receiver}/events", json={"token": token, "kind": "opened"})
        ).status_code == 204
        assert (
            await http.post(f"{receiver}/events", json={"token": token, "kind": "opened"})
        ).status_code == 204
        assert (
            await http.post(f"{receiver}/events", json={"token": "forged", "kind": "opened"})
        ).status_code == 403
        assert (await http.post(f"{receiver}/events", content=b"{not json")).status_code == 400
        assert (await http.post(f"{receiver}/events", content=b"x" * 70_000)).status_code == 413
        link = click_url(
            receiver, KEY.encode(), "notification-gone~user-1", "d-1", "https://shop.example.com/o/1"
        )
        assert (await http.get(link)).status_code == 302
        assert (await http.get(f"{receiver}/c/forged")).status_code == 404
        assert (
            await http.post(f"{receiver}/twilio/status", data={"MessageStatus": "sent"})
        ).status_code == 503
        after = await callbacks(http, receiver)

    def change(kind: str, verdict: str) -> float:
        return after.get((kind, verdict), 0) - before.get((kind, verdict), 0)

    assert change("event", "accepted") == 1
    assert change("event", "duplicate") == 1
    assert change("event", "forbidden") == 1
    assert change("event", "invalid") == 2
    assert change("click", "accepted") == 1
    assert change("click", "not_found") == 1
    assert change("twilio_status", "unconfigured") == 1
    assert sum(after.values()) - sum(before.values()) == 8
