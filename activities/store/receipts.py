"""What the receiver remembers: callbacks already handled, and receipts that came too late.

A provider may post the same callback twice (retries, replays): the first sighting of a callback
key is recorded and later ones are ignored. A receipt for a notification whose workflow has
finished cannot be signalled; it is kept here and shown by `tidings status`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tidings.activities.store.sqlite import SqliteTable
from tidings.models import DeliveryReceipt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_callbacks (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS late_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS late_receipts_by_workflow ON late_receipts (workflow_id);
"""


class ReceiptLog(SqliteTable):
    SCHEMA = _SCHEMA

    def first_sighting(self, key: str) -> bool:
        """True the first time a callback key is seen; False for a duplicate or replay."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen_callbacks (key, seen_at) VALUES (?, ?)",
                (key, datetime.now(UTC).isoformat()),
            )
        return cursor.rowcount > 0

    def forget(self, key: str) -> None:
        """Undo a sighting whose handling failed, so the sender's retry is not taken for a replay."""
        with self._lock:
            self._db.execute("DELETE FROM seen_callbacks WHERE key = ?", (key,))

    def keep_late(self, workflow_id: str, receipt: DeliveryReceipt) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO late_receipts (workflow_id, receipt, stored_at) VALUES (?, ?, ?)",
                (workflow_id, receipt.model_dump_json(), datetime.now(UTC).isoformat()),
            )

    def late_receipts(self, workflow_id: str) -> list[DeliveryReceipt]:
        with self._lock:
            rows = self._db.execute(
                "SELECT receipt FROM late_receipts WHERE workflow_id = ? ORDER BY id", (workflow_id,)
            ).fetchall()
        return [DeliveryReceipt.model_validate_json(r[0]) for r in rows]
