"""The store on both backends: schema, migrations, concurrent writers, copying, connection failures.

Tests taking `any_store` or `store_opener` run twice, on SQLite and on a real PostgreSQL server
(tests/postgres_fixture.py); the rest name their backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR
from tests.postgres_fixture import PostgresServer
from tidings.activities.store import common
from tidings.activities.store.base import (
    InboxMessage,
    InboxStateChange,
    Store,
    StoreSchemaError,
    StoreUnavailableError,
)
from tidings.activities.store.broadcast_tables import COPIED_TABLES
from tidings.activities.store.factory import open_store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.postgres_migrations import MIGRATIONS as PG_MIGRATIONS
from tidings.activities.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from tidings.activities.store.sqlite import SqliteStore
from tidings.api.keys import Scope, new_key, verify_key
from tidings.models import (
    Channel,
    CounterLimit,
    DeliveryReceipt,
    Device,
    Phase,
    Preferences,
    QuietHours,
    ReceiptStatus,
    Recipient,
    ReservationRequest,
)
from tidings.models.broadcasts import Audience, OutcomeStatus, RecipientOutcome, Topic
from tidings.settings import Settings, SettingsError, StoreSettings, load_settings
from tidings.starters.client import TidingsClient
from tidings.starters.store_commands import KINDS, StoreCopyError, copy_store, counts
from tidings.workers.worker import running_worker

# Every schema version this build has (others are reserved for features on other branches).
ALL_VERSIONS = sorted(SQLITE_MIGRATIONS)
LATEST = ALL_VERSIONS[-1]
assert [m.version for m in PG_MIGRATIONS] == ALL_VERSIONS, "both backends have the same versions"

Opener = Callable[..., Awaitable[Store]]

WEBPUSH = {
    "endpoint": "https://push.example.com/send/abc",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}


def full_recipient(recipient_id: str = "full") -> Recipient:
    """Every field set, so a column the schema forgot shows up as a difference."""
    return Recipient(
        id=recipient_id,
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+4915112345678",
        webhook_url="https://hooks.example.com/ada",
        webhook_disabled="410 Gone",
        slack_webhook_url="https://hooks.slack.com/services/T/B/X",
        slack_channel="#ada",
        timezone="Europe/Berlin",
        locale="de",
        devices=[
            Device(
                id="phone", platform="apns", token="ab" * 32, app="com.example.app", active=False,
                registered_at=datetime(2026, 5, 1, 12, 30, tzinfo=UTC), deactivated_reason="Unregistered",
            ),
            Device.model_validate({"id": "browser", "platform": "webpush", "subscription": WEBPUSH}),
            Device(id="android", platform="fcm", token="fcm-token"),
        ],
        preferences=Preferences(
            opted_out_channels={Channel.sms, Channel.slack},
            opted_out_categories={"marketing", "digest"},
            opted_out_category_channels={"orders": {Channel.push}, "social": {Channel.email, Channel.sms}},
            quiet_hours=QuietHours(start=time(22, 0), end=time(7, 30)),
        ),
    )  # fmt: skip


def message(delivery_id: str, recipient_id: str = "u1", minutes_ago: int = 1) -> InboxMessage:
    return InboxMessage(
        delivery_id=delivery_id, recipient_id=recipient_id, notification_id="n", workflow_id="notification-n",
        title=f"message {delivery_id}", data={"k": "v"},
        created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )  # fmt: skip


# ------------------------------------------------------------------ schema


def test_the_schema_has_a_column_for_every_field() -> None:
    """Fails when a field is added to Recipient, Device or Preferences without a column."""
    assert set(Recipient.model_fields) == {*common.SUBSCRIBER_COLUMNS, "devices", "preferences"}
    device_fields = {"id" if c == "device_id" else c for c in common.DEVICE_COLUMNS} - {"position"}
    assert set(Device.model_fields) == device_fields
    quiet_hours_columns = {"quiet_hours_start", "quiet_hours_end"}
    assert set(Preferences.model_fields) == {*common.PREFERENCE_COLUMNS} - quiet_hours_columns | {
        "quiet_hours"
    }


async def test_every_field_round_trips(any_store: Store) -> None:
    recipient = full_recipient()
    await any_store.put(recipient)
    assert await any_store.get("full") == recipient
    assert await any_store.get("nobody") is None
    bare = Recipient(id="bare")
    await any_store.put(bare)
    assert await any_store.get("bare") == bare
    assert await any_store.delete("full") and not await any_store.delete("full")
    assert await any_store.get("full") is None


async def test_receipts_by_workflow_delivery_and_provider_message(any_store: Store) -> None:
    log = any_store.receipts
    assert await log.first_sighting("twilio:SM1:delivered")
    assert not await log.first_sighting("twilio:SM1:delivered")
    at = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    first = DeliveryReceipt(delivery_id="d1", provider_message_id="SM1", status=ReceiptStatus.read, at=at)
    second = DeliveryReceipt(
        provider_message_id="SM2", status=ReceiptStatus.failed, error_code="30003", at=at
    )
    await log.keep_late("notification-a", first)
    await log.keep_late("notification-a", second)
    assert await log.late_receipts("notification-a") == [first, second]
    assert await log.late_receipts("notification-b") == []
    [by_delivery] = await log.by_delivery("d1")
    assert by_delivery.workflow_id == "notification-a" and by_delivery.receipt == first
    [by_message] = await log.by_provider_message("SM2")
    assert by_message.receipt == second


async def test_a_recipient_load_is_one_query(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No N+1 over devices or preferences: the database builds the whole recipient in one statement."""
    await any_store.put(full_recipient())
    statements: list[str] = []
    if isinstance(any_store, PostgresStore):
        execute = psycopg.AsyncConnection.execute

        async def counting(self: psycopg.AsyncConnection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query))
            return await execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncConnection, "execute", counting)
    else:
        assert isinstance(any_store, SqliteStore)
        await any_store.run(lambda db: db.set_trace_callback(statements.append))
    assert await any_store.get("full") == full_recipient()
    if isinstance(any_store, SqliteStore):
        await any_store.run(lambda db: db.set_trace_callback(None))
    assert len(statements) == 1, statements


