"""`tidings dev --demo`, the README's first command, run as a user runs it.

Every stack here runs on free ports passed through the port flags (never the defaults, which
other test runs and a developer's own stack may hold), with no TIDINGS_* variables: the stack
and the CLI must find each other on their own.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN_DIR
from tests.test_codec_server import payload_texts

pytestmark = pytest.mark.e2e

PORT_FLAGS = ("--port", "--ui-port", "--smtp-port", "--receiver-port", "--api-port")


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


async def temporal(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(BIN_DIR / "temporal"), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


def free_ports(count: int) -> list[int]:
    """Distinct free ports (held together while picking, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def port_flags(ports: list[int]) -> list[str]:
    return [arg for flag, port in zip(PORT_FLAGS, ports, strict=True) for arg in (flag, str(port))]


def clean_env() -> dict[str, str]:
    """The environment without TIDINGS_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}


async def start_dev(tmp_path: Path, ports: list[int], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(BIN_DIR / "tidings"), "dev", *extra, "--data-dir", str(tmp_path / "data"), *port_flags(ports),
        cwd=tmp_path, env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def read_until(process: asyncio.subprocess.Process, marker: str, output: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(90):
        while not any(marker in line for line in output):
            line = (await process.stdout.readline()).decode()
            assert line, "tidings dev exited early:\n" + "".join(output)
            output.append(line)


async def test_dev_stack_delivers_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    ports = free_ports(5)
    port, ui_port, smtp_port, receiver_port, api_port = ports
    process = await start_dev(tmp_path, ports, "--demo")
    output: list[str] = []
    try:
        await read_until(process, "demo notification", output)
        # the CLI reaches this stack on its non-default ports through the printed settings line
        [settings_file] = re.findall(r"export TIDINGS_SETTINGS=(\S+)", "".join(output))
        cli_env = {**clean_env(), "TIDINGS_SETTINGS": settings_file}
        code, out = await cli(cli_env, "subscriber", "add", "ada", "--email", "ada@example.com")
        assert code == 0, out
        code, out = await cli(
            cli_env, "send", "--to", "ada", "--channel", "email", "--title", "Through the CLI", "--wait"
        )
        assert code == 0, out
        assert json.loads(out)["result"]["phase"] == "delivered"
        # the HTTP API's demo page: the inbox widget for the demo subscriber, with a token
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:
            demo_page = await http.get("/demo")
            assert demo_page.status_code == 200 and "<tidings-inbox" in demo_page.text
            [subscriber_token] = re.findall(r'token="([^"]+)"', demo_page.text)
            counts = await http.get(
                "/v1/inbox/counts", headers={"Authorization": f"Bearer {subscriber_token}"}
            )
            assert counts.status_code == 200 and counts.json()["total"] == 0
            assert (await http.get("/static/tidings-inbox.js")).status_code == 200
        # push through the dev stack's local FCM and APNs sandbox, with the CLI a user would use
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
        # payloads are encrypted; the printed codec server decodes them for the temporal CLI
        [demo_id] = re.findall(r"demo notification (\S+):", "".join(output))
        [codec_base] = re.findall(r"--codec-endpoint (http://127\.0\.0\.1:\d+)/", "".join(output))
        token = (tmp_path / "data" / "sandbox" / "codec-server.token").read_text().strip()
        assert token not in "".join(output)
        show = ["workflow", "show", "-w", demo_id, "--address", f"127.0.0.1:{port}", "-o", "json"]
        raw = "\n".join(payload_texts(json.loads(await temporal(*show))))
        assert "demo@tidings.localhost" not in raw and "Welcome to Tidings" not in raw
        decoded = await temporal(*show, "--codec-endpoint", f"{codec_base}/{token}")
        readable = "\n".join(payload_texts(json.loads(decoded)))
        assert "demo@tidings.localhost" in readable and "Welcome to Tidings" in readable
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output.append(rest.decode())
    text = "".join(output)
    assert process.returncode == 0, text
    assert f"http://127.0.0.1:{ui_port}/namespaces/default/workflows" in text
    assert ": delivered" in text
    assert f"Receiver:         http://127.0.0.1:{receiver_port}" in text
    assert f"inbox demo: http://127.0.0.1:{api_port}/demo" in text
    assert f"SMTP on 127.0.0.1:{smtp_port}" in text
    assert f"Temporal server:  127.0.0.1:{port}" in text
    demo, through_cli = sorted((tmp_path / "data" / "mail").glob("*.eml"))
    message = email.message_from_bytes(demo.read_bytes())
    assert (
        message["Subject"] == "Welcome to Tidings" and message["To"] == "Demo User <demo@tidings.localhost>"
    )
    assert email.message_from_bytes(through_cli.read_bytes())["Subject"] == "Through the CLI"
    assert (tmp_path / "data" / "temporal.sqlite").exists()  # the server's state survives a restart
    assert not any(listening(p) for p in ports)


@pytest.mark.parametrize("flag", PORT_FLAGS)
async def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path, flag: str) -> None:
    ports = free_ports(5)
    taken = ports[PORT_FLAGS.index(flag)]
    with socket.socket() as held:  # as a stack left running in a closed terminal would hold it
        held.bind(("127.0.0.1", taken))
        held.listen()
        process = await start_dev(tmp_path, ports, "--demo")
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 2, text
    assert f"port {taken} " in text and "already in use" in text and f"{flag} PORT" in text
    assert "stack is up" not in text and "Traceback" not in text
    assert not (tmp_path / "data").exists()  # nothing was started
    assert not any(listening(p) for p in ports)


async def test_two_flags_naming_one_port_are_refused(tmp_path: Path) -> None:
    port, ui_port, smtp_port = free_ports(3)
    process = await start_dev(tmp_path, [port, ui_port, smtp_port, smtp_port, free_ports(1)[0]])
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert f"--smtp-port and --receiver-port both name port {smtp_port}" in out.decode()


def test_a_bad_port_flag_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN_DIR / "tidings"), "dev", "--smtp-port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--smtp-port: port 70000 is outside 1-65535" in done.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
async def test_hangup_and_terminate_stop_every_child(tmp_path: Path, stop_signal: signal.Signals) -> None:
    """SIGHUP (the terminal closed) and SIGTERM stop the stack as Ctrl-C does: every port freed."""
    ports = free_ports(5)
    process = await start_dev(tmp_path, ports)
    output: list[str] = []
    try:
        await read_until(process, "Press Ctrl-C to stop", output)
        assert all(listening(p) for p in ports)
    finally:
        process.send_signal(stop_signal)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    text = "".join(output) + rest.decode()
    assert process.returncode == 0, text
    assert "stopping: worker, API, receiver, sandboxes, email sink, Temporal server" in text
    assert not any(listening(p) for p in ports)
    # so the next start on the same ports and data comes up (rather than finding the old server)
    again = await start_dev(tmp_path, ports)
    output = []
    try:
        await read_until(again, "Press Ctrl-C to stop", output)
    finally:
        again.send_signal(signal.SIGINT)
        await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0


# Runs the CLI as if the dev extra's packages were not installed (they are, in the test venv).
BLOCK_DEV_EXTRA = """
import sys
from importlib.abc import MetaPathFinder

class Uninstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"hypercorn", "aiosmtpd", "h2"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
from tidings.starters.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_dev_without_the_dev_extra_names_the_install_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_DEV_EXTRA, "dev", "--data-dir", str(tmp_path / "data"),
         *port_flags(free_ports(5))],
        capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "missing: aiosmtpd, hypercorn, h2" in done.stderr
    assert "pip install 'tidings[dev]'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "data").exists()
