"""The broadcast tables on both backends: topics, keyset pages, audiences, outcomes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.activities.store.base import Store
from tidings.activities.store.broadcast_tables import UnknownTopicError
from tidings.models import Recipient
from tidings.models.broadcasts import Audience, BroadcastRequest, OutcomeStatus, RecipientOutcome, Topic

TOPIC = Audience(kind="topic", topic="news")
LIST = Audience(kind="list")


async def test_topics_and_subscriptions(any_store: Store) -> None:
    b = any_store.broadcasts
    assert await b.create_topic(Topic(key="news", name="News"))
    assert not await b.create_topic(Topic(key="news", name="Other"))
    with pytest.raises(UnknownTopicError, match="tidings topic create nope"):
        await b.subscribe("nope", ["u1"])
    assert await b.subscribe("news", ["u3", "u1", "u2"]) == 3
    assert await b.subscribe("news", ["u1", "u4"]) == 1
    topic = await b.get_topic("news")
    assert topic is not None and topic.name == "News" and topic.subscribers == 4
    assert [t.key for t in await b.list_topics()] == ["news"]
    assert await b.unsubscribe("news", ["u4", "u9"]) == 1
    assert await b.audience_size("x", TOPIC) == 3
    assert await b.set_topic_opt_out("news", "u2")
    assert await b.topic_opt_outs("news", ["u1", "u2", "u3"]) == {"u2"}
    assert await b.set_topic_opt_out("news", "u2", opted_out=False)
    assert await b.topic_opt_outs("news", ["u2"]) == set()
    assert await b.delete_topic("news")
    assert await b.get_topic("news") is None and await b.audience_size("x", TOPIC) == 0


async def test_a_subscribers_topics_in_keyset_pages(any_store: Store) -> None:
    b = any_store.broadcasts
    keys = [f"t-{i:03d}" for i in range(1, 13)]
    for key in [*keys, "not-mine"]:
        await b.create_topic(Topic(key=key, name=key.upper()))
    for key in keys:
        await b.subscribe(key, ["ada", "bob"])
    await b.subscribe("not-mine", ["bob"])
    await b.set_topic_opt_out("t-002", "ada")
    await b.set_topic_opt_out("t-003", "bob")  # bob's opt-out is not ada's
    await b.set_topic_opt_out("not-mine", "ada")  # opted out but not subscribed: not listed
    seen = []
    after = ""
    while page := await b.subscriber_topics("ada", after, limit=5):
        assert len(page) <= 5
        seen.extend(page)
        after = page[-1].key
    assert [t.key for t in seen] == keys
    assert {t.key for t in seen if t.opted_out} == {"t-002"}
    assert seen[0].name == "T-001"
    assert [t.key for t in await b.subscriber_topics("bob", "t-011")] == ["t-012"]
    assert await b.subscriber_topics("nobody") == []


async def test_keyset_pages_cover_the_audience_once(any_store: Store) -> None:
    b = any_store.broadcasts
    ids = [f"user-{i:04d}" for i in range(1, 1001)]
    await b.add_audience("b1", ids[500:])
    await b.add_audience("b1", ids[:600])  # overlapping chunks: stored once
    await b.add_audience("b2", ["other"])
    assert await b.audience_size("b1", LIST) == 1000
    seen: list[str] = []
    after = ""
    while page := await b.audience_page("b1", LIST, after, 128):
        seen.extend(page)
        after = page[-1]
    assert seen == ids
    assert await b.audience_page("b1", LIST, "user-0010", 100, upto="user-0013") == [
        "user-0011",
        "user-0012",
        "user-0013",
    ]


async def test_outcomes_are_the_checkpoint_and_the_lookup(any_store: Store) -> None:
    b = any_store.broadcasts
    await b.record_outcomes(
        [
            RecipientOutcome(
                broadcast_id="b", recipient_id="u1", status=OutcomeStatus.sending, delivery_ids=["d1"]
            ),
            RecipientOutcome(broadcast_id="b", recipient_id="u2", status=OutcomeStatus.sending),
        ]
    )
    await b.record_outcomes(
        [RecipientOutcome(broadcast_id="b", recipient_id="u2", status=OutcomeStatus.failed, reason="410")]
    )
    found = await b.outcomes("b", ["u1", "u2", "u3"])
    assert found["u1"].status is OutcomeStatus.sending and found["u1"].delivery_ids == ["d1"]
    assert found["u2"].status is OutcomeStatus.failed and found["u2"].reason == "410"
    assert found["u2"].updated_at is not None
    assert "u3" not in found
    assert [o.recipient_id for o in await b.list_outcomes("b", OutcomeStatus.failed)] == ["u2"]
    assert [o.recipient_id for o in await b.list_outcomes("b", after="u1")] == ["u2"]
    assert await b.count_outcomes("b") == {OutcomeStatus.sending: 1, OutcomeStatus.failed: 1}
    assert await b.outcome("other", "u1") is None


async def test_recipients_are_loaded_by_page(any_store: Store) -> None:
    for i in range(3):
        await any_store.put(Recipient(id=f"r{i}", webhook_url=f"https://hooks.example.com/{i}"))
    loaded = await any_store.broadcasts.recipients(["r2", "r0", "missing"])
    assert sorted(r.id for r in loaded) == ["r0", "r2"]
    assert {r.webhook_url for r in loaded} == {"https://hooks.example.com/0", "https://hooks.example.com/2"}


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    topic=st.one_of(st.none(), st.text(max_size=120)),
    recipients=st.one_of(st.none(), st.lists(st.text(max_size=12), max_size=5)),
    batch_size=st.integers(-5, 2000),
)
def test_broadcast_request_boundary(topic: str | None, recipients: list[str] | None, batch_size: int) -> None:
    """Any input either validates into exactly one audience or fails with a ValueError."""
    try:
        request = BroadcastRequest.model_validate(
            {
                "id": "b1",
                "topic": topic,
                "recipients": recipients,
                "batch_size": batch_size,
                "channels": ["webhook"],
                "content": {"title": "hi"},
            }
        )
    except ValueError:
        return
    assert (request.topic is None) != (request.recipients is None)
    assert 1 <= request.batch_size <= 1000
