"""The SQLite side of the send counters (see `counters.py`): reservations under SQLite's write
lock (`BEGIN IMMEDIATE`), which serialises them across threads and processes sharing the file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from tidings.activities.store.counters import Reservation, first_refusal, prune_before
from tidings.models import CounterLimit, Refusal, ReservationRequest

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Writes(Protocol):
    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


def _micros(at: datetime) -> int:
    """Reservation times are integers (microseconds since the epoch): they compare exactly."""
    return (at - _EPOCH) // _MICROSECOND


def _instant(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _times(db: sqlite3.Connection, request: ReservationRequest, limit: CounterLimit) -> list[datetime]:
    rows = db.execute(
        "SELECT reserved_at FROM send_reservations WHERE recipient_id = ? AND counter = ?"
        " AND reserved_at > ? ORDER BY reserved_at",
        (request.recipient_id, limit.counter, _micros(request.at - limit.window)),
    ).fetchall()
    return [_instant(r[0]) for r in rows]


def reserve(db: sqlite3.Connection, request: ReservationRequest) -> Refusal | None:
    """Run inside the write transaction."""
    held = db.execute(
        "SELECT 1 FROM send_reservations WHERE notification_id = ? LIMIT 1", (request.notification_id,)
    ).fetchone()
    if held is not None or not request.limits:
        return None
    db.execute(
        "DELETE FROM send_reservations WHERE recipient_id = ? AND reserved_at < ?",
        (request.recipient_id, _micros(prune_before(request.at))),
    )
    refusal = first_refusal(request.at, [(limit, _times(db, request, limit)) for limit in request.limits])
    if refusal is None:
        counters = dict.fromkeys(limit.counter for limit in request.limits)
        db.executemany(
            "INSERT INTO send_reservations (notification_id, counter, recipient_id, reserved_at)"
            " VALUES (?, ?, ?, ?)",
            [(request.notification_id, c, request.recipient_id, _micros(request.at)) for c in counters],
        )
    return refusal


class SqliteCounters:
    def __init__(self, store: _Writes) -> None:
        self._store = store

    async def reserve(self, request: ReservationRequest) -> Refusal | None:
        return await self._store.write(lambda db: reserve(db, request))

    async def reserved(self, recipient_id: str, counter: str, since: datetime) -> int:
        row = await self._store.write(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM send_reservations WHERE recipient_id = ? AND counter = ?"
                " AND reserved_at > ?",
                (recipient_id, counter, _micros(since)),
            ).fetchone()
        )
        return int(row[0])

    async def export(self, batch_size: int = 500) -> AsyncIterator[list[Reservation]]:
        after = ("", "")
        while True:

            def page(db: sqlite3.Connection, after: tuple[str, str] = after) -> list[Any]:
                return db.execute(
                    f"SELECT {_COLUMNS} FROM send_reservations WHERE (notification_id, counter) > (?, ?)"
                    " ORDER BY notification_id, counter LIMIT ?",
                    (*after, batch_size),
                ).fetchall()

            rows = await self._store.run(page)
            if not rows:
                return
            yield [
                Reservation(notification_id=n, counter=c, recipient_id=r, reserved_at=_instant(at))
                for n, c, r, at in rows
            ]
            after = (rows[-1][0], rows[-1][1])

    async def import_reservations(self, reservations: list[Reservation]) -> None:
        rows = [(r.notification_id, r.counter, r.recipient_id, _micros(r.reserved_at)) for r in reservations]
        await self._store.write(
            lambda db: db.executemany(
                f"INSERT OR IGNORE INTO send_reservations ({_COLUMNS}) VALUES (?, ?, ?, ?)", rows
            )
        )


_COLUMNS = "notification_id, counter, recipient_id, reserved_at"
