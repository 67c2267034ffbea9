"""The worker's delivery settings as NotificationWorkflow sees them when it prepares a
notification itself, without the `prepare_notification` local activity.

A notification whose recipient came inline with the request needs nothing from the store, so the
workflow decides everything in its own code (see `NotificationWorkflow._needs_store_preparation`).
What it cannot know from the request is the worker's per-channel retry policy and push success
rule: `build_worker` registers them here under its task queue, once, before the worker polls.

They only shape the retry policy of the activities the workflow schedules, which a replay does not
compare, so a replay (or a worker with other settings) never fails on them; a replayer that
registered nothing gets the empty policy, and the workflow falls back to `RetrySpec()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tidings.models import Channel, RetrySpec

if TYPE_CHECKING:
    from tidings.settings import Settings


@dataclass(frozen=True)
class WorkerPolicy:
    retry: Mapping[Channel, RetrySpec] = field(default_factory=dict)
    push_success: Literal["any", "all"] = "any"

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerPolicy:
        return cls({channel: settings.retry_for(channel) for channel in Channel}, settings.push_success)


_BY_TASK_QUEUE: dict[str, WorkerPolicy] = {}


def register(task_queue: str, policy: WorkerPolicy) -> None:
    """Called by the worker before it polls `task_queue`; the latest worker's settings win."""
    _BY_TASK_QUEUE[task_queue] = policy


def policy_for(task_queue: str) -> WorkerPolicy:
    return _BY_TASK_QUEUE.get(task_queue) or WorkerPolicy()
