"""`tidings api` (serve the HTTP API) and `tidings api-key create|list|revoke`.

`create` prints the key once: only its SHA-256 is stored, so a lost key cannot be shown again
(revoke it and create another).
"""

from __future__ import annotations

import argparse
import json

from tidings.activities.store.factory import store_session
from tidings.api.keys import Scope, new_key
from tidings.settings import Settings


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


async def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from tidings.api.server import run_api

    await run_api(settings)
    return 0


async def _cmd_key(args: argparse.Namespace, settings: Settings) -> int:
    async with store_session(settings.store) as store:
        keys = store.api_keys
        if args.key_command == "create":
            text, record = new_key(args.name, [Scope(s) for s in args.scope or []])
            await keys.create(record)
            _print({"id": record.id, "name": record.name, "scopes": record.scopes, "key": text})
            print("# the key is shown only this once: store it now", flush=True)
        elif args.key_command == "list":
            _print([r.model_dump(mode="json", exclude={"secret_sha256"}) for r in await keys.list()])
        else:
            if not await keys.revoke(args.id):
                raise LookupError(f"no unrevoked API key with id {args.id!r} (see `tidings api-key list`)")
            _print({"id": args.id, "revoked": True})
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = subparsers.add_parser("api", help="run the HTTP API (services, inboxes, preference center)")
    api.set_defaults(run=_cmd_api)
    keys = subparsers.add_parser("api-key", help="API keys for the HTTP API").add_subparsers(
        dest="key_command", required=True
    )
    create = keys.add_parser("create", help="create a key (printed once)")
    create.add_argument("name", help="what the key is for, e.g. billing-service")
    create.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        required=True,
        help="repeatable: send, read, subscribers",
    )
    create.set_defaults(run=_cmd_key)
    keys.add_parser("list", help="keys (never their secrets)").set_defaults(run=_cmd_key)
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id")
    revoke.set_defaults(run=_cmd_key)
