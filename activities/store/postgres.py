"""PostgreSQL store: several workers and a receiver on different machines share one database.

The driver is psycopg 3 with psycopg_pool's `AsyncConnectionPool`: natively async (nothing blocks
the event loop), typed (mypy strict checks our calls), a maintained pool that reconnects in the
background after the server restarts, and server-side prepared statements after a few uses.

- A recipient load is one statement, so one round trip: the database builds the recipient's JSON
  (subscriber row, preferences row and `json_agg` of its devices) and pydantic validates it.
- Connections are in autocommit, so a single statement sends no BEGIN/COMMIT. A change to a
  subscriber is a transaction that first locks the subscriber's row (`SELECT ... FOR UPDATE`),
  then loads it with a new statement (so it sees every change committed before the lock was
  granted), applies the change and writes the rows back: concurrent changes to one subscriber
  from any number of machines are serialised and none is lost.
- Connection failures raise `StoreUnavailableError` (the activity retries). A connection that
  broke while idle (the server restarted) is retried once at once, after dropping the other dead
  idle connections, so a restart costs at most one failed attempt per pool.
- The DSN holds a password: it is never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tidings.activities.store import common
from tidings.activities.store.base import (
    INBOX_CHANNEL,
    ApiKeyRecord,
    ApiKeyRecords,
    InboxCounts,
    InboxMessage,
    InboxMessages,
    InboxQuery,
    InboxStateChange,
    LateReceipt,
    StoreSchemaError,
    StoreUnavailableError,
    check_page,
)
from tidings.activities.store.broadcast_tables import BroadcastTables
from tidings.activities.store.postgres_counters import PostgresCounters
from tidings.activities.store.postgres_migrations import LATEST_VERSION, LOCK_KEY, MIGRATIONS
from tidings.models import DeliveryReceipt, Recipient

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[Any]

_RECIPIENT_JSON = """
SELECT json_build_object(
    'id', s.id, 'name', s.name, 'email', s.email, 'phone', s.phone, 'webhook_url', s.webhook_url,
    'webhook_disabled', s.webhook_disabled, 'slack_webhook_url', s.slack_webhook_url,
    'slack_channel', s.slack_channel, 'timezone', s.timezone, 'locale', s.locale,
    'devices', COALESCE((
        SELECT json_agg(json_build_object(
            'id', d.device_id, 'platform', d.platform, 'token', d.token, 'subscription', d.subscription,
            'app', d.app, 'active', d.active, 'registered_at', d.registered_at,
            'deactivated_reason', d.deactivated_reason) ORDER BY d.position)
        FROM devices AS d WHERE d.subscriber_id = s.id), '[]'::json),
    'preferences', json_build_object(
        'opted_out_channels', COALESCE(p.opted_out_channels, '[]'::jsonb),
        'opted_out_categories', COALESCE(p.opted_out_categories, '[]'::jsonb),
        'opted_out_category_channels', COALESCE(p.opted_out_category_channels, '{}'::jsonb),
        'quiet_hours', CASE WHEN p.quiet_hours_start IS NULL THEN NULL
            ELSE json_build_object('start', p.quiet_hours_start, 'end', p.quiet_hours_end) END,
        'frequency_caps', COALESCE(p.frequency_caps, '{}'::jsonb))
)::text
FROM subscribers AS s LEFT JOIN preferences AS p ON p.subscriber_id = s.id
"""

_UPSERT_SUBSCRIBER, _UPSERT_PREFERENCES, _INSERT_DEVICE = common.write_statements(
    lambda column: f"%({column})s"
)
_JSON_COLUMNS = {
    "opted_out_channels",
    "opted_out_categories",
    "opted_out_category_channels",
    "subscription",
    "data",
    "scopes",
    "frequency_caps",
}


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in _JSON_COLUMNS and v is not None else v for k, v in row.items()}


def describe_dsn(dsn: str) -> str:
    """`host:port/dbname` of a DSN, for messages: never the password or the whole string."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(
            "store.dsn is not a valid PostgreSQL connection string "
            "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME or key=value pairs)"
        ) from None
    host = str(parts.get("host") or "localhost")
    if host.startswith("/"):
        host = "unix socket"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or '?'}"


