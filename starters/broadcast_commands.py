"""`tidings topic ...`, `tidings broadcast ...`, and the broadcast half of `tidings send`
(`--topic T` or `--recipients-file FILE`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from tidings.activities.broadcast import cancel_deferred_notifications
from tidings.activities.store.factory import store_session
from tidings.models.broadcasts import FINAL_BROADCAST_PHASES, BroadcastProgress, OutcomeStatus, Topic
from tidings.settings import Settings
from tidings.starters.broadcasts import BroadcastNotFoundError, InvalidBroadcastError, parse_broadcast
from tidings.starters.client import TidingsClient

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = 0, 2, 3


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def read_recipients_file(path: str) -> list[str]:
    """One recipient id a line; blank lines and lines starting with '#' are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidBroadcastError(f"--recipients-file: cannot read {path}: {exc.strerror}") from None
    ids = [line.strip() for line in text.splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise InvalidBroadcastError(f"--recipients-file: {path} lists no recipient ids")
    return ids


def broadcast_request(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    """The BroadcastRequest of `tidings send --topic/--recipients-file`, from send's other flags."""
    if args.to:
        raise InvalidBroadcastError(
            "--to sends to a few recipients; leave it out with --topic or --recipients-file"
        )
    if args.topic and args.recipients_file:
        raise InvalidBroadcastError("say --topic or --recipients-file, not both")
    request = {k: v for k, v in request.items() if k != "recipients"}
    request["id"] = request.get("id") or uuid.uuid4().hex
    if args.topic:
        request["topic"] = args.topic
    else:
        request["recipients"] = read_recipients_file(args.recipients_file)
    for field in ("rate", "batch_size", "window"):
        if getattr(args, field) is not None:
            request[field] = getattr(args, field)
    return request


async def send_broadcast(args: argparse.Namespace, settings: Settings, request: dict[str, Any]) -> int:
    parsed = parse_broadcast(broadcast_request(args, request), settings.templates.directory)
    client = await TidingsClient.connect(settings)
    async with store_session(settings.store) as store:
        handle = await client.broadcast(parsed, store)
    line: dict[str, Any] = {
        "broadcast_id": handle.broadcast_id,
        "workflow_id": handle.workflow_id,
        "existing": handle.existing,
    }
    if args.wait:
        line["result"] = (await handle.result()).model_dump(mode="json")
    _print(line)
    return EXIT_OK


# ----------------------------------------------------------------- topics


async def _topic_create(args: argparse.Namespace, settings: Settings) -> int:
    topic = Topic(key=args.key, name=args.name)
    async with store_session(settings.store) as store:
        created = await store.broadcasts.create_topic(topic)
    _print({"key": topic.key, "created": created})
    return EXIT_OK


async def _topic_list(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        topics = await store.broadcasts.list_topics()
    _print([t.model_dump(mode="json", exclude_none=True) for t in topics])
    return EXIT_OK


async def _topic_show(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        topic = await store.broadcasts.get_topic(args.key)
        if topic is None:
            raise LookupError(f"no topic {args.key!r}; `tidings topic list` shows them")
        first = await store.broadcasts.audience_page("", _audience(args.key), "", args.limit)
    _print({**topic.model_dump(mode="json"), "first_subscribers": first})
    return EXIT_OK


async def _topic_delete(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        deleted = await store.broadcasts.delete_topic(args.key)
    _print({"key": args.key, "deleted": deleted})
    return EXIT_OK if deleted else EXIT_REFUSED


async def _topic_subscribe(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        if args.unsubscribe:
            changed = await store.broadcasts.unsubscribe(args.key, args.subscribers)
        else:
            changed = await store.broadcasts.subscribe(args.key, args.subscribers)
    _print({"key": args.key, "unsubscribed" if args.unsubscribe else "subscribed": changed})
    return EXIT_OK


async def _topic_opt_out(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        changed = await store.broadcasts.set_topic_opt_out(args.key, args.subscriber, not args.undo)
    _print({"key": args.key, "subscriber": args.subscriber, "opted_out": not args.undo, "changed": changed})
    return EXIT_OK


def _audience(topic: str) -> Any:
    from tidings.models.broadcasts import Audience

    return Audience(kind="topic", topic=topic)


# ----------------------------------------------------------------- broadcasts


def progress_line(p: BroadcastProgress, width: int = 30) -> str:
    done = p.total - p.pending
    filled = width * done // p.total if p.total else width
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{p.total} {p.phase.value}: sent {p.sent}, "
        f"failed {p.failed}, skipped {p.skipped}, deferred {p.deferred}"
    )


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    if args.recipient or args.failed:
        async with store_session(settings.store) as store:
            if args.recipient:
                outcome = await store.broadcasts.outcome(args.id, args.recipient)
                if outcome is None:
                    raise LookupError(f"broadcast {args.id!r} has no outcome for {args.recipient!r} (yet)")
                _print(outcome.model_dump(mode="json"))
                return EXIT_OK
            after = ""
            while page := await store.broadcasts.list_outcomes(args.id, OutcomeStatus.failed, after, 500):
                for outcome in page:
                    print(json.dumps(outcome.model_dump(mode="json"), ensure_ascii=False))
                after = page[-1].recipient_id
        return EXIT_OK
    client = await TidingsClient.connect(settings)
    handle = client.broadcast_handle(args.id)
    progress = await handle.progress()
    while args.follow and progress.phase not in FINAL_BROADCAST_PHASES:
        print("\r" + progress_line(progress), end="", file=sys.stderr, flush=True)
        await asyncio.sleep(args.interval)
        progress = await handle.progress()
    if args.follow:
        print("\r" + progress_line(progress), file=sys.stderr, flush=True)
    _print(progress.model_dump(mode="json"))
    return EXIT_OK


async def _control(args: argparse.Namespace, settings: Settings) -> int:
    client = await TidingsClient.connect(settings)
    handle = client.broadcast_handle(args.id)
    if args.action == "pause":
        outcome = await handle.pause()
    elif args.action == "resume":
        outcome = await handle.resume()
    elif args.action == "cancel":
        return await _cancel(args, settings, client)
    else:
        outcome = await handle.set_rate(None if args.rate == "unlimited" else _rate(args.rate))
    _print(outcome.model_dump(mode="json"))
    return EXIT_OK if outcome.accepted else EXIT_REFUSED


async def _cancel(args: argparse.Namespace, settings: Settings, client: TidingsClient) -> int:
    """Cancel a running broadcast (which cancels its deferred recipients itself); for a finished
    one, cancel the recipients it deferred for quiet hours that are still waiting."""
    try:
        outcome = await client.broadcast_handle(args.id).cancel(args.reason)
    except BroadcastNotFoundError:
        async with store_session(settings.store) as store:
            waiting = await cancel_deferred_notifications(client.client, store, args.id, args.reason)
        _print(
            {"accepted": waiting > 0, "reason": "broadcast already finished", "deferred_cancelled": waiting}
        )
        return EXIT_OK if waiting else EXIT_REFUSED
    _print(outcome.model_dump(mode="json"))
    return EXIT_OK if outcome.accepted else EXIT_REFUSED


def _rate(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidBroadcastError(
            f"a rate is deliveries per second or 'unlimited', not {value!r}"
        ) from None


def add_send_flags(send: argparse.ArgumentParser) -> None:
    send.add_argument("--topic", help="broadcast to every subscriber of this topic (one BroadcastWorkflow)")
    send.add_argument(
        "--recipients-file",
        dest="recipients_file",
        metavar="FILE",
        help="broadcast to the ids in FILE, one a line",
    )
    send.add_argument(
        "--rate", type=float, help="broadcast: deliveries per second (changeable while it runs)"
    )
    send.add_argument(
        "--batch-size", dest="batch_size", type=int, help="broadcast: recipients per batch (200)"
    )
    send.add_argument("--window", type=int, help="broadcast: batches running at once (4)")


def register(sub: Any) -> None:
    topic = sub.add_parser("topic", help="manage topics (audiences for broadcasts)").add_subparsers(
        dest="topic_command", required=True
    )
    create = topic.add_parser("create", help="create a topic")
    create.add_argument("key")
    create.add_argument("--name")
    create.set_defaults(run=_topic_create)
    topic.add_parser("list", help="list topics").set_defaults(run=_topic_list)
    show = topic.add_parser("show", help="a topic, its subscriber count and first subscribers")
    show.add_argument("key")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(run=_topic_show)
    delete = topic.add_parser("delete", help="delete a topic and its subscriptions")
    delete.add_argument("key")
    delete.set_defaults(run=_topic_delete)
    for name, unsubscribe in (("subscribe", False), ("unsubscribe", True)):
        p = topic.add_parser(name, help=f"{name} subscribers")
        p.add_argument("key")
        p.add_argument("subscribers", nargs="+", metavar="SUBSCRIBER_ID")
        p.set_defaults(run=_topic_subscribe, unsubscribe=unsubscribe)
    opt_out = topic.add_parser("opt-out", help="a subscriber's preference: no broadcasts to this topic")
    opt_out.add_argument("key")
    opt_out.add_argument("subscriber")
    opt_out.add_argument("--undo", action="store_true", help="opt back in")
    opt_out.set_defaults(run=_topic_opt_out)

    broadcast = sub.add_parser("broadcast", help="watch and control broadcasts").add_subparsers(
        dest="broadcast_command", required=True
    )
    status = broadcast.add_parser(
        "status", help="progress as JSON; or one recipient's outcome; or the failed"
    )
    status.add_argument("id", help="broadcast id (workflow id without 'broadcast-')")
    status.add_argument("--follow", action="store_true", help="show a progress bar until it ends")
    status.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    status.add_argument("--recipient", metavar="RECIPIENT_ID", help="this recipient's outcome")
    status.add_argument("--failed", action="store_true", help="every failed recipient, one JSON line each")
    status.set_defaults(run=_status)
    for action in ("pause", "resume", "cancel"):
        p = broadcast.add_parser(action, help=f"{action} a running broadcast")
        p.add_argument("id")
        if action == "cancel":
            p.add_argument("--reason")
        p.set_defaults(run=_control, action=action)
    rate = broadcast.add_parser("rate", help="change the rate limit: deliveries per second, or 'unlimited'")
    rate.add_argument("id")
    rate.add_argument("rate")
    rate.set_defaults(run=_control, action="rate")