# ------------------------------------------------------------------ migrations


async def test_migrations_on_an_empty_database(store_opener: Opener) -> None:
    store = await store_opener(migrate=False, check=False)
    assert await store.schema_version() == 0
    assert await store.migrate() == ALL_VERSIONS
    assert await store.schema_version() == LATEST
    assert await store.migrate() == []
    await store.put(full_recipient())
    assert await store.get("full") == full_recipient()


async def test_an_unmigrated_database_is_refused_without_migrating(store_opener: Opener) -> None:
    with pytest.raises(StoreSchemaError, match="tidings store migrate"):
        await store_opener(migrate=False)


async def test_postgres_upgrade_from_the_previous_version(postgres_dsn: str) -> None:
    store = await PostgresStore.open(postgres_dsn, migrate=False, check=False)
    try:
        assert await store.migrate(target=1) == [1]

        async def v1_subscriber(conn: psycopg.AsyncConnection[Any]) -> None:
            # written as version 1's columns are: today's code writes columns added later
            await conn.execute(
                "INSERT INTO subscribers (id, email, timezone, locale, updated_at)"
                " VALUES ('old', 'old@example.com', 'UTC', 'en', now())"
            )

        await store.run(v1_subscriber)
        old = message("d1").model_dump(exclude={"seen_at"})  # a version-1 row: no later columns

        async def add_v1(conn: psycopg.AsyncConnection[Any]) -> None:
            columns = ", ".join(old)
            values = ", ".join(f"%({c})s" for c in old)
            await conn.execute(
                f"INSERT INTO inbox ({columns}) VALUES ({values})", {**old, "data": json.dumps(old["data"])}
            )

        await store.run(add_v1)
        at = datetime(2026, 6, 1, tzinfo=UTC)
        await store.receipts.keep_late(
            "notification-x", DeliveryReceipt(delivery_id="d1", status="read", at=at)
        )
    finally:
        await store.aclose()
    with pytest.raises(StoreSchemaError, match="version 1"):
        await PostgresStore.open(postgres_dsn, migrate=False)
    store = await PostgresStore.open(postgres_dsn)  # a worker starting: migrates in place
    try:
        assert await store.schema_version() == LATEST
        assert await store.get("old") == Recipient(id="old", email="old@example.com")
        assert [m.delivery_id for m in await store.inbox.list("u1")] == ["d1"]
        assert [r.receipt.delivery_id for r in await store.receipts.by_delivery("d1")] == ["d1"]

        async def indexes(conn: psycopg.AsyncConnection[Any]) -> set[str]:
            cur = await conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
            return {r[0] for r in await cur.fetchall()}

        assert {
            "devices_by_token",
            "inbox_by_recipient",
            "late_receipts_by_delivery",
            "late_receipts_by_provider_message",
        } <= await store.run(indexes)
    finally:
        await store.aclose()


