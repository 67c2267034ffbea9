"""`open_store(settings)`: the configured store, connected and (unless told not to) migrated."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tidings.activities.store.base import Store
from tidings.settings import StoreSettings


async def open_store(settings: StoreSettings, *, migrate: bool | None = None, check: bool = True) -> Store:
    """Open the store that `settings` names.

    `migrate` defaults to `settings.migrate_on_start`; without migrating, a database at an older
    schema version is refused with a message saying to run `tidings store migrate` (unless
    `check` is off: `tidings store status` and `migrate` look at any version).
    """
    migrate = settings.migrate_on_start if migrate is None else migrate
    if settings.backend == "postgres":
        from tidings.activities.store.postgres import PostgresStore

        assert settings.dsn is not None  # checked by StoreSettings
        return await PostgresStore.open(
            settings.dsn.get_secret_value(),
            migrate=migrate,
            check=check,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            connect_timeout=settings.timeout,
        )
    from tidings.activities.store.sqlite import SqliteStore

    return await SqliteStore.open(Path(settings.sqlite_path), migrate=migrate, check=check)


@contextlib.asynccontextmanager
async def store_session(settings: StoreSettings) -> AsyncIterator[Store]:
    """The configured store for the length of one command: opened, then closed whatever happens."""
    store = await open_store(settings)
    try:
        yield store
    finally:
        await store.aclose()


async def open_url(url: str, *, migrate: bool = True, connect_timeout: float = 5.0) -> Store:
    """A store from `sqlite:PATH` or `postgres:DSN` (`tidings store copy --from/--to`)."""
    backend, sep, rest = url.partition(":")
    if backend == "sqlite" and sep and rest:
        from tidings.activities.store.sqlite import SqliteStore

        return await SqliteStore.open(Path(rest), migrate=migrate)
    if backend in ("postgres", "postgresql") and sep and rest:
        from tidings.activities.store.postgres import PostgresStore

        dsn = url if rest.startswith("//") else rest  # postgresql://... or postgres:key=value ...
        return await PostgresStore.open(dsn, migrate=migrate, connect_timeout=connect_timeout)
    raise ValueError("a store is sqlite:PATH or postgres:DSN (e.g. postgres:postgresql://u:p@host/db)")
