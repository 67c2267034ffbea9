"""SQLite store: the embedded default (`tidings dev`, small installs), one file on one machine.

The blocking sqlite3 calls run on the store's own thread (one per store, so the connection is
only ever used from it) and never on the event loop. Writes take SQLite's write lock first
(`BEGIN IMMEDIATE`), so changes to one subscriber are serialised across threads and across
processes sharing the file (the CLI, the worker, the receiver), and none is lost.

The schema is versioned in `PRAGMA user_version`. Version 1 is the layout of earlier releases
(one JSON document per subscriber); version 2 moves subscribers into `subscribers`, `devices` and
`preferences` tables and receipts into columns, in place, keeping every row.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from tidings.activities.store import common
from tidings.activities.store.base import (
    ApiKeyRecord,
    ApiKeyRecords,
    InboxCounts,
    InboxMessage,
    InboxMessages,
    InboxQuery,
    InboxStateChange,
    LateReceipt,
    StoreSchemaError,
    check_page,
)
from tidings.activities.store.broadcast_tables import MIGRATION_3, BroadcastTables
from tidings.activities.store.sqlite_counters import SqliteCounters
from tidings.models import DeliveryReceipt, Recipient

T = TypeVar("T")

_V1 = """
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
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
CREATE TABLE IF NOT EXISTS seen_callbacks (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS late_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS late_receipts_by_workflow ON late_receipts (workflow_id)
"""

_V2_TABLES = """
ALTER TABLE subscribers RENAME TO subscribers_v1;
CREATE TABLE subscribers (
    id TEXT PRIMARY KEY,
    name TEXT,
    email TEXT,
    phone TEXT,
    webhook_url TEXT,
    webhook_disabled TEXT,
    slack_webhook_url TEXT,
    slack_channel TEXT,
    timezone TEXT NOT NULL,
    locale TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE preferences (
    subscriber_id TEXT PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
    opted_out_channels TEXT NOT NULL DEFAULT '[]',
    opted_out_categories TEXT NOT NULL DEFAULT '[]',
    opted_out_category_channels TEXT NOT NULL DEFAULT '{}',
    quiet_hours_start TEXT,
    quiet_hours_end TEXT
);
CREATE TABLE devices (
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    platform TEXT NOT NULL,
    token TEXT,
    subscription TEXT,
    app TEXT,
    active INTEGER NOT NULL,
    registered_at TEXT,
    deactivated_reason TEXT,
    PRIMARY KEY (subscriber_id, device_id)
);
CREATE INDEX devices_by_token ON devices (token);
ALTER TABLE late_receipts RENAME TO late_receipts_v1;
DROP INDEX IF EXISTS late_receipts_by_workflow;
CREATE TABLE late_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    delivery_id TEXT,
    provider_message_id TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    at TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
INSERT INTO late_receipts
    (id, workflow_id, delivery_id, provider_message_id, status, error_code, at, stored_at)
    SELECT id, workflow_id, json_extract(receipt, '$.delivery_id'),
           json_extract(receipt, '$.provider_message_id'), json_extract(receipt, '$.status'),
           json_extract(receipt, '$.error_code'), json_extract(receipt, '$.at'), stored_at
    FROM late_receipts_v1;
DROP TABLE late_receipts_v1;
CREATE INDEX late_receipts_by_workflow ON late_receipts (workflow_id);
CREATE INDEX late_receipts_by_delivery ON late_receipts (delivery_id);
CREATE INDEX late_receipts_by_provider_message ON late_receipts (provider_message_id)
"""


_V4_API = """
ALTER TABLE inbox ADD COLUMN seen_at TEXT;
CREATE INDEX inbox_keyset ON inbox (recipient_id, created_at DESC, delivery_id DESC);
CREATE INDEX inbox_unread ON inbox (recipient_id, created_at DESC, delivery_id DESC)
    WHERE read_at IS NULL AND archived_at IS NULL;
CREATE INDEX inbox_unseen ON inbox (recipient_id) WHERE seen_at IS NULL AND archived_at IS NULL;
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE inbox_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, recipient_id TEXT NOT NULL)
"""
# Every write to the inbox, by any connection or process, leaves the recipient id in
# `inbox_changes` (the last 10,000 are kept): API processes poll it for live updates.
_V4_TRIGGERS = [
    f"""CREATE TRIGGER inbox_{event.lower()} AFTER {event} ON inbox BEGIN
        INSERT INTO inbox_changes (recipient_id) VALUES (NEW.recipient_id);
        DELETE FROM inbox_changes WHERE seq <= (SELECT MAX(seq) FROM inbox_changes) - 10000;
    END"""
    for event in ("INSERT", "UPDATE")
]
# Version 5: send reservations (throttles and frequency caps, see activities/store/counters.py)
# and recipients' frequency caps. Versions 3 and 4 belong to other features; this one applies on
# top of 2 whether or not they exist (the migrator takes the next version it knows).
_V5 = """
CREATE TABLE send_reservations (
    notification_id TEXT NOT NULL,
    counter TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    reserved_at INTEGER NOT NULL,
    PRIMARY KEY (notification_id, counter)
);
CREATE INDEX send_reservations_by_counter ON send_reservations (recipient_id, counter, reserved_at);
ALTER TABLE preferences ADD COLUMN frequency_caps TEXT NOT NULL DEFAULT '{}'
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _value(v) for k, v in row.items()}


