"""SQLite subscriber store: one JSON document per subscriber, validated on the way in and out."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from tidings.activities.store.base import UnknownRecipientError
from tidings.models import Channel, Device, Preferences, Recipient
from tidings.redaction import redact_address

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class SqliteTable:
    """Base of stores kept beside the subscribers, in the same SQLite file, connection and lock."""

    SCHEMA = ""

    def __init__(self, connection: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = connection
        self._lock = lock
        with self._lock:
            self._db.executescript(self.SCHEMA)

    @classmethod
    def beside(cls, store: SqliteSubscriberStore) -> Self:
        return cls(store.connection, store.lock)


class SqliteSubscriberStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @property
    def connection(self) -> sqlite3.Connection:
        """The shared connection, for other tables kept in the same file (the inbox)."""
        return self._db

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def get(self, recipient_id: str) -> Recipient | None:
        with self._lock:
            row = self._db.execute(
                "SELECT document FROM subscribers WHERE id = ?", (recipient_id,)
            ).fetchone()
        return Recipient.model_validate_json(row[0]) if row else None

    def put(self, recipient: Recipient) -> None:
        with self._lock:
            self._write(recipient)

    def delete(self, recipient_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM subscribers WHERE id = ?", (recipient_id,))
        return cursor.rowcount > 0

    def set_preferences(self, recipient_id: str, preferences: Preferences) -> Recipient:
        return self._modify(recipient_id, lambda r: setattr(r, "preferences", preferences))

    def add_device(self, recipient_id: str, device: Device) -> Recipient:
        def add(recipient: Recipient) -> None:
            if device.registered_at is None:
                device.registered_at = datetime.now(UTC)
            recipient.devices = [d for d in recipient.devices if d.id != device.id] + [device]

        return self._modify(recipient_id, add)

    def remove_device(self, recipient_id: str, device_id: str) -> Recipient:
        def remove(recipient: Recipient) -> None:
            kept = [d for d in recipient.devices if d.id != device_id]
            if len(kept) == len(recipient.devices):
                raise LookupError(f"subscriber {recipient_id!r} has no device {device_id!r}")
            recipient.devices = kept

        return self._modify(recipient_id, remove)

    def deactivate_device(
        self, recipient_id: str, device_id: str, reason: str, provider_timestamp: datetime | None = None
    ) -> bool:
        """Mark a device inactive, unless it re-registered after the provider saw it invalid."""
        changed = False

        def deactivate(recipient: Recipient) -> None:
            nonlocal changed
            for device in recipient.devices:
                if device.id != device_id or not device.active:
                    continue
                if provider_timestamp and device.registered_at and device.registered_at > provider_timestamp:
                    return
                device.active = False
                device.deactivated_reason = reason
                changed = True

        try:
            self._modify(recipient_id, deactivate)
        except UnknownRecipientError:
            return False
        return changed

    def opt_out_channel(self, recipient_id: str, channel: Channel) -> bool:
        changed = False

        def opt_out(recipient: Recipient) -> None:
            nonlocal changed
            if channel not in recipient.preferences.opted_out_channels:
                recipient.preferences.opted_out_channels.add(channel)
                changed = True

        try:
            self._modify(recipient_id, opt_out)
        except UnknownRecipientError:
            return False
        return changed

    def disable_webhook(self, recipient_id: str, url: str, reason: str) -> bool:
        """Disable the recipient's webhook endpoint, if it is still `url` (it may have changed)."""
        changed = False

        def disable(recipient: Recipient) -> None:
            nonlocal changed
            current = recipient.webhook_url
            if current and url in (current, redact_address(current)) and recipient.webhook_disabled is None:
                recipient.webhook_disabled = reason
                changed = True

        try:
            self._modify(recipient_id, disable)
        except UnknownRecipientError:
            return False
        return changed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _modify(self, recipient_id: str, change: Callable[[Recipient], None]) -> Recipient:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT document FROM subscribers WHERE id = ?", (recipient_id,)
                ).fetchone()
                if row is None:
                    raise UnknownRecipientError(recipient_id)
                recipient = Recipient.model_validate_json(row[0])
                change(recipient)
                recipient = Recipient.model_validate(recipient.model_dump())
                self._write(recipient)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return recipient

    def _write(self, recipient: Recipient) -> None:
        self._db.execute(
            "INSERT INTO subscribers (id, document, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            (recipient.id, recipient.model_dump_json(), datetime.now(UTC).isoformat()),
        )
