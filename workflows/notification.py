"""NotificationWorkflow: one notification to one recipient, from schedule to final outcome.

The workflow only decides; activities do the I/O. Its life:

1. Sleep durably until `schedule_at` (cancel / reschedule signals and updates wake it).
2. Load the recipient and evaluate quiet hours (a local activity: no extra server round trip),
   unless the recipient came inline and nothing needs the store or the time zone rules: then the
   workflow prepares in its own code (`_needs_store_preparation`).
3. Apply opt-outs; defer non-critical messages until the recipient's quiet hours end.
4. Deliver every step of the channel plan concurrently; inside a step, try its fallback chain in
   order; inside a channel, run one provider activity per destination (device, address).
5. Finish in a final phase, with the reason, and return the same state the `status` query shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from tidings import search_attributes as sa
    from tidings.activities.delivery import DeliveryActivities
    from tidings.activities.subscribers import SubscriberActivities
    from tidings.models import (
        MAX_CONCURRENT_DELIVERIES,
        CapCheck,
        CapHold,
        Channel,
        ChannelStep,
        DeactivateDeviceInput,
        DeliveryInput,
        DeliveryReceipt,
        DeliveryStatus,
        Destination,
        DestinationState,
        DisableWebhookInput,
        Engagement,
        EngagementKind,
        ErrorKind,
        NotificationInput,
        NotificationState,
        Phase,
        Preparation,
        PrepareInput,
        Priority,
        ProviderTry,
        ReceiptStatus,
        Recipient,
        RetrySpec,
        SignalOutcome,
        StateEvent,
        delivery_id_for,
    )
    from tidings.planning import block_reason, destinations_for, is_preference_block
    from tidings.redaction import redact_address, scrub
    from tidings.telemetry import metrics
    from tidings.validation import validation_message
    from tidings.workflows.inputs import InvalidInput, decode, decode_input, placeholder_input
    from tidings.workflows.worker_policy import policy_for

PERMANENT_ERROR_TYPES = ["PermanentDeliveryError", "ProviderNotConfigured", "RenderError"]
LOCAL_ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Patch ids (workflow.patched): histories recorded before a change replay the old way.
PATCH_BOUNDED_FAN_OUT = "bounded-delivery-fan-out"
PATCH_FREQUENCY_CAPS = "throttle-and-frequency-caps"

_NO_INPUT = RawValue(Payload())


def search_attributes_for(request: NotificationInput, phase: Phase) -> TypedSearchAttributes:
    """The search attributes a notification starts with (set by the client at start)."""
    return TypedSearchAttributes(search_attribute_pairs(request, phase))


def initial_phase(request: NotificationInput, capped_channels: frozenset[Channel] = frozenset()) -> Phase:
    """The NotificationStatus a notification starts with: `sending` when it is to go out now.

    An immediate notification thus needs no search-attribute update until its final phase (the
    workflow only updates the attribute when the phase it shows differs; see `_set_phase`).

    `sending` at start also lets an inline recipient be prepared in the workflow, without the
    store (`_needs_store_preparation`). When the worker's default frequency caps
    (`capped_channels`, from the same `[frequency_caps]` settings) may apply to the request, the
    counters in the store are needed: such a notification starts as `scheduled`, which the start
    event records, so a replay takes the same path whatever the replaying worker's settings."""
    if request.schedule_at is not None:
        return Phase.scheduled
    cappable = request.priority is not Priority.critical and request.recipient is not None
    if cappable and any(step.channel in capped_channels for step in request.channels):
        return Phase.scheduled
    return Phase.sending


def search_attribute_pairs(request: NotificationInput, phase: Phase) -> list[SearchAttributePair[Any]]:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.NOTIFICATION_STATUS, phase.value),
        SearchAttributePair(sa.RECIPIENT_ID, request.recipient_id),
        SearchAttributePair(sa.NOTIFICATION_CHANNELS, [c.value for c in request.all_channels]),
        SearchAttributePair(sa.NOTIFICATION_PRIORITY, request.priority.value),
    ]
    if request.category:
        pairs.append(SearchAttributePair(sa.NOTIFICATION_CATEGORY, request.category))
    return pairs


