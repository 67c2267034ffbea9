"""The store interface: subscribers (profile, devices, preferences), the in-app inbox and receipts.

One async interface, two implementations: SQLite (`activities/store/sqlite.py`, the embedded
default for `tidings dev` and small installs) and PostgreSQL (`activities/store/postgres.py`, for
several workers and a receiver on different machines). `open_store(settings)`
(`activities/store/factory.py`) picks one; nothing outside `activities/store/` knows which is in
use.

Every call is a coroutine. The PostgreSQL store is natively async; the SQLite store runs its
blocking sqlite3 calls on its own thread, so neither blocks the event loop.

Writes to one subscriber are serialised by the database (a row lock in PostgreSQL, a write
transaction in SQLite): a change reads the current profile after taking the lock, so concurrent
changes to one subscriber (a device added while another is deactivated) never lose a write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from tidings.models import Channel, DeliveryReceipt, Device, Preferences, Recipient

if TYPE_CHECKING:
    from tidings.activities.store.broadcast_tables import BroadcastTables


class UnknownRecipientError(LookupError):
    def __init__(self, recipient_id: str) -> None:
        super().__init__(f"no subscriber with id {recipient_id!r}; add it with `tidings subscriber add`")
        self.recipient_id = recipient_id


class StoreUnavailableError(ConnectionError):
    """The database cannot be reached (stopped, restarting, network down) or timed out.

    The message never holds the connection string or its password.
    """


class StoreSchemaError(ValueError):
    """The database's schema is older (run `tidings store migrate`) or newer than this code."""


class InboxMessage(BaseModel):
    delivery_id: str
    recipient_id: str
    notification_id: str
    workflow_id: str
    category: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    read_at: datetime | None = None
    archived_at: datetime | None = None


class LateReceipt(BaseModel):
    """A receipt that arrived after its notification finished (shown by `tidings status`)."""

    workflow_id: str
    receipt: DeliveryReceipt
    stored_at: datetime


InboxMessages = list[InboxMessage]


def check_page(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= 200:
        raise ValueError("page starts at 1 and page_size is 1-200")


class InboxStore(Protocol):
    """A recipient's in-app inbox. A message is keyed by its delivery id (retries store it once);
    listing puts unread messages first, newest first within each."""

    async def add(self, message: InboxMessage) -> bool:
        """Store a message; False when this delivery id is already there (a retry)."""
        ...

    async def list(
        self, recipient_id: str, *, page: int = 1, page_size: int = 20, include_archived: bool = False
    ) -> list[InboxMessage]: ...

    async def get(self, delivery_id: str) -> InboxMessage | None: ...

    async def mark_read(self, delivery_id: str, read: bool = True) -> InboxMessage: ...

    async def archive(self, delivery_id: str) -> InboxMessage: ...

    async def unread_count(self, recipient_id: str) -> int: ...

    def export(self, batch_size: int = 500) -> AsyncIterator[InboxMessages]:
        """Every message, in batches (for `tidings store copy`)."""
        ...

    async def import_messages(self, messages: InboxMessages) -> None:
        """Store messages as they are, read and archive state included (for `tidings store copy`)."""
        ...


class ReceiptLog(Protocol):
    """Callbacks already handled (deduplication) and receipts that came too late."""

    async def first_sighting(self, key: str) -> bool:
        """True the first time a callback key is seen; False for a duplicate or replay."""
        ...

    async def forget(self, key: str) -> None:
        """Undo a sighting whose handling failed, so the sender's retry is not taken for a replay."""
        ...

    async def keep_late(self, workflow_id: str, receipt: DeliveryReceipt) -> None: ...

    async def late_receipts(self, workflow_id: str) -> list[DeliveryReceipt]: ...

    async def by_delivery(self, delivery_id: str) -> list[LateReceipt]: ...

    async def by_provider_message(self, provider_message_id: str) -> list[LateReceipt]: ...

    def export(self, batch_size: int = 500) -> AsyncIterator[tuple[list[str], list[LateReceipt]]]:
        """Seen callback keys and late receipts, in batches (for `tidings store copy`)."""
        ...

    async def import_batch(self, seen: list[str], late: list[LateReceipt]) -> None: ...


class Store(Protocol):
    """Subscribers, plus the inbox and receipt log kept in the same database."""

    @property
    def backend(self) -> str: ...

    @property
    def inbox(self) -> InboxStore: ...

    @property
    def receipts(self) -> ReceiptLog: ...

    @property
    def broadcasts(self) -> BroadcastTables:
        """Topics, broadcast audiences and per-recipient broadcast outcomes."""
        ...

    async def get(self, recipient_id: str) -> Recipient | None:
        """The recipient with devices and preferences: one database round trip."""
        ...

    async def put(self, recipient: Recipient) -> None: ...

    async def delete(self, recipient_id: str) -> bool: ...

    async def set_preferences(self, recipient_id: str, preferences: Preferences) -> Recipient: ...

    async def add_device(self, recipient_id: str, device: Device) -> Recipient:
        """Add a device; one with the same id is replaced (and moves to the end)."""
        ...

    async def remove_device(self, recipient_id: str, device_id: str) -> Recipient: ...

    async def deactivate_device(
        self, recipient_id: str, device_id: str, reason: str, provider_timestamp: datetime | None = None
    ) -> bool:
        """Mark a device inactive, unless it re-registered after the provider saw it invalid."""
        ...

    async def opt_out_channel(self, recipient_id: str, channel: Channel) -> bool: ...

    async def disable_webhook(self, recipient_id: str, url: str, reason: str) -> bool:
        """Disable the recipient's webhook endpoint, if it is still `url` (it may have changed)."""
        ...

    def export(self, batch_size: int = 500) -> AsyncIterator[list[Recipient]]:
        """Every subscriber, in id order, in batches (for `tidings store copy`)."""
        ...

    async def schema_version(self) -> int: ...

    async def migrate(self) -> list[int]:
        """Apply pending migrations in place; returns the versions applied."""
        ...

    async def aclose(self) -> None: ...


# The name callers used before the interface covered the inbox and receipts.
SubscriberStore = Store
