"""Store-facing activities, run as local activities: loading a recipient before sending and
deactivating devices that a provider reported invalid.

They are cheap reads and writes on the worker's own store, so local activities save a server
round trip each; their results are still recorded in history.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tidings.activities.caps import hold_for
from tidings.activities.store.base import StoreUnavailableError, SubscriberStore
from tidings.models import (
    CapHold,
    DeactivateDeviceInput,
    DisableWebhookInput,
    NextLocalTimeInput,
    Preparation,
    PrepareInput,
    Priority,
    Recipient,
)
from tidings.quiet_hours import next_local_time, quiet_hours_end
from tidings.settings import Settings


class SubscriberActivities:
    def __init__(self, store: SubscriberStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    @activity.defn(name="prepare_notification")
    async def prepare_notification(self, request: PrepareInput) -> Preparation:
        """Load the recipient (inline or from the store), evaluate quiet hours at `at` and, when the
        notification may go now, reserve its throttle and frequency-cap slots (`caps`)."""
        recipient: Recipient | None = request.recipient
        stored = recipient is None
        if recipient is None:
            try:
                recipient = await self._store.get(request.recipient_id)
            except StoreUnavailableError as exc:
                # Retried by the local activity's retry policy; the notification fails with this
                # reason only when the database stays down past it.
                raise ApplicationError(str(exc), type="StoreUnavailable") from None
            except ValidationError as exc:
                # A stored profile that no longer validates will not fix itself by retrying.
                raise ApplicationError(
                    f"the stored profile is invalid ({exc.error_count()} errors, first: "
                    f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}: {exc.errors()[0]['msg']}); "
                    "fix it with `tidings subscriber update`",
                    type="InvalidRecipient",
                    non_retryable=True,
                ) from None
        quiet_until = None
        if recipient is not None:
            quiet_until = quiet_hours_end(request.at, recipient.preferences.quiet_hours, recipient.timezone)
        hold = await self._hold(request, recipient, quiet_until is not None)
        return Preparation(
            recipient=recipient.without_secrets() if recipient is not None and stored else recipient,
            recipient_stored=stored,
            quiet_hours_until=quiet_until,
            retry={channel: self._settings.retry_for(channel) for channel in request.channels},
            push_success=self._settings.push_success,
            hold=hold,
        )

    async def _hold(self, request: PrepareInput, recipient: Recipient | None, quiet: bool) -> CapHold | None:
        check = request.caps
        if check is None or recipient is None or (quiet and check.priority is not Priority.critical):
            return None  # nothing to count, or it waits for quiet hours first (and comes back)
        try:
            return await hold_for(
                self._store.counters,
                check,
                recipient,
                request.channels,
                self._settings.frequency_caps,
                request.at,
            )
        except StoreUnavailableError as exc:
            raise ApplicationError(str(exc), type="StoreUnavailable") from None

    @activity.defn(name="next_local_time")
    async def next_local_time(self, request: NextLocalTimeInput) -> datetime:
        """When a scheduled digest closes: the recipient's next `local_time` after `after`, in
        their time zone (UTC for a recipient the store does not know: the digest still goes out,
        and the notification fails with the reason)."""
        recipient = request.recipient
        if recipient is None:
            try:
                recipient = await self._store.get(request.recipient_id)
            except StoreUnavailableError as exc:
                raise ApplicationError(str(exc), type="StoreUnavailable") from None
        timezone = recipient.timezone if recipient is not None else "UTC"
        return next_local_time(request.after, request.local_time, timezone)

    @activity.defn(name="disable_webhook")
    async def disable_webhook(self, request: DisableWebhookInput) -> bool:
        try:
            return await self._store.disable_webhook(request.recipient_id, request.url, request.reason)
        except StoreUnavailableError as exc:
            raise ApplicationError(str(exc), type="StoreUnavailable") from None

    @activity.defn(name="deactivate_device")
    async def deactivate_device(self, request: DeactivateDeviceInput) -> bool:
        try:
            return await self._store.deactivate_device(
                request.recipient_id, request.device_id, request.reason, request.provider_timestamp
            )
        except StoreUnavailableError as exc:
            raise ApplicationError(str(exc), type="StoreUnavailable") from None