def current_details(state: NotificationState) -> str:
    """The Web UI's "Current Details" panel: phase, reason and each destination, in Markdown."""
    lines = [f"**Phase:** {state.phase.value}" + (f" ({state.reason})" if state.reason else "")]
    if state.quiet_hours_until:
        lines.append(f"**Quiet hours until:** {state.quiet_hours_until.isoformat()}")
    for d in state.destinations:
        where = d.device_id or redact_address(d.destination)
        line = f"- {d.channel.value}/{d.provider} → {where}: **{d.status.value}**"
        if d.attempts:
            line += f", {d.attempts} attempt{'s' if d.attempts != 1 else ''}"
        if d.last_error:
            line += f", {d.last_error}"
        if d.fallback_from:
            line += f" (fallback from {d.fallback_from.value})"
        if d.provider_used and d.provider_used != d.provider:
            line += f" via {d.provider_used}"
        lines.append(line)
        lines.extend(f"  - {t.summary}" for t in d.providers_tried if t.outcome != "sent")
    if state.events:
        lines.append(f"**Last event:** {state.events[-1].message}")
    return "\n".join(lines)


def parse_schedule(value: str) -> datetime:
    """Parse the `reschedule` signal's input: an ISO 8601 timestamp with an offset."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if when.utcoffset() is None:
        raise ValueError(f"timestamp needs a UTC offset (e.g. +00:00): {value!r}")
    return when


class _Stop(Exception):
    """Internal: the wait ended the notification (cancelled or expired)."""


@workflow.defn(name="NotificationWorkflow")
class NotificationWorkflow:
    """Takes its input raw and validates it itself, so that input from any client (a Go service,
    `temporal workflow start`) either runs or ends `failed` with the validation message, instead
    of failing every workflow task while it is decoded."""

    @workflow.init
    def __init__(self, request: RawValue = _NO_INPUT) -> None:
        self._invalid_input: str | None = None
        try:
            self._request = decode_input(request.payload if request is not _NO_INPUT else None)
        except InvalidInput as exc:
            self._invalid_input = str(exc)
            self._request = placeholder_input(workflow.info().workflow_id)
        request_ = self._request
        self._schedule_at = request_.schedule_at
        self._schedule_version = 0
        self._cancel_reason: str | None = None
        self._cancel_requested = False
        self._engaged = False
        self._escalations_waiting = 0
        self._delivery_slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        # The NotificationStatus search attribute as the server has it (the client sets it at start).
        self._status_attribute = workflow.info().typed_search_attributes.get(sa.NOTIFICATION_STATUS)
        # Clients before the in-workflow preparation always started notifications as `scheduled`
        # (or without search attributes): see `_needs_store_preparation`.
        self._started_as_sending = self._status_attribute == Phase.sending.value
        self._state = NotificationState(
            id=request_.id,
            workflow_id=workflow.info().workflow_id,
            recipient_id=request_.recipient_id,
            priority=request_.priority,
            category=request_.category,
            channels=request_.all_channels,
            schedule_at=request_.schedule_at,
            expires_at=request_.expires_at,
        )

    # ----------------------------------------------------------------- main line

    @workflow.run
    async def run(self, request: RawValue = _NO_INPUT) -> NotificationState:
        self._state.started_at = workflow.now()
        if self._invalid_input is not None:
            self._finish(Phase.failed, self._invalid_input)
            return self._state
        self._add_missing_search_attributes()
        try:
            prep = await self._wait_until_deliverable()
        except _Stop:
            return self._state
        if prep is None:
            return self._state
        self._set_phase(Phase.sending)
        recipient = prep.recipient
        assert recipient is not None
        outcomes = await asyncio.gather(
            *(self._run_step(step, recipient, prep) for step in self._request.channels)
        )
        if all(outcomes):
            self._finish(Phase.delivered)
        elif any(outcomes):
            self._finish(Phase.partially_delivered, "some channels failed; see destinations")
        else:
            self._finish(Phase.failed, self._failure_summary())
        return self._state

    def _add_missing_search_attributes(self) -> None:
        """A start from another client may carry no search attributes: add what the client sets."""
        if workflow.info().typed_search_attributes.get(sa.RECIPIENT_ID) is not None:
            return
        pairs = search_attribute_pairs(self._request, self._state.phase)
        workflow.upsert_search_attributes([p.key.value_set(p.value) for p in pairs])
        self._status_attribute = self._state.phase.value

    async def _wait_until_deliverable(self) -> Preparation | None:
        """Sleep through schedule and quiet hours; return the preparation to send with.

        Returns None when the notification ended without sending (no recipient, nothing allowed).
        """
        request = self._request
        while True:
            if self._schedule_at is not None:
                await self._sleep_until(self._schedule_at, Phase.scheduled, "until schedule_at")
                if self._was_rescheduled():
                    continue
            self._check_expiry()
            if not self._needs_store_preparation():
                prep = self._prepared_in_workflow()
            else:
                loaded = await self._prepare_with_store()
                if loaded is None:
                    return None
                prep = loaded
            if prep.recipient is None:
                self._finish(
                    Phase.failed, f"unknown recipient {request.recipient_id!r}: not in the subscriber store"
                )
                return None
            if not self._anything_allowed(prep.recipient):
                return None
            if request.priority is not Priority.critical and prep.quiet_hours_until is not None:
                self._state.quiet_hours_until = prep.quiet_hours_until
                self._event(f"recipient is in quiet hours until {prep.quiet_hours_until.isoformat()}")
                await self._sleep_until(
                    prep.quiet_hours_until, Phase.waiting_quiet_hours, "until quiet hours end"
                )
                self._state.quiet_hours_until = None
                continue  # re-check schedule, expiry, profile and quiet hours after waking
            if prep.hold is not None and workflow.patched(PATCH_FREQUENCY_CAPS):
                if await self._wait_for_cap(prep.hold):
                    continue  # a slot may be free now: prepare (and reserve) again
                return None
            return prep

    def _cap_check(self) -> CapCheck:
        """What prepare_notification reserves before sending: the throttle and the frequency caps
        of each step's first channel (see tidings/activities/caps.py)."""
        request = self._request
        return CapCheck(
            notification_id=request.id,
            priority=request.priority,
            category=request.category,
            throttle=request.throttle,
            primary_channels=[step.channel for step in request.channels],
        )

    async def _wait_for_cap(self, hold: CapHold) -> bool:
        """End `throttled`, or wait durably for the slot a frequency cap frees (policy `defer`);
        True when it waited and should try again."""
        if hold.until is None:
            self._finish(Phase.throttled, hold.reason)
            return False
        self._event(f"{hold.reason}; waiting for the next slot at {hold.until.isoformat()}")
        await self._sleep_until(hold.until, Phase.waiting_frequency_cap, "until a frequency-cap slot frees")
        return True

    def _needs_store_preparation(self) -> bool:
        """Whether preparing this notification needs the `prepare_notification` local activity.

        It does when the recipient is in the store, and when quiet hours may defer it: those are
        evaluated with the IANA time zone rules, and the activity's recorded result keeps a later
        tzdata update from changing a replayed decision. Otherwise (an inline recipient without
        quiet hours, or a critical notification) the request holds all there is to decide, and the
        workflow does it in its own code: no extra activation, no marker copying the recipient.
        A throttle, or frequency caps the inline recipient carries, need the store's counters too.
        The answer must follow from what history holds (the input, the start event), never from
        the worker's settings (`worker_policy`), or a replay on a worker configured differently
        would take the other path and fail. The worker's default frequency caps therefore reach
        this decision through the start event: a client that knows them starts a notification they
        may apply to as `scheduled` (`initial_phase`).

        Replay safety: notifications started before this path existed ran the activity always, and
        were all started with NotificationStatus `scheduled` (or none); only a client of this
        version starts an immediate notification as `sending` (`initial_phase`). That value in the
        start event is the version marker, so older histories replay the activity. It is used
        instead of `workflow.patched()`, which in this SDK records a marker and also upserts
        TemporalChangeVersion: two more history events and a visibility write per notification.
        """
        request = self._request
        recipient = request.recipient
        if recipient is None or not self._started_as_sending:
            return True
        if request.throttle is not None or recipient.preferences.frequency_caps:
            return True
        return recipient.preferences.quiet_hours is not None and request.priority is not Priority.critical

    async def _prepare_with_store(self) -> Preparation | None:
        """Run `prepare_notification`; None when the notification failed because it could not."""
        request = self._request
        try:
            prep: Preparation = await workflow.execute_local_activity_method(
                SubscriberActivities.prepare_notification,
                PrepareInput(
                    recipient_id=request.recipient_id,
                    recipient=request.recipient,
                    channels=request.all_channels,
                    at=workflow.now(),
                    caps=self._cap_check(),
                ),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                retry_policy=RetryPolicy(
                    maximum_attempts=5,
                    maximum_interval=timedelta(seconds=10),
                    non_retryable_error_types=["InvalidRecipient"],
                ),
                summary=f"load recipient {request.recipient_id}",
            )
        except (ActivityError, ApplicationError) as err:
            # A local activity's failure may arrive unwrapped, as the ApplicationError itself.
            cause = err.cause if isinstance(err, ActivityError) else err
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            self._finish(Phase.failed, f"cannot load recipient {request.recipient_id!r}: {reason}")
            return None
        return prep

    def _prepared_in_workflow(self) -> Preparation:
        """The preparation `prepare_notification` would return for an inline recipient without
        quiet hours, with the retry settings of the worker that runs this workflow task."""
        policy = policy_for(workflow.info().task_queue)
        return Preparation(
            recipient=self._request.recipient,
            recipient_stored=False,
            quiet_hours_until=None,
            retry={c: policy.retry[c] for c in self._request.all_channels if c in policy.retry},
            push_success=policy.push_success,
        )

    async def _sleep_until(self, when: datetime, phase: Phase, why: str) -> None:
        """Sleep durably until `when`, waking early for cancel, reschedule or expiry."""
        self._set_phase(phase)
        version = self._schedule_version
        deadline = when
        expires_at = self._request.expires_at
        if expires_at is not None and expires_at < deadline:
            deadline = expires_at
        remaining = deadline - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self._cancel_requested or self._schedule_version != version,
                    timeout=remaining,
                    timeout_summary=why,
                )
            except TimeoutError:
                pass
        if self._cancel_requested:
            self._finish(Phase.cancelled, self._cancel_reason or "cancelled by request")
            raise _Stop
        if self._schedule_version == version:
            self._check_expiry()

    def _was_rescheduled(self) -> bool:
        return self._schedule_at is not None and self._schedule_at > workflow.now()

    def _check_expiry(self) -> None:
        expires_at = self._request.expires_at
        if expires_at is not None and workflow.now() >= expires_at:
            self._finish(Phase.expired, f"expired at {expires_at.isoformat()} before it could be sent")
            raise _Stop

    def _anything_allowed(self, recipient: Recipient) -> bool:
        reasons = [
            block_reason(channel, recipient, self._request.priority, self._request.category)
            for channel in self._request.all_channels
        ]
        if any(r is None for r in reasons):
            return True
        blocked = [r for r in reasons if r is not None]
        if any(is_preference_block(r) for r in blocked):
            self._finish(Phase.skipped_by_preferences, "; ".join(dict.fromkeys(blocked)))
        else:
            self._finish(Phase.failed, "; ".join(dict.fromkeys(blocked)))
        return False

    # ----------------------------------------------------------------- delivery

    async def _run_step(self, step: ChannelStep, recipient: Recipient, prep: Preparation) -> bool:
        """Deliver one step of the plan: its channel, then each fallback until one succeeds."""
        fallback_from: Channel | None = None
        why: str | None = None
        chain = [step.channel, *step.fallback]
        for position, channel in enumerate(chain):
            blocked = block_reason(channel, recipient, self._request.priority, self._request.category)
            if blocked is not None:
                self._event(f"{channel.value} skipped: {blocked}")
                fallback_from, why = (fallback_from or channel), (why or blocked)
                continue
            destinations = destinations_for(recipient, channel)
            results = await asyncio.gather(
                *(self._deliver(d, recipient, prep, fallback_from, why) for d in destinations)
            )
            needed = all if channel is Channel.push and prep.push_success == "all" else any
            if results and needed(results):
                delay = step.escalate_after.get(channel)
                if delay is None or await self._read_within(channel, delay):
                    return True
                why = f"{channel.value} not read within {_duration(delay)}"
                fallback_from = channel
                self._event(f"escalating from {channel.value} to {chain[position + 1].value}: {why}")
                metrics.escalation_taken(channel.value, chain[position + 1].value)
                continue
            why = f"{channel.value} failed: " + "; ".join(
                s.last_error or "failed" for s in self._state.destinations if s.channel is channel
            )
            fallback_from = channel
            if position + 1 < len(chain):
                self._event(f"falling back from {channel.value} to {chain[position + 1].value}: {why}")
                metrics.fallback_taken(channel.value, chain[position + 1].value)
        return False

    async def _read_within(self, channel: Channel, delay: timedelta) -> bool:
        """Wait for the recipient to read, click or open; False when `delay` passes first.

        A cancel during the wait stops the escalation (and counts as "no need to go on").
        """
        self._escalations_waiting += 1
        try:
            await workflow.wait_condition(
                lambda: self._engaged or self._cancel_requested,
                timeout=delay,
                timeout_summary=f"escalate if {channel.value} is unread",
            )
        except TimeoutError:
            return False
        finally:
            self._escalations_waiting -= 1
        if self._cancel_requested and not self._engaged:
            self._event(f"escalation after {channel.value} stopped by cancel")
        return True

    async def _deliver(
        self,
        destination: Destination,
        recipient: Recipient,
        prep: Preparation,
        fallback_from: Channel | None,
        fallback_reason: str | None,
    ) -> bool:
        workflow_id = workflow.info().workflow_id
        state = DestinationState(
            channel=destination.channel,
            provider=destination.provider,
            destination=redact_address(destination.address),
            device_id=destination.device_id,
            delivery_id=delivery_id_for(workflow_id, destination),
            status=DeliveryStatus.sending,
            started_at=workflow.now(),
            fallback_from=fallback_from,
            fallback_reason=fallback_reason,
        )
        self._state.destinations.append(state)
        workflow.set_current_details(current_details(self._state))
        try:
            policy = self._retry_spec(destination.channel, prep)
        except ValidationError as exc:
            problem = _one_line(validation_message(exc, "retry policy"))
            reason = f"the request's retry override does not fit this worker's retry settings: {problem}"
            return self._record_failure(state, reason, "permanent", 0)
        schedule_to_close = policy.schedule_to_close_timeout
        if self._request.expires_at is not None:
            schedule_to_close = min(schedule_to_close, self._request.expires_at - workflow.now())
        if schedule_to_close <= timedelta(0):
            return self._record_failure(state, "expired before this destination was tried", "timeout", 0)
        summary = destination.label + (f" (fallback from {fallback_from.value})" if fallback_from else "")
        try:
            async with self._delivery_slot():
                result = await workflow.execute_activity_method(
                    DeliveryActivities.deliver,
                    DeliveryInput(
                        delivery_id=state.delivery_id,
                        workflow_id=workflow_id,
                        notification_id=self._request.id,
                        destination=destination,
                        recipient=_needed_by(destination, recipient),
                        content=self._request.content,
                        priority=self._request.priority,
                        category=self._request.category,
                        expires_at=self._request.expires_at,
                        recipient_stored=prep.recipient_stored,
                    ),
                    start_to_close_timeout=min(policy.start_to_close_timeout, schedule_to_close),
                    schedule_to_close_timeout=schedule_to_close,
                    retry_policy=RetryPolicy(
                        initial_interval=policy.initial_interval,
                        backoff_coefficient=policy.backoff_coefficient,
                        maximum_interval=policy.maximum_interval,
                        maximum_attempts=policy.maximum_attempts,
                        non_retryable_error_types=[*PERMANENT_ERROR_TYPES, *policy.non_retryable_error_types],
                    ),
                    summary=summary,
                )
        except ActivityError as err:
            reason, kind, attempts, details = _describe_failure(err, policy)
            reason = scrub(reason, [destination.address])
            _record_providers(state, details.get("providers"), None)
            self._record_failure(state, reason, kind, attempts)
            if details.get("deactivate_device") and destination.device_id:
                await self._deactivate(recipient.id, destination.device_id, reason, details)
            if details.get("disable_endpoint") and destination.channel is Channel.webhook:
                await self._disable_webhook(recipient.id, destination.address, reason)
            return False
        state.status = DeliveryStatus.sent
        state.attempts = result.attempt
        state.provider_message_id = result.provider_message_id
        _record_providers(state, result.providers_tried, result.provider)
        state.finished_at = workflow.now()
        workflow.set_current_details(current_details(self._state))
        metrics.delivery_finished(
            state.channel.value, state.provider_used or state.provider, "sent", state.attempts
        )
        return True

    def _delivery_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """At most MAX_CONCURRENT_DELIVERIES run at once, so a workflow task never carries more than
        that many activity inputs (see the size budget in tidings.models). Histories from before
        the bound (no patch marker) replay unbounded; the marker is only recorded by a notification
        that actually has to wait for a slot, so the others' histories stay as short as before."""
        if self._delivery_slots.locked() and not workflow.patched(PATCH_BOUNDED_FAN_OUT):
            return contextlib.nullcontext()
        return self._delivery_slots

    def _record_failure(self, state: DestinationState, reason: str, kind: ErrorKind, attempts: int) -> bool:
        state.status = DeliveryStatus.failed
        state.last_error = reason
        state.error_kind = kind
        state.attempts = attempts
        state.finished_at = workflow.now()
        workflow.set_current_details(current_details(self._state))
        metrics.delivery_finished(state.channel.value, state.provider, metrics.outcome_of(kind), attempts)
        return False

    async def _deactivate(
        self, recipient_id: str, device_id: str, reason: str, details: dict[str, Any]
    ) -> None:
        if self._request.recipient is not None:
            return  # an inline recipient is not in the store
        stamp = details.get("provider_timestamp")
        deactivated = await workflow.execute_local_activity_method(
            SubscriberActivities.deactivate_device,
            DeactivateDeviceInput(
                recipient_id=recipient_id,
                device_id=device_id,
                reason=reason,
                provider_timestamp=datetime.fromisoformat(stamp) if stamp else None,
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            summary=f"deactivate device {device_id}",
        )
        if deactivated:
            self._event(f"device {device_id} deactivated: {reason}")
            provider = next((d.provider for d in self._state.destinations if d.device_id == device_id), "")
            metrics.device_deactivated(Channel.push.value, provider)

    async def _disable_webhook(self, recipient_id: str, url: str, reason: str) -> None:
        if self._request.recipient is not None:
            return  # an inline recipient is not in the store
        disabled = await workflow.execute_local_activity_method(
            SubscriberActivities.disable_webhook,
            DisableWebhookInput(recipient_id=recipient_id, url=url, reason=reason),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            summary=f"disable webhook of {recipient_id}",
        )
        if disabled:
            self._event(f"webhook endpoint {redact_address(url)} disabled: {reason}")

    def _retry_spec(self, channel: Channel, prep: Preparation) -> RetrySpec:
        base = prep.retry.get(channel) or RetrySpec()
        override = self._request.retry.get(channel)
        return override.apply(base) if override else base

    # ----------------------------------------------------------------- signals, updates, query

    # Signals take raw payloads: one that does not decode is recorded as ignored, with the reason,
    # instead of being dropped by the SDK where nobody sees it.

    @workflow.signal(name="cancel")
    def cancel_signal(self, reason: RawValue = _NO_INPUT) -> None:
        try:
            why = None if reason is _NO_INPUT else decode(reason.payload, str | None, "cancel reason")
        except InvalidInput as exc:
            self._event(f"cancel ignored: {_one_line(exc)}")
            return
        outcome = self._check_cancel()
        self._apply_cancel(why) if outcome.accepted else self._event(f"cancel ignored: {outcome.reason}")

    @workflow.signal(name="reschedule")
    def reschedule_signal(self, schedule_at: RawValue = _NO_INPUT) -> None:
        try:
            if schedule_at is _NO_INPUT:
                raise ValueError('reschedule needs a timestamp, e.g. "2030-01-01T09:00:00+00:00"')
            when = parse_schedule(decode(schedule_at.payload, str, "reschedule timestamp"))
        except ValueError as exc:
            self._event(f"reschedule ignored: {_one_line(exc)}")
            return
        outcome = self._check_reschedule(when)
        self._apply_reschedule(when) if outcome.accepted else self._event(
            f"reschedule ignored: {outcome.reason}"
        )

    @workflow.update(name="cancel")
    def cancel_update(self, reason: str | None = None) -> SignalOutcome:
        self._apply_cancel(reason)
        return SignalOutcome(accepted=True)

    @cancel_update.validator
    def _validate_cancel(self, reason: str | None = None) -> None:
        outcome = self._check_cancel()
        if not outcome.accepted:
            raise ApplicationError(outcome.reason or "refused", type="CancelRefused", non_retryable=True)

    @workflow.update(name="reschedule")
    def reschedule_update(self, schedule_at: str) -> SignalOutcome:
        self._apply_reschedule(parse_schedule(schedule_at))
        return SignalOutcome(accepted=True)

    @reschedule_update.validator
    def _validate_reschedule(self, schedule_at: str) -> None:
        try:
            when = parse_schedule(schedule_at)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="RescheduleRefused", non_retryable=True) from None
        outcome = self._check_reschedule(when)
        if not outcome.accepted:
            raise ApplicationError(outcome.reason or "refused", type="RescheduleRefused", non_retryable=True)

    @workflow.signal(name="delivery_receipt")
    def delivery_receipt(self, raw: RawValue = _NO_INPUT) -> None:
        try:
            receipt: DeliveryReceipt = decode(raw.payload, DeliveryReceipt, "delivery receipt")
        except InvalidInput as exc:
            self._event(f"delivery_receipt ignored: {_one_line(exc)}")
            return
        for destination in self._state.destinations:
            if (receipt.delivery_id and destination.delivery_id == receipt.delivery_id) or (
                receipt.provider_message_id and destination.provider_message_id == receipt.provider_message_id
            ):
                destination.receipts.append(receipt)
                if receipt.status is ReceiptStatus.read:
                    self._engaged = True
                return
        self._event(
            f"receipt for an unknown delivery ignored: {receipt.delivery_id or receipt.provider_message_id}"
        )

    @workflow.signal(name="engagement")
    def engagement(self, raw: RawValue = _NO_INPUT) -> None:
        """The recipient opened, clicked, read or dismissed; read/click/open stop escalation."""
        try:
            event: Engagement = decode(raw.payload, Engagement, "engagement")
        except InvalidInput as exc:
            self._event(f"engagement ignored: {_one_line(exc)}")
            return
        for destination in self._state.destinations:
            if event.delivery_id is None or destination.delivery_id == event.delivery_id:
                destination.engagement.append(event)
                if event.kind is not EngagementKind.dismissed:
                    self._engaged = True
                return
        self._event(f"engagement for an unknown delivery ignored: {event.delivery_id}")

    @workflow.query(name="status")
    def status(self) -> NotificationState:
        return self._state

    def _waiting(self) -> bool:
        return (
            self._state.phase in (Phase.scheduled, Phase.waiting_quiet_hours, Phase.waiting_frequency_cap)
            and not self._cancel_requested
        )

    def _check_cancel(self) -> SignalOutcome:
        if self._waiting() or (self._escalations_waiting and not self._cancel_requested):
            return SignalOutcome(accepted=True)
        return SignalOutcome(accepted=False, reason=f"notification is already {self._state.phase.value}")

    def _check_reschedule(self, when: datetime) -> SignalOutcome:
        if not self._waiting():
            return SignalOutcome(accepted=False, reason=f"notification is already {self._state.phase.value}")
        expires_at = self._request.expires_at
        if expires_at is not None and when >= expires_at:
            return SignalOutcome(
                accepted=False,
                reason=f"new schedule {when.isoformat()} is not before expires_at {expires_at.isoformat()}",
            )
        return SignalOutcome(accepted=True)

    def _apply_cancel(self, reason: str | None) -> None:
        self._cancel_requested = True
        self._cancel_reason = reason
        self._event("cancel requested" + (f": {reason}" if reason else ""))

    def _apply_reschedule(self, when: datetime) -> None:
        self._schedule_at = when
        self._schedule_version += 1
        self._state.schedule_at = when
        self._event(f"rescheduled to {when.isoformat()}")

    # ----------------------------------------------------------------- state

    def _set_phase(self, phase: Phase) -> None:
        if self._state.phase is phase:
            return
        self._state.phase = phase
        if self._status_attribute != phase.value:
            workflow.upsert_search_attributes([sa.NOTIFICATION_STATUS.value_set(phase.value)])
            self._status_attribute = phase.value

    def _finish(self, phase: Phase, reason: str | None = None) -> None:
        self._set_phase(phase)
        self._state.reason = reason
        self._state.finished_at = workflow.now()
        self._event(f"{phase.value}" + (f": {reason}" if reason else ""))
        metrics.notification_finished(phase.value)

    def _event(self, message: str) -> None:
        self._state.events.append(StateEvent(at=workflow.now(), message=message))
        workflow.set_current_details(current_details(self._state))

    def _failure_summary(self) -> str:
        failed = [d for d in self._state.destinations if d.status is DeliveryStatus.failed]
        if not failed:
            return "no destination could be tried"
        return "; ".join(f"{d.channel.value}/{d.provider}: {d.last_error}" for d in failed)


