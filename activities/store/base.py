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

import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pydantic import AwareDatetime, BaseModel, Field

from tidings.activities.store.counters import SendCounters
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
    seen_at: datetime | None = None


class LateReceipt(BaseModel):
    """A receipt that arrived after its notification finished (shown by `tidings status`)."""

    workflow_id: str
    receipt: DeliveryReceipt
    stored_at: datetime


InboxMessages = list[InboxMessage]


def check_page(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= 200:
        raise ValueError("page starts at 1 and page_size is 1-200")


PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""Text a query may compare with: no control characters (PostgreSQL text cannot hold NUL)."""


class InboxOrder(StrEnum):
    unread_first = "unread_first"
    newest = "newest"


class InvalidCursorError(ValueError):
    pass


class InboxCursor(BaseModel):
    """Where a keyset page ends: the sort key of its last message (opaque to clients)."""

    read: bool
    created_at: AwareDatetime
    delivery_id: str = Field(max_length=300, pattern=PRINTABLE)

    def encode(self) -> str:
        raw = json.dumps([self.read, self.created_at.isoformat(), self.delivery_id]).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> InboxCursor:
        try:
            read, created_at, delivery_id = json.loads(
                base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            )
            return cls(read=read, created_at=created_at, delivery_id=delivery_id)
        except (ValueError, TypeError, UnicodeError, RecursionError) as exc:
            raise InvalidCursorError("not a cursor this API gave out") from exc

    @classmethod
    def after(cls, message: InboxMessage) -> InboxCursor:
        return cls(
            read=message.read_at is not None, created_at=message.created_at, delivery_id=message.delivery_id
        )


class InboxQuery(BaseModel):
    """One page of a recipient's inbox, by keyset: stable under inserts, no OFFSET scans."""

    recipient_id: str
    order: InboxOrder = InboxOrder.unread_first
    limit: int = Field(default=20, ge=1, le=100)
    cursor: InboxCursor | None = None
    category: str | None = None
    archived: bool = False


class InboxCounts(BaseModel):
    """Counts over the messages not archived."""

    unread: int
    unseen: int
    total: int


class InboxStateChange(BaseModel):
    """What to change on one message; None leaves that part as it is."""

    read: bool | None = None
    seen: bool | None = None
    archived: bool | None = None


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

    async def query(self, query: InboxQuery) -> InboxMessages:
        """One keyset page; the next page starts after `InboxCursor.after(last message)`."""
        ...

    async def counts(self, recipient_id: str) -> InboxCounts: ...

    async def change(
        self, recipient_id: str, delivery_id: str, change: InboxStateChange
    ) -> InboxMessage | None:
        """Change one of this recipient's messages; None when the recipient has no such message
        (another recipient's message is not found either)."""
        ...

    async def read_all(self, recipient_id: str) -> InboxMessages:
        """Mark every unread, unarchived message read (and seen); returns those it changed."""
        ...

    def changes(self) -> AsyncIterator[str]:
        """The recipient ids whose inbox changed, as they change (live updates).

        PostgreSQL: changes made by any process, carried by LISTEN/NOTIFY on `INBOX_CHANNEL`.
        SQLite: changes made by any process on this machine, recorded by triggers in
        `inbox_changes` and polled every 0.2 s. An empty string comes first
        once listening, and again after a reconnection: anything may have changed before it.
        """
        ...

    def export(self, batch_size: int = 500) -> AsyncIterator[InboxMessages]:
        """Every message, in batches (for `tidings store copy`)."""
        ...

    async def import_messages(self, messages: InboxMessages) -> None:
        """Store messages as they are, read and archive state included (for `tidings store copy`)."""
        ...


INBOX_CHANNEL = "tidings_inbox"
"""The PostgreSQL NOTIFY channel of inbox changes; the payload is the recipient id."""


class ApiKeyRecord(BaseModel):
    """An API key as stored: its public id, a SHA-256 of its secret part, never the secret."""

    id: str
    name: str
    secret_sha256: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


ApiKeyRecords = list[ApiKeyRecord]


class ApiKeyStore(Protocol):
    async def create(self, key: ApiKeyRecord) -> None: ...

    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list(self) -> list[ApiKeyRecord]: ...

    async def revoke(self, key_id: str) -> bool:
        """True when the key existed and was not revoked yet."""
        ...

    async def touch(self, key_id: str, at: datetime) -> None:
        """Record a use (callers throttle this: it is a write)."""
        ...

    def export(self, batch_size: int = 500) -> AsyncIterator[ApiKeyRecords]:
        """Every key (hashes, scopes, revoked state), in id order, in batches (`tidings store copy`)."""
        ...

    async def import_keys(self, keys: ApiKeyRecords) -> None:
        """Store keys as they are; ids already there are left alone (`tidings store copy`)."""
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
    def api_keys(self) -> ApiKeyStore: ...

    @property
    def counters(self) -> SendCounters: ...

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

    async def set_timezone(self, recipient_id: str, timezone: str) -> Recipient:
        """Change the time zone only (the preference center), atomically like the other changes."""
        ...

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
