"""The in-app inbox: messages kept for a recipient's app to list, plus the `inbox` provider.

The inbox lives in the subscriber store's SQLite file. A message is keyed by its delivery id, so
an activity retry stores it once. Listing puts unread messages first, newest first within each.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from tidings.activities.providers.base import ProviderReceipt
from tidings.activities.rendering import RenderedMessage
from tidings.activities.store.sqlite import SqliteTable
from tidings.models import DeliveryInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    delivery_id TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    category TEXT,
    title TEXT,
    body TEXT,
    url TEXT,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at TEXT,
    archived_at TEXT
);
CREATE INDEX IF NOT EXISTS inbox_by_recipient ON inbox (recipient_id, archived_at, read_at, created_at);
"""


class InboxMessage(BaseModel):
    delivery_id: str
    recipient_id: str
    notification_id: str
    workflow_id: str
    category: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    read_at: datetime | None = None
    archived_at: datetime | None = None


class InboxStore(SqliteTable):
    """Blocking SQLite calls, safe across threads; async callers use `asyncio.to_thread`."""

    SCHEMA = _SCHEMA

    def add(self, message: InboxMessage) -> bool:
        """Store a message; False when this delivery id is already there (a retry)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO inbox (delivery_id, recipient_id, notification_id, workflow_id,"
                " category, title, body, url, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.delivery_id, message.recipient_id, message.notification_id, message.workflow_id,
                    message.category, message.title, message.body, message.url, json.dumps(message.data),
                    message.created_at.isoformat(),
                ),
            )  # fmt: skip
        return cursor.rowcount > 0

    def list(
        self, recipient_id: str, *, page: int = 1, page_size: int = 20, include_archived: bool = False
    ) -> list[InboxMessage]:
        if page < 1 or not 1 <= page_size <= 200:
            raise ValueError("page starts at 1 and page_size is 1-200")
        archived = "" if include_archived else "AND archived_at IS NULL"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM inbox WHERE recipient_id = ? {archived} "
                "ORDER BY read_at IS NOT NULL, created_at DESC LIMIT ? OFFSET ?",
                (recipient_id, page_size, (page - 1) * page_size),
            ).fetchall()
            names = [c[0] for c in self._db.execute("SELECT * FROM inbox LIMIT 0").description]
        return [_message(dict(zip(names, row, strict=True))) for row in rows]

    def get(self, delivery_id: str) -> InboxMessage | None:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM inbox WHERE delivery_id = ?", (delivery_id,))
            row = cursor.fetchone()
            names = [c[0] for c in cursor.description]
        return _message(dict(zip(names, row, strict=True))) if row else None

    def mark_read(self, delivery_id: str, read: bool = True) -> InboxMessage:
        stamp = datetime.now(UTC).isoformat() if read else None
        return self._update(delivery_id, "read_at = ?", stamp)

    def archive(self, delivery_id: str) -> InboxMessage:
        return self._update(delivery_id, "archived_at = ?", datetime.now(UTC).isoformat())

    def unread_count(self, recipient_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM inbox"
                " WHERE recipient_id = ? AND read_at IS NULL AND archived_at IS NULL",
                (recipient_id,),
            ).fetchone()
        return int(row[0])

    def _update(self, delivery_id: str, assignment: str, value: str | None) -> InboxMessage:
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE inbox SET {assignment} WHERE delivery_id = ?", (value, delivery_id)
            )
        if cursor.rowcount == 0:
            raise LookupError(f"no inbox message with delivery id {delivery_id!r}")
        message = self.get(delivery_id)
        assert message is not None
        return message


def _message(row: dict[str, Any]) -> InboxMessage:
    row["data"] = json.loads(row["data"])
    return InboxMessage.model_validate(row)


class InboxProvider:
    """The `in_app` channel: delivery is storing the message in the recipient's inbox."""

    name = "inbox"

    def __init__(self, inbox: InboxStore) -> None:
        self._inbox = inbox

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        await asyncio.to_thread(
            self._inbox.add,
            InboxMessage(
                delivery_id=delivery.delivery_id,
                recipient_id=delivery.recipient.id,
                notification_id=delivery.notification_id,
                workflow_id=delivery.workflow_id,
                category=delivery.category,
                title=message.title,
                body=message.body,
                url=message.url,
                data=message.data,
                created_at=datetime.now(UTC),
            ),
        )
        return ProviderReceipt(delivery.delivery_id)

    async def aclose(self) -> None:
        return None