_RECIPIENT_JSON = """
SELECT json_object(
    'id', s.id, 'name', s.name, 'email', s.email, 'phone', s.phone, 'webhook_url', s.webhook_url,
    'webhook_disabled', s.webhook_disabled, 'slack_webhook_url', s.slack_webhook_url,
    'slack_channel', s.slack_channel, 'timezone', s.timezone, 'locale', s.locale,
    'devices', (
        SELECT json_group_array(json_object(
            'id', d.device_id, 'platform', d.platform, 'token', d.token,
            'subscription', json(d.subscription), 'app', d.app,
            'active', json(CASE WHEN d.active THEN 'true' ELSE 'false' END),
            'registered_at', d.registered_at, 'deactivated_reason', d.deactivated_reason))
        FROM (SELECT * FROM devices WHERE subscriber_id = s.id ORDER BY position) AS d),
    'preferences', json_object(
        'opted_out_channels', json(COALESCE(p.opted_out_channels, '[]')),
        'opted_out_categories', json(COALESCE(p.opted_out_categories, '[]')),
        'opted_out_category_channels', json(COALESCE(p.opted_out_category_channels, '{}')),
        'quiet_hours', json(CASE WHEN p.quiet_hours_start IS NULL THEN NULL
            ELSE json_object('start', p.quiet_hours_start, 'end', p.quiet_hours_end) END),
        'frequency_caps', json(COALESCE(p.frequency_caps, '{}'))))
FROM subscribers AS s LEFT JOIN preferences AS p ON p.subscriber_id = s.id
"""

_UPSERT_SUBSCRIBER, _UPSERT_PREFERENCES, _INSERT_DEVICE = common.write_statements(lambda column: f":{column}")
# Version 2 moves recipients into their tables: with its own columns (frequency_caps came in 5).
_V2_UPSERT_PREFERENCES = common.write_statements(
    lambda column: f":{column}", tuple(c for c in common.PREFERENCE_COLUMNS if c != "frequency_caps")
)[1]

LATEST_VERSION = 5