def write_release_layout(path: Path, recipients: list[Recipient]) -> None:
    """An SQLite file as the release before versioned migrations left it."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE subscribers (id TEXT PRIMARY KEY, document TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE inbox (delivery_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL,
            notification_id TEXT NOT NULL, workflow_id TEXT NOT NULL, category TEXT, title TEXT, body TEXT,
            url TEXT, data TEXT NOT NULL, created_at TEXT NOT NULL, read_at TEXT, archived_at TEXT);
        CREATE INDEX inbox_by_recipient ON inbox (recipient_id, archived_at, read_at, created_at);
        CREATE TABLE seen_callbacks (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
        CREATE TABLE late_receipts (id INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id TEXT NOT NULL,
            receipt TEXT NOT NULL, stored_at TEXT NOT NULL);
        CREATE INDEX late_receipts_by_workflow ON late_receipts (workflow_id);
        """
    )
    now = datetime.now(UTC).isoformat()
    for r in recipients:
        db.execute("INSERT INTO subscribers VALUES (?, ?, ?)", (r.id, r.model_dump_json(), now))
    db.execute(
        "INSERT INTO inbox VALUES"
        " ('d1', 'u1', 'n', 'notification-n', NULL, 'hello', NULL, NULL, '{}', ?, ?, NULL)",
        (now, now),
    )
    db.execute("INSERT INTO seen_callbacks VALUES ('twilio:SM1:delivered', ?)", (now,))
    receipt = DeliveryReceipt(provider_message_id="SM1", status=ReceiptStatus.read, at=datetime.now(UTC))
    db.execute(
        "INSERT INTO late_receipts (workflow_id, receipt, stored_at) VALUES (?, ?, ?)",
        ("notification-n", receipt.model_dump_json(), now),
    )
    db.commit()
    db.close()


async def test_sqlite_upgrade_from_the_release_layout(tmp_path: Path) -> None:
    path = tmp_path / "tidings.sqlite3"
    recipients = [full_recipient(), Recipient(id="u1", email="u1@example.com")]
    write_release_layout(path, recipients)
    with pytest.raises(StoreSchemaError, match="version 1"):
        await SqliteStore.open(path, migrate=False)
    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == LATEST
        assert [await store.get(r.id) for r in recipients] == recipients
        [kept] = await store.inbox.list("u1")
        assert kept.title == "hello" and kept.read_at is not None
        assert not await store.receipts.first_sighting("twilio:SM1:delivered")
        [late] = await store.receipts.by_provider_message("SM1")
        assert late.workflow_id == "notification-n" and late.receipt.status is ReceiptStatus.read
        tables = await store.run(
            lambda db: {r[0] for r in db.execute("SELECT name FROM sqlite_master").fetchall()}
        )
        assert {
            "subscribers",
            "devices",
            "preferences",
            "devices_by_token",
            "late_receipts_by_delivery",
        } <= tables
        assert "subscribers_v1" not in tables
    finally:
        await store.aclose()


async def test_workers_starting_together_migrate_once(postgres_dsn: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres_dsn) for _ in range(4)))
    try:

        async def versions(conn: psycopg.AsyncConnection[Any]) -> list[int]:
            cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [r[0] for r in await cur.fetchall()]

        assert await stores[0].run(versions) == ALL_VERSIONS
    finally:
        for store in stores:
            await store.aclose()


