"""Send counters: the reservations that make throttles and frequency caps exact.

A notification about to be sent reserves one slot in each counter that limits it (its throttle
key, the frequency caps of its channels) in the `send_reservations` table (schema version 5):
one row per (notification id, counter), with the time it was reserved. A counter is full when it
holds `limit` rows within the sliding `window` before now.

Exactness, on both backends: the reservation reads and writes under a lock per recipient (a
PostgreSQL advisory transaction lock on the recipient id; SQLite's write lock, `BEGIN
IMMEDIATE`), so concurrent notifications for one recipient, on any number of workers, are
counted one after another. It is all or nothing (a notification refused by one counter takes no
slot in the others), and idempotent: a notification that already holds its reservations (a
retried local activity, a workflow task replayed on another worker) is granted again without
counting twice.

Old rows (older than the longest window, 31 days) of the recipient are deleted on the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

from pydantic import AwareDatetime, BaseModel

from tidings.models.caps import MAX_CAP_WINDOW, CounterLimit, Refusal, ReservationRequest, iso_duration


class Reservation(BaseModel):
    """One row of `send_reservations`, as `tidings store copy` moves it."""

    notification_id: str
    counter: str
    recipient_id: str
    reserved_at: AwareDatetime


class SendCounters(Protocol):
    async def reserve(self, request: ReservationRequest) -> Refusal | None:
        """Reserve a slot in every counter of `request`, or none: None when granted (or already
        held by this notification), else why not and when the first full counter frees a slot."""
        ...

    async def reserved(self, recipient_id: str, counter: str, since: datetime) -> int:
        """How many reservations a recipient's counter holds since `since` (for status, tests)."""
        ...

    def export(self, batch_size: int = 500) -> AsyncIterator[list[Reservation]]:
        """Every reservation, by (notification id, counter), in batches (`tidings store copy`):
        copied, they keep counting against the caps in the new store."""
        ...

    async def import_reservations(self, reservations: list[Reservation]) -> None:
        """Store reservations as they are; ones already there are left alone."""
        ...


def prune_before(at: datetime) -> datetime:
    """Reservations older than this can no longer count in any window."""
    return at - MAX_CAP_WINDOW


def first_refusal(at: datetime, limits: list[tuple[CounterLimit, list[datetime]]]) -> Refusal | None:
    """Decide a reservation from each limit and the reservation times of its counter in its window
    (oldest first). The refusal names the first full counter; its next slot is when enough of
    the reservations in the window have aged out of it to leave one free."""
    refusals: list[Refusal] = []
    for limit, times in limits:
        if len(times) < limit.limit:
            continue
        frees_at = times[len(times) - limit.limit] + limit.window
        refusals.append(
            Refusal(
                counter=limit.counter,
                reason=f"{limit.what}: {len(times)} sent in the last {iso_duration(limit.window)}",
                next_slot=frees_at,
            )
        )
    if not refusals:
        return None
    first = refusals[0]
    return first.model_copy(update={"next_slot": max(r.next_slot for r in refusals)})
