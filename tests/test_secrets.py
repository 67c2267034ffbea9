"""Provider credentials never reach workflow history, state or logs."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import quick_retry
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Channel, NotificationState, Phase
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

SECRET = "hunter2-" + uuid.uuid4().hex


async def send_with_password(
    env: WorkflowEnvironment, tmp_path: Path, sink: SmtpSink, password: str
) -> tuple[NotificationState, bytes]:
    settings = Settings.model_validate(
        {
            "smtp": {"host": sink.host, "port": sink.port, "username": "tidings", "password": password},
            "retry": {c: quick_retry(maximum_attempts=2) for c in Channel},
        }
    )
    store = await SqliteStore.open(tmp_path / f"{uuid.uuid4().hex}.sqlite3")
    queue = f"secrets-{uuid.uuid4().hex[:8]}"
    async with running_worker(env.client, settings, store, task_queue=queue):
        tidings = TidingsClient(env.client, task_queue=queue)
        [handle] = await tidings.send(
            {
                "recipients": [{"id": "u1", "email": "u1@example.com"}],
                "channels": ["email"],
                "content": {"title": "Sign-in code", "body": "123456"},
            }
        )
        state = await handle.result()
        history = await env.client.get_workflow_handle(handle.workflow_id).fetch_history()
    await store.aclose()
    return state, history.to_json().encode() + state.model_dump_json().encode()


async def test_smtp_password_stays_in_the_worker(
    ts_env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpSink(credentials=("tidings", SECRET)) as sink:
        state, recorded = await send_with_password(ts_env, tmp_path, sink, SECRET)
        assert state.phase is Phase.delivered and len(sink.received) == 1
        assert SECRET.encode() not in recorded

        wrong = SECRET + "-wrong"
        state, recorded = await send_with_password(ts_env, tmp_path, sink, wrong)
        assert state.phase is Phase.failed and state.destinations[0].attempts == 2
        assert sink.failed_logins >= 2
        assert b"SMTP authentication failed" in recorded
        assert wrong.encode() not in recorded and SECRET.encode() not in recorded
    assert SECRET not in caplog.text