# ------------------------------------------------------------------ concurrency


async def test_parallel_writers_lose_nothing(store_opener: Opener) -> None:
    """Several stores (as on several machines) change one subscriber at once: every write lands."""
    stores = [await store_opener() for _ in range(3)]
    old = [Device(id=f"old-{i}", platform="fcm", token=f"old-{i}") for i in range(12)]
    await stores[0].put(Recipient(id="busy", email="busy@example.com", devices=old))
    loads: list[Recipient] = []

    async def read(store: Store) -> None:
        for _ in range(10):
            recipient = await store.get("busy")
            assert recipient is not None
            loads.append(recipient)

    work: list[Awaitable[object]] = []
    for i in range(12):
        work.append(stores[i % 3].add_device("busy", Device(id=f"new-{i}", platform="fcm", token=f"new-{i}")))
        work.append(stores[(i + 1) % 3].deactivate_device("busy", f"old-{i}", "Unregistered"))
    for i, channel in enumerate(Channel):
        work.append(stores[i % 3].opt_out_channel("busy", channel))
    work.append(stores[2].disable_webhook("busy", "https://elsewhere.example.com", "410"))  # not its URL
    work.extend(read(store) for store in stores)
    await asyncio.gather(*work)

    final = await stores[1].get("busy")
    assert final is not None
    devices = {d.id: d for d in final.devices}
    assert set(devices) == {f"old-{i}" for i in range(12)} | {f"new-{i}" for i in range(12)}
    assert all(not devices[f"old-{i}"].active for i in range(12))
    assert all(devices[f"new-{i}"].active for i in range(12))
    assert final.preferences.opted_out_channels == set(Channel)
    assert final.email == "busy@example.com"
    # every read saw a whole recipient, never one half written
    assert all(len(r.devices) >= 12 and r.email == "busy@example.com" for r in loads)


