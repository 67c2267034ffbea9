"""Recipient loads per second through the store, SQLite vs PostgreSQL, from the worker's path.

Each load is what the `prepare_notification` local activity does for a stored recipient: the
store's `get` (one query: subscriber, preferences and devices as JSON), pydantic validation, and
the quiet-hours evaluation. It runs at 1, 10 and 50 concurrent loads and prints loads/s per
backend and the ratio PostgreSQL/SQLite.

PostgreSQL is a throwaway local cluster started from Debian's binaries (as the tests do), or the
server at `--dsn`. The pool has the worker's default size unless `--pool-size` says otherwise.

    python -m bench.store_bench [--recipients 2000] [--loads 4000] [--rounds 2] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from datetime import time as clock
from pathlib import Path

from tidings.activities.store.base import Store
from tidings.activities.store.postgres import PostgresStore
from tidings.activities.store.sqlite import SqliteStore
from tidings.activities.subscribers import SubscriberActivities
from tidings.models import Channel, Device, Preferences, PrepareInput, QuietHours, Recipient
from tidings.settings import Settings

CONCURRENCY = (1, 10, 50)


def recipient(i: int) -> Recipient:
    return Recipient(
        id=f"user-{i:06d}",
        name=f"User {i}",
        email=f"user{i}@example.com",
        phone="+4915112345678",
        timezone="Europe/Berlin",
        devices=[
            Device(id="phone", platform="fcm", token=f"fcm-{i}-" + "x" * 140),
            Device(id="tablet", platform="apns", token=f"{i:064x}", app="com.example.app"),
            Device(
                id="old", platform="fcm", token=f"old-{i}", active=False, deactivated_reason="Unregistered"
            ),
        ],
        preferences=Preferences(
            opted_out_channels={Channel.sms},
            opted_out_categories={"marketing"},
            opted_out_category_channels={"digest": {Channel.email}},
            quiet_hours=QuietHours(start=clock(22, 0), end=clock(7, 0)),
        ),
    )


async def fill(store: Store, count: int) -> None:
    for start in range(0, count, 100):
        await asyncio.gather(*(store.put(recipient(i)) for i in range(start, min(count, start + 100))))


async def loads_per_second(
    load: Callable[[str], Awaitable[object]], recipients: int, loads: int, concurrency: int
) -> float:
    ids = [f"user-{random.randrange(recipients):06d}" for _ in range(loads)]
    queue = iter(ids)

    async def runner() -> None:
        for recipient_id in queue:
            await load(recipient_id)

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return loads / (time.perf_counter() - started)


def activity_load(store: Store) -> Callable[[str], Awaitable[object]]:
    activities = SubscriberActivities(store, Settings())
    at = datetime.now(UTC)

    async def load(recipient_id: str) -> object:
        prep = await activities.prepare_notification(
            PrepareInput(recipient_id=recipient_id, channels=[Channel.push, Channel.email], at=at)
        )
        assert prep.recipient is not None and len(prep.recipient.devices) == 3
        return prep

    return load


async def main(recipients: int, loads: int, rounds: int, dsn: str | None, pool_size: int) -> None:
    server = None
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        if dsn is None:
            from tests.postgres_fixture import start_server

            server = start_server()
            dsn = await server.create_database()
        sqlite = await SqliteStore.open(Path(tmp) / "bench.sqlite3")
        postgres = await PostgresStore.open(dsn, min_size=pool_size, max_size=pool_size)
        try:
            print(
                f"filling both stores with {recipients} recipients (3 devices, preferences each)", flush=True
            )
            await fill(sqlite, recipients)
            await fill(postgres, recipients)
            results: dict[tuple[str, int], list[float]] = {}
            for _ in range(rounds):
                for concurrency in CONCURRENCY:
                    for name, store in (("sqlite", sqlite), ("postgres", postgres)):
                        await loads_per_second(activity_load(store), recipients, min(loads, 200), concurrency)
                        rate = await loads_per_second(activity_load(store), recipients, loads, concurrency)
                        results.setdefault((name, concurrency), []).append(rate)
        finally:
            await sqlite.aclose()
            await postgres.aclose()
            if server is not None:
                server.remove()
    print(f"\nrecipient loads/s through prepare_notification ({loads} loads, median of {rounds} rounds,")
    print(f"PostgreSQL pool of {pool_size} connections, local server)\n")
    print(f"{'concurrent':>10} {'SQLite':>10} {'PostgreSQL':>11} {'PG/SQLite':>10}")
    for concurrency in CONCURRENCY:
        lite = statistics.median(results[("sqlite", concurrency)])
        pg = statistics.median(results[("postgres", concurrency)])
        print(f"{concurrency:>10} {lite:>10.0f} {pg:>11.0f} {pg / lite:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dsn", help="an existing PostgreSQL database (default: a throwaway local cluster)")
    parser.add_argument("--pool-size", dest="pool_size", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.loads, args.rounds, args.dsn, args.pool_size))
