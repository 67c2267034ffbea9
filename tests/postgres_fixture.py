"""A real PostgreSQL server for the store tests, started by the test suite.

Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or `TIDINGS_PG_BIN`) run a
throwaway cluster in a temporary folder, on a free port, with its unix socket in that folder.
PostgreSQL refuses to run as root, so under root the cluster belongs to `nobody`. Clients connect
over TCP with a password (scram-sha-256), as production does.

- `postgres_server`: one cluster for the session; each test gets its own database (`postgres_dsn`).
- `private_postgres`: a cluster of its own, for tests that stop and start the server.
- `store_backend`: "sqlite" and "postgres"; `store_opener` opens (more) stores on one database, and
  `any_store` is one opened store: the shared store tests take these and run against both.

Without the binaries the PostgreSQL tests skip, except in CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from tidings.activities.store.base import Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.sandbox.smtp import free_port

StoreOpener = Callable[[], Awaitable[Store]]


def postgres_bin_dir() -> Path | None:
    explicit = os.environ.get("TIDINGS_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway cluster: `start()`, `stop()` (and start again), `remove()`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = "tidings"
        self.password = "pg-" + secrets.token_hex(12)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "nobody", "nogroup")
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(pwfile, "nobody", "nogroup")
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "-A", "scram-sha-256",
            "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"},
            user="nobody" if self._as_root else None,
            group="nogroup" if self._as_root else None,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}{log[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    async def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        async with await psycopg.AsyncConnection.connect(self.dsn(), autocommit=True) as conn:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def start_server() -> PostgresServer:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        _unavailable("no initdb (apt-get install postgresql, or set TIDINGS_PG_BIN)")
        raise AssertionError("unreachable")
    try:
        server = PostgresServer(bin_dir)
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError, LookupError) as exc:
        _unavailable(f"cannot start a throwaway cluster: {exc}")
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.remove()


@pytest_asyncio.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> str:
    return await postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def store_opener(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """Opens stores on one fresh database of the backend under test; closes them afterwards."""
    opened: list[Store] = []
    if store_backend == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        dsn = await server.create_database()

        async def open_store(**kwargs: Any) -> Store:
            store = await PostgresStore.open(dsn, **kwargs)
            opened.append(store)
            return store

    else:
        path = tmp_path / "store.sqlite3"

        async def open_store(**kwargs: Any) -> Store:
            store = await SqliteStore.open(path, **kwargs)
            opened.append(store)
            return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.aclose()


@pytest_asyncio.fixture
async def any_store(store_opener: Callable[..., Awaitable[Store]]) -> Store:
    return await store_opener()
