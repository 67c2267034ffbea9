"""The in-app inbox: messages kept for a recipient's app to list, plus the `inbox` provider.

The inbox lives in the store's database beside the subscribers (`InboxStore`, in
`activities/store/`). A message is keyed by its delivery id, so an activity retry stores it once.
Listing puts unread messages first, newest first within each.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tidings.activities.providers.base import ProviderReceipt
from tidings.activities.rendering import RenderedMessage
from tidings.activities.store.base import InboxMessage, InboxStore
from tidings.models import DeliveryInput

__all__ = ["InboxMessage", "InboxProvider", "InboxStore"]


class InboxProvider:
    """The `in_app` channel: delivery is storing the message in the recipient's inbox."""

    name = "inbox"

    def __init__(self, inbox: InboxStore) -> None:
        self._inbox = inbox

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        await self._inbox.add(
            InboxMessage(
                delivery_id=delivery.delivery_id,
                recipient_id=delivery.recipient.id,
                notification_id=delivery.notification_id,
                workflow_id=delivery.workflow_id,
                category=delivery.category,
                title=message.title,
                body=message.body,
                url=message.url,
                data=message.data,
                created_at=datetime.now(UTC),
            ),
        )
        return ProviderReceipt(delivery.delivery_id)

    async def aclose(self) -> None:
        return None
