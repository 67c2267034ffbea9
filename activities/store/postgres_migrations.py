"""Versioned migrations of the PostgreSQL store, applied in order by `tidings store migrate`.

Each migration runs once, in the same transaction as the row recording it in
`schema_migrations`, under an advisory lock: workers starting together migrate once, and a
failed migration leaves the database at the previous version. Never edit a released migration;
add the next one.
"""

from __future__ import annotations

from typing import NamedTuple

from tidings.activities.store.broadcast_tables import MIGRATION_3


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tables: subscribers, preferences, devices, inbox, seen callbacks, late receipts",
        """
        CREATE TABLE subscribers (
            id text PRIMARY KEY,
            name text,
            email text,
            phone text,
            webhook_url text,
            webhook_disabled text,
            slack_webhook_url text,
            slack_channel text,
            timezone text NOT NULL,
            locale text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE preferences (
            subscriber_id text PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
            opted_out_channels jsonb NOT NULL DEFAULT '[]',
            opted_out_categories jsonb NOT NULL DEFAULT '[]',
            opted_out_category_channels jsonb NOT NULL DEFAULT '{}',
            quiet_hours_start time,
            quiet_hours_end time
        );
        CREATE TABLE devices (
            subscriber_id text NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            device_id text NOT NULL,
            position integer NOT NULL,
            platform text NOT NULL,
            token text,
            subscription jsonb,
            app text,
            active boolean NOT NULL DEFAULT true,
            registered_at timestamptz,
            deactivated_reason text,
            PRIMARY KEY (subscriber_id, device_id)
        );
        CREATE TABLE inbox (
            delivery_id text PRIMARY KEY,
            recipient_id text NOT NULL,
            notification_id text NOT NULL,
            workflow_id text NOT NULL,
            category text,
            title text,
            body text,
            url text,
            data jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL,
            read_at timestamptz,
            archived_at timestamptz
        );
        CREATE TABLE seen_callbacks (
            key text PRIMARY KEY,
            seen_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE late_receipts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workflow_id text NOT NULL,
            delivery_id text,
            provider_message_id text,
            status text NOT NULL,
            error_code text,
            at timestamptz NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX late_receipts_by_workflow ON late_receipts (workflow_id);
        """,
    ),
    Migration(
        2,
        "indexes for the lookups: devices by token, inbox by recipient and read state, receipts by ids",
        """
        CREATE INDEX devices_by_token ON devices (token);
        CREATE INDEX inbox_by_recipient ON inbox (recipient_id, (read_at IS NOT NULL), created_at DESC)
            WHERE archived_at IS NULL;
        CREATE INDEX inbox_by_recipient_all ON inbox (recipient_id, created_at DESC);
        CREATE INDEX late_receipts_by_delivery ON late_receipts (delivery_id);
        CREATE INDEX late_receipts_by_provider_message ON late_receipts (provider_message_id);
        """,
    ),
    Migration(
        3,
        "broadcasts: topics, topic subscriptions and opt-outs, broadcast audiences and outcomes",
        MIGRATION_3.format(ts="timestamptz", c='COLLATE "C"'),
    ),
    Migration(
        4,
        "the HTTP API: inbox seen state and keyset indexes, API keys",
        """
        ALTER TABLE inbox ADD COLUMN seen_at timestamptz;
        CREATE INDEX inbox_keyset ON inbox (recipient_id, created_at DESC, delivery_id DESC);
        CREATE INDEX inbox_unread ON inbox (recipient_id, created_at DESC, delivery_id DESC)
            WHERE read_at IS NULL AND archived_at IS NULL;
        CREATE INDEX inbox_unseen ON inbox (recipient_id) WHERE seen_at IS NULL AND archived_at IS NULL;
        CREATE TABLE api_keys (
            id text PRIMARY KEY,
            name text NOT NULL,
            secret_sha256 text NOT NULL,
            scopes jsonb NOT NULL,
            created_at timestamptz NOT NULL,
            revoked_at timestamptz,
            last_used_at timestamptz
        );
        """,
    ),
    Migration(
        5,
        "send reservations (throttles, frequency caps) and recipients' frequency caps",
        """
        CREATE TABLE send_reservations (
            notification_id text NOT NULL,
            counter text NOT NULL,
            recipient_id text NOT NULL,
            reserved_at timestamptz NOT NULL,
            PRIMARY KEY (notification_id, counter)
        );
        CREATE INDEX send_reservations_by_counter ON send_reservations (recipient_id, counter, reserved_at);
        ALTER TABLE preferences ADD COLUMN frequency_caps jsonb NOT NULL DEFAULT '{}';
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
# pg_advisory_xact_lock key: "tidings" in ASCII, so other applications sharing the server differ.
LOCK_KEY = 0x74696469_6E6773
# pg_advisory_xact_lock(COUNTER_LOCK_SPACE, hashtext(recipient id)): send reservations of one
# recipient are taken one after another ("tdgc" in ASCII, a 32-bit key space of its own).
COUNTER_LOCK_SPACE = 0x74646763
