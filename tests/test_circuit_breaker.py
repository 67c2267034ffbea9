"""The circuit breaker's state machine, step by step, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.activities.failover.breaker import Admission, BreakerState, CircuitBreaker, StateChange

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def breaker(clock: Clock, changes: list[StateChange] | None = None, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        "smtp",
        threshold,
        timedelta(seconds=30),
        clock=clock,
        on_change=changes.append if changes is not None else None,
    )


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.failed(b.admit())


def test_opens_after_threshold_consecutive_failures() -> None:
    clock, changes = Clock(), list[StateChange]()
    b = breaker(clock, changes)
    fail(b, 2)
    assert b.admit() is Admission.use and b.consecutive_failures == 2
    b.failed(Admission.use)
    assert b.admit() is Admission.skip and b.opened_at == T0
    assert [(c.state, c.consecutive_failures) for c in changes] == [(BreakerState.open, 3)]
    assert b.admit() is Admission.skip


def test_a_success_or_an_answer_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 2)
    b.succeeded(b.admit())  # accepted, or refused the address: the provider works
    fail(b, 2)
    assert b.state is BreakerState.closed


def test_throttling_neither_counts_nor_resets() -> None:
    b = breaker(Clock())
    fail(b, 2)
    b.released(b.admit())
    assert b.consecutive_failures == 2
    fail(b, 1)
    assert b.state is BreakerState.open


def test_cooldown_then_exactly_one_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(29.9)
    assert b.admit() is Admission.skip
    clock.advance(0.1)
    assert b.admit() is Admission.probe
    assert b.state is BreakerState.half_open
    assert b.admit() is Admission.skip  # one trial in flight; the others keep skipping
    assert b.admit() is Admission.skip


def test_successful_probe_closes() -> None:
    clock, changes = Clock(), list[StateChange]()
    b = breaker(clock, changes)
    fail(b, 3)
    clock.advance(30)
    probe = b.admit()
    b.succeeded(probe)
    assert b.state is BreakerState.closed and b.opened_at is None and b.consecutive_failures == 0
    assert [c.state for c in changes] == [BreakerState.open, BreakerState.half_open, BreakerState.closed]
    assert b.admit() is Admission.use


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(45)
    b.failed(b.admit())
    assert b.state is BreakerState.open and b.opened_at == T0 + timedelta(seconds=45)
    clock.advance(29)
    assert b.admit() is Admission.skip
    clock.advance(1)
    assert b.admit() is Admission.probe


def test_probe_without_verdict_lets_the_next_delivery_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(30)
    b.released(b.admit())  # cancelled, or the content did not render
    assert b.state is BreakerState.half_open
    assert b.admit() is Admission.probe


def test_failures_of_deliveries_admitted_before_it_opened_do_not_extend_it() -> None:
    clock = Clock()
    b = breaker(clock)
    admitted = [b.admit() for _ in range(5)]  # five concurrent deliveries, all let through
    for admission in admitted:
        clock.advance(1)
        b.failed(admission)
    assert b.state is BreakerState.open and b.opened_at == T0 + timedelta(seconds=3)


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 30), (1, 0), (1, -5)])
def test_refuses_meaningless_settings(threshold: int, cooldown: int) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("smtp", threshold, timedelta(seconds=cooldown))


@given(st.lists(st.sampled_from(["fail", "ok", "release", "tick"]), max_size=60))
def test_never_more_than_one_probe_in_flight(steps: list[str]) -> None:
    """Whatever happens, at most one delivery holds a probe at a time, and an open breaker never
    lets a plain delivery through."""
    clock = Clock()
    b = breaker(clock, threshold=2)
    in_flight: list[Admission] = []
    for step in steps:
        if step == "tick":
            clock.advance(20)
            continue
        admission = b.admit()
        if b.state is BreakerState.open:
            assert admission is Admission.skip
        if admission is Admission.skip:
            continue
        in_flight.append(admission)
        assert sum(a is Admission.probe for a in in_flight) <= 1
        finished = in_flight.pop(0)
        {"fail": b.failed, "ok": b.succeeded, "release": b.released}[step](finished)
