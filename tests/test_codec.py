"""Payload encryption: the AES-256-GCM codec, its settings, and a real worker and client using it.

Histories are read raw (a client without the codec) and searched for what must not be there;
the same histories are read, replayed and queried through the codec.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tidings import search_attributes as sa
from tidings.activities.store.base import Store
from tidings.codec import (
    ENCODING,
    KEY_ID_METADATA,
    AesGcmCodec,
    CodecError,
    codec_for,
    data_converter_for,
    generate_key,
    recipient_hash_key,
    recipient_id_hash,
)
from tidings.models import Phase
from tidings.payloads import compact_data_converter
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import Settings, SettingsError, load_settings
from tidings.starters.client import TidingsClient
from tidings.workers.worker import running_worker, workflow_runner
from tidings.workflows.notification import NotificationWorkflow

K1, K2 = generate_key(), generate_key()

# What a notification carries that must never be readable in raw history.
EMAIL = "ada.lovelace@example.com"
PHONE = "+4915112345678"
DEVICE_TOKEN = "fcm-device-token-0123456789abcdef"
WEBHOOK_TOKEN = "s3cr3t-webhook-token-42"
TITLE = "Your prescription is ready"
BODY = "Pick it up at the pharmacy on Elm Street"


def keys(**named: str) -> dict[str, bytes]:
    return {key_id: base64.b64decode(value) for key_id, value in named.items()}


def plain(value: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


# ---------------------------------------------------------------- the codec alone


async def test_encrypts_with_a_fresh_nonce_and_names_the_key() -> None:
    codec = AesGcmCodec(keys(k1=K1), "k1")
    first, second = await codec.encode([plain(TITLE), plain(TITLE)])
    for sealed in (first, second):
        assert sealed.metadata["encoding"] == ENCODING
        assert sealed.metadata[KEY_ID_METADATA] == b"k1"
        assert TITLE.encode() not in sealed.data and b"json/plain" not in sealed.data
    assert first.data[:12] != second.data[:12] and first.data != second.data
    assert await codec.decode([first, second]) == [plain(TITLE), plain(TITLE)]


async def test_payloads_from_before_the_codec_decode_unchanged() -> None:
    codec = AesGcmCodec(keys(k1=K1), "k1")
    assert await codec.decode([plain("old")]) == [plain("old")]


async def test_unknown_key_id_fails_naming_the_id_never_a_key() -> None:
    [sealed] = await AesGcmCodec(keys(k1=K1), "k1").encode([plain(TITLE)])
    with pytest.raises(CodecError) as info:
        await AesGcmCodec(keys(k2=K2), "k2").decode([sealed])
    message = str(info.value)
    assert "'k1'" in message and "not configured" in message
    assert K1 not in message and K2 not in message


async def test_wrong_key_under_the_same_id_fails_clearly() -> None:
    [sealed] = await AesGcmCodec(keys(k1=K1), "k1").encode([plain(TITLE)])
    with pytest.raises(CodecError, match="key id 'k1' does not decrypt"):
        await AesGcmCodec(keys(k1=K2), "k1").decode([sealed])


async def test_key_id_and_ciphertext_are_authenticated() -> None:
    codec = AesGcmCodec(keys(k1=K1, k2=K1), "k1")  # the same material under two ids
    [sealed] = await codec.encode([plain(TITLE)])
    moved = Payload()
    moved.CopyFrom(sealed)
    moved.metadata[KEY_ID_METADATA] = b"k2"
    with pytest.raises(CodecError, match="'k2' does not decrypt"):
        await codec.decode([moved])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError):
        await codec.decode([flipped])


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    [old] = await AesGcmCodec(keys(k1=K1), "k1").encode([plain("old")])
    rotated = AesGcmCodec(keys(k1=K1, k2=K2), "k2")
    [new] = await rotated.encode([plain("new")])
    assert new.metadata[KEY_ID_METADATA] == b"k2"
    assert await rotated.decode([old, new]) == [plain("old"), plain("new")]


# ---------------------------------------------------------------- settings


def test_settings_refuse_bad_keys_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "tidings.toml").write_text("")
    short = base64.b64encode(b"x" * 16).decode()
    monkeypatch.setenv("TIDINGS_CODEC__ENABLED", "true")
    monkeypatch.setenv("TIDINGS_CODEC__KEYS", json.dumps({"k1": short}))
    monkeypatch.setenv("TIDINGS_CODEC__ACTIVE_KEY", "k1")
    monkeypatch.setenv("TIDINGS_SETTINGS", str(tmp_path / "tidings.toml"))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "key 'k1' must be 32 bytes" in str(info.value) and short not in str(info.value)

    monkeypatch.setenv("TIDINGS_CODEC__KEYS", json.dumps({"k1": K1}))
    monkeypatch.setenv("TIDINGS_CODEC__ACTIVE_KEY", "k9")
    with pytest.raises(SettingsError, match=r"codec\.active_key 'k9' is not an id in codec\.keys"):
        load_settings()

    monkeypatch.setenv("TIDINGS_CODEC__ACTIVE_KEY", "k1")
    loaded = load_settings()
    assert codec_for(loaded) is not None and K1 not in repr(loaded)

    monkeypatch.setenv("TIDINGS_CODEC__HASH_RECIPIENT_IDS", "true")
    with pytest.raises(SettingsError, match=r"needs codec\.recipient_id_hash_key"):
        load_settings()


def test_codec_is_off_by_default() -> None:
    assert codec_for(Settings()) is None
    assert data_converter_for(Settings()) is compact_data_converter


# ---------------------------------------------------------------- a real worker and client


def codec_settings(settings: Settings, active: str, **named: str) -> Settings:
    return Settings.model_validate(
        {**settings.model_dump(), "codec": {"enabled": True, "keys": named, "active_key": active}}
    )


def client_with(env: WorkflowEnvironment, converter: DataConverter) -> Client:
    config = env.client.config()  # keeps the time-skipping interceptor
    config["data_converter"] = converter
    return Client(**config)


@pytest_asyncio.fixture
async def sealed(
    ts_env: WorkflowEnvironment, settings: Settings, store: Store
) -> AsyncIterator[tuple[TidingsClient, Settings]]:
    """A worker and a client encrypting with key k1."""
    settings = codec_settings(settings, "k1", k1=K1)
    client = client_with(ts_env, data_converter_for(settings))
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with running_worker(client, settings, store, task_queue=task_queue):
        yield TidingsClient(client, task_queue=task_queue), settings


def secret_request(notification_id: str, webhook: str) -> dict[str, Any]:
    return {
        "id": notification_id,
        "recipients": [
            {
                "id": "patient-7",
                "email": EMAIL,
                "phone": PHONE,
                "webhook_url": f"{webhook}?token={WEBHOOK_TOKEN}",
                "devices": [{"id": "phone-1", "platform": "fcm", "token": DEVICE_TOKEN}],
            }
        ],
        "channels": ["email", "webhook"],
        "content": {"title": TITLE, "body": BODY},
        "category": "health",
    }


async def raw_history(env: WorkflowEnvironment, workflow_id: str) -> str:
    """The history as the server stores it, fetched by a client without the codec."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return history.to_json()


