"""Email over SMTP with aiosmtplib.

Each message carries a stable `Message-ID` derived from the delivery id, so a retry after an
ambiguous failure (connection lost after DATA) produces the same id and receiving systems can
discard the duplicate.
"""

from __future__ import annotations

import email.policy as email_policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr

import aiosmtplib

from tidings.activities.providers.base import (
    PermanentDeliveryError,
    ProviderReceipt,
    TransientDeliveryError,
)
from tidings.activities.rendering import RenderedMessage
from tidings.models import DeliveryInput
from tidings.settings import SmtpSettings


def message_id_for(delivery_id: str, from_address: str) -> str:
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "tidings.localhost"
    return f"<{delivery_id}@{domain}>"


MAX_HEADER_LINE = 998
"""RFC 5322 §2.1.1: a header line must not exceed 998 characters (plus CRLF)."""

UNFOLDED_HEADERS = frozenset({"list-unsubscribe"})
"""Headers sent verbatim, on one line. `List-Unsubscribe` holds `<https://…>`: the email package
would fold a value that long with no spaces by turning it into RFC 2047 encoded words
(`=?utf-8?q?=3Chttps=3A//…`), which no mail client reads as a URL, so one-click unsubscribe
(RFC 8058) would never be offered."""


class UnfoldedHeader(str):
    """A header value that `email` writes exactly as given, on one line (see `UNFOLDED_HEADERS`).

    The email policies store and fold any value that has a `name` attribute as a ready-made header
    object (`EmailPolicy.header_store_parse` / `fold`), so this is folded by `fold` below and never
    re-encoded. Only printable ASCII that fits one header line is accepted.
    """

    name: str

    def __new__(cls, name: str, value: str) -> UnfoldedHeader:
        if not (value.isascii() and value.isprintable()):
            raise ValueError(f"{name} must be printable ASCII")
        if len(name) + 2 + len(value) > MAX_HEADER_LINE:
            raise ValueError(f"{name} is longer than the {MAX_HEADER_LINE} characters a header line may hold")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def build_email(delivery: DeliveryInput, message: RenderedMessage, from_address: str) -> EmailMessage:
    """Build the MIME message, or refuse it with a permanent error.

    A value that cannot go into a header (a line break in the subject or the recipient's name: header
    injection; an unencodable character; an over-long unsubscribe URL) will fail the same way on
    every attempt, so it is a `PermanentDeliveryError`, never a retried transient one. The message
    is serialised once here so that such errors surface before connecting to the server.
    """
    subject = message.subject or message.title or ""
    if "\r" in subject or "\n" in subject:
        raise PermanentDeliveryError("email subject contains a line break; refusing (header injection)")
    for name, value in message.headers.items():
        if "\r" in value or "\n" in value:
            raise PermanentDeliveryError(f"email header {name} contains a line break; refusing")
    email = EmailMessage()
    field = "From"
    try:
        email["From"] = from_address
        field = "To"
        email["To"] = Address(
            display_name=delivery.recipient.name or "", addr_spec=delivery.destination.address
        )
        field = "Subject"
        email["Subject"] = subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = message_id_for(delivery.delivery_id, from_address)
        email["X-Tidings-Delivery-Id"] = delivery.delivery_id
        field = "body"
        email.set_content(message.text or message.body or "")
        if message.html:
            email.add_alternative(message.html, subtype="html")
        for name, value in message.headers.items():
            field = name
            email[name] = UnfoldedHeader(name, value) if name.lower() in UNFOLDED_HEADERS else value
        field = "message"
        email.as_bytes(policy=email_policy.SMTPUTF8)
    except (ValueError, TypeError, IndexError, MessageError) as exc:
        raise PermanentDeliveryError(f"cannot build the email ({field}): {exc}") from None
    return email


class SmtpProvider:
    def __init__(self, settings: SmtpSettings, name: str = "smtp") -> None:
        """`name`: "smtp", or the name of a `[providers.NAME]` relay of a channel with failover."""
        self.name = name
        self._settings = settings

    async def send(self, delivery: DeliveryInput, message: RenderedMessage) -> ProviderReceipt:
        email = build_email(delivery, message, self._settings.from_address)
        s = self._settings
        try:
            refused, _ = await aiosmtplib.send(
                email,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                use_tls=s.use_tls,
                start_tls=s.start_tls,
                validate_certs=s.validate_certs,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise _classify(min(codes), f"recipient refused: {reason}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            section = "smtp" if self.name == "smtp" else f"providers.{self.name}"
            raise TransientDeliveryError(
                f"SMTP authentication failed ({exc.code}); check {section}.username/{section}.password"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, f"SMTP server answered {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"cannot reach SMTP server {s.host}:{s.port}: {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, f"recipient refused: {code} {text}")
        return ProviderReceipt(email["Message-ID"])

    async def aclose(self) -> None:
        return None


def _classify(code: int, reason: str) -> PermanentDeliveryError | TransientDeliveryError:
    return PermanentDeliveryError(reason) if code >= 500 else TransientDeliveryError(reason)
