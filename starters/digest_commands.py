"""`tidings digest status|cancel|reschedule RECIPIENT KEY`: a recipient's digest from the shell.

Adding to a digest is `tidings send ... --digest-key KEY --digest-window PT10M` (see cli.py).
Exit codes as for notifications: 0 done, 3 refused (e.g. the digest is already being sent).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from tidings.settings import Settings

EXIT_OK = 0
EXIT_REFUSED = 3


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


async def _cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.starters.client import TidingsClient

    client = await TidingsClient.connect(settings)
    digest = client.digest(args.recipient_id, args.key)
    if args.digest_command == "status":
        state = await digest.status()
        _print({**state.model_dump(mode="json"), "count": state.count, "summary": state.summary})
        return EXIT_OK
    if args.digest_command == "cancel":
        outcome = await (digest.cancel_item(args.item) if args.item else digest.cancel(args.reason))
    else:
        try:
            when = datetime.fromisoformat(args.closes_at)
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {args.closes_at!r}") from None
        outcome = await digest.reschedule(when)
    _print(outcome.model_dump(mode="json"))
    return EXIT_OK if outcome.accepted else EXIT_REFUSED


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    digest = subparsers.add_parser("digest", help="a recipient's digest for a key").add_subparsers(
        dest="digest_command", required=True
    )
    status = digest.add_parser("status", help="the collecting digest and its items, or the last one sent")
    cancel = digest.add_parser("cancel", help="cancel one item (--item) or the whole digest")
    cancel.add_argument("--item", metavar="ITEM_ID", help="the item's id, <request id>~<recipient id>")
    cancel.add_argument("--reason")
    reschedule = digest.add_parser("reschedule", help="close the collecting window at another time")
    for command in (status, cancel, reschedule):
        command.add_argument("recipient_id")
        command.add_argument("key")
        command.set_defaults(run=_cmd_digest)
    reschedule.add_argument("closes_at", help="ISO 8601 with offset, e.g. 2030-01-01T09:00:00+00:00")
