"""The subscriber store interface: profiles, addresses, devices and preferences.

SQLite is the embedded default. A PostgreSQL store for several machines implements the same
protocol; nothing outside `activities/store/` knows which one is in use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tidings.models import Channel, Device, Preferences, Recipient


class UnknownRecipientError(LookupError):
    def __init__(self, recipient_id: str) -> None:
        super().__init__(f"no subscriber with id {recipient_id!r}; add it with `tidings subscriber add`")
        self.recipient_id = recipient_id


class SubscriberStore(Protocol):
    """Blocking calls: async code runs them in a thread (see `AsyncSubscriberStore`)."""

    def get(self, recipient_id: str) -> Recipient | None: ...

    def put(self, recipient: Recipient) -> None: ...

    def delete(self, recipient_id: str) -> bool: ...

    def set_preferences(self, recipient_id: str, preferences: Preferences) -> Recipient: ...

    def add_device(self, recipient_id: str, device: Device) -> Recipient: ...

    def remove_device(self, recipient_id: str, device_id: str) -> Recipient: ...

    def deactivate_device(
        self, recipient_id: str, device_id: str, reason: str, provider_timestamp: datetime | None = None
    ) -> bool: ...

    def opt_out_channel(self, recipient_id: str, channel: Channel) -> bool: ...

    def disable_webhook(self, recipient_id: str, url: str, reason: str) -> bool: ...

    def close(self) -> None: ...