class PostgresStore(common.SubscriberChanges):
    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        name: str = "tidings-store",
    ) -> None:
        """Not connected yet: use `await PostgresStore.open(...)`."""
        self.where = describe_dsn(dsn)
        self._dsn = dsn
        self._secrets = [s for s in (dsn, str(conninfo_to_dict(dsn).get("password") or "")) if s]
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            name=name,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
        )
        self.inbox = PostgresInbox(self)
        self.receipts = PostgresReceiptLog(self)
        self.api_keys = PostgresApiKeys(self)
        self.counters = PostgresCounters(self)
        self.broadcasts = PostgresBroadcasts(self)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        migrate: bool = True,
        check: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
    ) -> PostgresStore:
        timeout = connect_timeout
        store = cls(dsn, min_size=min_size, max_size=max_size, timeout=timeout)
        try:
            await store._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            await store._pool.close()
            raise StoreUnavailableError(
                f"cannot connect to the PostgreSQL store at {store.where} within {timeout:g}s "
                "(is it running, and are store.dsn's user and password right?)"
            ) from None
        try:
            if migrate:
                await store.migrate()
            elif check:
                version = await store.schema_version()
                if version != LATEST_VERSION:
                    raise StoreSchemaError(
                        f"the PostgreSQL store at {store.where} is at schema version {version}, this "
                        f"Tidings needs {LATEST_VERSION}: run `tidings store migrate`"
                    )
        except BaseException:
            await store.aclose()
            raise
        return store

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        detail = self._redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return StoreUnavailableError(f"the PostgreSQL store at {self.where} is unavailable: {detail}")

    async def run(self, work: Callable[[Connection], Awaitable[T]], *, retry: bool = True) -> T:
        """Run `work` on a pooled connection, turning connection failures into StoreUnavailableError.

        With `retry`, a failure on a connection that broke while idle is retried once at once (only
        for work that is safe to repeat).
        """
        for attempt in range(2):
            try:
                async with self._pool.connection() as conn:
                    return await work(conn)
            except PoolTimeout:
                raise StoreUnavailableError(
                    f"the PostgreSQL store at {self.where} is unavailable: "
                    f"no connection within {self._timeout:g}s"
                ) from None
            except psycopg.OperationalError as exc:
                if attempt == 0 and retry and not self._pool.closed:
                    log.info("PostgreSQL store connection failed, retrying once: %s", self._unavailable(exc))
                    await self._pool.check()  # drop the other connections the restart broke
                    continue
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    # -- subscribers

    async def get(self, recipient_id: str) -> Recipient | None:
        async def load(conn: Connection) -> Recipient | None:
            return await _load(conn, recipient_id)

        return await self.run(load)

    async def put(self, recipient: Recipient) -> None:
        async def put(conn: Connection) -> None:
            async with conn.transaction():
                await _write_recipient(conn, recipient)

        await self.run(put)

    async def delete(self, recipient_id: str) -> bool:
        async def delete(conn: Connection) -> bool:
            cur = await conn.execute("DELETE FROM subscribers WHERE id = %s", (recipient_id,))
            return cur.rowcount > 0

        return await self.run(delete)

    async def export(self, batch_size: int = 500) -> AsyncIterator[list[Recipient]]:
        after = ""
        while True:

            async def page(conn: Connection, after: str = after) -> list[Recipient]:
                cur = await conn.execute(
                    _RECIPIENT_JSON + " WHERE s.id > %s ORDER BY s.id LIMIT %s", (after, batch_size)
                )
                return [Recipient.model_validate_json(r[0]) for r in await cur.fetchall()]

            batch = await self.run(page)
            if not batch:
                return
            yield batch
            after = batch[-1].id

    async def schema_version(self) -> int:
        async def version(conn: Connection) -> int:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            row = await cur.fetchone()
            if not row or not row[0]:
                return 0
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self.run(version)

    async def migrate(self, target: int = LATEST_VERSION) -> list[int]:
        async def migrate(conn: Connection) -> list[int]:
            applied: list[int] = []
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
                if current > LATEST_VERSION:
                    raise StoreSchemaError(
                        f"the PostgreSQL store at {self.where} is at schema version {current}, newer "
                        f"than this Tidings ({LATEST_VERSION}); upgrade Tidings"
                    )
                for migration in MIGRATIONS:
                    if current < migration.version <= target:
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                        applied.append(migration.version)
            return applied

        return await self.run(migrate)

    async def aclose(self) -> None:
        await self._pool.close()

    async def _modify(self, recipient_id: str, change: common.Change) -> tuple[Recipient, bool]:
        async def modify(conn: Connection) -> tuple[Recipient, bool]:
            async with conn.transaction():
                # Lock first, load in a second statement: in READ COMMITTED that statement's snapshot
                # is taken after the lock is granted, so it sees the previous holder's committed rows.
                await conn.execute("SELECT 1 FROM subscribers WHERE id = %s FOR UPDATE", (recipient_id,))
                recipient, changed = common.apply(recipient_id, await _load(conn, recipient_id), change)
                if changed:
                    await _write_recipient(conn, recipient)
                return recipient, changed

        return await self.run(modify)


