"""Recorded histories replay with today's workflow code, so a change that breaks determinism fails CI.

`tests/histories/` holds histories recorded with earlier versions of NotificationWorkflow (the
`v1-*` files: before the workflow took raw input and used delivery ids as activity ids), one per
kind of notification: delivered, stored recipient, fallback, retried, cancelled, rescheduled,
escalation stopped by a read, and one still waiting for its schedule; `v2-*` ones ended by a
frequency cap (`throttled`) or held until its next slot (`deferred`); a digest (`digest-v1-*`);
`notification-failover`, an email the second SMTP relay sent after the first used its
failover budget; `broadcast-v1-completed`, a BroadcastWorkflow to a topic in batches; and
`notification-v2-inline`, an immediate notification to an inline recipient prepared in the
workflow itself (no `prepare_notification`, started as `sending`, one search-attribute update).
Besides these, every test that uses the `tidings` fixture replays the histories of the
notifications it started (see `tests/conftest.py`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tidings.workers.worker import workflow_runner
from tidings.workflows.broadcast import BroadcastWorkflow
from tidings.workflows.digest import DigestWorkflow
from tidings.workflows.notification import NotificationWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def replayer() -> Replayer:
    return Replayer(
        workflows=[NotificationWorkflow, DigestWorkflow, BroadcastWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def test_every_kind_of_recorded_history_is_there() -> None:
    names = {p.stem for p in HISTORIES}
    for kind in ("email", "stored", "fallback", "retry", "cancel", "resched", "escalate", "waiting"):
        assert f"notification-v1-{kind}" in names
    assert "notification-failover" in names  # email sent by the second relay after the first's budget
    # throttles and frequency caps (`v2`: the throttle-and-frequency-caps patch), and a digest
    assert {"notification-v2-throttled", "notification-v2-deferred", "digest-v1-fixed"} <= names
    assert "broadcast-v1-completed" in names
    assert "notification-v2-inline" in names
