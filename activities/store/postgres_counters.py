"""The PostgreSQL side of the send counters (see `counters.py`): reservations in a transaction
holding an advisory lock on the recipient, so workers on any number of machines count one after
another (a row lock would need a row: recipients given inline have none)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

import psycopg

from tidings.activities.store.counters import Reservation, first_refusal, prune_before
from tidings.activities.store.postgres_migrations import COUNTER_LOCK_SPACE
from tidings.models import CounterLimit, Refusal, ReservationRequest

T = TypeVar("T")
Connection = psycopg.AsyncConnection[Any]


class _Runs(Protocol):
    async def run(self, work: Callable[[Connection], Awaitable[T]], *, retry: bool = True) -> T: ...


async def _times(conn: Connection, request: ReservationRequest, limit: CounterLimit) -> list[datetime]:
    cur = await conn.execute(
        "SELECT reserved_at FROM send_reservations WHERE recipient_id = %s AND counter = %s"
        " AND reserved_at > %s ORDER BY reserved_at",
        (request.recipient_id, limit.counter, request.at - limit.window),
    )
    return [row[0] for row in await cur.fetchall()]


async def reserve(conn: Connection, request: ReservationRequest) -> Refusal | None:
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (COUNTER_LOCK_SPACE, request.recipient_id)
        )
        cur = await conn.execute(
            "SELECT 1 FROM send_reservations WHERE notification_id = %s LIMIT 1", (request.notification_id,)
        )
        if await cur.fetchone() is not None or not request.limits:
            return None
        await conn.execute(
            "DELETE FROM send_reservations WHERE recipient_id = %s AND reserved_at < %s",
            (request.recipient_id, prune_before(request.at)),
        )
        refusal = first_refusal(
            request.at, [(limit, await _times(conn, request, limit)) for limit in request.limits]
        )
        if refusal is None:
            counters = dict.fromkeys(limit.counter for limit in request.limits)
            async with conn.cursor() as insert:
                await insert.executemany(
                    "INSERT INTO send_reservations (notification_id, counter, recipient_id, reserved_at)"
                    " VALUES (%s, %s, %s, %s)",
                    [(request.notification_id, c, request.recipient_id, request.at) for c in counters],
                )
        return refusal


class PostgresCounters:
    def __init__(self, store: _Runs) -> None:
        self._store = store

    async def reserve(self, request: ReservationRequest) -> Refusal | None:
        # Safe to retry after a broken connection: the transaction either committed the
        # reservation (the retry finds it held) or rolled back.
        async def work(conn: Connection) -> Refusal | None:
            return await reserve(conn, request)

        return await self._store.run(work)

    async def reserved(self, recipient_id: str, counter: str, since: datetime) -> int:
        async def count(conn: Connection) -> int:
            cur = await conn.execute(
                "SELECT COUNT(*) FROM send_reservations WHERE recipient_id = %s AND counter = %s"
                " AND reserved_at > %s",
                (recipient_id, counter, since),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._store.run(count)

    async def export(self, batch_size: int = 500) -> AsyncIterator[list[Reservation]]:
        after = ("", "")
        while True:

            async def page(conn: Connection, after: tuple[str, str] = after) -> list[Reservation]:
                cur = await conn.execute(
                    f"SELECT {_COLUMNS} FROM send_reservations WHERE (notification_id, counter) > (%s, %s)"
                    " ORDER BY notification_id, counter LIMIT %s",
                    (*after, batch_size),
                )
                return [
                    Reservation(notification_id=n, counter=c, recipient_id=r, reserved_at=at)
                    for n, c, r, at in await cur.fetchall()
                ]

            batch = await self._store.run(page)
            if not batch:
                return
            yield batch
            after = (batch[-1].notification_id, batch[-1].counter)

    async def import_reservations(self, reservations: list[Reservation]) -> None:
        rows = [(r.notification_id, r.counter, r.recipient_id, r.reserved_at) for r in reservations]

        async def insert(conn: Connection) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO send_reservations ({_COLUMNS}) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    rows,
                )

        await self._store.run(insert)


_COLUMNS = "notification_id, counter, recipient_id, reserved_at"