async def _load(conn: Connection, recipient_id: str) -> Recipient | None:
    cur = await conn.execute(_RECIPIENT_JSON + " WHERE s.id = %s", (recipient_id,))
    row = await cur.fetchone()
    return Recipient.model_validate_json(row[0]) if row else None


async def _write_recipient(conn: Connection, recipient: Recipient) -> None:
    devices = [_params(row) for row in common.device_rows(recipient)]
    async with conn.pipeline():
        await conn.execute(_UPSERT_SUBSCRIBER, common.subscriber_row(recipient))
        await conn.execute(_UPSERT_PREFERENCES, _params(common.preference_row(recipient)))
        await conn.execute("DELETE FROM devices WHERE subscriber_id = %s", (recipient.id,))
        if devices:
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT_DEVICE, devices)


_INBOX_COLUMNS = (
    "delivery_id, recipient_id, notification_id, workflow_id, category, title, body, url, data,"
    " created_at, read_at, archived_at, seen_at"
)
_INBOX_INSERT = (
    f"INSERT INTO inbox ({_INBOX_COLUMNS}) VALUES (%(delivery_id)s, %(recipient_id)s, %(notification_id)s,"
    " %(workflow_id)s, %(category)s, %(title)s, %(body)s, %(url)s, %(data)s, %(created_at)s, %(read_at)s,"
    " %(archived_at)s, %(seen_at)s) ON CONFLICT (delivery_id) DO NOTHING"
)
# A new message tells every listening API process, in the same statement (so at its commit).
_INBOX_ADD = (
    f"WITH added AS ({_INBOX_INSERT} RETURNING recipient_id)"
    f" SELECT pg_notify('{INBOX_CHANNEL}', recipient_id) FROM added"
)
_NOTIFY = f"SELECT pg_notify('{INBOX_CHANNEL}', %s)"


