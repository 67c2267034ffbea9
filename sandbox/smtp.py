"""A local SMTP server that keeps every email it receives.

`tidings dev` runs it so a new user sees delivered email with no credentials (saved as .eml
files under the data folder); tests run it to check the exact message a recipient would get
and to script refusals (`refuse["bad@example.com"] = "550 5.1.1 no such user"`).
"""

from __future__ import annotations

import email
import email.policy
import socket
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self._sink.recipients_asked.append(address)
        refusal = self._sink.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink.received.append(message)
        self._sink.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        if self._sink.save_dir is not None:
            self._sink.saved.append(save_new(self._sink.save_dir, raw))
        return "250 Message accepted for delivery"


def _number(path: Path) -> int:
    """`00042.eml` → 42; anything else → 0 (not one of ours)."""
    return int(path.stem) if path.stem.isdigit() else 0


def save_new(folder: Path, raw: bytes) -> Path:
    """Save one email as the next `NNNNN.eml` in `folder`, never replacing a file.

    Numbering continues after the highest number already there, so a restarted `tidings dev`
    keeps the emails of earlier runs; the file is created exclusively, so one that appeared in
    the meantime (another sink on the same folder) is skipped rather than overwritten.
    """
    folder.mkdir(parents=True, exist_ok=True)
    number = max((_number(p) for p in folder.glob("*.eml")), default=0)
    while True:
        number += 1
        path = folder / f"{number:05d}.eml"
        try:
            with path.open("xb") as file:
                file.write(raw)
        except FileExistsError:
            continue
        return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        save_dir: Path | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        """With `credentials`, AUTH (PLAIN/LOGIN) is required and checked, as a real relay does.

        AUTH is allowed without TLS here because the sink only listens on loopback.
        """
        self.host = host
        self.port = port or free_port(host)
        self.save_dir = save_dir
        self.received: list[EmailMessage] = []
        self.saved: list[Path] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, str] = {}
        self.recipients_asked: list[str] = []
        """Every RCPT TO address, accepted or refused: how often a sender tried this sink."""
        self.failed_logins = 0
        auth: dict[str, Any] = {}
        if credentials is not None:
            auth = {
                "auth_required": True,
                "auth_require_tls": False,
                "authenticator": self._authenticator(credentials),
            }
        self._controller = Controller(_Handler(self), hostname=host, port=self.port, **auth)

    def _authenticator(self, credentials: tuple[str, str]) -> Any:
        expected = (credentials[0].encode(), credentials[1].encode())

        def check(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == expected
            if not ok:
                self.failed_logins += 1
            return AuthResult(success=ok, handled=False)

        return check

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
