"""One delivery's way through the providers of its channel, decided afresh at each attempt.

Temporal retries the `deliver` activity; each attempt rebuilds the route from the ledger (one
`ProviderTry` per provider) that the previous attempt left in its heartbeat details, picks a
provider, and records what happened. Rules:

- Providers are tried in the channel's order. A provider is left (`moved_on`) once it has used
  its attempt budget, once its time budget has passed since its first attempt, when it throttles
  beyond its time budget, or when it refuses our credentials or account. The last provider is
  never left: it takes the attempts the channel's retry policy has left.
- A permanent error about the message or the address (unknown mailbox, invalid number) ends the
  delivery: no other provider could deliver it.
- A provider whose circuit is open is `skipped` without being tried and without using its
  budget (a later attempt uses it again once its circuit lets deliveries through). When every
  remaining provider's circuit is open, the last one is tried anyway: skipping it would only
  burn the retry policy's attempts.
- Attempts the ledger does not know of (an attempt that timed out or whose worker died before it
  could heartbeat) are counted against the provider of the latest recorded attempt (or, with no
  ledger yet, the first provider not left).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from tidings.activities.failover.breaker import Admission, BreakerBoard
from tidings.models import ProviderTry
from tidings.settings import FailoverPolicy

Failure = Literal["transient", "throttled", "provider_refused"]


@dataclass(frozen=True)
class Choice:
    provider: str
    admission: Admission
    is_last: bool


def ledger_from(heartbeat_details: Sequence[Any]) -> list[ProviderTry]:
    """The ledger a previous attempt heartbeated; empty when there is none or it does not parse."""
    if not heartbeat_details or not isinstance(heartbeat_details[0], list):
        return []
    try:
        return [ProviderTry.model_validate(item) for item in heartbeat_details[0]]
    except ValidationError:
        return []


def ledger_payload(tries: Sequence[ProviderTry]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", exclude_none=True) for t in tries]


class FailoverRoute:
    def __init__(
        self,
        chain: Sequence[str],
        policy_for: Callable[[str], FailoverPolicy],
        breakers: BreakerBoard,
        tries: Sequence[ProviderTry],
        *,
        attempt: int,
        now: datetime,
    ) -> None:
        if not chain:
            raise ValueError("a route needs at least one provider")
        self._chain = list(chain)
        self._policy_for = policy_for
        self._breakers = breakers
        known = {t.provider: t.model_copy() for t in tries if t.provider in self._chain}
        self.tries: list[ProviderTry] = [known[name] for name in self._chain if name in known]
        self._count_lost_attempts(attempt, now)
        self._leave_spent(now)
        self._choice: Choice | None = None
        self._settled = True

    def _entry(self, provider: str) -> ProviderTry | None:
        return next((t for t in self.tries if t.provider == provider), None)

    def _add(self, provider: str) -> ProviderTry:
        entry = ProviderTry(provider=provider)
        self.tries.append(entry)
        self.tries.sort(key=lambda t: self._chain.index(t.provider))
        return entry

    def _count_lost_attempts(self, attempt: int, now: datetime) -> None:
        lost = attempt - 1 - sum(t.attempts for t in self.tries)
        if lost <= 0:
            return
        trying = [t for t in self.tries if t.outcome == "trying" and t.last_attempt_at is not None]
        current = max(trying, key=lambda t: t.last_attempt_at or now) if trying else None
        if current is None:  # no ledger yet: the lost attempts went to the first provider left
            name = next(n for n in self._chain if not self._left(n) or n == self._chain[-1])
            current = self._entry(name) or self._add(name)
            current.outcome = "trying"
        current.attempts += lost
        current.reason = "no answer: the attempt timed out or its worker stopped"

    def _leave_spent(self, now: datetime) -> None:
        for entry in self.tries:
            if entry.outcome == "trying" and not self._is_last(entry.provider):
                why = self._spent(entry, now)
                if why:
                    self._move_on(entry, why)

    def _is_last(self, provider: str) -> bool:
        return provider == self._chain[-1]

    def _spent(self, entry: ProviderTry, now: datetime, extra: timedelta = timedelta(0)) -> str | None:
        policy = self._policy_for(entry.provider)
        if entry.attempts >= policy.attempts:
            return f"its budget of {policy.attempts} attempt{'s' if policy.attempts != 1 else ''} is used"
        if entry.first_attempt_at is not None and now + extra - entry.first_attempt_at >= policy.time:
            return f"its time budget of {_duration(policy.time)} is used"
        return None

    def _move_on(self, entry: ProviderTry, why: str) -> None:
        entry.outcome = "moved_on"
        entry.reason = f"{why}; last error: {entry.reason}" if entry.reason else why

    def choose(self, now: datetime) -> Choice:
        """The provider of this attempt; providers whose circuit is open are marked skipped."""
        left = [name for name in self._chain if not self._left(name)] or [self._chain[-1]]
        choice: Choice | None = None
        for name in left[:-1]:
            breaker = self._breakers[name]
            admission = breaker.admit()
            if admission is Admission.skip:
                self._skip(name, breaker.opened_at)
                continue
            choice = Choice(name, admission, is_last=False)
            break
        if choice is None:
            choice = Choice(left[-1], self._breakers[left[-1]].admit(), is_last=True)
        entry = self._entry(choice.provider) or self._add(choice.provider)
        entry.outcome = "trying"
        entry.circuit_open_since = None
        entry.last_attempt_at = now
        if entry.first_attempt_at is None:
            entry.first_attempt_at = now
        self._choice = choice
        self._settled = False
        return choice

    def _left(self, provider: str) -> bool:
        entry = self._entry(provider)
        return entry is not None and entry.outcome == "moved_on"

    def _skip(self, provider: str, since: datetime | None) -> None:
        entry = self._entry(provider) or self._add(provider)
        entry.outcome = "skipped"
        entry.circuit_open_since = since
        entry.reason = "circuit open"

    def _chosen(self) -> tuple[Choice, ProviderTry]:
        assert self._choice is not None, "choose() first"
        entry = self._entry(self._choice.provider)
        assert entry is not None
        self._settled = True
        return self._choice, entry

    def accepted(self) -> None:
        choice, entry = self._chosen()
        entry.attempts += 1
        entry.outcome = "sent"
        entry.reason = None
        self._breakers[choice.provider].succeeded(choice.admission)

    def refused_message(self, reason: str) -> None:
        """A permanent error about the message or address: the delivery ends, nothing fails over.
        The provider answered, so for its breaker this counts as working."""
        choice, entry = self._chosen()
        entry.attempts += 1
        entry.outcome = "failed"
        entry.reason = reason
        self._breakers[choice.provider].succeeded(choice.admission)

    def failed(
        self, failure: Failure, reason: str, now: datetime, retry_after: timedelta | None = None
    ) -> bool:
        """A retryable failure (or the provider refusing our account). True when the next attempt
        goes to another provider."""
        choice, entry = self._chosen()
        entry.attempts += 1
        entry.reason = reason
        breaker = self._breakers[choice.provider]
        if failure == "throttled":
            breaker.released(choice.admission)
        else:
            breaker.failed(choice.admission)
        if choice.is_last:
            return False
        if failure == "provider_refused":
            self._move_on(entry, "it refused our credentials or account")
            return True
        if failure == "throttled":
            policy = self._policy_for(choice.provider)
            if retry_after is not None and self._spent(entry, now, retry_after):
                self._move_on(entry, f"throttled beyond its time budget of {_duration(policy.time)}")
                return True
        why = self._spent(entry, now)
        if why:
            self._move_on(entry, why)
            return True
        return False

    def abandoned(self) -> None:
        """The attempt ended without a verdict on the provider (cancelled, unrenderable content)."""
        if self._choice is not None and not self._settled:
            self._settled = True
            self._breakers[self._choice.provider].released(self._choice.admission)


def _duration(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"
