"""SlackProvider against the local Slack stand-in, and Slack through the workflow."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ThrottledDeliveryError,
    TransientDeliveryError,
)
from tidings.activities.providers.slack import SlackProvider
from tidings.activities.rendering import InlineRenderer
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Channel, Content, DeliveryInput, Destination, Phase, Priority, Recipient
from tidings.sandbox.slack import SlackSandbox
from tidings.settings import Settings, SlackSettings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

BOT = "xoxb-test-" + "9" * 20


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    sandbox = await SlackSandbox(BOT).start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def delivery(recipient: Recipient, content: Content | None = None) -> DeliveryInput:
    address = recipient.slack_webhook_url or recipient.slack_channel or ""
    return DeliveryInput(
        delivery_id="d-1",
        workflow_id="notification-n1",
        notification_id="n1",
        destination=Destination(channel=Channel.slack, provider="slack", address=address),
        recipient=recipient,
        content=content or Content(title="Deploy finished", body="api v42 is live"),
        priority=Priority.normal,
    )


async def send(provider: SlackProvider, d: DeliveryInput) -> str | None:
    try:
        return (
            await provider.send(d, InlineRenderer().render(d.content, d.recipient, Channel.slack))
        ).message_id
    finally:
        await provider.aclose()


async def test_incoming_webhook(slack: SlackSandbox) -> None:
    recipient = Recipient(id="team", slack_webhook_url=slack.webhook_url("T1/B1/abc"))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy finished*"}}]
    content = Content(
        title="Deploy finished", body="api v42 is live", platform_overrides={"slack": {"blocks": blocks}}
    )
    await send(SlackProvider(SlackSettings()), delivery(recipient, content))
    [posted] = slack.posted
    assert posted["via"] == "webhook" and posted["text"] == "*Deploy finished*\napi v42 is live"
    assert posted["blocks"] == blocks


async def test_chat_post_message_with_bot_token(slack: SlackSandbox) -> None:
    settings = SlackSettings(bot_token=BOT, api_base_url=f"{slack.url}/api")
    message_id = await send(SlackProvider(settings), delivery(Recipient(id="team", slack_channel="C123")))
    assert slack.posted[0]["channel"] == "C123" and message_id is not None and message_id.startswith("C123/")


@pytest.mark.parametrize(
    ("key", "status", "error", "kind"),
    [
        ("C123", 200, "channel_not_found", PermanentDeliveryError),
        ("C123", 200, "is_archived", PermanentDeliveryError),
        ("C123", 200, "service_unavailable", TransientDeliveryError),
        ("C123", 429, "ratelimited", ThrottledDeliveryError),
    ],
)
async def test_api_errors_are_classified(
    slack: SlackSandbox, key: str, status: int, error: str, kind: type[Exception]
) -> None:
    slack.fail(key, status, error, retry_after=3)
    settings = SlackSettings(bot_token=BOT, api_base_url=f"{slack.url}/api")
    with pytest.raises(kind) as info:
        await send(SlackProvider(settings), delivery(Recipient(id="team", slack_channel="C123")))
    if kind is ThrottledDeliveryError:
        assert info.value.retry_after == timedelta(seconds=3)  # type: ignore[attr-defined]
    else:
        assert error in str(info.value)


async def test_wrong_bot_token_is_permanent_and_not_echoed(slack: SlackSandbox) -> None:
    settings = SlackSettings(bot_token="xoxb-wrong-token", api_base_url=f"{slack.url}/api")
    with pytest.raises(PermanentDeliveryError, match="invalid_auth") as info:
        await send(SlackProvider(settings), delivery(Recipient(id="team", slack_channel="C123")))
    assert "xoxb-wrong-token" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [(404, "channel_not_found", PermanentDeliveryError), (410, "channel_is_archived", PermanentDeliveryError),
     (500, "rollup_error", TransientDeliveryError), (429, "rate_limited", ThrottledDeliveryError)],
)  # fmt: skip
async def test_webhook_errors_are_classified(
    slack: SlackSandbox, status: int, error: str, kind: type[Exception]
) -> None:
    slack.fail("T1/B1/abc", status, error, retry_after=2)
    recipient = Recipient(id="team", slack_webhook_url=slack.webhook_url("T1/B1/abc"))
    with pytest.raises(kind):
        await send(SlackProvider(SlackSettings()), delivery(recipient))


async def test_slack_through_the_workflow_retries_after_429(
    ts_env: WorkflowEnvironment, settings: Settings, store: SqliteStore, slack: SlackSandbox
) -> None:
    slack.fail("T1/B1/abc", 429, "rate_limited", retry_after=30)
    queue = f"slack-{uuid.uuid4().hex[:8]}"
    async with running_worker(ts_env.client, settings, store, task_queue=queue):
        tidings = TidingsClient(ts_env.client, task_queue=queue)
        ops = {"id": "ops", "slack_webhook_url": slack.webhook_url("T1/B1/abc")}
        [handle] = await tidings.send(
            {"id": "slack-1", "recipients": [ops], "channels": ["slack"],
             "content": {"title": "Disk almost full", "body": "db-1 at 91%"}}
        )  # fmt: skip
        state = await handle.result()
    assert state.phase is Phase.delivered
    [dest] = state.destinations
    assert dest.attempts == 2 and dest.finished_at is not None and dest.started_at is not None
    assert dest.finished_at - dest.started_at >= timedelta(seconds=30)
    assert len(slack.posted) == 1
