"""BroadcastWorkflow: one notification to an audience of any size, in batches, with bounded history.

The workflow only keeps cursors and counters. Its life:

1. Sleep durably until `schedule_at` (cancel wakes it); count the audience (one activity).
2. Plan the next pages (`broadcast_plan_pages`: id ranges, only their boundaries enter history) and
   keep `window` batch activities running, each delivering one range (see activities/broadcast.py
   for the per-recipient semantics and the no-double-send checkpoint).
3. Sum each batch's counts into the `progress` query, the search attributes and the Web UI details.
4. After MAX_BATCHES_PER_RUN batches (or when the server suggests it), let running batches finish
   and continue as new with the cursor and counters: a run's history stays a few thousand events
   whatever the audience size.

Control: `pause`, `resume`, `cancel` and `set_rate` are signals (stock `temporal workflow signal`)
and updates of the same names (answering whether they were accepted). Pause and a new rate take
effect from the next batch: running batches finish their page (at most window x batch_size
recipients) at the rate they started with. Cancel stops running batches at their next chunk,
cancels the NotificationWorkflows started for recipients in quiet hours, and counts outcomes
from the store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from tidings import search_attributes as sa
    from tidings.activities.broadcast import BroadcastActivities
    from tidings.models import Content, SignalOutcome
    from tidings.models.broadcasts import (
        BATCH_HEARTBEAT,
        MAX_RATE,
        Audience,
        AudienceSizeInput,
        BatchInput,
        BatchRange,
        BroadcastCounters,
        BroadcastInput,
        BroadcastPhase,
        BroadcastProgress,
        CancelDeferredInput,
        PlanPagesInput,
    )
    from tidings.workflows.inputs import InvalidInput, decode

MAX_BATCHES_PER_RUN = 400
SHORT_ACTIVITY = timedelta(minutes=2)
BATCH_TIMEOUT = timedelta(hours=1)
_NO_INPUT = RawValue(Payload())


def _placeholder_input(workflow_id: str) -> BroadcastInput:
    """Stands in for input that did not validate, so that state and queries still answer."""
    broadcast_id = workflow_id.removeprefix("broadcast-")
    return BroadcastInput.model_construct(
        id=broadcast_id,
        audience=Audience.model_construct(kind="list", topic=None),
        content=Content.model_construct(title=None, body=None),
        channels=[],
        schedule_at=None,
        expires_at=None,
    )


def progress_details(progress: BroadcastProgress) -> str:
    """The Web UI's "Current Details": phase and counts, in Markdown."""
    done = progress.total - progress.pending
    share = f" ({100 * done // progress.total}%)" if progress.total else ""
    lines = [
        f"**Phase:** {progress.phase.value}" + (f" ({progress.reason})" if progress.reason else ""),
        f"**Progress:** {done} of {progress.total}{share}",
        f"- sent {progress.sent}, failed {progress.failed}, skipped by preference {progress.skipped}, "
        f"deferred by quiet hours {progress.deferred}, pending {progress.pending}",
        f"**Rate:** {progress.rate:g}/s" if progress.rate else "**Rate:** unlimited",
    ]
    return "\n".join(lines)