async def test_no_recipient_data_in_raw_history_and_the_client_reads_everything(
    sealed: tuple[TidingsClient, Settings],
    ts_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    http_endpoint: HttpEndpoint,
) -> None:
    tidings, settings = sealed
    [handle] = await tidings.send(secret_request("codec-1", f"{http_endpoint.url}/hook"))
    state = await handle.result()
    assert state.phase is Phase.delivered, state
    assert len(smtp_sink.received) == 1 and len(http_endpoint.requests) == 1

    raw = await raw_history(ts_env, handle.workflow_id)
    for secret in (EMAIL, PHONE, DEVICE_TOKEN, WEBHOOK_TOKEN, TITLE, BODY):
        assert secret not in raw, f"{secret!r} is readable in raw history"
    # nor base64-encoded, as payload bytes appear in the JSON form of history
    for secret in (EMAIL, TITLE):
        for shift in range(3):
            chunk = base64.b64encode(("xx"[:shift] + secret).encode()).decode()[4:20]
            assert chunk not in raw
    # every payload is encrypted (inputs, results, summaries, details, signals, the local activity's
    # result) except the search attributes and the SDK's own local-activity marker bookkeeping
    plain_paths = _plain_payload_paths(json.loads(raw))
    assert plain_paths, "the search attributes stay readable"
    for path in plain_paths:
        assert "/searchAttributes/indexedFields/" in path or path.endswith(
            "markerRecordedEventAttributes/details/data"
        ), path
    assert len(_metadata_values(json.loads(raw), KEY_ID_METADATA)) == 1

    # through the codec: the result, the query and the history's summaries read as sent
    assert state.destinations[0].destination == EMAIL
    live = await tidings.status(handle.notification_id)
    assert {d.destination for d in live.destinations} >= {EMAIL}
    described = await tidings.client.get_workflow_handle(handle.workflow_id).describe()
    assert await described.static_summary() == f"email+webhook to patient-7: {TITLE}"

    # and it replays with the same converter
    history = await tidings.client.get_workflow_handle(handle.workflow_id).fetch_history()
    replayer = Replayer(
        workflows=[NotificationWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=data_converter_for(settings),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


def _plain_payload_paths(node: Any, path: str = "") -> list[str]:
    """Where history holds payloads that are not encrypted (JSON paths, without list indexes)."""
    found: list[str] = []
    encrypted = base64.b64encode(ENCODING).decode()
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and "encoding" in metadata and metadata["encoding"] != encrypted:
            found.append(path.rsplit("/payloads", 1)[0])
        for key, value in node.items():
            found += _plain_payload_paths(value, f"{path}/{key}")
    elif isinstance(node, list):
        for value in node:
            found += _plain_payload_paths(value, path)
    return found


def _metadata_values(node: Any, name: str) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and name in metadata and "data" in node:
            found.add(metadata[name])
        for value in node.values():
            found |= _metadata_values(value, name)
    elif isinstance(node, list):
        for value in node:
            found |= _metadata_values(value, name)
    return found


async def test_rotation_and_missing_key_through_a_real_worker(
    ts_env: WorkflowEnvironment, settings: Settings, store: Store, smtp_sink: SmtpSink
) -> None:
    request = {
        "recipients": [{"id": "u-rot", "email": EMAIL}],
        "channels": ["email"],
        "content": {"title": TITLE},
    }
    old_settings = codec_settings(settings, "k1", k1=K1)
    rotated = codec_settings(settings, "k2", k1=K1, k2=K2)
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"

    before = client_with(ts_env, data_converter_for(old_settings))
    async with running_worker(before, old_settings, store, task_queue=task_queue):
        [old] = await TidingsClient(before, task_queue=task_queue).send({**request, "id": "rot-old"})
        assert (await old.result()).phase is Phase.delivered

    after = client_with(ts_env, data_converter_for(rotated))
    async with running_worker(after, rotated, store, task_queue=task_queue):
        tidings = TidingsClient(after, task_queue=task_queue)
        [new] = await tidings.send({**request, "id": "rot-new"})
        assert (await new.result()).phase is Phase.delivered
        assert (await tidings.status("rot-old~u-rot")).destinations[0].destination == EMAIL

    old_ids = _metadata_values(json.loads(await raw_history(ts_env, old.workflow_id)), KEY_ID_METADATA)
    new_ids = _metadata_values(json.loads(await raw_history(ts_env, new.workflow_id)), KEY_ID_METADATA)
    assert old_ids == {base64.b64encode(b"k1").decode()} and new_ids == {base64.b64encode(b"k2").decode()}

    # k1 retired entirely: the old history no longer reads, and says which key it needs
    only_k2 = client_with(ts_env, data_converter_for(codec_settings(settings, "k2", k2=K2)))
    with pytest.raises(Exception) as info:
        await TidingsClient(only_k2).status("rot-old~u-rot")
    assert "'k1'" in _messages(info.value) and "not configured" in _messages(info.value)
    assert (await TidingsClient(only_k2).status("rot-new~u-rot")).phase is Phase.delivered

    # no codec at all: an error naming the encoding, not garbage
    with pytest.raises(Exception) as info:
        await TidingsClient(ts_env.client).status("rot-new~u-rot")
    assert "binary/encrypted" in _messages(info.value)


def _messages(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def test_hashed_recipient_id_in_search_attributes(
    ts_env: WorkflowEnvironment, settings: Settings, store: Store, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    hashed_settings = Settings.model_validate(
        {
            **settings.model_dump(),
            "codec": {
                "enabled": True,
                "keys": {"k1": K1},
                "active_key": "k1",
                "hash_recipient_ids": True,
                "recipient_id_hash_key": "a-long-recipient-hash-key",
            },
        }
    )
    key = recipient_hash_key(hashed_settings)
    assert key is not None
    client = client_with(ts_env, data_converter_for(hashed_settings))
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with running_worker(client, hashed_settings, store, task_queue=task_queue):
        tidings = TidingsClient(client, task_queue=task_queue, recipient_hash_key=key)
        [handle] = await tidings.send(
            {"id": "hash-1", "recipients": [{"id": "jane.doe", "email": EMAIL}], "channels": ["email"],
             "content": {"title": TITLE}}
        )  # fmt: skip
        assert (await handle.result()).phase is Phase.delivered
    description = await client.get_workflow_handle(handle.workflow_id).describe()
    stored = description.typed_search_attributes.get(sa.RECIPIENT_ID)
    expected = recipient_id_hash(b"a-long-recipient-hash-key", "jane.doe")
    assert stored == expected and len(stored) == 64 and "jane" not in stored
    assert f"RecipientId = '{expected}'" in tidings.recipient_query("jane.doe")
    assert description.typed_search_attributes.get(sa.NOTIFICATION_STATUS) == "delivered"


async def test_a_worker_without_the_key_fails_the_task_loudly_and_recovers_with_it(
    ts_env: WorkflowEnvironment, settings: Settings, store: Store, smtp_sink: SmtpSink
) -> None:
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    k1_settings = codec_settings(settings, "k1", k1=K1)
    k2_settings = codec_settings(settings, "k2", k2=K2)
    starter = TidingsClient(client_with(ts_env, data_converter_for(k1_settings)), task_queue=task_queue)
    [handle] = await starter.send(
        {"id": "wrong-key", "recipients": [{"id": "u-wk", "email": EMAIL}], "channels": ["email"],
         "content": {"title": TITLE}}
    )  # fmt: skip
    wrong = client_with(ts_env, data_converter_for(k2_settings))
    failure = ""
    async with running_worker(wrong, k2_settings, store, task_queue=task_queue):
        for _ in range(100):
            history = await ts_env.client.get_workflow_handle(handle.workflow_id).fetch_history()
            failed = [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
            if failed:
                # failure messages are encrypted too: read with the key of the worker that wrote it
                raw_failure = failed[0].workflow_task_failed_event_attributes.failure
                assert raw_failure.message == "Encoded failure"
                failure = str(await data_converter_for(k2_settings).decode_failure(raw_failure))
                break
            await asyncio.sleep(0.1)
    assert "'k1'" in failure and "not configured" in failure, failure
    assert K1 not in failure and K2 not in failure
    assert not smtp_sink.received
    right = client_with(ts_env, data_converter_for(k1_settings))
    async with running_worker(right, k1_settings, store, task_queue=task_queue):
        state = await right.get_workflow_handle(handle.workflow_id).result()
    assert state["phase"] == "delivered" and len(smtp_sink.received) == 1


async def test_signals_updates_queries_and_memo_are_encrypted_too(
    sealed: tuple[TidingsClient, Settings], ts_env: WorkflowEnvironment, server_now: datetime
) -> None:
    tidings, _ = sealed
    reason = "customer asked: wrong address at 12 Elm Street"
    moved_to = (server_now + timedelta(days=2)).isoformat()
    [handle] = await tidings.send(
        {"id": "codec-sig", "recipients": [{"id": "u-sig", "email": EMAIL}], "channels": ["email"],
         "content": {"title": TITLE}, "schedule_at": (server_now + timedelta(days=1)).isoformat()}
    )  # fmt: skip
    workflow = tidings.client.get_workflow_handle(handle.workflow_id)
    await workflow.signal("reschedule", moved_to)
    assert (await tidings.status(handle.notification_id)).schedule_at is not None  # a query
    outcome = await tidings.cancel(handle.notification_id, reason)  # an update
    assert outcome.accepted
    # wait without time skipping (it would move the shared test server's clock to the timer)
    raw_handle = ts_env.client.get_workflow_handle(handle.workflow_id)
    for _ in range(100):
        if (await raw_handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
            break
        await asyncio.sleep(0.05)
    state = await tidings.status(handle.notification_id)
    assert state.phase is Phase.cancelled and reason in (state.reason or "")
    # memo: the SDK encodes it with the same converter (Tidings sets none; any caller's is sealed)
    [memo] = (await tidings.client.data_converter._encode_memo({"note": reason})).fields.values()
    assert memo.metadata["encoding"] == ENCODING and reason.encode() not in memo.data

    raw = await raw_history(ts_env, handle.workflow_id)
    history = json.loads(raw)
    kinds = {next(k for k in e if k.endswith("EventAttributes")) for e in history["events"]}
    assert {
        "workflowExecutionSignaledEventAttributes",
        "workflowExecutionUpdateAcceptedEventAttributes",
    } <= kinds
    for secret in (reason, moved_to[:16], EMAIL, TITLE):
        assert secret not in raw
    for path in _plain_payload_paths(history):
        assert "/searchAttributes/indexedFields/" in path or path.endswith("details/data"), path


async def test_failure_messages_are_encrypted_and_read_back_through_the_codec(
    sealed: tuple[TidingsClient, Settings], ts_env: WorkflowEnvironment, http_endpoint: HttpEndpoint
) -> None:
    """A provider's error text (an SMTP server quoting the address, a webhook's answer) is in the
    activity failure: with the codec it is encrypted too, and the client reads it as before."""
    tidings, _ = sealed
    marker = "answered 418"
    http_endpoint.answer(418)
    [handle] = await tidings.send(
        {"recipients": [{"id": "teapot", "webhook_url": f"{http_endpoint.url}/hook"}],
         "channels": ["webhook"], "content": {"title": TITLE}}
    )  # fmt: skip
    state = await handle.result()
    assert state.phase is Phase.failed
    assert state.destinations[0].last_error is not None and marker in state.destinations[0].last_error
    raw = await raw_history(ts_env, handle.workflow_id)
    assert marker not in raw
    assert "Encoded failure" in raw and "PermanentDeliveryError" in raw  # the failure's type stays readable
