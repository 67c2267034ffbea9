"""Broadcasts from the command line against a dev server: `tidings topic ...`, `tidings send
--topic/--recipients-file`, `tidings broadcast status/pause/resume/rate/cancel`, and the stock
`temporal` CLI's signals, updates and queries on a broadcast."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEMPORAL_CLI
from tidings.activities.store.base import Store
from tidings.models import Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings
from tidings.workers.worker import running_worker

pytestmark = pytest.mark.e2e
TIDINGS = Path(sys.executable).parent / "tidings"


@pytest_asyncio.fixture
async def cli_env(
    dev_env: WorkflowEnvironment, settings: Settings, store: Store, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    task_queue = f"cli-{uuid.uuid4().hex[:8]}"
    async with running_worker(dev_env.client, settings, store, task_queue=task_queue):
        yield {
            **os.environ,
            "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
            "TIDINGS_TEMPORAL__TASK_QUEUE": task_queue,
            "TIDINGS_STORE__SQLITE_PATH": str(settings.store.sqlite_path),
        }


async def run(env: dict[str, str], program: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(program), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def tidings(env: dict[str, str], *args: str) -> Any:
    code, out, err = await run(env, TIDINGS, *args)
    assert code == 0, err
    return json.loads(out) if out.strip().startswith(("{", "[")) else out


async def temporal(env: dict[str, str], *args: str) -> Any:
    address = env["TIDINGS_TEMPORAL__ADDRESS"]
    code, out, err = await run(env, TEMPORAL_CLI, *args, "--address", address, "-o", "json")
    assert code == 0, err
    return json.loads(out) if out.strip() else None


async def progress(env: dict[str, str], broadcast_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await tidings(env, "broadcast", "status", broadcast_id)
    return result


async def test_topic_commands_and_a_controlled_broadcast(
    cli_env: dict[str, str], store: Store, http_endpoint: HttpEndpoint
) -> None:
    ids = [f"u{i:02d}" for i in range(30)]
    for i in ids:
        await store.put(Recipient(id=i, webhook_url=f"{http_endpoint.url}/hooks/{i}"))
    assert (await tidings(cli_env, "topic", "create", "news", "--name", "News"))["created"]
    assert (await tidings(cli_env, "topic", "subscribe", "news", *ids, "ghost"))["subscribed"] == 31
    assert (await tidings(cli_env, "topic", "unsubscribe", "news", "ghost"))["unsubscribed"] == 1
    assert (await tidings(cli_env, "topic", "opt-out", "news", "u29"))["opted_out"]
    shown = await tidings(cli_env, "topic", "show", "news", "--limit", "2")
    assert shown["subscribers"] == 30 and shown["first_subscribers"] == ["u00", "u01"]
    assert [t["key"] for t in await tidings(cli_env, "topic", "list")] == ["news"]

    started = await tidings(
        cli_env, "send", "--topic", "news", "--channel", "webhook", "--title", "Hello", "--id", "cli-b",
        "--rate", "4", "--window", "1", "--batch-size", "4",
    )  # fmt: skip
    assert started == {"broadcast_id": "cli-b", "workflow_id": "broadcast-cli-b", "existing": False}
    again = await tidings(
        cli_env, "send", "--topic", "news", "--channel", "webhook", "--title", "Hello", "--id", "cli-b"
    )
    assert again["existing"]

    while not http_endpoint.requests:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # the stock temporal CLI: a signal pauses, a query reads progress
    await temporal(cli_env, "workflow", "signal", "--workflow-id", "broadcast-cli-b", "--name", "pause")
    queried = await temporal(
        cli_env, "workflow", "query", "--workflow-id", "broadcast-cli-b", "--name", "progress"
    )
    assert queried["queryResult"][0]["phase"] == "paused"
    await asyncio.sleep(2.5)
    paused_at = len(http_endpoint.requests)
    await asyncio.sleep(1.5)
    assert len(http_endpoint.requests) == paused_at < 29
    assert (await progress(cli_env, "cli-b"))["phase"] == "paused"

    assert (await tidings(cli_env, "broadcast", "rate", "cli-b", "20"))["accepted"]
    code, _, err = await run(cli_env, TIDINGS, "broadcast", "rate", "cli-b", "fast")
    assert code == 2 and "is deliveries" in err
    # the stock CLI's update resumes
    await temporal(
        cli_env, "workflow", "update", "execute", "--workflow-id", "broadcast-cli-b", "--name", "resume"
    )
    while len(http_endpoint.requests) < paused_at + 4:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await temporal(
        cli_env,
        "workflow",
        "signal",
        "--workflow-id",
        "broadcast-cli-b",
        "--name",
        "cancel",
        "--input",
        '"enough"',
    )
    code, out, err = await run(
        cli_env, TIDINGS, "broadcast", "status", "cli-b", "--follow", "--interval", "0.2"
    )
    assert code == 0 and "cancelled" in err  # the progress bar
    final = json.loads(out)
    assert final["phase"] == "cancelled" and final["reason"] == "enough"
    assert final["sent"] == len(http_endpoint.requests) < 29
    one = await tidings(cli_env, "broadcast", "status", "cli-b", "--recipient", "u00")
    assert one["status"] == "sent" and len(one["delivery_ids"]) == 1
    code, _, err = await run(cli_env, TIDINGS, "broadcast", "status", "cli-b", "--recipient", "nobody")
    assert code == 2 and "no outcome for 'nobody'" in err
    code, _, err = await run(cli_env, TIDINGS, "broadcast", "pause", "cli-b")
    assert code == 2 and "may have finished" in err


async def test_recipients_file_and_failed_listing(
    cli_env: dict[str, str], store: Store, http_endpoint: HttpEndpoint, tmp_path: Path
) -> None:
    await store.put(Recipient(id="ok", webhook_url=f"{http_endpoint.url}/hooks/ok"))
    listing = tmp_path / "audience.txt"
    listing.write_text("# from the warehouse\nok\n\nmissing\n")
    started = await tidings(
        cli_env, "send", "--recipients-file", str(listing), "--channel", "webhook", "--title", "Hi",
        "--id", "file-b", "--wait",
    )  # fmt: skip
    assert started["result"]["sent"] == 1 and started["result"]["failed"] == 1
    code, out, err = await run(cli_env, TIDINGS, "broadcast", "status", "file-b", "--failed")
    [line] = out.strip().splitlines()  # JSON lines: one failed recipient each
    assert code == 0 and json.loads(line)["recipient_id"] == "missing"
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    code, _, err = await run(
        cli_env, TIDINGS, "send", "--recipients-file", str(empty), "--channel", "webhook", "--title", "x"
    )
    assert code == 2 and "lists no recipient ids" in err
    code, _, err = await run(
        cli_env, TIDINGS, "send", "--topic", "Bad Topic!", "--channel", "webhook", "--title", "x"
    )
    assert code == 2 and "topic key" in err
