"""The data that crosses Tidings' boundaries, by concern:

- `fields`: the base model, the limits and the checked field types (ids, URLs, time zones, ...);
- `recipients`: a subscriber's profile, devices and preferences;
- `requests`: what a service asks for (NotificationRequest) and one workflow's input;
- `deliveries`: what the workflow hands its activities and what they answer;
- `state`: the queryable notification state, receipts and engagement.

These pydantic models are the single source of truth for validation. The client validates a
request here before any workflow starts, and the same models travel through Temporal with the
pydantic data converter, so what the workflow sees is exactly what was validated.

Imported inside Temporal's workflow sandbox: every module here stays free of I/O.
"""

from __future__ import annotations

from tidings.models.deliveries import (
    DeactivateDeviceInput as DeactivateDeviceInput,
)
from tidings.models.deliveries import (
    DeliveryInput as DeliveryInput,
)
from tidings.models.deliveries import (
    DeliveryResult as DeliveryResult,
)
from tidings.models.deliveries import (
    Destination as Destination,
)
from tidings.models.deliveries import (
    DisableWebhookInput as DisableWebhookInput,
)
from tidings.models.deliveries import (
    ErrorKind as ErrorKind,
)
from tidings.models.deliveries import (
    Preparation as Preparation,
)
from tidings.models.deliveries import (
    PrepareInput as PrepareInput,
)
from tidings.models.deliveries import (
    ProviderTry as ProviderTry,
)
from tidings.models.deliveries import (
    delivery_id_for as delivery_id_for,
)
from tidings.models.fields import (
    DEFAULT_TASK_QUEUE as DEFAULT_TASK_QUEUE,
)
from tidings.models.fields import (
    MAX_CONCURRENT_DELIVERIES as MAX_CONCURRENT_DELIVERIES,
)
from tidings.models.fields import (
    MAX_CONTENT_BYTES as MAX_CONTENT_BYTES,
)
from tidings.models.fields import (
    MAX_DEVICES as MAX_DEVICES,
)
from tidings.models.fields import (
    MAX_NESTING as MAX_NESTING,
)
from tidings.models.fields import (
    MAX_RECIPIENT_BYTES as MAX_RECIPIENT_BYTES,
)
from tidings.models.fields import (
    MAX_TITLE_LENGTH as MAX_TITLE_LENGTH,
)
from tidings.models.fields import (
    MAX_URL_LENGTH as MAX_URL_LENGTH,
)
from tidings.models.fields import (
    RECIPIENT_SEPARATOR as RECIPIENT_SEPARATOR,
)
from tidings.models.fields import (
    WORKFLOW_ID_PREFIX as WORKFLOW_ID_PREFIX,
)
from tidings.models.fields import (
    AwareDatetime as AwareDatetime,
)
from tidings.models.fields import (
    Category as Category,
)
from tidings.models.fields import (
    Channel as Channel,
)
from tidings.models.fields import (
    EmailAddress as EmailAddress,
)
from tidings.models.fields import (
    ErrorTypeName as ErrorTypeName,
)
from tidings.models.fields import (
    HttpUrl as HttpUrl,
)
from tidings.models.fields import (
    Identifier as Identifier,
)
from tidings.models.fields import (
    Interval as Interval,
)
from tidings.models.fields import (
    Locale as Locale,
)
from tidings.models.fields import (
    Model as Model,
)
from tidings.models.fields import (
    NotificationId as NotificationId,
)
from tidings.models.fields import (
    OneLine as OneLine,
)
from tidings.models.fields import (
    Platform as Platform,
)
from tidings.models.fields import (
    Priority as Priority,
)
from tidings.models.fields import (
    Timeout as Timeout,
)
from tidings.models.fields import (
    TimeZoneName as TimeZoneName,
)
from tidings.models.fields import (
    nesting_depth as nesting_depth,
)
from tidings.models.fields import (
    serialized_size as serialized_size,
)
from tidings.models.recipients import (
    Device as Device,
)
from tidings.models.recipients import (
    Preferences as Preferences,
)
from tidings.models.recipients import (
    QuietHours as QuietHours,
)
from tidings.models.recipients import (
    Recipient as Recipient,
)
from tidings.models.recipients import (
    WebPushKeys as WebPushKeys,
)
from tidings.models.recipients import (
    WebPushSubscription as WebPushSubscription,
)
from tidings.models.requests import (
    ChannelStep as ChannelStep,
)
from tidings.models.requests import (
    Content as Content,
)
from tidings.models.requests import (
    NotificationInput as NotificationInput,
)
from tidings.models.requests import (
    NotificationRequest as NotificationRequest,
)
from tidings.models.requests import (
    RecipientRef as RecipientRef,
)
from tidings.models.requests import (
    RetryOverride as RetryOverride,
)
from tidings.models.requests import (
    RetrySpec as RetrySpec,
)
from tidings.models.requests import (
    notification_id_for as notification_id_for,
)
from tidings.models.requests import (
    workflow_id_for as workflow_id_for,
)
from tidings.models.state import (
    CancelRequest as CancelRequest,
)
from tidings.models.state import (
    DeliveryReceipt as DeliveryReceipt,
)
from tidings.models.state import (
    DeliveryStatus as DeliveryStatus,
)
from tidings.models.state import (
    DestinationState as DestinationState,
)
from tidings.models.state import (
    Engagement as Engagement,
)
from tidings.models.state import (
    EngagementKind as EngagementKind,
)
from tidings.models.state import (
    NotificationState as NotificationState,
)
from tidings.models.state import (
    Phase as Phase,
)
from tidings.models.state import (
    ReceiptStatus as ReceiptStatus,
)
from tidings.models.state import (
    RescheduleRequest as RescheduleRequest,
)
from tidings.models.state import (
    SignalOutcome as SignalOutcome,
)
from tidings.models.state import (
    StateEvent as StateEvent,
)

DestinationState.model_rebuild()
NotificationState.model_rebuild()
