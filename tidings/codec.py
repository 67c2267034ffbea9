"""Payload encryption: an AES-256-GCM payload codec, and the keyed hash of recipient ids.

With `codec.enabled`, every payload a Tidings client or worker writes through Temporal (workflow
and activity inputs and results, signals, updates, queries, memo, and the user metadata the Web
UI shows: static summary and details, activity summaries, current details) is encrypted before
it leaves the process. Each payload becomes

    metadata: {"encoding": "binary/encrypted", "encryption-key-id": "<key id>"}
    data:     12-byte random nonce || AES-256-GCM(key, nonce, serialized original payload,
                                                  associated data = key id)

so the key id is authenticated with the ciphertext (moving a payload under another id fails).
Several keys may be configured; the active one encrypts, all of them decrypt, so keys rotate
without rewriting histories. A payload that is not encrypted (written before the codec was on)
decodes unchanged. A payload under a key that is not configured, or whose tag does not verify,
raises `CodecError` naming the key id (never the key): it never decodes to garbage.

Search attributes are not payloads Temporal lets a codec touch: see `recipient_search_value`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from tidings.payloads import compact_data_converter

if TYPE_CHECKING:
    from tidings.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class CodecError(ValueError):
    """A payload cannot be decrypted; the message names the key id, never key material."""


def generate_key() -> str:
    """A fresh 256-bit key, base64 (the form `codec.keys` takes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def decode_key(value: str) -> bytes:
    """A configured key as bytes; ValueError (without the value) unless it is base64 of 32 bytes."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (make one with `tidings codec generate-key`)") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"must be {KEY_BYTES} bytes (AES-256), base64; make one with `tidings codec generate-key`"
        )
    return raw


class AesGcmCodec(PayloadCodec):
    """Encrypts with the active key, decrypts with any configured key (see the module docstring)."""

    def __init__(self, keys: Mapping[str, bytes], active_key: str) -> None:
        if active_key not in keys:
            raise ValueError(f"the active key {active_key!r} is not among the configured keys")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key = active_key

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.active_key
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not encrypted: written before the codec was turned on
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise CodecError(f"an encrypted payload carries no {KEY_ID_METADATA} in its metadata")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"payload encrypted with key id {key_id!r}, which is not configured "
                f"(codec.keys has {', '.join(repr(k) for k in self._ciphers)}); add that key to decrypt it"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecError(
                f"payload encrypted with key id {key_id!r} does not decrypt: the configured key of "
                "that id is not the one it was written with, or the payload was altered"
            ) from None
        decoded = Payload()
        try:
            decoded.ParseFromString(plain)
        except DecodeError:
            raise CodecError(f"payload under key id {key_id!r} decrypted to no valid payload") from None
        return decoded


def codec_from_keys(keys: Mapping[str, str], active_key: str) -> AesGcmCodec:
    return AesGcmCodec({key_id: decode_key(value) for key_id, value in keys.items()}, active_key)


def with_codec(codec: PayloadCodec | None) -> DataConverter:
    """The data converter every Tidings process uses (pydantic JSON without default values, see
    tidings.payloads), with `codec` when given.

    With the codec, failure messages and stack traces are moved into an encoded payload too
    (Temporal's encoded failure attributes), so a provider's error text (which may quote an
    address) is encrypted like everything else; readers with the codec see them as before.
    """
    if codec is None:
        return compact_data_converter
    return dataclasses.replace(
        compact_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def recipient_id_hash(key: bytes, recipient_id: str) -> str:
    """HMAC-SHA256 of a recipient id, hex: what `RecipientId` holds with codec.hash_recipient_ids."""
    return hmac.new(key, recipient_id.encode(), hashlib.sha256).hexdigest()


def codec_for(settings: Settings) -> AesGcmCodec | None:
    """The codec `settings` ask for, or None when `codec.enabled` is off."""
    c = settings.codec
    if not c.enabled:
        return None
    return codec_from_keys({k: v.get_secret_value() for k, v in c.keys.items()}, c.active_key or "")


def data_converter_for(settings: Settings) -> DataConverter:
    """The data converter every client, worker and replayer of these settings must share."""
    return with_codec(codec_for(settings))


def recipient_hash_key(settings: Settings) -> bytes | None:
    """The key `RecipientId` is hashed with, or None when it holds the plain recipient id."""
    c = settings.codec
    if not c.hash_recipient_ids or c.recipient_id_hash_key is None:
        return None
    return c.recipient_id_hash_key.get_secret_value().encode()


def recipient_search_value(key: bytes | None, recipient_id: str) -> str:
    """What the `RecipientId` search attribute holds for `recipient_id` (and what to query for)."""
    return recipient_id if key is None else recipient_id_hash(key, recipient_id)
