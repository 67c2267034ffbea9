"""The receiver faces the internet: what it does with hostile, broken or oversized requests.

Requests go through httpx to the real Starlette app (ASGI transport, so a test can see how much of
a body the app pulled); the Temporal client is the real test server's. Tests that need a running
notification (signals counted in its state) are in test_receiver.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from tidings.activities.store.base import ReceiptLog
from tidings.activities.store.sqlite import SqliteStore
from tidings.links import click_url, event_token, unsubscribe_url
from tidings.models import Recipient
from tidings.receiver.app import MAX_BODY_BYTES, Receiver
from tidings.settings import Settings

SID, TOKEN = "AC" + "4" * 32, "hardening-auth-token-0123456789"
LINK_KEY = b"hardening-link-key-0123456789abcdef"
PUBLIC = "https://receiver.example.com"
GONE = "notification-long-gone"  # no such workflow: signals to it are kept as late receipts


@dataclass
class Target:
    client: httpx.AsyncClient
    log: ReceiptLog
    store: SqliteStore


@pytest_asyncio.fixture(scope="module")
async def target(
    ts_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    """One receiver for the module (hypothesis runs many examples against it)."""
    store = await SqliteStore.open(tmp_path_factory.mktemp("receiver") / "subscribers.sqlite3")
    configured = Settings.model_validate(
        {
            "store": {"sqlite_path": store.path},
            "twilio": {"account_sid": SID, "auth_token": TOKEN, "from_number": "+15005550006"},
            "receiver": {"public_url": PUBLIC, "link_signing_key": LINK_KEY.decode()},
        }
    )
    log = store.receipts
    app = Receiver(configured, ts_env.client, log, store).app()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
            yield Target(client, log, store)
    finally:
        await store.aclose()


def legacy_token(payload: dict[str, str], key: bytes = LINK_KEY) -> str:
    """A token as Tidings signed it before tokens carried a purpose (still in old emails)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


# --- body size --------------------------------------------------------------------------------


class CountingBody:
    """A 50 MB request body handed out in chunks, counting how many the server pulled."""

    def __init__(self, chunk: int = 16 * 1024, total: int = 50 * 1024 * 1024) -> None:
        self.chunk, self.chunks, self.pulled = chunk, total // chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"a" * self.chunk


POSTS = [
    "/twilio/status",
    "/events",
    "/u/" + unsubscribe_url(PUBLIC, LINK_KEY, "r1", "orders").rsplit("/", 1)[1],
]


@pytest.mark.parametrize("path", POSTS)
async def test_a_declared_oversized_body_is_refused_before_it_is_read(target: Target, path: str) -> None:
    body = CountingBody()
    response = await target.client.post(
        path, content=body, headers={"Content-Length": str(body.chunk * body.chunks)}
    )
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.text
    assert body.pulled == 0


@pytest.mark.parametrize("path", POSTS)
async def test_a_streamed_body_without_length_is_cut_off_past_the_limit(target: Target, path: str) -> None:
    body = CountingBody()
    response = await target.client.post(path, content=body)  # chunked: no Content-Length
    assert response.status_code == 413
    assert body.pulled <= MAX_BODY_BYTES // body.chunk + 1  # stopped right past 64 KiB, not 50 MB


async def test_a_body_at_the_limit_is_still_read(target: Target) -> None:
    padding = "x" * (MAX_BODY_BYTES - 100)
    response = await target.client.post("/events", content=json.dumps({"token": padding, "kind": "opened"}))
    assert response.status_code == 403  # read and judged on its token, not refused for its size


async def test_a_malformed_content_length_is_400(target: Target) -> None:
    response = await target.client.post("/events", content=b"{}", headers={"Content-Length": "-5"})
    assert response.status_code == 400


# --- Twilio callbacks -----------------------------------------------------------------------


def callback_url(workflow_id: str = GONE) -> str:
    return f"{PUBLIC}/twilio/status?w={workflow_id}&d=delivery-1"


async def test_a_non_utf8_twilio_body_is_400(target: Target) -> None:
    for body in (b"MessageSid=SM1&MessageStatus=\xff\xfe", b"MessageSid=SM1&MessageStatus=%FF"):
        response = await target.client.post(
            callback_url(),
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        )
        assert response.status_code == 400 and "UTF-8" in response.text
        assert TOKEN not in response.text