def _needed_by(destination: Destination, recipient: Recipient) -> Recipient:
    """The recipient as one delivery needs it: a push goes to one device, so it carries only that
    one (a recipient may have dozens, and every activity input is kept in history)."""
    if destination.device_id is None:
        return recipient
    return recipient.model_copy(
        update={"devices": [d for d in recipient.devices if d.id == destination.device_id]}
    )


def _record_providers(state: DestinationState, tried: object, used: str | None) -> None:
    """Failover (a channel with several providers): which ones the activity tried or skipped and
    why, from its result or failure details. State only: no command, so replay is unaffected."""
    if not tried or not isinstance(tried, list):
        return
    try:
        state.providers_tried = [
            t if isinstance(t, ProviderTry) else ProviderTry.model_validate(t) for t in tried
        ]
    except ValidationError:
        return
    state.provider_used = used


def _one_line(text: Exception | str) -> str:
    return " ".join(str(text).split())


def _duration(delay: timedelta) -> str:
    minutes = int(delay.total_seconds() // 60)
    if minutes and delay.total_seconds() % 60 == 0:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{delay.total_seconds():g} seconds"


def _describe_failure(err: ActivityError, policy: RetrySpec) -> tuple[str, ErrorKind, int, dict[str, Any]]:
    """Turn an activity failure into (reason, kind, attempts, details) for the state."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        kind: ErrorKind = "permanent" if cause.non_retryable else "transient"
        if details.get("kind") in ("permanent", "transient", "throttled"):
            kind = details["kind"]
        attempts = int(details.get("attempt") or policy.maximum_attempts)
        reason = cause.message
        if not cause.non_retryable and cause.type not in PERMANENT_ERROR_TYPES:
            reason = f"{reason} (gave up after {attempts} attempts)"
        return reason, kind, attempts, details
    if isinstance(cause, ActivityTimeoutError):
        return f"timed out ({cause.type.name if cause.type else 'timeout'})", "timeout", 0, {}
    return str(cause or err), "transient", 0, {}
