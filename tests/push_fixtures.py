"""Keys, credentials files and sandboxes for the push tests (FCM and APNs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.credentials import private_pem, public_pem, service_account
from tidings.sandbox.fcm import FcmSandbox
from tidings.settings import ApnsSettings, FcmSettings

PROJECT = "tidings-test"
CLIENT_EMAIL = "sender@tidings-test.iam.gserviceaccount.com"
TEAM_ID = "TEAM123456"
KEY_ID = "KEY7654321"
TOPIC = "com.example.tidings"


@pytest_asyncio.fixture
async def fcm_sandbox(tmp_path: Path) -> AsyncIterator[tuple[FcmSandbox, FcmSettings]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sandbox = await FcmSandbox(PROJECT, CLIENT_EMAIL, public_pem(key)).start()
    account = service_account(PROJECT, CLIENT_EMAIL, key, sandbox.token_url)
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    settings = FcmSettings(project_id=PROJECT, service_account_file=path, base_url=sandbox.url, timeout=5)
    try:
        yield sandbox, settings
    finally:
        await sandbox.stop()


@pytest_asyncio.fixture
async def apns_sandbox(tmp_path: Path) -> AsyncIterator[tuple[ApnsSandbox, ApnsSettings]]:
    key = ec.generate_private_key(ec.SECP256R1())
    sandbox = await ApnsSandbox(TEAM_ID, KEY_ID, public_pem(key), topics={TOPIC}).start()
    path = tmp_path / "AuthKey.p8"
    path.write_text(private_pem(key))
    settings = ApnsSettings(
        team_id=TEAM_ID, key_id=KEY_ID, private_key_file=path, topic=TOPIC, base_url=sandbox.url, timeout=5
    )
    try:
        yield sandbox, settings
    finally:
        await sandbox.stop()