@workflow.defn(name="BroadcastWorkflow")
class BroadcastWorkflow:
    """Takes its input raw and validates it itself (as NotificationWorkflow does): a start from
    any client with input that does not validate ends `failed` with the message, instead of
    failing every workflow task while the input is decoded."""

    @workflow.init
    def __init__(self, request: RawValue = _NO_INPUT) -> None:
        self._invalid_input: str | None = None
        try:
            if request is _NO_INPUT:
                raise InvalidInput(
                    "invalid broadcast input: BroadcastWorkflow needs one argument (a BroadcastInput)"
                )
            request_: BroadcastInput = decode(request.payload, BroadcastInput, "broadcast input")
        except InvalidInput as exc:
            self._invalid_input = str(exc)
            request_ = _placeholder_input(workflow.info().workflow_id)
        self._request = request_
        self._counters = (
            self._request.counters.model_copy() if self._request.counters else BroadcastCounters()
        )
        self._first_run = self._request.counters is None
        self._paused = self._request.paused
        self._rate = self._request.rate
        self._batches = self._request.batches
        self._cancel_requested = False
        self._cancel_reason: str | None = None
        self._phase = BroadcastPhase.scheduled if self._first_run else BroadcastPhase.running
        self._reason: str | None = None
        self._started_at = self._request.started_at
        self._finished_at: datetime | None = None
        self._cursor = self._request.cursor

    @workflow.run
    async def run(self, raw: RawValue = _NO_INPUT) -> BroadcastProgress:
        request = self._request
        if self._started_at is None:
            self._started_at = workflow.now()
        self._upsert_attributes()
        if self._invalid_input is not None:
            self._finish(BroadcastPhase.failed, self._invalid_input)
            return self.progress()
        if self._first_run:
            if not await self._wait_for_schedule():
                return await self._finish_cancelled()
            self._counters.total = await workflow.execute_activity_method(
                BroadcastActivities.audience_size,
                AudienceSizeInput(broadcast_id=request.id, audience=request.audience),
                start_to_close_timeout=SHORT_ACTIVITY,
                summary="count the audience",
            )
        self._set_phase(BroadcastPhase.paused if self._paused else BroadcastPhase.running)
        outcome = await self._send_batches()
        if outcome == "cancelled":
            return await self._finish_cancelled()
        if outcome == "continue":
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self._continuation())
        if outcome == "expired":
            assert request.expires_at is not None
            self._finish(BroadcastPhase.expired, f"expired at {request.expires_at.isoformat()}")
        else:
            if self._reason is None:  # no batch failed: the audience is what was paged
                self._counters.total = self._counters.done
            self._finish(BroadcastPhase.completed)
        return self.progress()

    async def _wait_for_schedule(self) -> bool:
        """Sleep until schedule_at; False when cancelled meanwhile."""
        when = self._request.schedule_at
        if when is not None and when > workflow.now():
            try:
                await workflow.wait_condition(
                    lambda: self._cancel_requested,
                    timeout=when - workflow.now(),
                    timeout_summary="until schedule_at",
                )
            except TimeoutError:
                pass
        return not self._cancel_requested

    async def _send_batches(self) -> str:
        """Keep `window` batches running until the audience is done; say why it stopped:
        "done", "cancelled", "expired" or "continue" (continue as new)."""
        request = self._request
        planned: deque[BatchRange] = deque()
        plan_after = request.cursor  # every recipient up to the cursor was in a batch that finished
        exhausted = False
        running: list[tuple[BatchRange, asyncio.Task[BroadcastCounters]]] = []
        started_this_run = 0
        stop: str | None = None
        cancelled_batches = False
        while True:
            if stop is None or (stop != "cancelled" and self._cancel_requested):
                stop = self._why_stop(started_this_run)
            can_start = stop is None and not self._paused and len(running) < request.window
            if can_start and not planned and not exhausted:
                pages = await workflow.execute_activity_method(
                    BroadcastActivities.plan_pages,
                    PlanPagesInput(
                        broadcast_id=request.id,
                        audience=request.audience,
                        after=plan_after,
                        pages=request.window * 2,
                        page_size=request.batch_size,
                    ),
                    start_to_close_timeout=SHORT_ACTIVITY,
                    summary=f"plan pages after {plan_after!r}" if plan_after else "plan the first pages",
                )
                planned.extend(pages.ranges)
                exhausted = pages.exhausted
                if pages.ranges:
                    plan_after = pages.ranges[-1].upto
                continue
            if can_start and planned:
                batch = planned.popleft()
                running.append((batch, asyncio.create_task(self._run_batch(batch))))
                started_this_run += 1
                continue
            if not running:
                if stop is not None:
                    # every started range has finished: the next run starts where planning stands
                    self._cursor = planned[0].after if planned else plan_after
                    return stop
                if exhausted and not planned:
                    return "done"
                # paused with nothing running: wait for resume, cancel or expiry
                await self._wait_while_paused()
                continue
            if stop == "cancelled" and not cancelled_batches:
                cancelled_batches = True
                for _, task in running:
                    task.cancel()  # each batch stops at its next chunk (WAIT_CANCELLATION_COMPLETED)
            await workflow.wait_condition(self._batch_done_or_cancel(running, watch=not cancelled_batches))
            for batch, task in [item for item in running if item[1].done()]:
                running.remove((batch, task))
                self._collect(batch, task)

    def _batch_done_or_cancel(
        self, running: list[tuple[BatchRange, asyncio.Task[BroadcastCounters]]], *, watch: bool
    ) -> Callable[[], bool]:
        return lambda: any(task.done() for _, task in running) or (watch and self._cancel_requested)

    def _why_stop(self, started_this_run: int) -> str | None:
        if self._cancel_requested:
            return "cancelled"
        expires_at = self._request.expires_at
        if expires_at is not None and workflow.now() >= expires_at:
            return "expired"
        if started_this_run >= MAX_BATCHES_PER_RUN or workflow.info().is_continue_as_new_suggested():
            return "continue"
        return None

    async def _wait_while_paused(self) -> None:
        expires_at = self._request.expires_at
        timeout = (expires_at - workflow.now()) if expires_at is not None else None
        try:
            await workflow.wait_condition(
                lambda: not self._paused or self._cancel_requested,
                timeout=timeout if timeout is None or timeout > timedelta(0) else timedelta(seconds=1),
                timeout_summary="paused" if timeout else None,
            )
        except TimeoutError:
            pass

    async def _run_batch(self, batch: BatchRange) -> BroadcastCounters:
        request = self._request
        rate = self._rate / request.window if self._rate is not None else None
        return await workflow.execute_activity_method(
            BroadcastActivities.run_batch,
            BatchInput(
                broadcast_id=request.id,
                audience=request.audience,
                range=batch,
                rate=rate,
                content=request.content,
                channels=request.channels,
                priority=request.priority,
                category=request.category,
                schedule_at=None,
                expires_at=request.expires_at,
                retry=request.retry,
            ),
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=BATCH_HEARTBEAT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"recipients {batch.after!r}..{batch.upto!r}",
        )

    def _collect(self, batch: BatchRange, task: asyncio.Task[BroadcastCounters]) -> None:
        self._batches += 1
        try:
            self._counters.add(task.result())
        except asyncio.CancelledError:
            pass  # cancelled: the final counts come from the store
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            self._reason = f"batch {batch.after!r}..{batch.upto!r} failed: {message}"
        workflow.set_current_details(progress_details(self.progress()))

    def _continuation(self) -> BroadcastInput:
        return self._request.model_copy(
            update={
                "cursor": self._cursor,
                "counters": self._counters,
                "paused": self._paused,
                "rate": self._rate,
                "started_at": self._started_at,
                "batches": self._batches,
                "schedule_at": None,
            }
        )

    async def _finish_cancelled(self) -> BroadcastProgress:
        request = self._request
        await workflow.execute_activity_method(
            BroadcastActivities.cancel_deferred,
            CancelDeferredInput(broadcast_id=request.id, reason=self._cancel_reason),
            start_to_close_timeout=SHORT_ACTIVITY,
            heartbeat_timeout=timedelta(seconds=30),
            summary="cancel recipients waiting out quiet hours",
        )
        counts = await workflow.execute_activity_method(
            BroadcastActivities.outcome_counts,
            AudienceSizeInput(broadcast_id=request.id, audience=request.audience),
            start_to_close_timeout=SHORT_ACTIVITY,
            summary="count outcomes",
        )
        counts.total = self._counters.total
        self._counters = counts
        self._finish(BroadcastPhase.cancelled, self._cancel_reason or "cancelled by request")
        return self.progress()

    # ----------------------------------------------------------------- state

    def progress(self) -> BroadcastProgress:
        c = self._counters
        return BroadcastProgress(
            id=self._request.id,
            workflow_id=workflow.info().workflow_id,
            phase=self._phase,
            reason=self._reason,
            total=c.total,
            sent=c.sent,
            failed=c.failed,
            skipped=c.skipped,
            deferred=c.deferred,
            pending=max(c.total - c.done, 0),
            rate=self._rate,
            batches=self._batches,
            started_at=self._started_at,
            finished_at=self._finished_at,
        )

    def _set_phase(self, phase: BroadcastPhase) -> None:
        if phase is self._phase:
            return
        self._phase = phase
        workflow.upsert_search_attributes([sa.BROADCAST_STATUS.value_set(phase.value)])
        workflow.set_current_details(progress_details(self.progress()))

    def _upsert_attributes(self) -> None:
        workflow.upsert_search_attributes(
            [
                sa.BROADCAST_ID.value_set(self._request.id),
                sa.BROADCAST_STATUS.value_set(self._phase.value),
            ]
        )

    def _finish(self, phase: BroadcastPhase, reason: str | None = None) -> None:
        self._reason = reason or self._reason
        self._finished_at = workflow.now()
        self._set_phase(phase)

    def _final(self) -> bool:
        return self._finished_at is not None

    # ----------------------------------------------------------------- signals, updates, query

    @workflow.query(name="progress")
    def progress_query(self) -> BroadcastProgress:
        return self.progress()

    @workflow.signal(name="pause")
    def pause_signal(self, reason: RawValue = _NO_INPUT) -> None:
        self._pause()

    @workflow.signal(name="resume")
    def resume_signal(self, reason: RawValue = _NO_INPUT) -> None:
        self._resume()

    @workflow.signal(name="cancel")
    def cancel_signal(self, reason: RawValue = _NO_INPUT) -> None:
        try:
            why = None if reason is _NO_INPUT else decode(reason.payload, str | None, "cancel reason")
        except InvalidInput:
            why = None
        self._cancel(why)

    @workflow.signal(name="set_rate")
    def set_rate_signal(self, rate: RawValue = _NO_INPUT) -> None:
        try:
            value = None if rate is _NO_INPUT else decode(rate.payload, float | int | None, "rate")
            self._set_rate(check_rate(value))
        except (InvalidInput, ValueError):
            return  # the update variant answers with the reason; a signal has nobody to tell

    @workflow.update(name="pause")
    def pause_update(self) -> SignalOutcome:
        self._pause()
        return SignalOutcome(accepted=True)

    @workflow.update(name="resume")
    def resume_update(self) -> SignalOutcome:
        self._resume()
        return SignalOutcome(accepted=True)

    @workflow.update(name="cancel")
    def cancel_update(self, reason: str | None = None) -> SignalOutcome:
        self._cancel(reason)
        return SignalOutcome(accepted=True)

    @workflow.update(name="set_rate")
    def set_rate_update(self, rate: float | None) -> SignalOutcome:
        self._set_rate(check_rate(rate))
        return SignalOutcome(accepted=True)

    @pause_update.validator
    def _validate_pause(self) -> None:
        self._refuse_when_final()

    @resume_update.validator
    def _validate_resume(self) -> None:
        self._refuse_when_final()

    @cancel_update.validator
    def _validate_cancel(self, reason: str | None = None) -> None:
        self._refuse_when_final()

    @set_rate_update.validator
    def _validate_rate(self, rate: float | None) -> None:
        self._refuse_when_final()
        try:
            check_rate(rate)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="RateRefused", non_retryable=True) from None

    def _refuse_when_final(self) -> None:
        if self._final() or self._cancel_requested:
            state = self._phase.value if self._final() else "being cancelled"
            raise ApplicationError(
                f"broadcast is already {state}", type="BroadcastFinished", non_retryable=True
            )

    def _pause(self) -> None:
        if not self._final() and not self._cancel_requested:
            self._paused = True
            self._set_phase(BroadcastPhase.paused)

    def _resume(self) -> None:
        if not self._final() and not self._cancel_requested and self._phase is not BroadcastPhase.scheduled:
            self._paused = False
            self._set_phase(BroadcastPhase.running)

    def _cancel(self, reason: str | None) -> None:
        if not self._final():
            self._cancel_requested = True
            self._cancel_reason = reason

    def _set_rate(self, rate: float | None) -> None:
        self._rate = rate
        workflow.set_current_details(progress_details(self.progress()))


def check_rate(rate: Any) -> float | None:
    """A rate is a positive number of deliveries per second up to MAX_RATE, or None (unlimited)."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE:
        raise ValueError(f"a rate is deliveries per second, above 0 and at most {MAX_RATE:g} (got {rate!r})")
    return float(rate)