async def test_processes_change_one_subscriber_at_once(store_backend: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """`tidings subscriber add-device` from six processes at once (six machines): six devices."""
    env = {**os.environ}
    if store_backend == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        env |= {"TIDINGS_STORE__BACKEND": "postgres", "TIDINGS_STORE__DSN": await server.create_database()}
    else:
        env |= {"TIDINGS_STORE__BACKEND": "sqlite", "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    run_cli(env, "subscriber", "add", "multi")
    processes = [
        await asyncio.create_subprocess_exec(
            str(BIN_DIR / "tidings"), "subscriber", "add-device", "multi", f"phone-{i}",
            "--platform", "fcm", "--token", f"t{i}",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(6)
    ]  # fmt: skip
    for process in processes:
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    shown = run_cli(env, "subscriber", "show", "multi")
    assert sorted(d["id"] for d in shown["devices"]) == [f"phone-{i}" for i in range(6)]


# ------------------------------------------------------------------ settings, CLI, copy


def test_postgres_needs_a_dsn_and_never_shows_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tidings.toml").write_text("")
    monkeypatch.setenv("TIDINGS_SETTINGS", str(tmp_path / "tidings.toml"))
    monkeypatch.setenv("TIDINGS_STORE__BACKEND", "postgres")
    with pytest.raises(SettingsError, match="TIDINGS_STORE__DSN"):
        load_settings()
    monkeypatch.setenv("TIDINGS_STORE__DSN", "postgresql://tidings:hunter2-secret@db.internal:5432/tidings")
    settings = load_settings()
    assert settings.store.backend == "postgres" and settings.store.dsn is not None
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in settings.model_dump_json()


async def test_unreachable_database_is_reported_without_the_password() -> None:
    from tidings.sandbox.smtp import free_port

    dsn = f"postgresql://tidings:hunter2-secret@127.0.0.1:{free_port()}/tidings"
    settings = StoreSettings.model_validate({"backend": "postgres", "dsn": dsn, "timeout": 1})
    with pytest.raises(StoreUnavailableError) as info:
        await open_store(settings)
    assert "127.0.0.1" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="not a valid PostgreSQL connection string") as bad:
        await open_store(StoreSettings.model_validate({"backend": "postgres", "dsn": "nonsense hunter2"}))
    assert "hunter2" not in str(bad.value)


def password_of(dsn: str) -> str:
    return dsn.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]


def run_cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    done = subprocess.run(
        [str(BIN_DIR / "tidings"), *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == code, done.stderr
    if "TIDINGS_STORE__DSN" in env:
        assert password_of(env["TIDINGS_STORE__DSN"]) not in done.stdout + done.stderr
    return json.loads(done.stdout) if code == 0 else done.stderr


async def test_cli_on_postgres(postgres_server: PostgresServer) -> None:
    dsn = await postgres_server.create_database()
    env = {**os.environ, "TIDINGS_STORE__BACKEND": "postgres", "TIDINGS_STORE__DSN": dsn}
    assert run_cli(env, "store", "status") == {
        "backend": "postgres",
        "schema_version": 0,
        "latest_version": LATEST,
    }
    migrated = run_cli(env, "store", "migrate")
    assert migrated["applied"] == ALL_VERSIONS and migrated["version"] == LATEST
    run_cli(env, "subscriber", "add", "u9", "--email", "u9@example.com", "--timezone", "Europe/Berlin")
    run_cli(env, "subscriber", "add-device", "u9", "phone", "--platform", "fcm", "--token", "tok")
    run_cli(
        env, "subscriber", "preferences", "u9", "--opt-out-channel", "sms", "--quiet-hours", "22:00-07:00"
    )
    shown = run_cli(env, "subscriber", "show", "u9")
    assert shown["devices"][0]["token"] == "tok" and shown["preferences"]["opted_out_channels"] == ["sms"]
    assert "no subscriber with id 'ghost'" in run_cli(env, "subscriber", "show", "ghost", code=2)
    assert run_cli(env, "inbox", "count", "u9") == {"recipient_id": "u9", "unread": 0}
    down = {
        **env,
        "TIDINGS_STORE__DSN": dsn.replace(str(postgres_server.port), "1"),
        "TIDINGS_STORE__TIMEOUT": "1",
    }
    error = run_cli(down, "subscriber", "show", "u9", code=1)
    assert "cannot connect to the PostgreSQL store at 127.0.0.1:1/" in error


CAP = CounterLimit(counter="channel:email", limit=2, window=timedelta(days=1), what="email frequency cap")


def reservation(notification_id: str, hours_ago: int = 1) -> ReservationRequest:
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    return ReservationRequest(recipient_id="user-001", notification_id=notification_id, at=at, limits=[CAP])


async def fill_every_table(store: Store) -> dict[str, str]:
    """Rows in every table `tidings store copy` moves; returns the API keys' texts by name."""
    recipients = [full_recipient(f"user-{i:03d}") for i in range(25)] + [Recipient(id="plain")]
    for recipient in recipients:
        await store.put(recipient)
    for i in range(30):
        await store.inbox.add(message(f"d{i:02d}", recipient_id=f"user-{i % 3:03d}", minutes_ago=i))
    await store.inbox.mark_read("d03")
    await store.inbox.archive("d04")
    await store.inbox.change("user-002", "d05", InboxStateChange(seen=True))
    await store.receipts.first_sighting("twilio:SM1:delivered")
    at = datetime(2026, 6, 1, tzinfo=UTC)
    await store.receipts.keep_late("notification-x", DeliveryReceipt(delivery_id="d1", status="read", at=at))
    broadcasts = store.broadcasts
    await broadcasts.create_topic(Topic(key="news", name="News"))
    await broadcasts.create_topic(Topic(key="ops"))
    await broadcasts.subscribe("news", [r.id for r in recipients])
    await broadcasts.subscribe("ops", ["user-001", "plain"])
    await broadcasts.set_topic_opt_out("news", "user-003")
    await broadcasts.set_topic_opt_out("ops", "plain")
    await broadcasts.add_audience("bc-1", ["user-001", "user-002", "plain"])
    await broadcasts.record_outcomes(
        [
            RecipientOutcome(broadcast_id="bc-1", recipient_id="user-001", status=OutcomeStatus.sent,
                             delivery_ids=["bc-1-user-001-email"]),
            RecipientOutcome(broadcast_id="bc-1", recipient_id="user-002", status=OutcomeStatus.failed,
                             reason="mailbox full"),
            RecipientOutcome(broadcast_id="bc-1", recipient_id="plain", status=OutcomeStatus.skipped,
                             reason="opted out of topic ops"),
        ]
    )  # fmt: skip
    texts: dict[str, str] = {}
    for name in ("ops", "old"):
        texts[name], record = new_key(name, [Scope.send, Scope.read])
        await store.api_keys.create(record)
    assert await store.api_keys.revoke(record.id)
    assert await store.counters.reserve(reservation("n1", hours_ago=3)) is None
    assert await store.counters.reserve(reservation("n2")) is None
    return texts


async def every_row(store: Store) -> dict[str, list[Any]]:
    """The content of every copied table, read in small keyset pages (so paging is exercised)."""
    rows: dict[str, list[Any]] = {}
    for table in COPIED_TABLES:
        rows[table] = [r async for batch in store.broadcasts.export_table(table, batch_size=2) for r in batch]
    rows["api_keys"] = [k async for batch in store.api_keys.export(batch_size=1) for k in batch]
    rows["send_reservations"] = [r async for batch in store.counters.export(batch_size=1) for r in batch]
    rows["subscribers"] = [r async for batch in store.export(batch_size=7) for r in batch]
    rows["inbox_messages"] = [m async for batch in store.inbox.export(batch_size=7) for m in batch]
    return rows


async def test_copy_an_sqlite_install_to_postgres(tmp_path: Path, postgres_server: PostgresServer) -> None:
    path = tmp_path / "old.sqlite3"
    source = await SqliteStore.open(path)
    texts = await fill_every_table(source)
    expected = await counts(source)
    before = await every_row(source)
    await source.aclose()
    assert expected == {
        "subscribers": 26, "inbox_messages": 30, "seen_callbacks": 1, "late_receipts": 1, "topics": 2,
        "topic_subscriptions": 28, "topic_opt_outs": 2, "broadcast_audience": 3, "broadcast_outcomes": 3,
        "api_keys": 2, "send_reservations": 2,
    }  # fmt: skip

    dsn = await postgres_server.create_database()
    env = {**os.environ, "TIDINGS_STORE__DSN": dsn}
    copied = run_cli(env, "store", "copy", "--from", f"sqlite:{path}", "--to", "postgres")
    assert copied == {"copied": expected}
    copy = await PostgresStore.open(dsn)
    try:
        assert await every_row(copy) == before
    finally:
        await copy.aclose()
    again = run_cli(env, "store", "copy", "--from", f"sqlite:{path}", "--to", "postgres", code=2)
    assert "already holds subscribers" in again
    for record in before["api_keys"]:
        assert record.secret_sha256 not in again + json.dumps(copied)

    source = await SqliteStore.open(path)
    copy = await PostgresStore.open(dsn)
    try:
        assert await every_row(copy) == before, "running the copy again changed nothing"
        assert await counts(copy) == expected
        assert [r async for batch in copy.export() for r in batch] == before["subscribers"]
        for recipient_id in ("user-000", "user-001", "user-002"):
            assert await copy.inbox.list(recipient_id, include_archived=True) == await source.inbox.list(
                recipient_id, include_archived=True
            )
            assert await copy.inbox.counts(recipient_id) == await source.inbox.counts(recipient_id)
        seen = await copy.inbox.get("d05")
        assert seen is not None and seen.seen_at is not None
        assert await copy.receipts.late_receipts("notification-x") == await source.receipts.late_receipts(
            "notification-x"
        )
        assert not await copy.receipts.first_sighting("twilio:SM1:delivered")
        # topics, subscriptions and opt-outs
        news = await copy.broadcasts.get_topic("news")
        assert news is not None and news.name == "News" and news.subscribers == 26
        assert await copy.broadcasts.list_topics() == await source.broadcasts.list_topics()
        assert await copy.broadcasts.topic_opt_outs("news", ["user-002", "user-003"]) == {"user-003"}
        assert await copy.broadcasts.topic_opt_outs("ops", ["plain", "user-001"]) == {"plain"}
        topic = Audience(kind="topic", topic="ops")
        assert await copy.broadcasts.audience_page("", topic, "", 10) == ["plain", "user-001"]
        # a list broadcast's audience and its outcomes (`tidings broadcast status --recipient`)
        listed = Audience(kind="list")
        assert await copy.broadcasts.audience_page("bc-1", listed, "", 10) == [
            "plain",
            "user-001",
            "user-002",
        ]
        failed = await copy.broadcasts.outcome("bc-1", "user-002")
        assert failed == await source.broadcasts.outcome("bc-1", "user-002")
        assert (
            failed is not None and failed.status == OutcomeStatus.failed and failed.reason == "mailbox full"
        )
        assert await copy.broadcasts.count_outcomes("bc-1") == await source.broadcasts.count_outcomes("bc-1")
        # API keys: the copied hash still authenticates; the revoked key stays revoked
        ops = await verify_key(copy.api_keys, texts["ops"])
        assert ops is not None and ops.scopes == ["read", "send"]
        assert await verify_key(copy.api_keys, texts["old"]) is None
        assert await verify_key(source.api_keys, texts["old"]) is None
        # send reservations: the cap (2 a day) is still full after the move, and a held one is held
        refused = await copy.counters.reserve(reservation("n3"))
        assert refused is not None and refused.counter == "channel:email"
        assert await copy.counters.reserve(reservation("n2")) is None
        assert (
            await copy.counters.reserved("user-001", "channel:email", datetime.now(UTC) - timedelta(days=1))
            == 2
        )
    finally:
        await copy.aclose()
        await source.aclose()


async def one_api_key(store: Store) -> None:
    await store.api_keys.create(new_key("x", [Scope.read])[1])


async def one_reservation(store: Store) -> None:
    await store.counters.reserve(reservation("n9"))


async def one_topic(store: Store) -> None:
    await store.broadcasts.create_topic(Topic(key="t"))


async def one_opt_out(store: Store) -> None:
    await store.broadcasts.set_topic_opt_out("t", "u")


async def one_outcome(store: Store) -> None:
    outcome = RecipientOutcome(broadcast_id="b", recipient_id="u", status=OutcomeStatus.sent)
    await store.broadcasts.record_outcomes([outcome])


ONE_ROW: dict[str, Callable[[Store], Awaitable[None]]] = {
    "api keys": one_api_key,
    "send reservations": one_reservation,
    "topics": one_topic,
    "topic opt outs": one_opt_out,
    "broadcast outcomes": one_outcome,
}


async def test_copy_back_to_sqlite_and_refuse_any_nonempty_table(tmp_path: Path, postgres_dsn: str) -> None:
    """PostgreSQL to SQLite keeps every table too; a destination holding only (say) an API key or a
    reservation is refused before anything is written."""
    postgres = await PostgresStore.open(postgres_dsn)
    back = await SqliteStore.open(tmp_path / "back.sqlite3")
    try:
        texts = await fill_every_table(postgres)
        expected = await counts(postgres)
        assert await copy_store(postgres, back) == expected
        assert await every_row(back) == await every_row(postgres)
        assert await verify_key(back.api_keys, texts["ops"]) is not None
        assert await back.counters.reserve(reservation("n3")) is not None
        assert (await back.broadcasts.outcome("bc-1", "plain")) == await postgres.broadcasts.outcome(
            "bc-1", "plain"
        )
        for name, fill in ONE_ROW.items():
            destination = await SqliteStore.open(tmp_path / f"{name}.sqlite3")
            try:
                await fill(destination)
                with pytest.raises(StoreCopyError, match=f"already holds {name};"):
                    await copy_store(postgres, destination)
                assert (await counts(destination))["subscribers"] == 0
            finally:
                await destination.aclose()
    finally:
        await postgres.aclose()
        await back.aclose()


async def test_copy_an_old_release_file_and_back(tmp_path: Path, postgres_dsn: str) -> None:
    """A file from the release before migrations is upgraded, copied to PostgreSQL, and back."""
    old = tmp_path / "old.sqlite3"
    recipients = [full_recipient(), Recipient(id="u1", email="u1@example.com")]
    write_release_layout(old, recipients)
    source = await SqliteStore.open(old)
    postgres = await PostgresStore.open(postgres_dsn)
    back = await SqliteStore.open(tmp_path / "back.sqlite3")
    try:
        expected = {**dict.fromkeys(KINDS, 0), "subscribers": 2, "inbox_messages": 1}
        expected |= {"seen_callbacks": 1, "late_receipts": 1}
        assert await copy_store(source, postgres) == expected
        assert await copy_store(postgres, back) == expected
        assert [await back.get(r.id) for r in recipients] == recipients
        assert await back.inbox.list("u1") == await source.inbox.list("u1")
        late = await source.receipts.by_provider_message("SM1")
        assert await back.receipts.by_provider_message("SM1") == late
    finally:
        for store in (source, postgres, back):
            await store.aclose()


# ------------------------------------------------------------------ connection failures


async def test_database_restart_costs_one_retry_not_an_error(private_postgres: PostgresServer) -> None:
    dsn = await private_postgres.create_database()
    store = await PostgresStore.open(dsn, min_size=3, max_size=5, connect_timeout=5)
    try:
        await store.put(full_recipient())
        await asyncio.gather(*(store.get("full") for _ in range(5)))  # fill the pool
        private_postgres.stop()
        with pytest.raises(StoreUnavailableError) as info:
            await store.get("full")
        assert "127.0.0.1" in str(info.value) and private_postgres.password not in str(info.value)
        private_postgres.start()
        assert await store.get("full") == full_recipient()  # stale connections dropped, no error
        assert await store.add_device("full", Device(id="new", platform="fcm", token="t"))
    finally:
        await store.aclose()


def stored_notification(notification_id: str) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": ["pg-user"],
        "channels": ["email"],
        "content": {"title": "Hello", "body": "from PostgreSQL"},
    }


async def test_notification_survives_a_database_restart(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    private_postgres: PostgresServer,
    smtp_sink: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = await private_postgres.create_database()
    store = await PostgresStore.open(dsn, connect_timeout=1)
    await store.put(Recipient(id="pg-user", email="pg@example.com"))
    failures: list[StoreUnavailableError] = []
    get = store.get

    async def counting_get(recipient_id: str) -> Recipient | None:
        try:
            return await get(recipient_id)
        except StoreUnavailableError as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(store, "get", counting_get)
    try:
        async with running_worker(ts_env.client, settings, store, task_queue="pg-restart"):
            tidings = TidingsClient(ts_env.client, task_queue="pg-restart")
            private_postgres.stop()
            [handle] = await tidings.send(stored_notification("pg-restart-1"))
            await asyncio.sleep(2)  # the recipient load fails and is retried meanwhile
            private_postgres.start()
            state = await handle.result()
        assert state.phase is Phase.delivered, state.reason
        assert smtp_sink.envelopes[0][1] == ["pg@example.com"]
        assert failures, "the recipient load should have failed while the database was down"
        assert private_postgres.password not in str(failures[0])
    finally:
        await store.aclose()


async def test_notification_fails_clearly_when_the_database_stays_down(
    ts_env: WorkflowEnvironment, settings: Settings, private_postgres: PostgresServer
) -> None:
    dsn = await private_postgres.create_database()
    store = await PostgresStore.open(dsn, connect_timeout=1)
    await store.put(Recipient(id="pg-user", email="pg@example.com"))
    try:
        async with running_worker(ts_env.client, settings, store, task_queue="pg-down"):
            tidings = TidingsClient(ts_env.client, task_queue="pg-down")
            private_postgres.stop()
            [handle] = await tidings.send(stored_notification("pg-down-1"))
            state = await handle.result()
            history = await ts_env.client.get_workflow_handle(handle.workflow_id).fetch_history()
        assert state.phase is Phase.failed
        assert state.reason is not None and state.reason.startswith(
            "cannot load recipient 'pg-user': the PostgreSQL"
        )
        assert "unavailable" in state.reason
        assert private_postgres.password not in history.to_json()
    finally:
        await store.aclose()