async def test_a_signed_callback_with_an_empty_parameter_is_accepted(target: Target) -> None:
    params = {"MessageSid": "SMempty", "MessageStatus": "undelivered", "AccountSid": SID, "ErrorCode": ""}
    signature = RequestValidator(TOKEN).compute_signature(callback_url(), params)
    response = await target.client.post(
        callback_url(), data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 204
    [kept] = await target.log.late_receipts(GONE)  # the notification has finished: the receipt is kept
    assert kept.provider_message_id == "SMempty" and kept.status == "undelivered" and kept.error_code is None


async def test_an_empty_parameter_added_after_signing_is_forged(target: Target) -> None:
    """Blank parameters are part of what is signed, so adding one breaks the signature."""
    params = {"MessageSid": "SMadded", "MessageStatus": "delivered", "AccountSid": SID}
    signature = RequestValidator(TOKEN).compute_signature(callback_url(), params)
    response = await target.client.post(
        callback_url(), data={**params, "ErrorCode": ""}, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    assert [r.provider_message_id for r in await target.log.late_receipts(GONE)] != ["SMadded"]


# --- app events -----------------------------------------------------------------------------


def valid_event_token() -> str:
    return event_token(LINK_KEY, GONE, "delivery-1")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe{", "JSON"),
        (b"[" * 60_000 + b"]" * 60_000, ""),  # deeply nested (and over the limit when closed)
        (b'{"token": ' + b"[" * 30_000 + b"]" * 30_000 + b', "kind": "opened"}', "JSON"),
        (b"[" * 60_000, "JSON"),
        (b"[]", "object"),
        (b'"opened"', "object"),
        (b"null", "object"),
        (b"", "JSON"),
        (b'{"token": 12, "kind": "opened"}', "token"),
        (b'{"token": "t"}', "kind"),
        (b'{"token": "t", "kind": "opened", "extra": 1}', "extra"),
    ],
)
async def test_bodies_not_of_the_documented_shape_are_400(target: Target, body: bytes, says: str) -> None:
    response = await target.client.post("/events", content=body)
    if len(body) > MAX_BODY_BYTES:
        assert response.status_code == 413
        return
    assert response.status_code == 400, response.text
    reason, _, usage = response.json()["error"].partition("; send ")
    assert says in reason and "opened" in usage


@pytest.mark.parametrize("kind", ["read", "clicked", "OPENED", "shrugged"])
async def test_only_opened_and_dismissed_may_be_reported(target: Target, kind: str) -> None:
    response = await target.client.post("/events", json={"token": valid_event_token(), "kind": kind})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "opened" in error and "dismissed" in error
    assert valid_event_token() not in error


async def test_a_valid_event_is_accepted(target: Target) -> None:
    response = await target.client.post("/events", json={"token": valid_event_token(), "kind": "dismissed"})
    assert response.status_code == 204


# --- tokens are bound to their purpose ------------------------------------------------------


async def test_tokens_work_only_on_their_own_route(target: Target) -> None:
    await target.store.put(Recipient(id="r-purpose", email="p@example.com"))
    click = click_url(PUBLIC, LINK_KEY, GONE, "delivery-1", "https://shop.example.com/o/1")
    click_token = click.rsplit("/c/", 1)[1]
    event = valid_event_token()
    unsubscribe = unsubscribe_url(PUBLIC, LINK_KEY, "r-purpose", "orders").rsplit("/u/", 1)[1]

    for token in (click_token, unsubscribe):
        refused = await target.client.post("/events", json={"token": token, "kind": "opened"})
        assert refused.status_code == 403
    for token in (event, unsubscribe):
        assert (await target.client.get(f"/c/{token}")).status_code == 404
    for token in (click_token, event):
        assert (await target.client.get(f"/u/{token}")).status_code == 404
        assert (await target.client.post(f"/u/{token}")).status_code == 404
    stored = await target.store.get("r-purpose")
    assert stored is not None and not stored.preferences.opted_out_categories

    # each on its own route still works
    assert (await target.client.get(f"/c/{click_token}")).status_code == 302
    done = await target.client.post(f"/u/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    stored = await target.store.get("r-purpose")
    assert stored is not None and stored.preferences.opted_out_categories == {"orders"}


async def test_tokens_from_before_purposes_keep_working_where_they_belong(target: Target) -> None:
    """Links in emails already sent were signed without a purpose: accepted on their own route only."""
    await target.store.put(Recipient(id="r-legacy", email="l@example.com"))
    click = legacy_token({"w": GONE, "d": "delivery-1", "u": "https://shop.example.com/o/2"})
    event = legacy_token({"w": GONE, "d": "delivery-2"})
    unsubscribe = legacy_token({"r": "r-legacy", "c": "news"})

    redirect = await target.client.get(f"/c/{click}")
    assert redirect.status_code == 302 and redirect.headers["location"] == "https://shop.example.com/o/2"
    assert (await target.client.post("/events", json={"token": event, "kind": "opened"})).status_code == 204
    assert (await target.client.post(f"/u/{unsubscribe}")).status_code == 200

    assert (await target.client.post("/events", json={"token": click, "kind": "opened"})).status_code == 403
    assert (
        await target.client.post("/events", json={"token": unsubscribe, "kind": "opened"})
    ).status_code == 403
    assert (await target.client.get(f"/c/{event}")).status_code == 404
    assert (await target.client.post(f"/u/{click}")).status_code == 404
    # a legacy-looking payload with extra keys is no legacy token
    mixed = legacy_token({"w": GONE, "d": "delivery-3", "u": "https://shop.example.com", "r": "x"})
    assert (await target.client.post("/events", json={"token": mixed, "kind": "opened"})).status_code == 403
    assert (await target.client.get(f"/c/{mixed}")).status_code == 404


# --- property: nothing a client sends makes the receiver fail -------------------------------

HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "x-twilio-signature",
        "content-encoding",
        "transfer-encoding",
        "x-forwarded-for",
        "accept",
    ]
)
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
    lambda value: value.encode("latin-1")  # what may arrive on the wire, not only ASCII
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"token": st.one_of(st.text(max_size=60), st.integers(), st.none()), "kind": st.text(max_size=12)}
    ).map(lambda value: json.dumps(value).encode()),
)
PATHS = st.sampled_from(["/twilio/status", "/twilio/status?w=notification-x&d=d1", "/events", "/u/abc.def"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, body=BODIES, headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4))
async def test_random_requests_never_fail_the_receiver(
    target: Target, path: str, body: bytes, headers: dict[bytes, bytes]
) -> None:
    response = await target.client.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert TOKEN not in response.text and LINK_KEY.decode() not in response.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200))
