"""Standard Webhooks signatures: how receivers verify a webhook came from us, unaltered.

The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; the signature is
`v1,` + base64(HMAC-SHA256(secret, content)). Secrets are written `whsec_` + base64 of the key
bytes. Several space-separated signatures let a receiver rotate secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_...` secret; a clear error (without the secret) when malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook signing secrets start with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook signing secret after 'whsec_' is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"webhook signing secrets decode to 24-64 bytes, this one to {len(key)}")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
