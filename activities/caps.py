"""Deciding, right before a notification is sent, whether a throttle or frequency cap holds it.

Runs inside the `prepare_notification` local activity (after quiet hours), so a notification
under caps costs no extra server round trip: the reservation is one store transaction.
"""

from __future__ import annotations

from datetime import datetime

from tidings.activities.store.counters import SendCounters
from tidings.models import CapCheck, CapHold, Channel, CounterLimit, Priority, Recipient, ReservationRequest
from tidings.models.caps import CapRuleModel, iso_duration
from tidings.planning import block_reason
from tidings.settings import FrequencyCapSettings

THROTTLE_COUNTER = "throttle:"
CHANNEL_COUNTER = "channel:"


def limits_for(
    check: CapCheck, recipient: Recipient, channels: list[Channel], defaults: FrequencyCapSettings
) -> list[CounterLimit]:
    """The counters a notification must fit: its throttle, then the frequency caps of the channels
    it is about to use (each step's first channel that the recipient allows). A recipient's own
    caps for a channel replace the default; `critical` is never capped."""
    limits: list[CounterLimit] = []
    if not any(block_reason(c, recipient, check.priority, check.category) is None for c in channels):
        return limits  # nothing will be sent: the workflow ends it by preferences
    throttle = check.throttle
    if throttle is not None:
        limits.append(
            CounterLimit(
                counter=THROTTLE_COUNTER + throttle.key,
                limit=throttle.limit,
                window=throttle.window,
                what=f"throttle {throttle.key!r} ({throttle.limit} per {iso_duration(throttle.window)})",
            )
        )
    if check.priority is Priority.critical:
        return limits
    for channel in dict.fromkeys(check.primary_channels):
        if block_reason(channel, recipient, check.priority, check.category) is not None:
            continue
        rules: list[CapRuleModel] = recipient.preferences.frequency_caps.get(
            channel, getattr(defaults, channel.value)
        )
        limits.extend(
            CounterLimit(
                counter=CHANNEL_COUNTER + channel.value,
                limit=rule.limit,
                window=rule.window,
                what=f"frequency cap {channel.value} {rule}",
            )
            for rule in rules
        )
    return limits


async def hold_for(
    counters: SendCounters,
    check: CapCheck,
    recipient: Recipient,
    channels: list[Channel],
    defaults: FrequencyCapSettings,
    at: datetime,
) -> CapHold | None:
    """Reserve the notification's slots; None when it may be sent now. A full throttle ends it
    `throttled`; a full frequency cap holds it until the next slot (policy `defer`) or ends it
    (`drop`), as the category's policy says."""
    limits = limits_for(check, recipient, channels, defaults)
    if not limits:
        return None
    refusal = await counters.reserve(
        ReservationRequest(
            recipient_id=recipient.id, notification_id=check.notification_id, at=at, limits=limits
        )
    )
    if refusal is None:
        return None
    if refusal.counter.startswith(THROTTLE_COUNTER) or defaults.policy_for(check.category) == "drop":
        return CapHold(reason=refusal.reason)
    return CapHold(reason=refusal.reason, until=refusal.next_slot)
