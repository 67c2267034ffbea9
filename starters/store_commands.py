"""`tidings store`: schema migrations, and moving an install from one store to another.

    tidings store status                 # backend, schema version, latest version
    tidings store migrate                # apply pending migrations in place
    tidings store copy --from sqlite:data/tidings.sqlite3 --to postgres

`postgres` alone (and `sqlite` alone) means the store in the settings (`TIDINGS_STORE__DSN`), so
the password stays out of the shell history and the process list; `postgres:DSN` also works.
Copy everything with the workers and the receiver stopped: subscribers with their devices and
preferences, inbox messages with their read state, handled callbacks and late receipts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.activities.store.base import Store
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


async def counts(store: Store) -> dict[str, int]:
    """How many rows of each kind a store holds (reads everything: for copy checks and tests)."""
    result = {"subscribers": 0, "inbox_messages": 0, "seen_callbacks": 0, "late_receipts": 0}
    async for recipients in store.export():
        result["subscribers"] += len(recipients)
    async for messages in store.inbox.export():
        result["inbox_messages"] += len(messages)
    async for seen, late in store.receipts.export():
        result["seen_callbacks"] += len(seen)
        result["late_receipts"] += len(late)
    return result


async def copy_store(source: Store, destination: Store) -> dict[str, int]:
    """Copy every row from `source` into an empty `destination`; returns what was copied."""
    async for recipients in destination.export(batch_size=1):
        if recipients:
            raise StoreCopyError("the destination store already holds subscribers; copy into an empty one")
    async for messages in destination.inbox.export(batch_size=1):
        if messages:
            raise StoreCopyError("the destination store already holds inbox messages; copy into an empty one")
    async for seen, late in destination.receipts.export(batch_size=1):
        if seen or late:
            raise StoreCopyError("the destination store already holds receipts; copy into an empty one")
    copied = {"subscribers": 0, "inbox_messages": 0, "seen_callbacks": 0, "late_receipts": 0}
    async for recipients in source.export():
        for recipient in recipients:
            await destination.put(recipient)
        copied["subscribers"] += len(recipients)
    async for messages in source.inbox.export():
        await destination.inbox.import_messages(messages)
        copied["inbox_messages"] += len(messages)
    async for seen, late in source.receipts.export():
        await destination.receipts.import_batch(seen, late)
        copied["seen_callbacks"] += len(seen)
        copied["late_receipts"] += len(late)
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
