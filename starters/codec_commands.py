"""`tidings codec generate-key`, `tidings codec-server` and `tidings find --recipient`."""

from __future__ import annotations

import argparse
import json

from tidings.codec import generate_key
from tidings.models import Phase
from tidings.settings import Settings


def _cmd_generate_key(args: argparse.Namespace, settings: Settings) -> int:
    print(generate_key())
    return 0


async def _cmd_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.starters.codec_server import run_codec_server

    await run_codec_server(settings)
    return 0


async def _cmd_find(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.starters.client import TidingsClient

    client = await TidingsClient.connect(settings)
    status = Phase(args.status) if args.status else None
    ids = await client.find(args.recipient, status, limit=args.limit)
    print(json.dumps({"recipient_id": args.recipient, "notifications": ids}), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    codec = subparsers.add_parser("codec", help="payload encryption keys").add_subparsers(
        dest="codec_command", required=True
    )
    codec.add_parser("generate-key", help="print a new AES-256 key (base64) for codec.keys").set_defaults(
        sync=_cmd_generate_key
    )
    subparsers.add_parser(
        "codec-server", help="serve /encode and /decode for the Web UI and temporal --codec-endpoint"
    ).set_defaults(run=_cmd_codec_server)
    find = subparsers.add_parser(
        "find", help="list a recipient's notification ids (RecipientId, hashed when so configured)"
    )
    find.add_argument("--recipient", required=True, metavar="RECIPIENT_ID")
    find.add_argument("--status", choices=[p.value for p in Phase])
    find.add_argument("--limit", type=int, default=100)
    find.set_defaults(run=_cmd_find)
