"""`tidings dev --demo`, the README's first command, run as a user runs it."""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR
from tidings.sandbox.smtp import free_port

pytestmark = pytest.mark.e2e


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_dev_stack_delivers_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    port, ui_port, smtp_port = free_port(), free_port(), free_port()
    receiver_port = free_port()
    env = {**os.environ, "TIDINGS_SMTP__PORT": str(smtp_port), "TIDINGS_RECEIVER__PORT": str(receiver_port)}
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "dev", "--demo", "--data-dir", str(tmp_path / "data"),
        "--port", str(port), "--ui-port", str(ui_port),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not any("demo notification" in line for line in output):
                line = (await process.stdout.readline()).decode()
                assert line, "tidings dev exited early:\n" + "".join(output)
                output.append(line)
        # push through the dev stack's local FCM and APNs sandbox, with the CLI a user would use
        cli_env = {
            **env,
            "TIDINGS_TEMPORAL__ADDRESS": f"127.0.0.1:{port}",
            "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "data" / "tidings.sqlite3"),
        }
        devices = [
            ["pixel", "--platform", "fcm", "--token", "any-fcm-token"],
            ["iphone", "--platform", "apns", "--token", "ab" * 32, "--app", "com.example.tidings"],
        ]
        for device in devices:
            assert (await cli(cli_env, "subscriber", "add-device", "demo-user", *device))[0] == 0
        code, out = await cli(
            cli_env, "send", "--to", "demo-user", "--channel", "push", "--title", "Hi", "--wait"
        )
        assert code == 0, out
        result = json.loads(out)["result"]
        assert result["phase"] == "delivered"
        assert sorted((d["provider"], d["status"]) for d in result["destinations"]) == [
            ("apns", "sent"),
            ("fcm", "sent"),
        ]
        # SMS through the Twilio stand-in, which points its status callbacks at the receiver
        assert (await cli(cli_env, "subscriber", "update", "demo-user", "--phone", "+4915112345678"))[0] == 0
        code, out = await cli(
            cli_env, "send", "--to", "demo-user", "--channel", "sms", "--title", "Hi", "--wait"
        )
        assert code == 0, out
        [sms] = json.loads(out)["result"]["destinations"]
        assert (
            sms["provider"] == "twilio"
            and sms["status"] == "sent"
            and sms["provider_message_id"].startswith("SM")
        )
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output.append(rest.decode())
    text = "".join(output)
    assert process.returncode == 0, text
    assert f"http://127.0.0.1:{ui_port}/namespaces/default/workflows" in text
    assert ": delivered" in text
    assert f"Receiver:         http://127.0.0.1:{receiver_port}" in text
    [saved] = list((tmp_path / "data" / "mail").glob("*.eml"))
    message = email.message_from_bytes(saved.read_bytes())
    assert (
        message["Subject"] == "Welcome to Tidings" and message["To"] == "Demo User <demo@tidings.localhost>"
    )
    assert (tmp_path / "data" / "temporal.sqlite").exists()  # the server's state survives a restart