async def test_random_tokens_never_fail_the_receiver(target: Target, token: str) -> None:
    for response in (
        await target.client.get(f"/c/{quote(token, safe='')}"),
        await target.client.get(f"/u/{quote(token, safe='')}"),
        await target.client.post("/events", json={"token": token, "kind": "opened"}),
    ):
        # `.` and `..` are path segments: the client normalises `/c/.` to `/c/`, which the router
        # redirects (307) to `/c`; nothing is acted on either way
        assert response.status_code in (307, 400, 403, 404), response.text


async def test_the_replay_log_keeps_no_usable_token(target: Target) -> None:
    token = event_token(LINK_KEY, GONE, "delivery-log")
    first = await target.client.post("/events", json={"token": token, "kind": "opened"})
    again = await target.client.post("/events", json={"token": token, "kind": "opened"})
    assert first.status_code == again.status_code == 204
    with sqlite3.connect(target.store.path) as db:
        keys = [row[0] for row in db.execute("SELECT key FROM seen_callbacks WHERE key LIKE 'event:%'")]
    assert keys and not any(token.split(".")[0] in key or token.split(".")[1] in key for key in keys)


def test_a_signature_is_accepted_only_in_its_canonical_encoding() -> None:
    """base64url's last character carries unused bits: other spellings of the same MAC are refused,
    so a token has exactly one valid form."""
    from tidings.links import InvalidToken, Purpose, sign_token, verify_token

    key = b"k" * 32
    token = sign_token(key, Purpose.click, {"w": "notification-x", "d": "d1", "u": "https://example.com"})
    body, _, mac = token.partition(".")
    assert verify_token(key, token, Purpose.click)["d"] == "d1"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for other in alphabet.replace(mac[-1], ""):
        with pytest.raises(InvalidToken):
            verify_token(key, f"{body}.{mac[:-1]}{other}", Purpose.click)
