"""The in-app inbox: stored once per delivery, listed unread first, read marks stop escalation."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR
from tidings.activities.inbox import InboxMessage
from tidings.activities.store.base import Store
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import DeliveryStatus, Phase
from tidings.sandbox.smtp import SmtpSink
from tidings.starters.client import TidingsClient
from tidings.starters.inbox import mark_read


def message(delivery_id: str, minutes_ago: int, recipient: str = "u1") -> InboxMessage:
    return InboxMessage(
        delivery_id=delivery_id, recipient_id=recipient, notification_id="n", workflow_id="notification-n",
        title=f"message {delivery_id}", created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )  # fmt: skip


async def test_listing_order_paging_and_counts(any_store: Store) -> None:
    inbox = any_store.inbox
    for i, age in enumerate([30, 20, 10, 5]):
        assert await inbox.add(message(f"d{i}", age))
    assert not await inbox.add(message("d0", 30))  # a retry stores nothing twice
    await inbox.add(message("other", 1, recipient="u2"))
    await inbox.mark_read("d3")
    await inbox.archive("d0")
    assert [m.delivery_id for m in await inbox.list("u1")] == ["d2", "d1", "d3"]  # unread first, newest first
    assert [m.delivery_id for m in await inbox.list("u1", page=2, page_size=2)] == ["d3"]
    listed = await inbox.list("u1", include_archived=True)
    assert [m.delivery_id for m in listed] == ["d2", "d1", "d0", "d3"]
    assert await inbox.unread_count("u1") == 2
    await inbox.mark_read("d3", read=False)
    assert await inbox.unread_count("u1") == 3
    with pytest.raises(LookupError, match="no inbox message"):
        await inbox.mark_read("missing")


async def test_in_app_delivery_and_read_stops_escalation(
    tidings: TidingsClient, store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    [handle] = await tidings.send(
        {
            "id": "inbox-1",
            "recipients": [{"id": "reader", "email": "reader@example.com"}],
            "channels": [{"channel": "in_app", "fallback": ["email"], "escalate_after": {"in_app": "PT10M"}}],
            "content": {"title": "New comment", "body": "on your post", "url": "https://example.com/p/1"},
        }
    )
    inbox = store.inbox
    for _ in range(200):
        state = await handle.status()
        if state.destinations and state.destinations[0].status is DeliveryStatus.sent:
            break
        await asyncio.sleep(0.05)
    [stored] = await inbox.list("reader")
    assert stored.title == "New comment" and stored.url == "https://example.com/p/1"
    assert stored.delivery_id == state.destinations[0].delivery_id
    read, told = await mark_read(tidings.client, inbox, stored.delivery_id)
    assert told and read.read_at is not None
    state = await handle.result()
    assert state.phase is Phase.delivered
    assert [d.channel for d in state.destinations] == ["in_app"]
    assert state.destinations[0].engagement[0].kind == "read"
    assert not smtp_sink.received
    # after the notification finished, the read state is still kept
    _, told = await mark_read(tidings.client, inbox, stored.delivery_id, read=False)
    assert not told and await inbox.unread_count("reader") == 1


async def test_inbox_cli(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite3")
    await store.inbox.add(message("d1", 1))
    await store.aclose()
    env = {**os.environ, "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "s.sqlite3")}

    def run(*args: str) -> object:
        done = subprocess.run(
            [str(BIN_DIR / "tidings"), "inbox", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert run("count", "u1") == {"recipient_id": "u1", "unread": 1}
    listed = run("list", "u1")
    assert isinstance(listed, list) and listed[0]["delivery_id"] == "d1"
    run("archive", "d1")
    assert run("list", "u1") == [] and run("count", "u1") == {"recipient_id": "u1", "unread": 0}
