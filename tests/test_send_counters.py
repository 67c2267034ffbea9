"""Send counters in the store (schema version 5): exact under concurrency, on both backends.

Several store objects on one database stand for several workers (each has its own connection
pool or SQLite connection and thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from tidings.activities.store.base import Store
from tidings.models import Channel, CounterLimit, Preferences, Recipient, ReservationRequest

Opener = Callable[..., Awaitable[Store]]
AT = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
HOURLY = CounterLimit(
    counter="channel:push", limit=3, window=timedelta(hours=1), what="frequency cap push 3/PT1H"
)


def reservation(notification_id: str, at: datetime = AT, *limits: CounterLimit) -> ReservationRequest:
    return ReservationRequest(
        recipient_id="u1", notification_id=notification_id, at=at, limits=list(limits) or [HOURLY]
    )


async def test_fifty_at_once_from_several_workers_get_exactly_the_limit(store_opener: Opener) -> None:
    stores = [await store_opener() for _ in range(4)]
    outcomes = await asyncio.gather(
        *(stores[i % 4].counters.reserve(reservation(f"n{i}")) for i in range(50))
    )
    granted = [o for o in outcomes if o is None]
    assert len(granted) == 3
    refused = [o for o in outcomes if o is not None]
    assert all(r.counter == "channel:push" and r.next_slot == AT + timedelta(hours=1) for r in refused)
    assert "frequency cap push 3/PT1H: 3 sent in the last PT1H" in refused[0].reason
    assert await stores[0].counters.reserved("u1", "channel:push", AT - timedelta(hours=1)) == 3


async def test_a_retried_reservation_counts_once(any_store: Store) -> None:
    for _ in range(3):
        assert await any_store.counters.reserve(reservation("same")) is None
    assert await any_store.counters.reserved("u1", "channel:push", AT - timedelta(hours=1)) == 1


async def test_the_window_slides_and_the_next_slot_is_when_the_oldest_ages_out(any_store: Store) -> None:
    counters = any_store.counters
    for i, minutes in enumerate((0, 10, 20)):
        assert await counters.reserve(reservation(f"n{i}", AT + timedelta(minutes=minutes))) is None
    refusal = await counters.reserve(reservation("n3", AT + timedelta(minutes=30)))
    assert refusal is not None and refusal.next_slot == AT + timedelta(hours=1)
    assert await counters.reserve(reservation("n3", AT + timedelta(hours=1))) is None  # n0 aged out
    refusal = await counters.reserve(reservation("n4", AT + timedelta(hours=1)))
    assert refusal is not None and refusal.next_slot == AT + timedelta(hours=1, minutes=10)


async def test_all_or_nothing_across_counters(any_store: Store) -> None:
    throttle = CounterLimit(
        counter="throttle:login", limit=1, window=timedelta(days=1), what="throttle 'login' (1 per P1D)"
    )
    assert await any_store.counters.reserve(reservation("a", AT, throttle, HOURLY)) is None
    refusal = await any_store.counters.reserve(reservation("b", AT, throttle, HOURLY))
    assert refusal is not None and refusal.counter == "throttle:login"
    assert await any_store.counters.reserved("u1", "channel:push", AT - timedelta(hours=1)) == 1
    # several rules on one counter take one slot
    daily = HOURLY.model_copy(update={"limit": 10, "window": timedelta(days=1)})
    assert await any_store.counters.reserve(reservation("c", AT, HOURLY, daily)) is None
    assert await any_store.counters.reserved("u1", "channel:push", AT - timedelta(days=1)) == 2


async def test_a_recipients_frequency_caps_are_stored(any_store: Store) -> None:
    await any_store.put(Recipient(id="u1", email="u1@example.com"))
    prefs = Preferences.model_validate({"frequency_caps": {"push": ["3/PT1H", "10/P1D"], "email": []}})
    updated = await any_store.set_preferences("u1", prefs)
    assert updated.preferences == prefs
    loaded = await any_store.get("u1")
    assert loaded is not None
    assert [str(r) for r in loaded.preferences.frequency_caps[Channel.push]] == ["3/PT1H", "10/P1D"]
    assert loaded.preferences.frequency_caps[Channel.email] == []
