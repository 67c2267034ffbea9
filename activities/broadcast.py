"""The broadcast activities: plan the audience's pages, and deliver one page (a batch).

A batch is the unit of work: it reads its page of recipient ids from the store (never from
history), loads the recipients, applies each one's preferences, quiet hours and channel plan with
the same functions NotificationWorkflow uses (`tidings.planning`, `tidings.quiet_hours`), and sends
through the same `DeliveryActivities.send` as the `deliver` activity.

No double sends: `broadcast_outcomes` is the checkpoint. Before a recipient's message goes to a
provider, the batch records `sending` (with its delivery ids); after, `sent`, `failed`, `skipped`
or `deferred`. A retried batch (its worker died, or it timed out) skips every recipient with a
final outcome and sends again only those left at `sending`: the ones in flight when it stopped,
with the same deterministic delivery ids, so `webhook-id`, `apns-id` and `Message-ID` repeat and
receivers can drop the duplicate.

Transient provider failures are retried inside the batch, a few times with short backoff (a
broadcast must not park a whole page behind one slow endpoint); what still fails is `failed` with
the reason, and the failed-recipients listing is the list to send again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from tidings import search_attributes as sa
from tidings.activities.delivery import DeliveryActivities
from tidings.activities.providers.base import (
    DeliveryError,
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.rendering import RenderError
from tidings.activities.store.base import Store
from tidings.codec import recipient_hash_key, recipient_search_value
from tidings.models import (
    Channel,
    ChannelStep,
    DeliveryInput,
    Destination,
    NotificationInput,
    Priority,
    Recipient,
    delivery_id_for,
    notification_id_for,
    workflow_id_for,
)
from tidings.models.broadcasts import (
    FINAL_OUTCOMES,
    AudienceSizeInput,
    BatchInput,
    BatchRange,
    BroadcastCounters,
    CancelDeferredInput,
    OutcomeStatus,
    PlannedPages,
    PlanPagesInput,
    RecipientOutcome,
)
from tidings.planning import block_reason, destinations_for, is_preference_block
from tidings.quiet_hours import quiet_hours_end
from tidings.redaction import scrub
from tidings.settings import Settings

# In-batch retries of one destination (transient and throttled failures).
BATCH_ATTEMPTS = 3
MAX_BACKOFF = timedelta(seconds=5)
MAX_THROTTLE_WAIT = timedelta(seconds=30)
HEARTBEAT_EVERY = 3.0


class Pacer:
    """A deliveries-per-second limit for one batch: `take(n)` waits until n more may start."""

    def __init__(self, rate: float | None) -> None:
        self._rate = rate
        self._next = time.monotonic()

    async def take(self, count: int) -> None:
        if self._rate is None:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(self._next, now) + count / self._rate

    async def finish(self) -> None:
        """Wait out the last deliveries' share of time, so that the next batch, with a pacer of
        its own, does not start with a burst on top of this one's."""
        now = time.monotonic()
        if self._rate is not None and self._next > now:
            await asyncio.sleep(self._next - now)


@dataclass
class _Result:
    """One recipient's delivery: sent on any step, or the reasons it was not."""

    delivered: bool = False
    reasons: list[str] = field(default_factory=list)
    delivery_ids: list[str] = field(default_factory=list)


def recipient_workflow_id(broadcast_id: str, recipient_id: str) -> str:
    """The workflow id one recipient of a broadcast has: delivery ids derive from it, and a
    recipient deferred for quiet hours runs a NotificationWorkflow under exactly this id."""
    return workflow_id_for(notification_id_for(broadcast_id, recipient_id))


def _count(counters: BroadcastCounters, status: OutcomeStatus) -> None:
    if status is OutcomeStatus.sent:
        counters.sent += 1
    elif status is OutcomeStatus.failed:
        counters.failed += 1
    elif status is OutcomeStatus.skipped:
        counters.skipped += 1
    elif status is OutcomeStatus.deferred:
        counters.deferred += 1


