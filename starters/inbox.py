"""Reading a recipient's in-app inbox, and telling notifications when their message was read.

Marking a message read updates the inbox and signals `engagement` (kind `read`) to its
notification workflow, which stops any pending escalation. If that workflow has already finished,
the read state is still kept in the inbox.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tidings.activities.inbox import InboxMessage, InboxStore
from tidings.activities.store.factory import store_session
from tidings.models import Engagement, EngagementKind
from tidings.settings import Settings


async def mark_read(
    client: Client, inbox: InboxStore, delivery_id: str, read: bool = True
) -> tuple[InboxMessage, bool]:
    """Mark a message read (or unread); returns it and whether its workflow was told."""
    message = await inbox.mark_read(delivery_id, read)
    if not read:
        return message, False
    return message, await signal_read(client, message)


async def signal_read(client: Client, message: InboxMessage) -> bool:
    """Tell a message's notification it was read; False when the notification has finished."""
    event = Engagement(kind=EngagementKind.read, delivery_id=message.delivery_id, at=datetime.now(UTC))
    try:
        await client.get_workflow_handle(message.workflow_id).signal("engagement", event)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:  # finished notifications answer NOT_FOUND
            raise
        return False
    return True


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


async def _cmd_read(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.workers.worker import connect

    async with store_session(settings.store) as store:
        client = await connect(settings)
        message, told = await mark_read(client, store.inbox, args.delivery_id, args.command_name == "read")
    _print({"message": message.model_dump(mode="json"), "notification_signalled": told})
    return 0


async def _cmd_local(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        inbox = store.inbox
        if args.inbox_command == "list":
            messages = await inbox.list(
                args.recipient_id, page=args.page, page_size=args.page_size, include_archived=args.all
            )
            _print([m.model_dump(mode="json") for m in messages])
        elif args.inbox_command == "count":
            count = await inbox.unread_count(args.recipient_id)
            _print({"recipient_id": args.recipient_id, "unread": count})
        else:
            _print((await inbox.archive(args.delivery_id)).model_dump(mode="json"))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inbox = subparsers.add_parser("inbox", help="a recipient's in-app inbox").add_subparsers(
        dest="inbox_command", required=True
    )
    listing = inbox.add_parser("list", help="messages, unread first, newest first")
    listing.add_argument("recipient_id")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", dest="page_size", type=int, default=20)
    listing.add_argument("--all", action="store_true", help="include archived messages")
    listing.set_defaults(run=_cmd_local)
    count = inbox.add_parser("count", help="unread messages")
    count.add_argument("recipient_id")
    count.set_defaults(run=_cmd_local)
    archive = inbox.add_parser("archive", help="hide a message from the inbox")
    archive.add_argument("delivery_id")
    archive.set_defaults(run=_cmd_local)
    for name, text in (("read", "mark read (and tell its notification)"), ("unread", "mark unread")):
        command = inbox.add_parser(name, help=text)
        command.add_argument("delivery_id")
        command.set_defaults(run=_cmd_read, command_name=name)