class _Database:
    """One sqlite3 connection, used only from the store's own thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA busy_timeout=30000")
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a write transaction: SQLite's write lock is taken before anything is read."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.db)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return result


def _version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0:
        legacy = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'")
        if legacy.fetchone() is not None:
            return 1  # created by a release before versioned migrations
    return version


def _migrate_v1(db: sqlite3.Connection) -> None:
    for statement in _statements(_V1):
        db.execute(statement)


def _migrate_v2(db: sqlite3.Connection) -> None:
    for statement in _statements(_V2_TABLES):
        db.execute(statement)
    for (document,) in db.execute("SELECT document FROM subscribers_v1 ORDER BY id").fetchall():
        _write_recipient(db, Recipient.model_validate_json(document), _V2_UPSERT_PREFERENCES)
    db.execute("DROP TABLE subscribers_v1")


def _migrate_v3(db: sqlite3.Connection) -> None:
    for statement in _statements(MIGRATION_3.format(ts="TEXT", c="")):
        db.execute(statement)


def _migrate_v5(db: sqlite3.Connection) -> None:
    for statement in _statements(_V5):
        db.execute(statement)


def _migrate_v4(db: sqlite3.Connection) -> None:
    """The HTTP API: inbox seen state and keyset index, API keys."""
    for statement in [*_statements(_V4_API), *_V4_TRIGGERS]:
        db.execute(statement)


# Each step goes to the next version listed here (a build may skip a version number).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_v1,
    2: _migrate_v2,
    3: _migrate_v3,
    4: _migrate_v4,
    5: _migrate_v5,
}


def migrate_database(db: sqlite3.Connection, target: int = LATEST_VERSION) -> list[int]:
    """Apply the pending migrations up to `target`, each in its own write transaction."""
    applied: list[int] = []
    while True:
        db.execute("BEGIN IMMEDIATE")  # another process may be migrating: wait for it, then look
        try:
            version = _version(db)
            if version > LATEST_VERSION:
                raise StoreSchemaError(
                    f"the SQLite store is at schema version {version}, newer than this Tidings "
                    f"({LATEST_VERSION}); upgrade Tidings"
                )
            if version >= target:
                db.execute("COMMIT")
                return applied
            step = min(v for v in MIGRATIONS if v > version)
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {step}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(step)


def _load(db: sqlite3.Connection, recipient_id: str) -> Recipient | None:
    row = db.execute(_RECIPIENT_JSON + " WHERE s.id = ?", (recipient_id,)).fetchone()
    return Recipient.model_validate_json(row[0]) if row else None


def _write_recipient(
    db: sqlite3.Connection, recipient: Recipient, upsert_preferences: str = _UPSERT_PREFERENCES
) -> None:
    db.execute(_UPSERT_SUBSCRIBER, _params(common.subscriber_row(recipient)))
    db.execute(upsert_preferences, _params(common.preference_row(recipient)))
    db.execute("DELETE FROM devices WHERE subscriber_id = ?", (recipient.id,))
    db.executemany(_INSERT_DEVICE, [_params(row) for row in common.device_rows(recipient)])


class SqliteStore(common.SubscriberChanges):
    backend = "sqlite"

    def __init__(self, path: Path | str, *, migrate: bool = True, check: bool = True) -> None:
        """Blocking: async code uses `await SqliteStore.open(path)`."""
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-sqlite")
        self._database = self._executor.submit(_Database, path).result()
        try:
            if migrate:
                self._executor.submit(migrate_database, self._database.db).result()
            elif check:
                version = self._executor.submit(_version, self._database.db).result()
                if version != LATEST_VERSION:
                    raise StoreSchemaError(
                        f"the SQLite store at {self.path} is at schema version {version}, this Tidings "
                        f"needs {LATEST_VERSION}: run `tidings store migrate`"
                    )
        except BaseException:
            self._executor.submit(self._database.db.close).result()
            self._executor.shutdown(wait=False)
            raise
        self.inbox = SqliteInbox(self)
        self.receipts = SqliteReceiptLog(self)
        self.api_keys = SqliteApiKeys(self)
        self.counters = SqliteCounters(self)
        self.broadcasts = SqliteBroadcasts(self)

    @classmethod
    async def open(cls, path: Path | str, *, migrate: bool = True, check: bool = True) -> SqliteStore:
        return await asyncio.to_thread(cls, path, migrate=migrate, check=check)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run blocking `work` on the store's thread."""
        db = self._database.db
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, db)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._database.write, work)

    # -- subscribers

    async def get(self, recipient_id: str) -> Recipient | None:
        return await self.run(lambda db: _load(db, recipient_id))

    async def put(self, recipient: Recipient) -> None:
        await self.write(lambda db: _write_recipient(db, recipient))

    async def delete(self, recipient_id: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM subscribers WHERE id = ?", (recipient_id,)).rowcount > 0

        return await self.write(delete)

    async def export(self, batch_size: int = 500) -> AsyncIterator[list[Recipient]]:
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[Any]:
                query = _RECIPIENT_JSON + " WHERE s.id > ? ORDER BY s.id LIMIT ?"
                return db.execute(query, (after, batch_size)).fetchall()

            rows = await self.run(page)
            if not rows:
                return
            batch = [Recipient.model_validate_json(r[0]) for r in rows]
            yield batch
            after = batch[-1].id

    async def schema_version(self) -> int:
        return await self.run(_version)

    async def migrate(self) -> list[int]:
        return await self.run(migrate_database)

    async def aclose(self) -> None:
        await self.run(lambda db: db.close())
        self._executor.shutdown(wait=False)

    async def _modify(self, recipient_id: str, change: common.Change) -> tuple[Recipient, bool]:
        def modify(db: sqlite3.Connection) -> tuple[Recipient, bool]:
            recipient, changed = common.apply(recipient_id, _load(db, recipient_id), change)
            if changed:
                _write_recipient(db, recipient)
            return recipient, changed

        return await self.write(modify)


def _message(row: sqlite3.Row | tuple[Any, ...], names: list[str]) -> InboxMessage:
    values = dict(zip(names, row, strict=True))
    values["data"] = json.loads(values["data"])
    return InboxMessage.model_validate(values)


_INBOX_COLUMNS = [
    "delivery_id",
    "recipient_id",
    "notification_id",
    "workflow_id",
    "category",
    "title",
    "body",
    "url",
    "data",
    "created_at",
    "read_at",
    "archived_at",
    "seen_at",
]
_INBOX_SELECT = f"SELECT {', '.join(_INBOX_COLUMNS)} FROM inbox"
_INBOX_INSERT = (
    f"INSERT OR IGNORE INTO inbox ({', '.join(_INBOX_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _INBOX_COLUMNS)})"
)


CHANGES_POLL_SECONDS = 0.2


class SqliteInbox:
    """The inbox on SQLite. Live updates (`changes`) poll `inbox_changes`, which triggers fill on
    every write from any connection: the worker, the CLI and the API may be separate processes
    (on the one machine that shares the file)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def add(self, message: InboxMessage) -> bool:
        params = _params(message.model_dump())
        return await self._store.write(lambda db: db.execute(_INBOX_INSERT, params).rowcount > 0)

    async def changes(self) -> AsyncIterator[str]:
        def latest(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM inbox_changes").fetchone()[0])

        after = await self._store.run(latest)
        yield ""  # listening
        while True:
            await asyncio.sleep(CHANGES_POLL_SECONDS)

            def since(db: sqlite3.Connection, after: int = after) -> list[tuple[int, str]]:
                query = "SELECT seq, recipient_id FROM inbox_changes WHERE seq > ? ORDER BY seq"
                return [(r[0], r[1]) for r in db.execute(query, (after,)).fetchall()]

            rows = await self._store.run(since)
            if rows:
                after = rows[-1][0]
                for recipient_id in dict.fromkeys(r[1] for r in rows):
                    yield recipient_id

    async def query(self, query: InboxQuery) -> list[InboxMessage]:
        segments = common.inbox_segments(query, "?")

        def page(db: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            for where, params in segments:
                sql = f"{_INBOX_SELECT} WHERE {where} ORDER BY {common.INBOX_ORDER} LIMIT ?"
                rows += db.execute(sql, [*map(_value, params), query.limit - len(rows)]).fetchall()
                if len(rows) >= query.limit:
                    break
            return rows

        return [_message(r, _INBOX_COLUMNS) for r in await self._store.run(page)]

    async def counts(self, recipient_id: str) -> InboxCounts:
        row = await self._store.run(
            lambda db: db.execute(common.INBOX_COUNTS.replace("%s", "?"), (recipient_id,) * 3).fetchone()
        )
        return InboxCounts(unread=row[0] or 0, unseen=row[1] or 0, total=row[2] or 0)

    async def change(
        self, recipient_id: str, delivery_id: str, change: InboxStateChange
    ) -> InboxMessage | None:
        assignments, params = common.inbox_assignments(change, datetime.now(UTC), "?")

        def update(db: sqlite3.Connection) -> InboxMessage | None:
            key = (delivery_id, recipient_id)
            if assignments:
                db.execute(
                    f"UPDATE inbox SET {assignments} WHERE delivery_id = ? AND recipient_id = ?",
                    [*map(_value, params), *key],
                )
            row = db.execute(f"{_INBOX_SELECT} WHERE delivery_id = ? AND recipient_id = ?", key).fetchone()
            return _message(row, _INBOX_COLUMNS) if row else None

        return await self._store.write(update)

    async def read_all(self, recipient_id: str) -> list[InboxMessage]:
        now = _value(datetime.now(UTC))

        def update(db: sqlite3.Connection) -> list[InboxMessage]:
            unread = "recipient_id = ? AND read_at IS NULL AND archived_at IS NULL"
            rows = db.execute(f"{_INBOX_SELECT} WHERE {unread}", (recipient_id,)).fetchall()
            db.execute(
                f"UPDATE inbox SET read_at = ?, seen_at = COALESCE(seen_at, ?) WHERE {unread}",
                (now, now, recipient_id),
            )
            return [_message(r, _INBOX_COLUMNS) for r in rows]

        return await self._store.write(update)

    async def list(
        self, recipient_id: str, *, page: int = 1, page_size: int = 20, include_archived: bool = False
    ) -> list[InboxMessage]:
        check_page(page, page_size)
        archived = "" if include_archived else "AND archived_at IS NULL"
        rows = await self._store.run(
            lambda db: db.execute(
                f"{_INBOX_SELECT} WHERE recipient_id = ? {archived} "
                "ORDER BY read_at IS NOT NULL, created_at DESC LIMIT ? OFFSET ?",
                (recipient_id, page_size, (page - 1) * page_size),
            ).fetchall()
        )
        return [_message(r, _INBOX_COLUMNS) for r in rows]

    async def get(self, delivery_id: str) -> InboxMessage | None:
        row = await self._store.run(
            lambda db: db.execute(f"{_INBOX_SELECT} WHERE delivery_id = ?", (delivery_id,)).fetchone()
        )
        return _message(row, _INBOX_COLUMNS) if row else None

    async def mark_read(self, delivery_id: str, read: bool = True) -> InboxMessage:
        return await self._update(delivery_id, "read_at", datetime.now(UTC) if read else None)

    async def archive(self, delivery_id: str) -> InboxMessage:
        return await self._update(delivery_id, "archived_at", datetime.now(UTC))

    async def unread_count(self, recipient_id: str) -> int:
        row = await self._store.run(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM inbox"
                " WHERE recipient_id = ? AND read_at IS NULL AND archived_at IS NULL",
                (recipient_id,),
            ).fetchone()
        )
        return int(row[0])

    async def export(self, batch_size: int = 500) -> AsyncIterator[InboxMessages]:
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[Any]:
                query = f"{_INBOX_SELECT} WHERE delivery_id > ? ORDER BY delivery_id LIMIT ?"
                return db.execute(query, (after, batch_size)).fetchall()

            rows = await self._store.run(page)
            if not rows:
                return
            batch = [_message(r, _INBOX_COLUMNS) for r in rows]
            yield batch
            after = batch[-1].delivery_id

    async def import_messages(self, messages: InboxMessages) -> None:
        rows = [_params(m.model_dump()) for m in messages]
        await self._store.write(lambda db: db.executemany(_INBOX_INSERT, rows))

    async def _update(self, delivery_id: str, column: str, value: datetime | None) -> InboxMessage:
        def update(db: sqlite3.Connection) -> InboxMessage:
            db.execute(f"UPDATE inbox SET {column} = ? WHERE delivery_id = ?", (_value(value), delivery_id))
            row = db.execute(f"{_INBOX_SELECT} WHERE delivery_id = ?", (delivery_id,)).fetchone()
            if row is None:
                raise LookupError(f"no inbox message with delivery id {delivery_id!r}")
            return _message(row, _INBOX_COLUMNS)

        return await self._store.write(update)


_API_KEY_COLUMNS = "id, name, secret_sha256, scopes, created_at, revoked_at, last_used_at"
_API_KEY_INSERT = (
    f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES "
    "(:id, :name, :secret_sha256, :scopes, :created_at, :revoked_at, :last_used_at)"
)


def _api_key(row: tuple[Any, ...]) -> ApiKeyRecord:
    key_id, name, digest, scopes, created_at, revoked_at, last_used_at = row
    return ApiKeyRecord(
        id=key_id, name=name, secret_sha256=digest, scopes=json.loads(scopes), created_at=created_at,
        revoked_at=revoked_at, last_used_at=last_used_at,
    )  # fmt: skip


class SqliteApiKeys:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def create(self, key: ApiKeyRecord) -> None:
        row = _params(key.model_dump())
        await self._store.write(lambda db: db.execute(_API_KEY_INSERT, row))

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        )
        return _api_key(tuple(row)) if row else None

    async def list(self) -> list[ApiKeyRecord]:
        rows = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        )
        return [_api_key(tuple(r)) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        now = _value(datetime.now(UTC))
        return await self._store.write(
            lambda db: (
                db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id)
                ).rowcount
                > 0
            )
        )

    async def touch(self, key_id: str, at: datetime) -> None:
        stamp = _value(at)
        await self._store.write(
            lambda db: db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (stamp, key_id))
        )

    async def export(self, batch_size: int = 500) -> AsyncIterator[ApiKeyRecords]:
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[Any]:
                query = f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id > ? ORDER BY id LIMIT ?"
                return db.execute(query, (after, batch_size)).fetchall()

            rows = await self._store.run(page)
            if not rows:
                return
            batch = [_api_key(tuple(r)) for r in rows]
            yield batch
            after = batch[-1].id

    async def import_keys(self, keys: ApiKeyRecords) -> None:
        rows = [_params(k.model_dump()) for k in keys]
        insert = _API_KEY_INSERT + " ON CONFLICT (id) DO NOTHING"
        await self._store.write(lambda db: db.executemany(insert, rows))


_RECEIPT_COLUMNS = "workflow_id, delivery_id, provider_message_id, status, error_code, at, stored_at"


def _late(row: tuple[Any, ...]) -> LateReceipt:
    workflow_id, delivery_id, provider_message_id, status, error_code, at, stored_at = row
    receipt = DeliveryReceipt(
        delivery_id=delivery_id,
        provider_message_id=provider_message_id,
        status=status,
        error_code=error_code,
        at=datetime.fromisoformat(at),
    )
    return LateReceipt(workflow_id=workflow_id, receipt=receipt, stored_at=datetime.fromisoformat(stored_at))


def _late_params(late: LateReceipt) -> tuple[Any, ...]:
    r = late.receipt
    return (
        late.workflow_id,
        r.delivery_id,
        r.provider_message_id,
        r.status.value,
        r.error_code,
        _value(r.at),
        _value(late.stored_at),
    )


class SqliteReceiptLog(common.ReceiptLookups):
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def first_sighting(self, key: str) -> bool:
        stamp = _value(datetime.now(UTC))
        return await self._store.write(
            lambda db: (
                db.execute(
                    "INSERT OR IGNORE INTO seen_callbacks (key, seen_at) VALUES (?, ?)", (key, stamp)
                ).rowcount
                > 0
            )
        )

    async def forget(self, key: str) -> None:
        await self._store.write(lambda db: db.execute("DELETE FROM seen_callbacks WHERE key = ?", (key,)))

    async def keep_late(self, workflow_id: str, receipt: DeliveryReceipt) -> None:
        params = _late_params(
            LateReceipt(workflow_id=workflow_id, receipt=receipt, stored_at=datetime.now(UTC))
        )
        await self._store.write(
            lambda db: db.execute(
                f"INSERT INTO late_receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", params
            )
        )

    async def export(self, batch_size: int = 500) -> AsyncIterator[tuple[list[str], list[LateReceipt]]]:
        after_key = ""
        while True:

            def keys(db: sqlite3.Connection, after: str = after_key) -> list[str]:
                query = "SELECT key FROM seen_callbacks WHERE key > ? ORDER BY key LIMIT ?"
                return [r[0] for r in db.execute(query, (after, batch_size)).fetchall()]

            seen = await self._store.run(keys)
            if not seen:
                break
            yield seen, []
            after_key = seen[-1]
        after_id = 0
        while True:

            def receipts(db: sqlite3.Connection, after: int = after_id) -> list[tuple[Any, ...]]:
                query = f"SELECT id, {_RECEIPT_COLUMNS} FROM late_receipts WHERE id > ? ORDER BY id LIMIT ?"
                return [tuple(r) for r in db.execute(query, (after, batch_size)).fetchall()]

            rows = await self._store.run(receipts)
            if not rows:
                return
            yield [], [_late(r[1:]) for r in rows]
            after_id = rows[-1][0]

    async def import_batch(self, seen: list[str], late: list[LateReceipt]) -> None:
        stamp = _value(datetime.now(UTC))

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR IGNORE INTO seen_callbacks (key, seen_at) VALUES (?, ?)",
                [(k, stamp) for k in seen],
            )
            db.executemany(
                f"INSERT INTO late_receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_late_params(r) for r in late],
            )

        await self._store.write(insert)

    async def _select(self, column: str, value: str) -> list[LateReceipt]:
        rows = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_RECEIPT_COLUMNS} FROM late_receipts WHERE {column} = ? ORDER BY id", (value,)
            ).fetchall()
        )
        return [_late(tuple(r)) for r in rows]


class SqliteBroadcasts(BroadcastTables):
    recipient_query = _RECIPIENT_JSON

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        values = [_value(p) for p in params]
        return await self._store.run(lambda db: [tuple(r) for r in db.execute(sql, values).fetchall()])

    async def _write(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        values = [[_value(v) for v in row] for row in rows]
        return await self._store.write(lambda db: db.executemany(sql, values).rowcount)


# Earlier name of the SQLite store.
SqliteSubscriberStore = SqliteStore
