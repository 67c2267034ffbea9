"""The command line for throttles, frequency caps and digests: flags refused at the boundary
without a server, and the digest and throttle commands against a real dev server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import run_tidings_cli
from tests.test_cli import ok, run
from tidings.activities.store.base import Store
from tidings.settings import Settings
from tidings.workers.worker import running_worker

SEND = ("send", "--to", "u1", "--channel", "in_app", "--title", "hi")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--throttle", "login-alert"), "--throttle takes KEY=LIMIT/DURATION"),
        (("--throttle", "login-alert=1/P40D"), "between 1 second and 31 days"),
        (("--digest-window", "PT10M"), "--digest-* flags need --digest-key KEY"),
        (("--digest-key", "k"), "a digest needs either a window"),
        (("--digest-key", "k", "--digest-window", "PT1M", "--digest-mode", "sliding"), "needs max_window"),
        (("--digest-key", "k", "--digest-until", "25:00"), "until_local_time"),
        (("--digest-key", "bad key", "--digest-window", "PT1M"), "digest.key"),
        (("--digest-key", "k", "--digest-window", "PT1M", "--wait"), "--wait does not apply to a digest"),
    ],
)
def test_bad_throttle_and_digest_flags_are_refused_before_connecting(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    done = run(tmp_path, *SEND, *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_frequency_caps_in_preferences(tmp_path: Path) -> None:
    ok(run(tmp_path, "subscriber", "add", "u1", "--email", "u1@example.com"))
    prefs = ok(run(tmp_path, "subscriber", "preferences", "u1", "--frequency-cap", "push=3/PT1H,10/P1D",
                   "--frequency-cap", "email="))  # fmt: skip
    assert prefs["frequency_caps"] == {
        "push": [{"limit": 3, "window": "PT1H"}, {"limit": 10, "window": "P1D"}],
        "email": [],
    }
    prefs = ok(run(tmp_path, "subscriber", "preferences", "u1", "--default-frequency-cap", "email"))
    assert list(prefs["frequency_caps"]) == ["push"]
    bad = run(tmp_path, "subscriber", "preferences", "u1", "--frequency-cap", "push=3 per hour")
    assert bad.returncode == 2 and "LIMIT/ISO-DURATION" in bad.stderr
    bad = run(tmp_path, "subscriber", "preferences", "u1", "--frequency-cap", "pager=1/PT1H")
    assert bad.returncode == 2 and "--frequency-cap takes CHANNEL=" in bad.stderr


Tidings = Callable[..., Awaitable[tuple[int, list[dict[str, Any]], str]]]


@pytest_asyncio.fixture
async def tidings_cli(
    dev_env: WorkflowEnvironment, settings: Settings, store: Store
) -> AsyncIterator[Tidings]:
    task_queue = f"cli-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "TIDINGS_TEMPORAL__TASK_QUEUE": task_queue,
        "TIDINGS_STORE__SQLITE_PATH": str(settings.store.sqlite_path),
    }

    async def tidings(*args: str) -> tuple[int, list[dict[str, Any]], str]:
        return await run_tidings_cli(env, *args)

    async with running_worker(dev_env.client, settings, store, task_queue=task_queue):
        yield tidings


@pytest.mark.e2e
async def test_digest_commands(tidings_cli: Tidings) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    digest = ("--digest-key", "comments:post-9", "--digest-window", "PT1H")
    items = []
    for title in ("first", "second"):
        code, [line], err = await tidings_cli(
            "send", "--to", user, "--channel", "in_app", "--title", title, *digest
        )
        assert code == 0, err
        assert line["digest_workflow_id"] == f"digest-{user}~comments:post-9"
        items.append(line["item_id"])
    code, [state], err = await tidings_cli("digest", "status", user, "comments:post-9")
    assert code == 0, err
    assert state["count"] == 2 and state["summary"] == f"digest of 2 to {user}: comments:post-9"
    assert [i["title"] for i in state["items"]] == ["first", "second"]
    code, [outcome], _ = await tidings_cli("digest", "cancel", user, "comments:post-9", "--item", items[0])
    assert code == 0 and outcome["accepted"]
    code, [outcome], _ = await tidings_cli("digest", "cancel", user, "comments:post-9", "--item", items[0])
    assert code == 3 and "no item" in outcome["reason"]
    code, [outcome], _ = await tidings_cli("digest", "cancel", user, "comments:post-9", "--reason", "enough")
    assert code == 0 and outcome["accepted"]
    for _ in range(100):
        code, [state], _ = await tidings_cli("digest", "status", user, "comments:post-9")
        if state["phase"] == "cancelled":
            break
        await asyncio.sleep(0.2)
    assert state["phase"] == "cancelled" and state["reason"] == "enough"


@pytest.mark.e2e
async def test_a_throttled_send_exits_5(tidings_cli: Tidings) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    assert (await tidings_cli("subscriber", "add", user))[0] == 0
    send = (
        "send",
        "--to",
        user,
        "--channel",
        "in_app",
        "--title",
        "login",
        "--throttle",
        "login=1/PT1H",
        "--wait",
    )
    code, [line], err = await tidings_cli(*send)
    assert (code, line["result"]["phase"]) == (0, "delivered"), (err, line["result"]["reason"])
    code, [line], err = await tidings_cli(*send)
    assert (code, line["result"]["phase"]) == (5, "throttled"), err
    assert line["result"]["reason"] == "throttle 'login' (1 per PT1H): 1 sent in the last PT1H"