@contextlib.asynccontextmanager
async def _heartbeating(detail: list[str]) -> AsyncIterator[None]:
    """Heartbeat every few seconds while the batch runs: a killed worker stops heartbeating, and
    the server retries the batch on another worker after the heartbeat timeout."""

    async def beat() -> None:
        while True:
            activity.heartbeat(detail[0])
            await asyncio.sleep(HEARTBEAT_EVERY)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def cancel_deferred_notifications(
    client: Client,
    store: Store,
    broadcast_id: str,
    reason: str | None,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Signal `cancel` to every NotificationWorkflow a broadcast deferred for quiet hours; how many
    took the signal. Run by a cancelled broadcast, and by `tidings broadcast cancel` after a
    broadcast finished (its deferred recipients may still be waiting).

    They are found through the store (`deferred` outcomes; their workflow ids derive from the
    recipient ids), not through visibility, which lags and may be absent."""
    cancelled = 0
    after = ""
    while page := await store.broadcasts.list_outcomes(broadcast_id, OutcomeStatus.deferred, after, 500):
        for outcome in page:
            if progress is not None:
                progress(outcome.recipient_id)
            handle = client.get_workflow_handle(recipient_workflow_id(broadcast_id, outcome.recipient_id))
            with contextlib.suppress(RPCError):  # finished already: nothing to cancel
                await handle.signal("cancel", reason)
                cancelled += 1
        after = page[-1].recipient_id
    return cancelled


class BroadcastActivities:
    def __init__(self, store: Store, settings: Settings, delivery: DeliveryActivities) -> None:
        self._store = store
        self._settings = settings
        self._delivery = delivery

    @activity.defn(name="broadcast_audience_size")
    async def audience_size(self, request: AudienceSizeInput) -> int:
        return await self._store.broadcasts.audience_size(request.broadcast_id, request.audience)

    @activity.defn(name="broadcast_outcome_counts")
    async def outcome_counts(self, request: AudienceSizeInput) -> BroadcastCounters:
        """The final outcomes recorded so far (a cancelled broadcast's counts)."""
        counts = await self._store.broadcasts.count_outcomes(request.broadcast_id)
        return BroadcastCounters(
            sent=counts.get(OutcomeStatus.sent, 0),
            failed=counts.get(OutcomeStatus.failed, 0),
            skipped=counts.get(OutcomeStatus.skipped, 0),
            deferred=counts.get(OutcomeStatus.deferred, 0),
        )

    @activity.defn(name="broadcast_plan_pages")
    async def plan_pages(self, request: PlanPagesInput) -> PlannedPages:
        """The next pages after `after`, as id ranges: only their boundaries enter history."""
        ids = await self._store.broadcasts.audience_page(
            request.broadcast_id, request.audience, request.after, request.pages * request.page_size
        )
        ranges: list[BatchRange] = []
        after = request.after
        for end in range(request.page_size - 1, len(ids) + request.page_size - 1, request.page_size):
            upto = ids[min(end, len(ids) - 1)]
            ranges.append(BatchRange(after=after, upto=upto))
            after = upto
        return PlannedPages(ranges=ranges, exhausted=len(ids) < request.pages * request.page_size)

    @activity.defn(name="broadcast_batch")
    async def run_batch(self, batch: BatchInput) -> BroadcastCounters:
        tables = self._store.broadcasts
        ids = await tables.audience_page(
            batch.broadcast_id, batch.audience, batch.range.after, 100_000, upto=batch.range.upto
        )
        counters = BroadcastCounters(total=len(ids))
        known = await tables.outcomes(batch.broadcast_id, ids)
        todo: list[str] = []
        for recipient_id in ids:
            outcome = known.get(recipient_id)
            if outcome is not None and outcome.status in FINAL_OUTCOMES:
                _count(counters, outcome.status)  # done by an earlier attempt of this batch
            else:
                todo.append(recipient_id)
        if not todo:
            return counters
        loaded = {r.id: r for r in await tables.recipients(todo)}
        topic = batch.audience.topic
        opted_out = await tables.topic_opt_outs(topic, todo) if topic else set()
        pacer = Pacer(batch.rate)
        step = batch.concurrency if batch.rate is None else max(1, min(batch.concurrency, int(batch.rate)))
        progress = [batch.range.after]
        async with _heartbeating(progress):
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                progress[0] = chunk[0]
                outcomes = await self._run_chunk(batch, chunk, loaded, opted_out, pacer)
                for outcome in outcomes:
                    _count(counters, outcome.status)
            await pacer.finish()
        return counters

    async def _run_chunk(
        self,
        batch: BatchInput,
        chunk: Sequence[str],
        loaded: dict[str, Recipient],
        opted_out: set[str],
        pacer: Pacer,
    ) -> list[RecipientOutcome]:
        final: list[RecipientOutcome] = []
        to_send: list[Recipient] = []
        now = datetime.now(UTC)
        for recipient_id in chunk:
            recipient = loaded.get(recipient_id)
            decided = await self._decide(batch, recipient_id, recipient, recipient_id in opted_out, now)
            if decided is not None:
                final.append(decided)
            elif recipient is not None:
                to_send.append(recipient)
        if to_send:
            await self._store.broadcasts.record_outcomes(
                [
                    RecipientOutcome(
                        broadcast_id=batch.broadcast_id,
                        recipient_id=r.id,
                        status=OutcomeStatus.sending,
                        delivery_ids=self._planned_delivery_ids(batch, r),
                    )
                    for r in to_send
                ]
            )
            await pacer.take(len(to_send))
            results = await asyncio.gather(*(self._deliver_recipient(batch, r) for r in to_send))
            for recipient, result in zip(to_send, results, strict=True):
                final.append(
                    RecipientOutcome(
                        broadcast_id=batch.broadcast_id,
                        recipient_id=recipient.id,
                        status=OutcomeStatus.sent if result.delivered else OutcomeStatus.failed,
                        reason=None if result.delivered else "; ".join(dict.fromkeys(result.reasons)),
                        delivery_ids=result.delivery_ids,
                    )
                )
        if final:
            await self._store.broadcasts.record_outcomes(final)
        return final

    async def _decide(
        self,
        batch: BatchInput,
        recipient_id: str,
        recipient: Recipient | None,
        opted_out: bool,
        now: datetime,
    ) -> RecipientOutcome | None:
        """The outcome of a recipient that is not sent to now (None: send now)."""

        def outcome(status: OutcomeStatus, reason: str) -> RecipientOutcome:
            return RecipientOutcome(
                broadcast_id=batch.broadcast_id, recipient_id=recipient_id, status=status, reason=reason
            )

        if batch.expires_at is not None and now >= batch.expires_at:
            return outcome(
                OutcomeStatus.failed, f"expired at {batch.expires_at.isoformat()} before it could be sent"
            )
        if recipient is None:
            return outcome(
                OutcomeStatus.failed, f"unknown recipient {recipient_id!r}: not in the subscriber store"
            )
        critical = batch.priority is Priority.critical
        if opted_out and not critical:
            return outcome(OutcomeStatus.skipped, f"recipient opted out of topic {batch.audience.topic!r}")
        reasons = [block_reason(c, recipient, batch.priority, batch.category) for c in batch.all_channels]
        if all(r is not None for r in reasons):
            blocked = [r for r in reasons if r is not None]
            status = (
                OutcomeStatus.skipped
                if any(is_preference_block(r) for r in blocked)
                else OutcomeStatus.failed
            )
            return outcome(status, "; ".join(dict.fromkeys(blocked)))
        if not critical:
            until = quiet_hours_end(now, recipient.preferences.quiet_hours, recipient.timezone)
            if until is not None:
                await self._defer(batch, recipient_id)
                return outcome(
                    OutcomeStatus.deferred,
                    f"in quiet hours until {until.isoformat()}: handed to workflow "
                    f"{recipient_workflow_id(batch.broadcast_id, recipient_id)}",
                )
        return None

    async def _defer(self, batch: BatchInput, recipient_id: str) -> None:
        """Hand a recipient in quiet hours to a NotificationWorkflow, which waits them out durably
        and honours cancel and expiry. Idempotent: its id is the recipient's id in this broadcast."""
        notification = NotificationInput(
            id=notification_id_for(batch.broadcast_id, recipient_id),
            recipient_id=recipient_id,
            content=batch.content,
            channels=batch.channels,
            priority=batch.priority,
            category=batch.category,
            expires_at=batch.expires_at,
            retry=batch.retry,
            requested_at=datetime.now(UTC),
        )
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(sa.NOTIFICATION_STATUS, "scheduled"),
                SearchAttributePair(
                    sa.RECIPIENT_ID, recipient_search_value(recipient_hash_key(self._settings), recipient_id)
                ),
                SearchAttributePair(sa.NOTIFICATION_CHANNELS, [c.value for c in notification.all_channels]),
                SearchAttributePair(sa.NOTIFICATION_PRIORITY, notification.priority.value),
                SearchAttributePair(sa.BROADCAST_ID, batch.broadcast_id),
            ]
        )
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await activity.client().start_workflow(
                "NotificationWorkflow",
                notification,
                id=notification.workflow_id,
                task_queue=activity.info().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=attributes,
                static_summary=f"broadcast {batch.broadcast_id} to {recipient_id}, after quiet hours",
            )

    @activity.defn(name="broadcast_cancel_deferred")
    async def cancel_deferred(self, request: CancelDeferredInput) -> int:
        """Cancel the NotificationWorkflows this broadcast handed recipients in quiet hours to."""
        return await cancel_deferred_notifications(
            activity.client(), self._store, request.broadcast_id, request.reason, activity.heartbeat
        )

    def _planned_delivery_ids(self, batch: BatchInput, recipient: Recipient) -> list[str]:
        workflow_id = recipient_workflow_id(batch.broadcast_id, recipient.id)
        return [
            delivery_id_for(workflow_id, d)
            for step in batch.channels
            for d in destinations_for(recipient, step.channel)
        ]

    async def _deliver_recipient(self, batch: BatchInput, recipient: Recipient) -> _Result:
        """Every step of the channel plan, each with its fallback chain: as NotificationWorkflow
        does (without read-escalation, which needs a workflow per recipient to wait in)."""
        result = _Result()
        outcomes = await asyncio.gather(
            *(self._run_step(batch, recipient, s, result) for s in batch.channels)
        )
        result.delivered = any(outcomes)
        return result

    async def _run_step(
        self, batch: BatchInput, recipient: Recipient, step: ChannelStep, result: _Result
    ) -> bool:
        for channel in (step.channel, *step.fallback):
            blocked = block_reason(channel, recipient, batch.priority, batch.category)
            if blocked is not None:
                result.reasons.append(f"{channel.value} skipped: {blocked}")
                continue
            destinations = destinations_for(recipient, channel)
            sent = await asyncio.gather(*(self._send(batch, recipient, d, result) for d in destinations))
            needed = all if channel is Channel.push and self._settings.push_success == "all" else any
            if sent and needed(sent):
                return True
        return False

    async def _send(
        self, batch: BatchInput, recipient: Recipient, destination: Destination, result: _Result
    ) -> bool:
        workflow_id = recipient_workflow_id(batch.broadcast_id, recipient.id)
        delivery = DeliveryInput(
            delivery_id=delivery_id_for(workflow_id, destination),
            workflow_id=workflow_id,
            notification_id=notification_id_for(batch.broadcast_id, recipient.id),
            destination=destination,
            recipient=recipient,
            content=batch.content,
            priority=batch.priority,
            category=batch.category,
            expires_at=batch.expires_at,
        )
        result.delivery_ids.append(delivery.delivery_id)
        policy = self._settings.retry_for(destination.channel)
        attempts = min(BATCH_ATTEMPTS, policy.maximum_attempts)
        backoff = policy.initial_interval
        for attempt in range(1, attempts + 1):
            try:
                await self._delivery.send(delivery, attempt)
                return True
            except (DeliveryError, RenderError) as exc:
                reason = scrub(str(getattr(exc, "reason", exc)), [destination.address])
                if (
                    isinstance(exc, PermanentDeliveryError)
                    or isinstance(exc, RenderError)
                    or attempt == attempts
                ):
                    result.reasons.append(f"{destination.channel.value}/{destination.provider}: {reason}")
                    if isinstance(exc, PermanentDeliveryError):
                        await self._after_permanent(recipient, destination, exc, reason)
                    return False
                if isinstance(exc, ThrottledDeliveryError) and exc.retry_after:
                    wait = min(exc.retry_after, MAX_THROTTLE_WAIT)
                elif isinstance(exc, TransientDeliveryError) and exc.retry_after:
                    wait = min(exc.retry_after, MAX_BACKOFF)
                else:
                    wait = min(backoff, MAX_BACKOFF)
                await asyncio.sleep(wait.total_seconds())
                backoff = min(backoff * policy.backoff_coefficient, policy.maximum_interval)
        return False

    async def _after_permanent(
        self, recipient: Recipient, destination: Destination, exc: PermanentDeliveryError, reason: str
    ) -> None:
        """Dead-token deactivation and gone-endpoint disabling, as NotificationWorkflow does."""
        if exc.deactivate_device and destination.device_id:
            await self._store.deactivate_device(
                recipient.id, destination.device_id, reason, exc.provider_timestamp
            )
        if exc.disable_endpoint and destination.channel is Channel.webhook:
            await self._store.disable_webhook(recipient.id, destination.address, reason)
