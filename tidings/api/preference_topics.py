"""Topics in the preference center: the topics a recipient is subscribed to, and opting out of
(or back into) them.

An opt-out here is the same row `tidings topic opt-out` writes (`topic_opt_outs`), the one
BroadcastWorkflow's batches read, so the next broadcast to that topic skips the recipient
(`critical` priority still reaches them, as with categories). The subscription itself stays: who is
subscribed is the sender's list; whether they want it is the recipient's choice.

The page lists at most `MAX_TOPICS_SHOWN` topics (in key order) and says when there are more; the
JSON view does the same. A change is accepted only for topics the recipient is subscribed to
(all of them, not only the ones shown): anything else is a 422 naming the topics.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from tidings.activities.store.base import Store
from tidings.api.problems import ApiProblem
from tidings.models.broadcasts import SubscribedTopic

MAX_TOPICS_SHOWN = 200
_PAGE = 500


class TopicChoices(BaseModel):
    topics: list[SubscribedTopic] = Field(
        description=f"subscribed topics in key order, at most {MAX_TOPICS_SHOWN}"
    )
    more: bool = Field(
        description=f"subscribed to more than {MAX_TOPICS_SHOWN} topics: the rest are not listed"
    )


async def topic_choices(store: Store, recipient_id: str) -> TopicChoices:
    page = await store.broadcasts.subscriber_topics(recipient_id, limit=MAX_TOPICS_SHOWN + 1)
    return TopicChoices(topics=page[:MAX_TOPICS_SHOWN], more=len(page) > MAX_TOPICS_SHOWN)


async def _all_subscribed(store: Store, recipient_id: str) -> dict[str, SubscribedTopic]:
    found: dict[str, SubscribedTopic] = {}
    after = ""
    while page := await store.broadcasts.subscriber_topics(recipient_id, after, _PAGE):
        found.update((t.key, t) for t in page)
        after = page[-1].key
    return found


async def check_topic_opt_outs(store: Store, recipient_id: str, opt_outs: Mapping[str, bool]) -> None:
    """Refuse (422) a change to a topic the recipient is not subscribed to."""
    if not opt_outs:
        return
    subscribed = await _all_subscribed(store, recipient_id)
    unknown = sorted(set(opt_outs) - set(subscribed))
    if unknown:
        raise ApiProblem(
            422,
            "not subscribed",
            f"not subscribed to topic(s): {', '.join(unknown)}; only subscribed topics can be opted out of",
        )


async def set_topic_opt_outs(store: Store, recipient_id: str, opt_outs: Mapping[str, bool]) -> None:
    """Set `{topic: opted_out}` for a recipient (checked first with `check_topic_opt_outs`, before
    anything else of the update is written); topics left out stay as they are."""
    for key, opted_out in sorted(opt_outs.items()):
        await store.broadcasts.set_topic_opt_out(key, recipient_id, opted_out)
