"""Deciding where a notification goes: preferences, opt-outs and destinations per channel.

Pure and deterministic: the workflow calls these directly.
"""

from __future__ import annotations

from tidings.models import Channel, Destination, Priority, Recipient

CHANNEL_PROVIDERS: dict[Channel, str] = {
    Channel.email: "smtp",
    Channel.sms: "twilio",
    Channel.slack: "slack",
    Channel.webhook: "webhook",
    Channel.in_app: "inbox",
}


def block_reason(
    channel: Channel, recipient: Recipient, priority: Priority, category: str | None
) -> str | None:
    """Why `channel` may not be used for this recipient, or None when it may.

    A missing address blocks every priority; opt-outs block everything but `critical`.
    """
    if channel is Channel.webhook and recipient.webhook_url and recipient.webhook_disabled:
        return f"recipient {recipient.id}'s webhook endpoint is disabled: {recipient.webhook_disabled}"
    if not recipient.has_address_for(channel):
        return f"recipient {recipient.id} has no {channel.value} address"
    if priority is Priority.critical:
        return None
    prefs = recipient.preferences
    if channel in prefs.opted_out_channels:
        return f"recipient opted out of {channel.value}"
    if category is not None:
        if category in prefs.opted_out_categories:
            return f"recipient opted out of category {category!r}"
        if channel in prefs.opted_out_category_channels.get(category, set()):
            return f"recipient opted out of {channel.value} for category {category!r}"
    return None


def is_preference_block(reason: str) -> bool:
    return "opted out" in reason


def destinations_for(recipient: Recipient, channel: Channel) -> list[Destination]:
    """Every destination a channel reaches for this recipient (push: each active device)."""
    match channel:
        case Channel.push:
            return [
                Destination(channel=channel, provider=d.platform.value, address=d.id, device_id=d.id)
                for d in recipient.devices
                if d.active
            ]
        case Channel.email if recipient.email:
            return [Destination(channel=channel, provider="smtp", address=recipient.email)]
        case Channel.sms if recipient.phone:
            return [Destination(channel=channel, provider="twilio", address=recipient.phone)]
        case Channel.webhook if recipient.webhook_url and not recipient.webhook_disabled:
            return [Destination(channel=channel, provider="webhook", address=recipient.webhook_url)]
        case Channel.slack if recipient.slack_webhook_url or recipient.slack_channel:
            address = recipient.slack_webhook_url or recipient.slack_channel or ""
            return [Destination(channel=channel, provider="slack", address=address)]
        case Channel.in_app:
            return [Destination(channel=channel, provider="inbox", address=recipient.id)]
    return []
