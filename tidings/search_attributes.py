"""The custom search attributes every notification workflow keeps current.

Operators filter on these in the Web UI and with `temporal workflow list --query ...`.
The dev stack registers them when it starts the server (see `REGISTRATION`).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

NOTIFICATION_STATUS = SearchAttributeKey.for_keyword("NotificationStatus")
RECIPIENT_ID = SearchAttributeKey.for_keyword("RecipientId")
NOTIFICATION_CHANNELS = SearchAttributeKey.for_keyword_list("NotificationChannels")
NOTIFICATION_PRIORITY = SearchAttributeKey.for_keyword("NotificationPriority")
NOTIFICATION_CATEGORY = SearchAttributeKey.for_keyword("NotificationCategory")

# name -> type, as `temporal server start-dev --search-attribute NAME=TYPE` takes them
REGISTRATION: dict[str, str] = {
    "NotificationStatus": "Keyword",
    "RecipientId": "Keyword",
    "NotificationChannels": "KeywordList",
    "NotificationPriority": "Keyword",
    "NotificationCategory": "Keyword",
}
