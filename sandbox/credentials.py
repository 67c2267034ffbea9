"""Key material for the stand-ins: PEM encodings and a service-account file's content."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def service_account(
    project_id: str, client_email: str, key: rsa.RSAPrivateKey, token_uri: str
) -> dict[str, Any]:
    """A Google service-account JSON whose token endpoint is `token_uri` (a local stand-in)."""
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "sandbox",
        "private_key": private_pem(key),
        "client_email": client_email,
        "client_id": "0",
        "token_uri": token_uri,
    }