class PostgresInbox:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def add(self, message: InboxMessage) -> bool:
        async def add(conn: Connection) -> bool:
            cur = await conn.execute(_INBOX_ADD, _params(message.model_dump()))
            return cur.rowcount > 0

        return await self._store.run(add, retry=False)

    async def query(self, query: InboxQuery) -> list[InboxMessage]:
        segments = common.inbox_segments(query, "%s")

        async def listing(conn: Connection) -> list[InboxMessage]:
            rows: list[Any] = []
            async with conn.cursor(row_factory=dict_row) as cur:
                for where, params in segments:
                    await cur.execute(
                        f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE {where}"
                        f" ORDER BY {common.INBOX_ORDER} LIMIT %s",
                        [*params, query.limit - len(rows)],
                    )
                    rows += await cur.fetchall()
                    if len(rows) >= query.limit:
                        break
            return [InboxMessage.model_validate(r) for r in rows]

        return await self._store.run(listing)

    async def counts(self, recipient_id: str) -> InboxCounts:
        async def count(conn: Connection) -> InboxCounts:
            cur = await conn.execute(common.INBOX_COUNTS, (recipient_id,) * 3)
            row = await cur.fetchone()
            unread, unseen, total = row if row else (0, 0, 0)
            return InboxCounts(unread=unread or 0, unseen=unseen or 0, total=total or 0)

        return await self._store.run(count)

    async def change(
        self, recipient_id: str, delivery_id: str, change: InboxStateChange
    ) -> InboxMessage | None:
        assignments, params = common.inbox_assignments(change, datetime.now(UTC), "%s")
        key = (delivery_id, recipient_id)

        async def update(conn: Connection) -> InboxMessage | None:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                if assignments:
                    await cur.execute(
                        f"UPDATE inbox SET {assignments} WHERE delivery_id = %s AND recipient_id = %s"
                        f" RETURNING {_INBOX_COLUMNS}",
                        [*params, *key],
                    )
                else:
                    await cur.execute(
                        f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE delivery_id = %s AND recipient_id = %s",
                        key,
                    )
                row = await cur.fetchone()
                if row is not None and assignments:
                    await cur.execute(_NOTIFY, (recipient_id,))
            return InboxMessage.model_validate(row) if row else None

        return await self._store.run(update)

    async def read_all(self, recipient_id: str) -> list[InboxMessage]:
        async def update(conn: Connection) -> list[InboxMessage]:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    "UPDATE inbox SET read_at = now(), seen_at = COALESCE(seen_at, now())"
                    " WHERE recipient_id = %s AND read_at IS NULL AND archived_at IS NULL"
                    f" RETURNING {_INBOX_COLUMNS}",
                    (recipient_id,),
                )
                rows = await cur.fetchall()
                if rows:
                    await cur.execute(_NOTIFY, (recipient_id,))
            return [InboxMessage.model_validate(r) for r in rows]

        return await self._store.run(update)

    async def changes(self) -> AsyncIterator[str]:
        """LISTEN on a connection of its own (not the pool's): NOTIFYs from every process.

        When the connection breaks it reconnects (after a pause); changes made meanwhile are not
        replayed, so a consumer re-reads state when it resumes (SSE clients reconnect and do)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._store._dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                log.warning("inbox listener cannot connect: %s", self._store._unavailable(exc))
                await asyncio.sleep(2)
                continue
            try:
                await conn.execute(f"LISTEN {INBOX_CHANNEL}")
                yield ""  # listening
                async for notify in conn.notifies():
                    yield notify.payload
            except psycopg.OperationalError as exc:
                log.warning("inbox listener lost its connection: %s", self._store._unavailable(exc))
                await asyncio.sleep(1)
            finally:
                await conn.close()

    async def list(
        self, recipient_id: str, *, page: int = 1, page_size: int = 20, include_archived: bool = False
    ) -> list[InboxMessage]:
        check_page(page, page_size)
        archived = "" if include_archived else "AND archived_at IS NULL"

        async def listing(conn: Connection) -> list[InboxMessage]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE recipient_id = %s {archived}"
                    " ORDER BY read_at IS NOT NULL, created_at DESC LIMIT %s OFFSET %s",
                    (recipient_id, page_size, (page - 1) * page_size),
                )
                return [InboxMessage.model_validate(r) for r in await cur.fetchall()]

        return await self._store.run(listing)

    async def get(self, delivery_id: str) -> InboxMessage | None:
        async def get(conn: Connection) -> InboxMessage | None:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE delivery_id = %s", (delivery_id,)
                )
                row = await cur.fetchone()
            return InboxMessage.model_validate(row) if row else None

        return await self._store.run(get)

    async def mark_read(self, delivery_id: str, read: bool = True) -> InboxMessage:
        return await self._update(delivery_id, "read_at", datetime.now(UTC) if read else None)

    async def archive(self, delivery_id: str) -> InboxMessage:
        return await self._update(delivery_id, "archived_at", datetime.now(UTC))

    async def unread_count(self, recipient_id: str) -> int:
        async def count(conn: Connection) -> int:
            cur = await conn.execute(
                "SELECT COUNT(*) FROM inbox"
                " WHERE recipient_id = %s AND read_at IS NULL AND archived_at IS NULL",
                (recipient_id,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._store.run(count)

    async def export(self, batch_size: int = 500) -> AsyncIterator[InboxMessages]:
        after = ""
        while True:

            async def page(conn: Connection, after: str = after) -> InboxMessages:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(
                        f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE delivery_id > %s"
                        " ORDER BY delivery_id LIMIT %s",
                        (after, batch_size),
                    )
                    return [InboxMessage.model_validate(r) for r in await cur.fetchall()]

            batch = await self._store.run(page)
            if not batch:
                return
            yield batch
            after = batch[-1].delivery_id

    async def import_messages(self, messages: InboxMessages) -> None:
        async def insert(conn: Connection) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_INBOX_INSERT, [_params(m.model_dump()) for m in messages])

        await self._store.run(insert)

    async def _update(self, delivery_id: str, column: str, value: datetime | None) -> InboxMessage:
        async def update(conn: Connection) -> InboxMessage | None:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"UPDATE inbox SET {column} = %s WHERE delivery_id = %s RETURNING {_INBOX_COLUMNS}",
                    (value, delivery_id),
                )
                row = await cur.fetchone()
            return InboxMessage.model_validate(row) if row else None

        message = await self._store.run(update)
        if message is None:
            raise LookupError(f"no inbox message with delivery id {delivery_id!r}")
        await self._store.run(lambda conn: conn.execute(_NOTIFY, (message.recipient_id,)))
        return message


_API_KEY_COLUMNS = "id, name, secret_sha256, scopes, created_at, revoked_at, last_used_at"
_API_KEY_INSERT = (
    f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES (%(id)s, %(name)s, %(secret_sha256)s,"
    " %(scopes)s, %(created_at)s, %(revoked_at)s, %(last_used_at)s)"
)


class PostgresApiKeys:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def create(self, key: ApiKeyRecord) -> None:
        row = _params(key.model_dump())

        async def insert(conn: Connection) -> None:
            await conn.execute(_API_KEY_INSERT, row)

        await self._store.run(insert, retry=False)

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[ApiKeyRecord]:
        async def select(conn: Connection) -> list[ApiKeyRecord]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(f"SELECT {_API_KEY_COLUMNS} FROM api_keys {where}", params)
                return [ApiKeyRecord.model_validate(r) for r in await cur.fetchall()]

        return await self._store.run(select)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        found = await self._select("WHERE id = %s", (key_id,))
        return found[0] if found else None

    async def list(self) -> list[ApiKeyRecord]:
        return await self._select("ORDER BY created_at, id", ())

    async def revoke(self, key_id: str) -> bool:
        async def revoke(conn: Connection) -> bool:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,)
            )
            return cur.rowcount > 0

        return await self._store.run(revoke)

    async def touch(self, key_id: str, at: datetime) -> None:
        async def touch(conn: Connection) -> None:
            await conn.execute("UPDATE api_keys SET last_used_at = %s WHERE id = %s", (at, key_id))

        await self._store.run(touch)

    async def export(self, batch_size: int = 500) -> AsyncIterator[ApiKeyRecords]:
        after = ""
        while True:
            batch = await self._select("WHERE id > %s ORDER BY id LIMIT %s", (after, batch_size))
            if not batch:
                return
            yield batch
            after = batch[-1].id

    async def import_keys(self, keys: ApiKeyRecords) -> None:
        rows = [_params(k.model_dump()) for k in keys]

        async def insert(conn: Connection) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_API_KEY_INSERT + " ON CONFLICT (id) DO NOTHING", rows)

        await self._store.run(insert)


_RECEIPT_COLUMNS = "workflow_id, delivery_id, provider_message_id, status, error_code, at, stored_at"
_RECEIPT_INSERT = f"INSERT INTO late_receipts ({_RECEIPT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"


def _late(row: tuple[Any, ...]) -> LateReceipt:
    workflow_id, delivery_id, provider_message_id, status, error_code, at, stored_at = row
    receipt = DeliveryReceipt(
        delivery_id=delivery_id,
        provider_message_id=provider_message_id,
        status=status,
        error_code=error_code,
        at=at,
    )
    return LateReceipt(workflow_id=workflow_id, receipt=receipt, stored_at=stored_at)


def _late_params(late: LateReceipt) -> tuple[Any, ...]:
    r = late.receipt
    return (
        late.workflow_id,
        r.delivery_id,
        r.provider_message_id,
        r.status.value,
        r.error_code,
        r.at,
        late.stored_at,
    )


class PostgresReceiptLog(common.ReceiptLookups):
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def first_sighting(self, key: str) -> bool:
        async def insert(conn: Connection) -> bool:
            cur = await conn.execute(
                "INSERT INTO seen_callbacks (key) VALUES (%s) ON CONFLICT (key) DO NOTHING", (key,)
            )
            return cur.rowcount > 0

        return await self._store.run(insert, retry=False)

    async def forget(self, key: str) -> None:
        async def delete(conn: Connection) -> None:
            await conn.execute("DELETE FROM seen_callbacks WHERE key = %s", (key,))

        await self._store.run(delete)

    async def keep_late(self, workflow_id: str, receipt: DeliveryReceipt) -> None:
        params = _late_params(
            LateReceipt(workflow_id=workflow_id, receipt=receipt, stored_at=datetime.now(UTC))
        )

        async def insert(conn: Connection) -> None:
            await conn.execute(_RECEIPT_INSERT, params)

        await self._store.run(insert, retry=False)

    async def export(self, batch_size: int = 500) -> AsyncIterator[tuple[list[str], list[LateReceipt]]]:
        after_key = ""
        while True:

            async def keys(conn: Connection, after: str = after_key) -> list[str]:
                cur = await conn.execute(
                    "SELECT key FROM seen_callbacks WHERE key > %s ORDER BY key LIMIT %s", (after, batch_size)
                )
                return [r[0] for r in await cur.fetchall()]

            seen = await self._store.run(keys)
            if not seen:
                break
            yield seen, []
            after_key = seen[-1]
        after_id = 0
        while True:

            async def receipts(conn: Connection, after: int = after_id) -> list[tuple[Any, ...]]:
                cur = await conn.execute(
                    f"SELECT id, {_RECEIPT_COLUMNS} FROM late_receipts WHERE id > %s ORDER BY id LIMIT %s",
                    (after, batch_size),
                )
                return [tuple(r) for r in await cur.fetchall()]

            rows = await self._store.run(receipts)
            if not rows:
                return
            yield [], [_late(r[1:]) for r in rows]
            after_id = rows[-1][0]

    async def import_batch(self, seen: list[str], late: list[LateReceipt]) -> None:
        async def insert(conn: Connection) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                if seen:
                    await cur.executemany(
                        "INSERT INTO seen_callbacks (key) VALUES (%s) ON CONFLICT (key) DO NOTHING",
                        [(k,) for k in seen],
                    )
                if late:
                    await cur.executemany(_RECEIPT_INSERT, [_late_params(r) for r in late])

        await self._store.run(insert)

    async def _select(self, column: str, value: str) -> list[LateReceipt]:
        async def select(conn: Connection) -> list[LateReceipt]:
            cur = await conn.execute(
                f"SELECT {_RECEIPT_COLUMNS} FROM late_receipts WHERE {column} = %s ORDER BY id", (value,)
            )
            return [_late(tuple(r)) for r in await cur.fetchall()]

        return await self._store.run(select)


class PostgresBroadcasts(BroadcastTables):
    recipient_query = _RECIPIENT_JSON

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def select(conn: Connection) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql.replace("?", "%s"), list(params))
            return [tuple(r) for r in await cur.fetchall()]

        return await self._store.run(select)

    async def _write(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        async def write(conn: Connection) -> int:
            if not rows:
                return 0
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(sql.replace("?", "%s"), [list(r) for r in rows])
                return max(cur.rowcount, 0)

        return await self._store.run(write, retry=False)
