"""A delivery's route through its channel's providers, attempt by attempt (no Temporal needed:
each attempt gets the ledger the previous one left, as the heartbeat details carry it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tidings.activities.failover.breaker import Admission, BreakerBoard
from tidings.activities.failover.route import FailoverRoute, ledger_from, ledger_payload
from tidings.models import ProviderTry
from tidings.settings import FailoverSettings

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHAIN = ["smtp", "relay_b", "relay_c"]


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


def settings(**values: object) -> FailoverSettings:
    return FailoverSettings.model_validate({"attempts": 2, "time": "PT5M", "breaker_threshold": 50, **values})


def board(failover: FailoverSettings, clock: Clock | None = None) -> BreakerBoard:
    def breaker_settings(name: str) -> tuple[int, timedelta]:
        policy = failover.policy_for(name)
        return policy.breaker_threshold, policy.breaker_cooldown

    return BreakerBoard(breaker_settings, clock=clock or Clock())


def attempt(
    failover: FailoverSettings,
    breakers: BreakerBoard,
    ledger: list[ProviderTry],
    number: int,
    at: datetime = T0,
) -> FailoverRoute:
    # the ledger goes through the same JSON round trip as the heartbeat details
    tries = ledger_from([ledger_payload(ledger)])
    return FailoverRoute(CHAIN, failover.policy_for, breakers, tries, attempt=number, now=at)


def test_moves_on_after_the_attempt_budget_and_the_last_takes_the_rest() -> None:
    failover = settings()
    breakers = board(failover)
    ledger: list[ProviderTry] = []
    used = []
    for number in range(1, 8):
        route = attempt(failover, breakers, ledger, number)
        used.append(route.choose(T0).provider)
        route.failed("transient", "421 try later", T0)
        ledger = route.tries
    assert used == ["smtp", "smtp", "relay_b", "relay_b", "relay_c", "relay_c", "relay_c"]
    assert [(t.provider, t.outcome, t.attempts) for t in ledger] == [
        ("smtp", "moved_on", 2),
        ("relay_b", "moved_on", 2),
        ("relay_c", "trying", 3),
    ]
    assert ledger[0].reason == "its budget of 2 attempts is used; last error: 421 try later"


def test_moves_on_when_the_time_budget_has_passed() -> None:
    failover = settings(attempts=100, time="PT5M")
    breakers = board(failover)
    route = attempt(failover, breakers, [], 1, T0)
    assert route.choose(T0).provider == "smtp"
    assert not route.failed("transient", "timeout", T0 + timedelta(seconds=10))
    later = T0 + timedelta(minutes=5)
    route = attempt(failover, breakers, route.tries, 2, later)
    assert route.choose(later).provider == "relay_b"
    assert route.tries[0].reason == "its time budget of 5 minutes is used; last error: timeout"


def test_throttled_beyond_the_budget_moves_on_at_once() -> None:
    failover = settings(attempts=10)
    breakers = board(failover)
    route = attempt(failover, breakers, [], 1)
    route.choose(T0)
    assert not route.failed("throttled", "429", T0, timedelta(seconds=30))
    route = attempt(failover, breakers, route.tries, 2)
    assert route.choose(T0).provider == "smtp"
    assert route.failed("throttled", "429", T0, timedelta(minutes=10))
    assert route.tries[0].reason is not None and route.tries[0].reason.startswith("throttled beyond")


def test_a_refused_account_moves_on_without_spending_the_budget() -> None:
    failover = settings(attempts=10)
    route = attempt(failover, board(failover), [], 1)
    route.choose(T0)
    assert route.failed("provider_refused", "401 Authenticate", T0)
    assert route.tries[0].outcome == "moved_on"


def test_an_address_error_ends_the_route() -> None:
    failover = settings()
    route = attempt(failover, board(failover), [], 1)
    route.choose(T0)
    route.refused_message("550 no such user")
    assert [(t.provider, t.outcome) for t in route.tries] == [("smtp", "failed")]


def test_attempts_missing_from_the_ledger_count_against_the_provider_being_tried() -> None:
    failover = settings(attempts=3)
    breakers = board(failover)
    route = attempt(failover, breakers, [], 1)
    route.choose(T0)
    route.failed("transient", "421", T0)
    # attempts 2 and 3 timed out before they could heartbeat: attempt 4 sees a gap of two
    route = attempt(failover, breakers, route.tries, 4)
    assert route.choose(T0).provider == "relay_b"
    assert route.tries[0].attempts == 3 and route.tries[0].outcome == "moved_on"


def test_open_circuits_are_skipped_and_the_last_is_tried_anyway() -> None:
    failover = settings(breaker_threshold=1)
    clock = Clock()
    breakers = board(failover, clock)
    for name in CHAIN:
        breakers[name].failed(Admission.use)
    route = attempt(failover, breakers, [], 1)
    choice = route.choose(T0)
    assert choice.provider == "relay_c" and choice.is_last
    assert [(t.provider, t.outcome, t.attempts) for t in route.tries] == [
        ("smtp", "skipped", 0),
        ("relay_b", "skipped", 0),
        ("relay_c", "trying", 0),
    ]
    assert route.tries[0].summary == f"smtp skipped: circuit open since {T0.isoformat()}"


def test_a_skipped_provider_is_used_again_once_its_circuit_lets_it() -> None:
    failover = settings(breaker_threshold=1, breaker_cooldown="PT30S")
    clock = Clock()
    breakers = board(failover, clock)
    breakers["smtp"].failed(Admission.use)
    route = attempt(failover, breakers, [], 1)
    assert route.choose(T0).provider == "relay_b"
    route.failed("transient", "503", T0)
    clock.now = T0 + timedelta(seconds=30)
    route = attempt(failover, breakers, route.tries, 2)
    choice = route.choose(clock.now)
    assert choice.provider == "smtp" and choice.admission is Admission.probe
    route.accepted()
    assert [(t.provider, t.outcome) for t in route.tries] == [("smtp", "sent"), ("relay_b", "trying")]


def test_abandoned_attempt_returns_the_probe() -> None:
    failover = settings(breaker_threshold=1, breaker_cooldown="PT30S")
    clock = Clock()
    breakers = board(failover, clock)
    breakers["smtp"].failed(Admission.use)
    clock.now = T0 + timedelta(seconds=30)
    route = attempt(failover, breakers, [], 1)
    assert route.choose(clock.now).admission is Admission.probe
    route.abandoned()
    assert breakers["smtp"].admit() is Admission.probe


def test_an_unreadable_ledger_starts_afresh() -> None:
    assert ledger_from([]) == []
    assert ledger_from(["not a ledger"]) == []
    assert ledger_from([[{"provider": 5, "outcome": "nonsense"}]]) == []


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["transient", "throttled", "provider_refused", "lost"]),
            st.integers(min_value=0, max_value=400),  # seconds the attempt started after the last
            st.integers(min_value=0, max_value=900),  # Retry-After seconds (throttled)
        ),
        max_size=25,
    ),
    attempts=st.integers(min_value=1, max_value=5),
    threshold=st.integers(min_value=1, max_value=4),
)
def test_route_invariants(steps: list[tuple[str, int, int]], attempts: int, threshold: int) -> None:
    """Whatever providers do: every attempt is counted once, the last provider is never left,
    providers are left in order, and the chosen provider is the latest one tried."""
    failover = settings(attempts=attempts, breaker_threshold=threshold, breaker_cooldown="PT60S")
    clock = Clock()
    breakers = board(failover, clock)
    ledger: list[ProviderTry] = []
    at = T0
    for number, (kind, later, retry_after) in enumerate(steps, start=1):
        at += timedelta(seconds=later)
        clock.now = at
        route = attempt(failover, breakers, ledger, number, at)
        choice = route.choose(at)
        if kind != "lost":  # a lost attempt leaves nothing behind: the next one finds a gap
            route.failed(kind, kind, at, timedelta(seconds=retry_after))  # type: ignore[arg-type]
            ledger = route.tries
        else:
            route.abandoned()
        assert choice.provider in CHAIN
    if steps:
        final = attempt(failover, breakers, ledger, len(steps) + 1, at)
        chosen = final.choose(at)
        tries = final.tries
        assert sum(t.attempts for t in tries) == len(steps)
        assert all(t.outcome != "moved_on" for t in tries if t.provider == CHAIN[-1])
        assert [t.provider for t in tries] == [p for p in CHAIN if p in {t.provider for t in tries}]
        left = [CHAIN.index(t.provider) for t in tries if t.outcome == "moved_on"]
        assert left == sorted(left)
        [entry] = [t for t in tries if t.provider == chosen.provider]
        assert entry.outcome == "trying" and entry.last_attempt_at == at
