"""Topics, broadcast audiences and per-recipient broadcast outcomes: the part of the store a
broadcast reads in pages and checkpoints into.

Both backends run the same SQL (written with `?` placeholders; the PostgreSQL store swaps them for
its own), through two hooks: `_rows` (one query) and `_write` (one statement over many rows, in one
transaction). Every page is keyset-paginated (`WHERE id > cursor ORDER BY id LIMIT n`), so reading
page 500 of a 100,000-recipient audience costs what reading page 1 does.

`broadcast_outcomes` is both the per-recipient lookup (`tidings broadcast status ID --recipient R`)
and the batch checkpoint: a batch records `sending` for a recipient before it hands the message to a
provider and the final status after, and a retried batch skips every recipient with a final status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tidings.models import Recipient
from tidings.models.broadcasts import Audience, OutcomeStatus, RecipientOutcome, SubscribedTopic, Topic

# Migration 3, in each backend's column types (`{ts}`: timestamp type; `{c}`: collation making
# keyset order byte order).
MIGRATION_3 = """
CREATE TABLE topics (
    key TEXT PRIMARY KEY,
    name TEXT,
    created_at {ts} NOT NULL
);
CREATE TABLE topic_subscriptions (
    topic TEXT NOT NULL REFERENCES topics (key) ON DELETE CASCADE,
    subscriber_id TEXT {c} NOT NULL,
    PRIMARY KEY (topic, subscriber_id)
);
CREATE TABLE topic_opt_outs (
    topic TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    PRIMARY KEY (topic, subscriber_id)
);
CREATE TABLE broadcast_audience (
    broadcast_id TEXT NOT NULL,
    recipient_id TEXT {c} NOT NULL,
    PRIMARY KEY (broadcast_id, recipient_id)
);
CREATE TABLE broadcast_outcomes (
    broadcast_id TEXT NOT NULL,
    recipient_id TEXT {c} NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    delivery_ids TEXT NOT NULL DEFAULT '[]',
    updated_at {ts} NOT NULL,
    PRIMARY KEY (broadcast_id, recipient_id)
);
CREATE INDEX broadcast_outcomes_by_status ON broadcast_outcomes (broadcast_id, status, recipient_id)
"""

_OUTCOME_COLUMNS = "broadcast_id, recipient_id, status, reason, delivery_ids, updated_at"
_UPSERT_OUTCOME = (
    f"INSERT INTO broadcast_outcomes ({_OUTCOME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (broadcast_id, recipient_id) DO UPDATE SET status = excluded.status, "
    "reason = excluded.reason, delivery_ids = excluded.delivery_ids, updated_at = excluded.updated_at"
)
# An IN list is built per call; pages are at most MAX_BATCH_SIZE ids (SQLite allows 32,766).
_MAX_IN = 1000


class _CopiedTable(NamedTuple):
    """How `tidings store copy` pages through one table: by its primary key, as stored."""

    columns: tuple[str, ...]
    key: tuple[str, ...]
    timestamps: tuple[str, ...] = ()


# In copy order: subscriptions refer to their topic.
COPIED_TABLES: dict[str, _CopiedTable] = {
    "topics": _CopiedTable(("key", "name", "created_at"), ("key",), ("created_at",)),
    "topic_subscriptions": _CopiedTable(("topic", "subscriber_id"), ("topic", "subscriber_id")),
    "topic_opt_outs": _CopiedTable(("topic", "subscriber_id"), ("topic", "subscriber_id")),
    "broadcast_audience": _CopiedTable(("broadcast_id", "recipient_id"), ("broadcast_id", "recipient_id")),
    "broadcast_outcomes": _CopiedTable(
        tuple(_OUTCOME_COLUMNS.split(", ")), ("broadcast_id", "recipient_id"), ("updated_at",)
    ),
}
TableRows = list[tuple[Any, ...]]


class UnknownTopicError(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no topic {key!r}; create it with `tidings topic create {key}`")
        self.key = key


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _outcome(row: Sequence[Any]) -> RecipientOutcome:
    broadcast_id, recipient_id, status, reason, delivery_ids, updated_at = row
    return RecipientOutcome(
        broadcast_id=broadcast_id,
        recipient_id=recipient_id,
        status=OutcomeStatus(status),
        reason=reason,
        delivery_ids=json.loads(delivery_ids),
        updated_at=updated_at,
    )


def _stored_values(spec: _CopiedTable, row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        datetime.fromisoformat(v) if c in spec.timestamps and isinstance(v, str) else v
        for c, v in zip(spec.columns, row, strict=True)
    )


class BroadcastTables:
    """The broadcast part of one store (`store.broadcasts`)."""

    recipient_query: str = ""  # the backend's recipient-as-JSON SELECT, filtered by `s.id IN (...)`

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _write(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run `sql` once per row in one transaction; the number of rows it changed."""
        raise NotImplementedError

    # -- copying (`tidings store copy`)

    async def export_table(self, table: str, batch_size: int = 500) -> AsyncIterator[TableRows]:
        """Every row of one of `COPIED_TABLES`, in primary key order, in keyset pages; timestamps
        as datetimes whichever backend stored them."""
        spec = COPIED_TABLES[table]
        key, columns = ", ".join(spec.key), ", ".join(spec.columns)
        where = ""
        after: tuple[Any, ...] = ()
        while True:
            rows = await self._rows(
                f"SELECT {columns} FROM {table}{where} ORDER BY {key} LIMIT ?", [*after, batch_size]
            )
            if not rows:
                return
            yield [_stored_values(spec, row) for row in rows]
            where = f" WHERE ({key}) > ({_marks(len(spec.key))})"
            last = dict(zip(spec.columns, rows[-1], strict=True))
            after = tuple(last[k] for k in spec.key)

    async def import_table(self, table: str, rows: Sequence[Sequence[Any]]) -> int:
        """Store exported rows as they are; rows already there are left alone (a re-run)."""
        spec = COPIED_TABLES[table]
        return await self._write(
            f"INSERT INTO {table} ({', '.join(spec.columns)}) VALUES ({_marks(len(spec.columns))}) "
            "ON CONFLICT DO NOTHING",
            rows,
        )

    # -- topics

    async def create_topic(self, topic: Topic) -> bool:
        """Create a topic; False when it exists already (its name is left as it is)."""
        created = await self._write(
            "INSERT INTO topics (key, name, created_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
            [(topic.key, topic.name, datetime.now(UTC))],
        )
        return created > 0

    async def get_topic(self, key: str) -> Topic | None:
        rows = await self._rows(
            "SELECT key, name, created_at, "
            "(SELECT COUNT(*) FROM topic_subscriptions WHERE topic = topics.key) FROM topics WHERE key = ?",
            [key],
        )
        if not rows:
            return None
        key_, name, created_at, count = rows[0]
        return Topic(key=key_, name=name, created_at=created_at, subscribers=int(count))

    async def list_topics(self) -> list[Topic]:
        rows = await self._rows("SELECT key, name, created_at FROM topics ORDER BY key", [])
        return [Topic(key=k, name=n, created_at=c) for k, n, c in rows]

    async def delete_topic(self, key: str) -> bool:
        """Delete a topic and its subscriptions (opt-outs stay: they are the subscribers' wish)."""
        return await self._write("DELETE FROM topics WHERE key = ?", [(key,)]) > 0

    async def subscribe(self, key: str, subscriber_ids: Sequence[str]) -> int:
        """Subscribe ids to a topic; the number newly subscribed."""
        if await self.get_topic(key) is None:
            raise UnknownTopicError(key)
        return await self._write(
            "INSERT INTO topic_subscriptions (topic, subscriber_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(key, s) for s in subscriber_ids],
        )

    async def unsubscribe(self, key: str, subscriber_ids: Sequence[str]) -> int:
        return await self._write(
            "DELETE FROM topic_subscriptions WHERE topic = ? AND subscriber_id = ?",
            [(key, s) for s in subscriber_ids],
        )

    async def set_topic_opt_out(self, key: str, subscriber_id: str, opted_out: bool = True) -> bool:
        """A subscriber's preference: no broadcasts to `key` reach them, even while subscribed
        (`critical` priority still does, as with category opt-outs)."""
        if opted_out:
            sql = "INSERT INTO topic_opt_outs (topic, subscriber_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
        else:
            sql = "DELETE FROM topic_opt_outs WHERE topic = ? AND subscriber_id = ?"
        return await self._write(sql, [(key, subscriber_id)]) > 0

    async def topic_opt_outs(self, key: str, subscriber_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(subscriber_ids), _MAX_IN):
            chunk = list(subscriber_ids[start : start + _MAX_IN])
            rows = await self._rows(
                "SELECT subscriber_id FROM topic_opt_outs "
                f"WHERE topic = ? AND subscriber_id IN ({_marks(len(chunk))})",
                [key, *chunk],
            )
            found.update(r[0] for r in rows)
        return found

    async def subscriber_topics(
        self, subscriber_id: str, after: str = "", limit: int = 100
    ) -> list[SubscribedTopic]:
        """The topics `subscriber_id` is subscribed to, in key order, with their opt-out flag (keyset
        pages: pass the last key as `after`).

        Walks `topics` by key and probes the (topic, subscriber_id) primary keys of the
        subscriptions and opt-outs, so it needs no index by subscriber (no migration): a page
        costs one index probe per topic passed over, whatever the topics' sizes."""
        rows = await self._rows(
            "SELECT t.key, t.name, EXISTS (SELECT 1 FROM topic_opt_outs o "
            "WHERE o.topic = t.key AND o.subscriber_id = ?) FROM topics t "
            "WHERE t.key > ? AND EXISTS (SELECT 1 FROM topic_subscriptions s "
            "WHERE s.topic = t.key AND s.subscriber_id = ?) ORDER BY t.key LIMIT ?",
            [subscriber_id, after, subscriber_id, limit],
        )
        return [SubscribedTopic(key=k, name=n, opted_out=bool(o)) for k, n, o in rows]

    # -- audiences

    async def add_audience(self, broadcast_id: str, recipient_ids: Sequence[str]) -> int:
        """Store (part of) an inline recipient list before its broadcast starts; repeats are ignored."""
        return await self._write(
            "INSERT INTO broadcast_audience (broadcast_id, recipient_id) VALUES (?, ?) "
            "ON CONFLICT DO NOTHING",
            [(broadcast_id, r) for r in recipient_ids],
        )

    def _audience_source(self, broadcast_id: str, audience: Audience) -> tuple[str, str, list[Any]]:
        if audience.kind == "topic":
            return "topic_subscriptions", "subscriber_id", ["topic = ?", audience.topic]
        return "broadcast_audience", "recipient_id", ["broadcast_id = ?", broadcast_id]

    async def audience_page(
        self, broadcast_id: str, audience: Audience, after: str, limit: int, upto: str | None = None
    ) -> list[str]:
        """Recipient ids in (after, upto], in id order, at most `limit`."""
        table, column, (where, value) = self._audience_source(broadcast_id, audience)
        params: list[Any] = [value, after]
        bound = ""
        if upto is not None:
            bound = f" AND {column} <= ?"
            params.append(upto)
        rows = await self._rows(
            f"SELECT {column} FROM {table} WHERE {where} AND {column} > ?{bound} ORDER BY {column} LIMIT ?",
            [*params, limit],
        )
        return [r[0] for r in rows]

    async def audience_size(self, broadcast_id: str, audience: Audience) -> int:
        table, _, (where, value) = self._audience_source(broadcast_id, audience)
        rows = await self._rows(f"SELECT COUNT(*) FROM {table} WHERE {where}", [value])
        return int(rows[0][0])

    async def recipients(self, recipient_ids: Sequence[str]) -> list[Recipient]:
        """Many recipients in one query each thousand; unknown ids are left out."""
        found: list[Recipient] = []
        for start in range(0, len(recipient_ids), _MAX_IN):
            chunk = list(recipient_ids[start : start + _MAX_IN])
            rows = await self._rows(f"{self.recipient_query} WHERE s.id IN ({_marks(len(chunk))})", chunk)
            found.extend(Recipient.model_validate_json(r[0]) for r in rows)
        return found

    # -- outcomes

    async def record_outcomes(self, outcomes: Sequence[RecipientOutcome]) -> None:
        now = datetime.now(UTC)
        await self._write(
            _UPSERT_OUTCOME,
            [
                (o.broadcast_id, o.recipient_id, o.status.value, o.reason, json.dumps(o.delivery_ids), now)
                for o in outcomes
            ],
        )

    async def outcomes(self, broadcast_id: str, recipient_ids: Sequence[str]) -> dict[str, RecipientOutcome]:
        found: dict[str, RecipientOutcome] = {}
        for start in range(0, len(recipient_ids), _MAX_IN):
            chunk = list(recipient_ids[start : start + _MAX_IN])
            rows = await self._rows(
                f"SELECT {_OUTCOME_COLUMNS} FROM broadcast_outcomes "
                f"WHERE broadcast_id = ? AND recipient_id IN ({_marks(len(chunk))})",
                [broadcast_id, *chunk],
            )
            found.update((r[1], _outcome(r)) for r in rows)
        return found

    async def outcome(self, broadcast_id: str, recipient_id: str) -> RecipientOutcome | None:
        return (await self.outcomes(broadcast_id, [recipient_id])).get(recipient_id)

    async def list_outcomes(
        self, broadcast_id: str, status: OutcomeStatus | None = None, after: str = "", limit: int = 100
    ) -> list[RecipientOutcome]:
        """Outcomes in recipient id order (keyset pages: pass the last id as `after`)."""
        where, params = "broadcast_id = ? AND recipient_id > ?", [broadcast_id, after]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        rows = await self._rows(
            f"SELECT {_OUTCOME_COLUMNS} FROM broadcast_outcomes WHERE {where} ORDER BY recipient_id LIMIT ?",
            [*params, limit],
        )
        return [_outcome(r) for r in rows]

    async def count_outcomes(self, broadcast_id: str) -> dict[OutcomeStatus, int]:
        rows = await self._rows(
            "SELECT status, COUNT(*) FROM broadcast_outcomes WHERE broadcast_id = ? GROUP BY status",
            [broadcast_id],
        )
        return {OutcomeStatus(s): int(n) for s, n in rows}
