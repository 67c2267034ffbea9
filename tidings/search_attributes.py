"""The custom search attributes every notification workflow keeps current.

Operators filter on these in the Web UI and with `temporal workflow list --query ...`.
The dev stack registers them when it starts the server (see `REGISTRATION`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio.common import SearchAttributeKey

if TYPE_CHECKING:
    from temporalio.client import Client

NOTIFICATION_STATUS = SearchAttributeKey.for_keyword("NotificationStatus")
RECIPIENT_ID = SearchAttributeKey.for_keyword("RecipientId")
NOTIFICATION_CHANNELS = SearchAttributeKey.for_keyword_list("NotificationChannels")
NOTIFICATION_PRIORITY = SearchAttributeKey.for_keyword("NotificationPriority")
NOTIFICATION_CATEGORY = SearchAttributeKey.for_keyword("NotificationCategory")
# Broadcasts: on the BroadcastWorkflow (its id and phase) and on the NotificationWorkflows a
# broadcast starts for recipients in quiet hours (its id), so that cancelling it finds them.
BROADCAST_ID = SearchAttributeKey.for_keyword("BroadcastId")
BROADCAST_STATUS = SearchAttributeKey.for_keyword("BroadcastStatus")
ALL: list[SearchAttributeKey[Any]] = [
    NOTIFICATION_STATUS,
    RECIPIENT_ID,
    NOTIFICATION_CHANNELS,
    NOTIFICATION_PRIORITY,
    NOTIFICATION_CATEGORY,
    BROADCAST_ID,
    BROADCAST_STATUS,
]

# name -> type, as `temporal server start-dev --search-attribute NAME=TYPE` takes them
REGISTRATION: dict[str, str] = {
    "NotificationStatus": "Keyword",
    "RecipientId": "Keyword",
    "NotificationChannels": "KeywordList",
    "NotificationPriority": "Keyword",
    "NotificationCategory": "Keyword",
    "BroadcastId": "Keyword",
    "BroadcastStatus": "Keyword",
}


async def register(client: Client, namespace: str = "default") -> None:
    """Register the search attributes on a server that lacks them (idempotent)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server
            raise
        known = set()
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{_UPPER[kind]}")
        for name, kind in REGISTRATION.items()
        if name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )


_UPPER = {"Keyword": "KEYWORD", "KeywordList": "KEYWORD_LIST"}
