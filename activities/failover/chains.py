"""Which providers each channel tries on this worker, with their budgets and breakers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from tidings.activities.failover.breaker import BreakerBoard, Clock, StateChange, utc_now
from tidings.activities.failover.route import FailoverRoute
from tidings.models import ProviderTry
from tidings.planning import CHANNEL_PROVIDERS
from tidings.settings import FailoverPolicy, FailoverSettings, Settings
from tidings.telemetry import metrics

log = logging.getLogger(__name__)


def report_change(change: StateChange) -> None:
    """Log and count a breaker's state change (called inside the activity that caused it)."""
    log.warning(
        "circuit of provider %s is now %s (%d consecutive failures)",
        change.provider,
        change.state.value,
        change.consecutive_failures,
    )
    metrics.breaker_changed(change.provider, change.state.value)


class ProviderChains:
    """The ordered providers per planned provider name (`Destination.provider`, e.g. "smtp"):
    the workflow plans a destination for the channel's usual provider, the activity routes it."""

    def __init__(
        self,
        chains: dict[str, list[str]],
        failover: FailoverSettings,
        *,
        clock: Clock = utc_now,
        report: bool = True,
    ) -> None:
        # a chain of the usual provider alone is no chain; one other provider alone is routed
        self._chains = {planned: chain for planned, chain in chains.items() if chain and chain != [planned]}
        self._failover = failover
        self.breakers = BreakerBoard(
            self._breaker_settings, clock=clock, on_change=report_change if report else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderChains:
        chains = {CHANNEL_PROVIDERS[channel]: settings.chain_for(channel) for channel in settings.channels}
        return cls(chains, settings.failover)

    def policy_for(self, provider: str) -> FailoverPolicy:
        return self._failover.policy_for(provider)

    def _breaker_settings(self, provider: str) -> tuple[int, timedelta]:
        policy = self.policy_for(provider)
        return policy.breaker_threshold, policy.breaker_cooldown

    def route(
        self, planned: str, tries: Sequence[ProviderTry], *, attempt: int, now: datetime
    ) -> FailoverRoute | None:
        """The route of a delivery planned for `planned`, or None when it goes to `planned` alone."""
        chain = self._chains.get(planned)
        if chain is None:
            return None
        return FailoverRoute(chain, self.policy_for, self.breakers, tries, attempt=attempt, now=now)
