"""Topics in the preference center: the topics a recipient is subscribed to are listed (page and
`/v1/me/preferences`), each can be opted out of and back into, only subscribed topics can be
changed, one recipient cannot touch another's, and the next broadcast honours the opt-out."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.api_support import ApiKeyMaker, bearer, subscriber_token
from tests.test_api_preferences import MEMBER, form_fields, link_for
from tidings.activities.store.base import Store
from tidings.api.keys import Scope
from tidings.api.preference_center import PreferenceUpdate
from tidings.api.preference_topics import MAX_TOPICS_SHOWN
from tidings.models import Recipient
from tidings.models.broadcasts import BroadcastPhase, OutcomeStatus, Topic
from tidings.sandbox.http_endpoint import HttpEndpoint
from tidings.starters.client import TidingsClient

ORIGIN = {"Origin": "http://127.0.0.1:8090"}


async def topics(store: Store, subscriptions: dict[str, list[str]]) -> None:
    """Create the topics (named after their key) and subscribe the ids."""
    for key, ids in subscriptions.items():
        await store.broadcasts.create_topic(Topic(key=key, name=key.title()))
        await store.broadcasts.subscribe(key, ids)


async def opted_out(store: Store, key: str, *ids: str) -> set[str]:
    return await store.broadcasts.topic_opt_outs(key, list(ids))


def page_fields(page: str) -> dict[str, str | list[str]]:
    """What a browser submits: `form_fields` plus the hidden list of the topics shown."""
    return {**form_fields(page), "topic_shown": re.findall(r'name="topic_shown" value="([^"]+)"', page)}


async def test_json_lists_subscribed_topics_and_sets_opt_outs(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers)
    for rid in ("member", "other"):
        await api.put(f"/v1/subscribers/{rid}", json={**MEMBER, "id": rid}, headers=bearer(key))
    await topics(store, {"news": ["member", "other"], "releases": ["member"], "theirs": ["other"]})
    me = bearer(subscriber_token("member"))
    view = (await api.get("/v1/me/preferences", headers=me)).json()
    assert view["topics"] == [
        {"key": "news", "name": "News", "opted_out": False},
        {"key": "releases", "name": "Releases", "opted_out": False},
    ]
    assert view["more_topics"] is False
    changed = await api.put("/v1/me/preferences", json={"topic_opt_outs": {"news": True}}, headers=me)
    assert changed.status_code == 200, changed.text
    assert {"key": "news", "name": "News", "opted_out": True} in changed.json()["topics"]
    assert await opted_out(store, "news", "member", "other") == {"member"}  # not the other subscriber's
    # a topic not subscribed to (another subscriber's, or none at all) is refused, and nothing of
    # the request is written
    for topic in ("theirs", "nope"):
        refused = await api.put(
            "/v1/me/preferences",
            json={"channels": {"sms": False}, "topic_opt_outs": {topic: True, "releases": True}},
            headers=me,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith(f"not subscribed to topic(s): {topic};")
    assert await opted_out(store, "theirs", "member", "other") == set()
    assert await opted_out(store, "releases", "member") == set()
    member = await store.get("member")
    assert member is not None and member.preferences.opted_out_channels == set()
    malformed = await api.put("/v1/me/preferences", json={"topic_opt_outs": {"Bad Key!": True}}, headers=me)
    assert malformed.status_code == 422 and "topic key" in malformed.text
    back = await api.put("/v1/me/preferences", json={"topic_opt_outs": {"news": False}}, headers=me)
    assert back.status_code == 200 and await opted_out(store, "news", "member") == set()
    # the other subscriber's own token sees only their topics, and their choice is theirs
    them = bearer(subscriber_token("other"))
    theirs = await api.put("/v1/me/preferences", json={"topic_opt_outs": {"theirs": True}}, headers=them)
    assert theirs.status_code == 200
    assert [t["key"] for t in (await api.get("/v1/me/preferences", headers=them)).json()["topics"]] == [
        "news",
        "theirs",
    ]
    assert await opted_out(store, "theirs", "other", "member") == {"other"}


async def test_the_list_is_capped_and_says_so(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers)
    await api.put("/v1/subscribers/member", json=MEMBER, headers=bearer(key))
    keys = [f"topic-{i:03d}" for i in range(MAX_TOPICS_SHOWN + 1)]
    await topics(store, {k: ["member"] for k in keys})
    me = bearer(subscriber_token("member"))
    view = (await api.get("/v1/me/preferences", headers=me)).json()
    assert [t["key"] for t in view["topics"]] == keys[:MAX_TOPICS_SHOWN] and view["more_topics"] is True
    page = (await api.get(await link_for(api, key))).text
    assert f"Showing the first {MAX_TOPICS_SHOWN} of your topics" in page
    assert keys[-1] not in page
    # one not listed is still the recipient's to change
    last = await api.put("/v1/me/preferences", json={"topic_opt_outs": {keys[-1]: True}}, headers=me)
    assert last.status_code == 200 and await opted_out(store, keys[-1], "member") == {"member"}


async def test_the_page_form_round_trip(api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store) -> None:
    key = await api_key(Scope.subscribers)
    for rid in ("member", "other"):
        await api.put(f"/v1/subscribers/{rid}", json={**MEMBER, "id": rid}, headers=bearer(key))
    await topics(store, {"news": ["member", "other"], "releases": ["member"], "theirs": ["other"]})
    path = await link_for(api, key)
    page = (await api.get(path)).text
    assert "<legend>Topics</legend>" in page and "News <span" in page and "(releases)" in page
    assert "theirs" not in page and "Theirs" not in page
    fields = page_fields(page)
    assert {"topic:news", "topic:releases"} <= set(fields) and fields["topic_shown"] == ["news", "releases"]
    del fields["topic:news"]
    # without the CSRF token nothing changes
    forged = {k: v for k, v in fields.items() if k != "csrf"}
    assert (await api.post(path, data=forged, headers=ORIGIN)).status_code == 403
    assert await opted_out(store, "news", "member") == set()
    # a form naming another subscriber's topic changes nothing of theirs
    sneaky = {**fields, "topic_shown": [*fields["topic_shown"], "theirs"]}
    saved = await api.post(path, data=sneaky, headers=ORIGIN)
    assert saved.status_code == 200 and "Saved." in saved.text
    assert await opted_out(store, "news", "member", "other") == {"member"}
    assert await opted_out(store, "releases", "member") == set()
    assert await opted_out(store, "theirs", "member", "other") == set()
    assert 'name="topic:news" >' in saved.text  # shown unchecked now
    # a topic subscribed to after the page was made (so not shown) is left as it is
    await topics(store, {"late": ["member"]})
    again = page_fields(saved.text)
    again["topic:news"] = "on"
    assert (await api.post(path, data=again, headers=ORIGIN)).status_code == 200
    assert await opted_out(store, "news", "member") == set()
    assert await opted_out(store, "late", "member") == set()


async def test_a_topic_opted_out_of_in_the_center_is_skipped_by_the_next_broadcast(
    api: httpx.AsyncClient,
    api_key: ApiKeyMaker,
    store: Store,
    tidings: TidingsClient,
    http_endpoint: HttpEndpoint,
) -> None:
    key = await api_key(Scope.subscribers)
    ids = ["ada", "bob", "cy"]
    for rid in ids:
        await store.put(Recipient(id=rid, webhook_url=f"{http_endpoint.url}/hooks/{rid}"))
    await topics(store, {"product-news": ids})
    path = await link_for(api, key, "bob")
    fields = page_fields((await api.get(path)).text)
    del fields["topic:product-news"]
    assert (await api.post(path, data=fields, headers=ORIGIN)).status_code == 200
    request = {"id": "pn-1", "topic": "product-news", "channels": ["webhook"],
               "content": {"title": "New", "body": "things"}}  # fmt: skip
    progress = await (await tidings.broadcast(request, store)).result()
    assert progress.phase is BroadcastPhase.completed
    assert (progress.total, progress.sent, progress.skipped, progress.failed) == (3, 2, 1, 0)
    hooks = sorted(r.path.rsplit("/", 1)[-1] for r in http_endpoint.requests)
    assert hooks == ["ada", "cy"]
    skipped = await store.broadcasts.outcome("pn-1", "bob")
    assert skipped is not None and skipped.status is OutcomeStatus.skipped
    assert "opted out of topic 'product-news'" in (skipped.reason or "")


@given(st.text(max_size=120))
def test_topic_opt_out_keys_are_topic_keys(key: str) -> None:
    valid = re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", key) is not None
    if valid:
        assert PreferenceUpdate.model_validate({"topic_opt_outs": {key: True}}).topic_opt_outs == {key: True}
    else:
        with pytest.raises(ValidationError, match="topic key"):
            PreferenceUpdate.model_validate({"topic_opt_outs": {key: True}})
