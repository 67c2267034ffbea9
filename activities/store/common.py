"""What both store implementations share: the table layout of a recipient, and the changes.

A recipient is three tables: `subscribers` (one row: profile and addresses), `preferences` (one
row: opt-outs and quiet hours) and `devices` (one row per device, `position` keeping their order).
Both backends load it in one query that builds the recipient's JSON in the database, which
pydantic validates in one step; both write it back from the rows below.

A change (`add_device`, `deactivate_device`, ...) is a function on the loaded `Recipient` that
returns whether it changed anything. The backends run it inside a transaction that holds the
subscriber's lock, between reading the current rows and writing them back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

from tidings.activities.store.base import (
    InboxOrder,
    InboxQuery,
    InboxStateChange,
    LateReceipt,
    UnknownRecipientError,
)
from tidings.models import Channel, DeliveryReceipt, Device, Preferences, Recipient
from tidings.redaction import redact_address

SUBSCRIBER_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "webhook_url",
    "webhook_disabled",
    "slack_webhook_url",
    "slack_channel",
    "timezone",
    "locale",
)
DEVICE_COLUMNS = (
    "device_id",
    "position",
    "platform",
    "token",
    "subscription",
    "app",
    "active",
    "registered_at",
    "deactivated_reason",
)
PREFERENCE_COLUMNS = (
    "opted_out_channels",
    "opted_out_categories",
    "opted_out_category_channels",
    "quiet_hours_start",
    "quiet_hours_end",
    "frequency_caps",
)

Change = Callable[[Recipient], bool]


def subscriber_row(recipient: Recipient) -> dict[str, Any]:
    row: dict[str, Any] = {c: getattr(recipient, c) for c in SUBSCRIBER_COLUMNS}
    row["updated_at"] = datetime.now(UTC)
    return row


def preference_row(recipient: Recipient) -> dict[str, Any]:
    p = recipient.preferences
    start: time | None = p.quiet_hours.start if p.quiet_hours else None
    end: time | None = p.quiet_hours.end if p.quiet_hours else None
    return {
        "subscriber_id": recipient.id,
        "opted_out_channels": sorted(c.value for c in p.opted_out_channels),
        "opted_out_categories": sorted(p.opted_out_categories),
        "opted_out_category_channels": {
            category: sorted(c.value for c in channels)
            for category, channels in sorted(p.opted_out_category_channels.items())
        },
        "quiet_hours_start": start,
        "quiet_hours_end": end,
        "frequency_caps": {
            channel.value: [str(rule) for rule in rules]
            for channel, rules in sorted(p.frequency_caps.items())
        },
    }


def device_rows(recipient: Recipient) -> list[dict[str, Any]]:
    return [
        {
            "subscriber_id": recipient.id,
            "device_id": d.id,
            "position": position,
            "platform": d.platform.value,
            "token": d.token,
            "subscription": d.subscription.model_dump(mode="json") if d.subscription else None,
            "app": d.app,
            "active": d.active,
            "registered_at": d.registered_at,
            "deactivated_reason": d.deactivated_reason,
        }
        for position, d in enumerate(recipient.devices)
    ]


def apply(recipient_id: str, recipient: Recipient | None, change: Change) -> tuple[Recipient, bool]:
    """Run `change` on a copy of the loaded recipient; the copy is validated again after it."""
    if recipient is None:
        raise UnknownRecipientError(recipient_id)
    changed = change(recipient)
    return Recipient.model_validate(recipient.model_dump()), changed


def set_preferences(preferences: Preferences) -> Change:
    def change(recipient: Recipient) -> bool:
        recipient.preferences = preferences
        return True

    return change


def set_timezone(timezone: str) -> Change:
    def change(recipient: Recipient) -> bool:
        if recipient.timezone == timezone:
            return False
        recipient.timezone = timezone
        return True

    return change


def add_device(device: Device) -> Change:
    def change(recipient: Recipient) -> bool:
        if device.registered_at is None:
            device.registered_at = datetime.now(UTC)
        recipient.devices = [d for d in recipient.devices if d.id != device.id] + [device]
        return True

    return change


def remove_device(recipient_id: str, device_id: str) -> Change:
    def change(recipient: Recipient) -> bool:
        kept = [d for d in recipient.devices if d.id != device_id]
        if len(kept) == len(recipient.devices):
            raise LookupError(f"subscriber {recipient_id!r} has no device {device_id!r}")
        recipient.devices = kept
        return True

    return change


def deactivate_device(device_id: str, reason: str, provider_timestamp: datetime | None) -> Change:
    def change(recipient: Recipient) -> bool:
        changed = False
        for device in recipient.devices:
            if device.id != device_id or not device.active:
                continue
            if provider_timestamp and device.registered_at and device.registered_at > provider_timestamp:
                return False
            device.active = False
            device.deactivated_reason = reason
            changed = True
        return changed

    return change


def opt_out_channel(channel: Channel) -> Change:
    def change(recipient: Recipient) -> bool:
        if channel in recipient.preferences.opted_out_channels:
            return False
        recipient.preferences.opted_out_channels.add(channel)
        return True

    return change


def disable_webhook(url: str, reason: str) -> Change:
    """Disable the endpoint if it is still `url` (the workflow knows it redacted: either matches)."""

    def change(recipient: Recipient) -> bool:
        current = recipient.webhook_url
        if current and url in (current, redact_address(current)) and recipient.webhook_disabled is None:
            recipient.webhook_disabled = reason
            return True
        return False

    return change


def write_statements(
    parameter: Callable[[str], str], preference_columns: tuple[str, ...] = PREFERENCE_COLUMNS
) -> tuple[str, str, str]:
    """The subscriber upsert, preferences upsert and device insert, with named parameters written
    in the driver's style (`parameter("id")` is `%(id)s` for psycopg, `:id` for sqlite3).
    A migration that writes recipients passes the preference columns of its own version."""

    def values(columns: tuple[str, ...] | list[str]) -> str:
        return ", ".join(parameter(c) for c in columns)

    subscriber = (
        f"INSERT INTO subscribers ({', '.join(SUBSCRIBER_COLUMNS)}, updated_at) "
        f"VALUES ({values(SUBSCRIBER_COLUMNS)}, {parameter('updated_at')}) ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in SUBSCRIBER_COLUMNS if c != "id")
        + ", updated_at = excluded.updated_at"
    )
    preferences = (
        f"INSERT INTO preferences (subscriber_id, {', '.join(preference_columns)}) "
        f"VALUES ({parameter('subscriber_id')}, {values(preference_columns)}) "
        "ON CONFLICT (subscriber_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in preference_columns)
    )
    device = (
        f"INSERT INTO devices (subscriber_id, {', '.join(DEVICE_COLUMNS)}) "
        f"VALUES ({parameter('subscriber_id')}, {values(DEVICE_COLUMNS)})"
    )
    return subscriber, preferences, device


class SubscriberChanges:
    """The subscriber changes both backends offer, each one read-modify-write of one subscriber
    through the backend's `_modify` (which makes it atomic: a row lock, or SQLite's write lock)."""

    async def _modify(self, recipient_id: str, change: Change) -> tuple[Recipient, bool]:
        raise NotImplementedError

    async def _modify_if_known(self, recipient_id: str, change: Change) -> bool:
        try:
            return (await self._modify(recipient_id, change))[1]
        except UnknownRecipientError:
            return False

    async def set_preferences(self, recipient_id: str, preferences: Preferences) -> Recipient:
        return (await self._modify(recipient_id, set_preferences(preferences)))[0]

    async def set_timezone(self, recipient_id: str, timezone: str) -> Recipient:
        return (await self._modify(recipient_id, set_timezone(timezone)))[0]

    async def add_device(self, recipient_id: str, device: Device) -> Recipient:
        return (await self._modify(recipient_id, add_device(device)))[0]

    async def remove_device(self, recipient_id: str, device_id: str) -> Recipient:
        return (await self._modify(recipient_id, remove_device(recipient_id, device_id)))[0]

    async def deactivate_device(
        self, recipient_id: str, device_id: str, reason: str, provider_timestamp: datetime | None = None
    ) -> bool:
        change = deactivate_device(device_id, reason, provider_timestamp)
        return await self._modify_if_known(recipient_id, change)

    async def opt_out_channel(self, recipient_id: str, channel: Channel) -> bool:
        return await self._modify_if_known(recipient_id, opt_out_channel(channel))

    async def disable_webhook(self, recipient_id: str, url: str, reason: str) -> bool:
        return await self._modify_if_known(recipient_id, disable_webhook(url, reason))


class ReceiptLookups:
    """The late-receipt lookups both backends offer, each one indexed query through `_select`."""

    async def _select(self, column: str, value: str) -> list[LateReceipt]:
        raise NotImplementedError

    async def late_receipts(self, workflow_id: str) -> list[DeliveryReceipt]:
        return [late.receipt for late in await self._select("workflow_id", workflow_id)]

    async def by_delivery(self, delivery_id: str) -> list[LateReceipt]:
        return await self._select("delivery_id", delivery_id)

    async def by_provider_message(self, provider_message_id: str) -> list[LateReceipt]:
        return await self._select("provider_message_id", provider_message_id)


# -- the inbox queries both backends share, with the driver's placeholder (`?` or `%s`)

INBOX_COUNTS = (
    "SELECT (SELECT COUNT(*) FROM inbox WHERE recipient_id = %s AND archived_at IS NULL AND read_at IS NULL),"
    " (SELECT COUNT(*) FROM inbox WHERE recipient_id = %s AND archived_at IS NULL AND seen_at IS NULL),"
    " (SELECT COUNT(*) FROM inbox WHERE recipient_id = %s AND archived_at IS NULL)"
)
"""Three index-only counts (unread, unseen, total; partial indexes in version 4), each a
parameter for the recipient id."""

_NEWEST = "created_at DESC, delivery_id DESC"


def inbox_segments(query: InboxQuery, placeholder: str) -> list[tuple[str, list[Any]]]:
    """The WHERE clauses of one keyset page, each to run in turn (ordered newest first) until the
    page is full.

    Newest first is one segment. Unread first is two: the unread messages, then the read ones;
    each is a plain range scan of an index on (recipient, created_at, delivery_id), where one
    query ordering by read state would sort every message of the recipient for every page.
    """
    p = placeholder
    base = [f"recipient_id = {p}", "archived_at IS NOT NULL" if query.archived else "archived_at IS NULL"]
    base_params: list[Any] = [query.recipient_id]
    if query.category is not None:
        base.append(f"category = {p}")
        base_params.append(query.category)
    cursor = query.cursor
    older = f"(created_at < {p} OR (created_at = {p} AND delivery_id < {p}))"
    older_params = [cursor.created_at, cursor.created_at, cursor.delivery_id] if cursor else []

    def segment(extra: list[str], after_cursor: bool) -> tuple[str, list[Any]]:
        conditions = [*base, *extra, *([older] if after_cursor else [])]
        return " AND ".join(conditions), [*base_params, *(older_params if after_cursor else [])]

    if query.order is InboxOrder.newest:
        return [segment([], cursor is not None)]
    segments = []
    if cursor is None or not cursor.read:
        segments.append(segment(["read_at IS NULL"], cursor is not None))
    segments.append(segment(["read_at IS NOT NULL"], cursor is not None and cursor.read))
    return segments


INBOX_ORDER = _NEWEST


def inbox_assignments(change: InboxStateChange, now: datetime, placeholder: str) -> tuple[str, list[Any]]:
    """The SET clause for a state change. Setting keeps an earlier time (read twice is read once);
    reading a message also sees it."""
    parts: list[str] = []
    params: list[Any] = []
    seen = True if change.read else change.seen
    for column, value in (("read_at", change.read), ("seen_at", seen), ("archived_at", change.archived)):
        if value is None:
            continue
        if value:
            parts.append(f"{column} = COALESCE({column}, {placeholder})")
            params.append(now)
        else:
            parts.append(f"{column} = NULL")
    return ", ".join(parts), params
