"""End to end on a real Temporal dev server, driven with the stock `temporal` CLI.

These are the operator commands the README documents; if their shape changes, these fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR, TEMPORAL_CLI, run_tidings_cli
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Phase
from tidings.sandbox.http_endpoint import HttpEndpoint, ScriptedResponse
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def live(
    dev_env: WorkflowEnvironment, settings: Settings, store: SqliteStore
) -> AsyncIterator[TidingsClient]:
    async with running_worker(dev_env.client, settings, store):
        yield TidingsClient(dev_env.client, task_queue=settings.temporal.task_queue)


@pytest.fixture
def temporal(dev_env: WorkflowEnvironment) -> Callable[..., Any]:
    address = dev_env.client.service_client.config.target_host

    async def run(*args: str) -> Any:
        # asynchronously: the worker answering the CLI's query runs on this event loop
        process = await asyncio.create_subprocess_exec(
            str(TEMPORAL_CLI), *args, "--address", address, "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        return json.loads(stdout) if stdout.strip() else None

    return run


def payload_text(payload: dict[str, Any] | str) -> str:
    """A payload as the CLI prints it: already decoded (describe) or base64 JSON data (show)."""
    if isinstance(payload, str):
        return payload
    value = json.loads(base64.b64decode(payload["data"]))
    assert isinstance(value, str)
    return value


def email_request(notification_id: str, schedule_at: datetime) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": [{"id": "user-42", "email": "ada@example.com"}],
        "channels": ["email"],
        "content": {"title": "Order #123 shipped"},
        "category": "orders",
        "schedule_at": schedule_at.isoformat(),
    }


async def query_status(temporal: Callable[..., Any], workflow_id: str) -> dict[str, Any]:
    answer = await temporal("workflow", "query", "--workflow-id", workflow_id, "--name", "status")
    result: dict[str, Any] = answer["queryResult"][0]
    return result


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.3)


async def test_cli_query_and_cancel(
    live: TidingsClient, temporal: Callable[..., Any], smtp_sink: SmtpSink
) -> None:
    [handle] = await live.send(email_request("e2e-cancel", datetime.now(UTC) + timedelta(hours=1)))
    status = await query_status(temporal, "notification-e2e-cancel~user-42")
    assert status["phase"] == "scheduled" and status["recipient_id"] == "user-42"

    await temporal(
        "workflow", "signal", "--workflow-id", "notification-e2e-cancel~user-42", "--name", "cancel"
    )
    state = await handle.result()
    assert state.phase is Phase.cancelled and not smtp_sink.received

    async def listed() -> bool:
        rows = await temporal(
            "workflow", "list", "--query", 'NotificationStatus="cancelled" AND RecipientId="user-42"'
        )
        return any(r["execution"]["workflowId"] == "notification-e2e-cancel~user-42" for r in rows or [])

    await eventually(listed)


async def test_cli_reschedule_documented_shape(
    live: TidingsClient, temporal: Callable[..., Any], smtp_sink: SmtpSink
) -> None:
    [handle] = await live.send(email_request("e2e-resched", datetime.now(UTC) + timedelta(hours=1)))
    workflow_id = "notification-e2e-resched~user-42"
    await temporal(
        "workflow", "signal", "--workflow-id", workflow_id, "--name", "reschedule",
        "--input", '"2030-01-01T09:00:00+00:00"',
    )  # fmt: skip

    async def moved() -> bool:
        return str((await query_status(temporal, workflow_id))["schedule_at"]).startswith(
            "2030-01-01T09:00:00"
        )

    await eventually(moved)

    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await temporal(
        "workflow",
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        "reschedule",
        "--input",
        json.dumps(soon),
    )
    state = await asyncio.wait_for(handle.result(), 30)
    assert state.phase is Phase.delivered
    assert len(smtp_sink.received) == 1


async def test_web_ui_summaries(
    live: TidingsClient, temporal: Callable[..., Any], smtp_sink: SmtpSink
) -> None:
    when = datetime.now(UTC)
    [handle] = await live.send(email_request("e2e-summary", when))
    await handle.result()
    described = await temporal("workflow", "describe", "--workflow-id", "notification-e2e-summary~user-42")
    history = await temporal("workflow", "show", "--workflow-id", "notification-e2e-summary~user-42")
    scheduled = [e for e in history["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"]
    assert len(scheduled) == 1
    assert payload_text(scheduled[0]["userMetadata"]["summary"]) == "smtp → ada@example.com"
    assert payload_text(described["executionConfig"]["userMetadata"]["summary"]) == (
        f"email to user-42: Order #123 shipped at {when:%Y-%m-%d %H:%M} UTC"
    )


async def test_update_refuses_after_delivery_started(live: TidingsClient, smtp_sink: SmtpSink) -> None:
    [handle] = await live.send(email_request("e2e-update", datetime.now(UTC) + timedelta(seconds=1)))
    outcome = await live.cancel(handle.notification_id)
    assert outcome.accepted  # still scheduled
    assert (await handle.result()).phase is Phase.cancelled


async def test_cli_send_status_and_worker_graceful_shutdown(
    dev_env: WorkflowEnvironment, tmp_path: Path, http_endpoint: HttpEndpoint
) -> None:
    """`tidings worker` finishes an in-flight delivery on SIGTERM; `tidings send/status` work."""
    address = dev_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL__ADDRESS": address,
        "TIDINGS_TEMPORAL__TASK_QUEUE": "cli-e2e",
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
    }

    async def tidings(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(BIN_DIR / "tidings"), *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    code, _, err = await tidings(
        "subscriber", "add", "cli-user", "--webhook-url", f"{http_endpoint.url}/hook"
    )
    assert code == 0, err
    http_endpoint.answer(ScriptedResponse(200, delay=3.0))  # a slow receiver
    worker = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "worker", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    code, out, err = await tidings(
        "send", "--id", "cli-e2e-1", "--to", "cli-user", "--channel", "webhook", "--title", "Hello"
    )
    assert code == 0, err
    assert json.loads(out)["workflow_id"] == "notification-cli-e2e-1~cli-user"

    async def in_flight() -> bool:
        return len(http_endpoint.requests) == 1

    await eventually(in_flight, 30)
    worker.send_signal(signal.SIGTERM)
    await asyncio.wait_for(worker.wait(), 30)
    assert worker.returncode == 0

    # As in a rolling deploy, a replacement worker takes over the rest of the workflow.
    replacement = await asyncio.create_subprocess_exec(str(BIN_DIR / "tidings"), "worker", env=env)
    try:
        handle = dev_env.client.get_workflow_handle("notification-cli-e2e-1~cli-user")
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        replacement.send_signal(signal.SIGTERM)
        await asyncio.wait_for(replacement.wait(), 30)
    assert result["phase"] == "delivered"
    assert len(http_endpoint.requests) == 1  # the in-flight delivery finished once, not re-sent
    code, out, err = await tidings("status", "cli-e2e-1~cli-user")
    assert code == 0, err
    assert json.loads(out)["destinations"][0]["status"] == "sent"


async def test_cli_exit_codes_say_the_outcome(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    """`tidings send --wait` exits 0 delivered, 3 not delivered, 4 partially; the worst one wins."""
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "TIDINGS_TEMPORAL__TASK_QUEUE": "cli-exit-codes",
        "TIDINGS_STORE__SQLITE_PATH": str(settings.store.sqlite_path),
    }

    async def tidings(*args: str) -> tuple[int, list[dict[str, Any]], str]:
        return await run_tidings_cli(env, *args)

    def phases(lines: list[dict[str, Any]]) -> list[str]:
        return [line["result"]["phase"] for line in lines]

    smtp_sink.refuse["bad@example.com"] = "550 5.1.1 no such user"
    for user, address in (("ok-user", "ok@example.com"), ("bad-user", "bad@example.com")):
        code, _, err = await tidings(
            "subscriber", "add", user, "--email", address, "--phone", "+4915112345678"
        )
        assert code == 0, err
    code, _, err = await tidings(
        "subscriber", "preferences", "ok-user", "--opt-out-category-channel", "promo=email"
    )
    assert code == 0, err

    async with running_worker(dev_env.client, settings, store, task_queue="cli-exit-codes"):
        email = ("--channel", "email", "--title", "Hello", "--wait")
        code, lines, err = await tidings("send", "--to", "ok-user", *email)
        assert (code, phases(lines)) == (0, ["delivered"]), err
        code, lines, err = await tidings("send", "--to", "bad-user", *email)
        assert (code, phases(lines)) == (3, ["failed"]), err
        code, lines, err = await tidings("send", "--to", "ok-user", "--category", "promo", *email)
        assert (code, phases(lines)) == (3, ["skipped_by_preferences"]), err
        # sms has no provider configured here: it fails for good while email goes out
        code, lines, err = await tidings("send", "--to", "ok-user", "--channel", "sms", *email)
        assert (code, phases(lines)) == (4, ["partially_delivered"]), err
        code, lines, err = await tidings("send", "--to", "ok-user", "--to", "bad-user", *email)
        assert (code, sorted(phases(lines))) == (3, ["delivered", "failed"]), err

        # cancelled while waiting: the waiting send exits 3; a refused reschedule exits 3 too
        later = datetime.now(UTC) + timedelta(hours=1)
        waiting = asyncio.create_task(
            tidings("send", "--id", "exit-cancel", "--to", "ok-user", "--schedule-at", later.isoformat(),
                    "--expires-at", (later + timedelta(hours=1)).isoformat(), *email)
        )  # fmt: skip

        async def started() -> bool:
            return (await tidings("status", "exit-cancel~ok-user"))[0] == 0

        await eventually(started, 30)
        code, [outcome], _ = await tidings(
            "reschedule", "exit-cancel~ok-user", (later + timedelta(hours=2)).isoformat()
        )
        assert code == 3 and outcome["accepted"] is False
        assert (await tidings("cancel", "exit-cancel~ok-user"))[0] == 0
        code, lines, err = await waiting
        assert (code, phases(lines)) == (3, ["cancelled"]), err
        code, _, err = await tidings("cancel", "exit-cancel~ok-user")
        assert code == 2 and "no running notification with id 'exit-cancel~ok-user'" in err


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ('"hello"', "invalid workflow input"),
        (
            '{"id": "x", "recipient_id": "u", "channels": ["pigeon"], "content": {"title": "t"}}',
            "channels.0.channel: Input should be",
        ),
    ],
    ids=["string", "unknown-channel"],
)
async def test_bad_input_through_the_temporal_cli_ends_failed_with_the_reason(
    live: TidingsClient, temporal: Callable[..., Any], given: str, reason: str
) -> None:
    """Services in other languages start NotificationWorkflow themselves: bad input must not wedge."""
    workflow_id = f"notification-cli-bad-{uuid.uuid4().hex[:8]}"
    await temporal(
        "workflow", "start", "--type", "NotificationWorkflow", "--task-queue", live.task_queue,
        "--workflow-id", workflow_id, "--input", given,
    )  # fmt: skip
    result = await asyncio.wait_for(live.client.get_workflow_handle(workflow_id).result(), 30)
    assert result["phase"] == "failed" and reason in result["reason"], result
    status = await query_status(temporal, workflow_id)
    assert status["phase"] == "failed"


async def test_worker_restart_while_notifications_with_phone_numbers_wait(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A new worker process replays notifications that hold phone numbers: it answers queries,
    takes cancels, and stops on SIGTERM (the sandbox deadlock made all three fail)."""
    queue = f"restart-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "TIDINGS_TEMPORAL__TASK_QUEUE": queue,
        "TIDINGS_STORE__BACKEND": "sqlite",
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
    }
    env.pop("TIDINGS_STORE__DSN", None)

    async def tidings(*args: str) -> None:
        process = await asyncio.create_subprocess_exec(str(BIN_DIR / "tidings"), *args, env=env)
        assert await asyncio.wait_for(process.wait(), 60) == 0

    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=5):%H:%M}"
    await tidings(
        "subscriber", "add", "quiet-phone", "--phone", "+49 151 12345678", "--email", "q@example.com"
    )
    await tidings("subscriber", "preferences", "quiet-phone", "--quiet-hours", window)

    def start_worker() -> Awaitable[asyncio.subprocess.Process]:
        return asyncio.create_subprocess_exec(str(BIN_DIR / "tidings"), "worker", env=env)

    worker = await start_worker()
    client = TidingsClient(dev_env.client, task_queue=queue)
    inline = {"id": "inline-phone", "phone": "+1 212 555 0123", "email": "i@example.com"}
    [scheduled] = await client.send(
        {"recipients": [inline], "channels": ["email"], "content": {"title": "Later"},
         "schedule_at": (now + timedelta(hours=1)).isoformat()}
    )  # fmt: skip
    [quiet] = await client.send(
        {"recipients": ["quiet-phone"], "channels": ["email"], "content": {"title": "Q"}}
    )
    [escalating] = await client.send(
        {"recipients": [inline], "channels": [{"channel": "in_app", "fallback": ["email"],
         "escalate_after": {"in_app": "PT1H"}}], "content": {"title": "Read me"}}
    )  # fmt: skip

    async def all_waiting() -> bool:
        states = [await h.status() for h in (scheduled, quiet, escalating)]
        return [s.phase for s in states] == [
            Phase.scheduled,
            Phase.waiting_quiet_hours,
            Phase.sending,
        ] and any(d.status == "sent" for d in states[2].destinations)

    await eventually(all_waiting, 30)
    worker.kill()  # kill -9: no graceful shutdown, the new process starts from history
    await worker.wait()
    worker = await start_worker()
    try:
        assert (await scheduled.status()).phase is Phase.scheduled
        assert (await quiet.status()).phase is Phase.waiting_quiet_hours
        for handle in (scheduled, quiet, escalating):
            outcome = await asyncio.wait_for(client.cancel(handle.notification_id, "restart test"), 30)
            assert outcome.accepted, outcome
        assert (await asyncio.wait_for(scheduled.result(), 30)).phase is Phase.cancelled
        assert (await asyncio.wait_for(quiet.result(), 30)).phase is Phase.cancelled
        done = await asyncio.wait_for(escalating.result(), 30)
        assert any("escalation after in_app stopped by cancel" in e.message for e in done.events)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
