"""A circuit breaker per provider, shared by every delivery on one worker.

Closed: deliveries use the provider; `threshold` consecutive retryable failures open it. Open:
deliveries skip it (and go to the next provider of their channel) until `cooldown` has passed
since it opened. Then it is half-open: exactly one delivery is let through as a probe while the
others keep skipping; the probe's success closes the circuit, its failure opens it again for
another cool-down. A probe that ends without a verdict (cancelled, content that cannot render,
throttled) lets the next delivery probe instead.

The state lives in the worker process: each worker learns on its own (a breaker shared through
a store would add a round trip to every delivery). Activities run on one event loop and no
method awaits, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class Admission(StrEnum):
    """What the breaker lets a delivery do: use the provider, probe it, or skip it."""

    use = "use"
    probe = "probe"
    skip = "skip"


@dataclass(frozen=True)
class StateChange:
    provider: str
    state: BreakerState
    at: datetime
    consecutive_failures: int


class CircuitBreaker:
    def __init__(
        self,
        provider: str,
        threshold: int,
        cooldown: timedelta,
        *,
        clock: Clock = utc_now,
        on_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if cooldown <= timedelta(0):
            raise ValueError("cooldown must be longer than zero")
        self.provider = provider
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.closed
        self.consecutive_failures = 0
        self.opened_at: datetime | None = None
        self._probe_in_flight = False

    def admit(self) -> Admission:
        """Called once per delivery attempt that would use this provider."""
        if self.state is BreakerState.closed:
            return Admission.use
        if self.state is BreakerState.open:
            assert self.opened_at is not None
            if self._clock() < self.opened_at + self.cooldown:
                return Admission.skip
            self._change(BreakerState.half_open)
        if self._probe_in_flight:
            return Admission.skip
        self._probe_in_flight = True
        return Admission.probe

    def succeeded(self, admission: Admission) -> None:
        """The provider answered (accepted, or refused the message itself): it works."""
        self._end_probe(admission)
        self.consecutive_failures = 0
        if self.state is not BreakerState.closed:
            self.opened_at = None
            self._change(BreakerState.closed)

    def failed(self, admission: Admission) -> None:
        """A retryable failure that is the provider's (unreachable, 5xx, bad credentials)."""
        self._end_probe(admission)
        if admission is Admission.probe:
            self._open()
            return
        if self.state is not BreakerState.closed:
            return  # a delivery admitted before it opened (or forced through): it is open already
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.threshold:
            self._open()

    def released(self, admission: Admission) -> None:
        """The attempt ended without telling anything about the provider's health."""
        self._end_probe(admission)

    def _end_probe(self, admission: Admission) -> None:
        if admission is Admission.probe:
            self._probe_in_flight = False

    def _open(self) -> None:
        self.opened_at = self._clock()
        self._change(BreakerState.open)

    def _change(self, state: BreakerState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(StateChange(self.provider, state, self._clock(), self.consecutive_failures))


class BreakerBoard:
    """One breaker per provider name, created on first use with that provider's settings."""

    def __init__(
        self,
        settings_for: Callable[[str], tuple[int, timedelta]],
        *,
        clock: Clock = utc_now,
        on_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        self._settings_for = settings_for
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def __getitem__(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            threshold, cooldown = self._settings_for(provider)
            breaker = CircuitBreaker(
                provider, threshold, cooldown, clock=self._clock, on_change=self._on_change
            )
            self._breakers[provider] = breaker
        return breaker
