"""`tidings store`: schema migrations, and moving an install from one store to another.

    tidings store status                 # backend, schema version, latest version
    tidings store migrate                # apply pending migrations in place
    tidings store copy --from sqlite:data/tidings.sqlite3 --to postgres

`postgres` alone (and `sqlite` alone) means the store in the settings (`TIDINGS_STORE__DSN`), so
the password stays out of the shell history and the process list; `postgres:DSN` also works.
Copy everything with the workers and the receiver stopped: subscribers with their devices and
preferences, inbox messages with their read, seen and archived state, handled callbacks and late
receipts, topics with their subscriptions and opt-outs, broadcast audiences and per-recipient
outcomes, API keys (hashes, scopes, revoked state) and send reservations (so frequency caps and
throttles keep counting).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

from tidings.activities.store.base import Store
from tidings.activities.store.broadcast_tables import COPIED_TABLES
from tidings.activities.store.factory import open_store, open_url
from tidings.settings import Settings


class StoreCopyError(ValueError):
    """The copy cannot go ahead (destination not empty) or did not copy everything."""


async def _open(spec: str, settings: Settings, *, migrate: bool) -> Store:
    if spec in ("sqlite", "postgres"):
        if spec == "postgres" and settings.store.dsn is None:
            raise ValueError("`postgres` alone uses store.dsn: set TIDINGS_STORE__DSN (or say postgres:DSN)")
        configured = settings.store.model_copy(update={"backend": spec})
        return await open_store(configured, migrate=migrate)
    return await open_url(spec, migrate=migrate, connect_timeout=settings.store.timeout)


KINDS = (
    "subscribers",
    "inbox_messages",
    "seen_callbacks",
    "late_receipts",
    *COPIED_TABLES,
    "api_keys",
    "send_reservations",
)
"""What `tidings store copy` moves and reports, in copy order (a topic before its subscriptions)."""


async def _batches(store: Store, batch_size: int = 500) -> AsyncIterator[tuple[str, list[Any]]]:
    """Every row of every kind, in keyset-paginated batches: memory stays bounded by one batch."""
    async for recipients in store.export(batch_size):
        yield "subscribers", recipients
    async for messages in store.inbox.export(batch_size):
        yield "inbox_messages", messages
    async for seen, late in store.receipts.export(batch_size):
        if seen:
            yield "seen_callbacks", seen
        if late:
            yield "late_receipts", late
    for table in COPIED_TABLES:
        async for rows in store.broadcasts.export_table(table, batch_size):
            yield table, rows
    async for keys in store.api_keys.export(batch_size):
        yield "api_keys", keys
    async for reservations in store.counters.export(batch_size):
        yield "send_reservations", reservations


async def _import(destination: Store, kind: str, rows: list[Any]) -> None:
    if kind == "subscribers":
        for recipient in rows:
            await destination.put(recipient)
    elif kind == "inbox_messages":
        await destination.inbox.import_messages(rows)
    elif kind == "seen_callbacks":
        await destination.receipts.import_batch(rows, [])
    elif kind == "late_receipts":
        await destination.receipts.import_batch([], rows)
    elif kind == "api_keys":
        await destination.api_keys.import_keys(rows)
    elif kind == "send_reservations":
        await destination.counters.import_reservations(rows)
    else:
        await destination.broadcasts.import_table(kind, rows)


async def counts(store: Store) -> dict[str, int]:
    """How many rows of each kind a store holds (reads everything: for copy checks and tests)."""
    result = dict.fromkeys(KINDS, 0)
    async for kind, rows in _batches(store):
        result[kind] += len(rows)
    return result


async def copy_store(source: Store, destination: Store) -> dict[str, int]:
    """Copy every row from `source` into an empty `destination`; returns what was copied.

    A destination holding anything is refused before a row is written, so running the copy again
    changes nothing (and every import also leaves rows already there alone)."""
    async for kind, rows in _batches(destination, batch_size=1):
        if rows:
            what = kind.replace("_", " ")
            raise StoreCopyError(f"the destination store already holds {what}; copy into an empty one")
    copied = dict.fromkeys(KINDS, 0)
    async for kind, rows in _batches(source):
        await _import(destination, kind, rows)
        copied[kind] += len(rows)
    found = await counts(destination)
    if found != copied:
        raise StoreCopyError(f"copied {copied} but the destination holds {found}")
    return copied


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


async def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_store(settings.store, migrate=False, check=False)
    try:
        version = await store.schema_version()
    finally:
        await store.aclose()
    _print(
        {"backend": settings.store.backend, "schema_version": version, "latest_version": _latest(settings)}
    )
    return 0


def _latest(settings: Settings) -> int:
    if settings.store.backend == "postgres":
        from tidings.activities.store.postgres_migrations import LATEST_VERSION as latest
    else:
        from tidings.activities.store.sqlite import LATEST_VERSION as latest
    return latest


async def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_store(settings.store, migrate=False, check=False)
    try:
        before = await store.schema_version()
        applied = await store.migrate()
        after = await store.schema_version()
    finally:
        await store.aclose()
    _print({"backend": settings.store.backend, "from_version": before, "applied": applied, "version": after})
    return 0


async def _cmd_copy(args: argparse.Namespace, settings: Settings) -> int:
    source = await _open(args.source, settings, migrate=True)
    try:
        destination = await _open(args.destination, settings, migrate=True)
        try:
            copied = await copy_store(source, destination)
        finally:
            await destination.aclose()
    finally:
        await source.aclose()
    _print({"copied": copied})
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = subparsers.add_parser("store", help="the subscriber store: migrations, copying").add_subparsers(
        dest="store_command", required=True
    )
    store.add_parser("status", help="backend and schema version").set_defaults(run=_cmd_status)
    store.add_parser("migrate", help="apply pending schema migrations in place").set_defaults(
        run=_cmd_migrate
    )
    copy = store.add_parser("copy", help="copy everything into an empty store (workers stopped)")
    copy.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="STORE",
        help="sqlite:PATH, postgres:DSN, sqlite or postgres",
    )
    copy.add_argument(
        "--to", dest="destination", required=True, metavar="STORE", help="same forms; postgres = store.dsn"
    )
    copy.set_defaults(run=_cmd_copy)
