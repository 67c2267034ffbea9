"""Signed webhooks, verified with an independent implementation (the standardwebhooks package)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from standardwebhooks import Webhook
from temporalio.testing import WorkflowEnvironment

from tidings.activities.providers.base import TransientDeliveryError
from tidings.activities.providers.webhook import WebhookProvider, split_credentials
from tidings.activities.rendering import InlineRenderer
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Channel, Content, DeliveryInput, Destination, Phase, Priority, Recipient
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.settings import Settings, SettingsError, WebhookSettings, load_settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def delivery(url: str) -> DeliveryInput:
    return DeliveryInput(
        delivery_id="2f1c9a3e-0000-5000-8000-000000000001",
        workflow_id="notification-n1",
        notification_id="n1",
        destination=Destination(channel=Channel.webhook, provider="webhook", address=url),
        recipient=Recipient(id="u1", webhook_url=url),
        content=Content(title="Invoice paid", data={"invoice": "42"}),
        priority=Priority.normal,
    )


async def test_signature_verifies_with_standardwebhooks(http_endpoint: HttpEndpoint) -> None:
    url = f"{http_endpoint.url}/hook"
    provider = WebhookProvider(WebhookSettings(signing_secret=SECRET))
    d = delivery(url)
    try:
        await provider.send(d, InlineRenderer().render(d.content, d.recipient, Channel.webhook))
    finally:
        await provider.aclose()
    [request] = http_endpoint.requests
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert payload["delivery_id"] == d.delivery_id and payload["payload"]["data"] == {"invoice": "42"}
    assert request.headers["webhook-id"] == d.delivery_id
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(SECRET).verify(request.body.replace(b"42", b"43"), request.headers)


async def test_per_endpoint_secret_wins(http_endpoint: HttpEndpoint) -> None:
    url = f"{http_endpoint.url}/hook"
    own = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    settings = WebhookSettings(signing_secret=SECRET, endpoint_secrets={url: own})
    provider = WebhookProvider(settings)
    d = delivery(url)
    try:
        await provider.send(d, InlineRenderer().render(d.content, d.recipient, Channel.webhook))
    finally:
        await provider.aclose()
    [request] = http_endpoint.requests
    Webhook(own).verify(request.body, request.headers)
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(SECRET).verify(request.body, request.headers)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("abc", "start with 'whsec_'"),
        ("whsec_!!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"x" * 8).decode(), "24-64 bytes"),
    ],
)
def test_malformed_secret_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, secret: str, message: str
) -> None:
    monkeypatch.setenv("TIDINGS_WEBHOOK__SIGNING_SECRET", secret)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "webhook.signing_secret" in str(info.value) and message in str(info.value)
    assert secret not in str(info.value)


async def test_retries_keep_the_id_and_sign_each_attempt(
    ts_env: WorkflowEnvironment, settings: Settings, store: SqliteStore, http_endpoint: HttpEndpoint
) -> None:
    signed = settings.model_copy(update={"webhook": WebhookSettings(signing_secret=SECRET, timeout=5)})
    http_endpoint.answer(503)
    async with running_worker(ts_env.client, signed, store, task_queue="webhook-signing"):
        tidings = TidingsClient(ts_env.client, task_queue="webhook-signing")
        [handle] = await tidings.send(
            {"id": "signed-1", "recipients": [{"id": "u1", "webhook_url": f"{http_endpoint.url}/hook"}],
             "channels": ["webhook"], "content": {"title": "Paid"}}
        )  # fmt: skip
        state = await handle.result()
    assert state.phase is Phase.delivered
    first, second = http_endpoint.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == state.destinations[0].delivery_id
    for request in (first, second):
        Webhook(SECRET).verify(request.body, request.headers)
    history = await ts_env.client.get_workflow_handle("notification-signed-1~u1").fetch_history()
    assert SECRET.removeprefix("whsec_") not in json.dumps(history.to_json_dict())


async def test_unreachable_endpoint_error_has_no_secret() -> None:
    provider = WebhookProvider(WebhookSettings(signing_secret=SECRET, timeout=1))
    d = delivery("http://127.0.0.1:9/hook")
    try:
        with pytest.raises(TransientDeliveryError) as info:
            await provider.send(d, InlineRenderer().render(d.content, d.recipient, Channel.webhook))
    finally:
        await provider.aclose()
    assert SECRET not in str(info.value)


def test_credentials_in_the_url_become_a_basic_authorization_header() -> None:
    bare, authorization = split_credentials("https://u%40x:p%3Aw@hooks.example.com:8443/in?token=t")
    assert bare == "https://hooks.example.com:8443/in?token=t"
    assert authorization == "Basic " + base64.b64encode(b"u@x:p:w").decode()
    assert split_credentials("https://hooks.example.com/in") == ("https://hooks.example.com/in", None)
