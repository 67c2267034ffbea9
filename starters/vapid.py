"""`tidings vapid generate`: a new VAPID key pair for Web Push.

Prints the private key in the form `webpush.vapid_private_key` takes (base64url of the raw
32-byte P-256 key; keep it secret) and the public key as a browser's `applicationServerKey`
wants it (base64url of the 65-byte uncompressed point).
"""

from __future__ import annotations

import argparse
import base64
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.settings import Settings


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "vapid_private_key": _b64(key.private_numbers().private_value.to_bytes(32, "big")),
        "application_server_key": _b64(public),
    }


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(generate(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vapid = subparsers.add_parser("vapid", help="VAPID keys for Web Push").add_subparsers(
        dest="vapid_command", required=True
    )
    vapid.add_parser("generate", help="print a new key pair").set_defaults(sync=_cmd_generate)
