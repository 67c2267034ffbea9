"""Email over SMTP with aiosmtplib.

Each message carries a stable `Message-ID` derived from the delivery id, so a retry after an
ambiguous failure (connection lost after DATA) produces the same id and receiving systems can
discard the duplicate.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
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


def build_email(delivery: DeliveryInput, message: RenderedMessage, from_address: str) -> EmailMessage:
    """Build the MIME message; header values with line breaks are refused (header injection)."""
    subject = message.subject or message.title or ""
    if "\r" in subject or "\n" in subject:
        raise PermanentDeliveryError("email subject contains a line break; refusing (header injection)")
    email = EmailMessage()
    email["From"] = from_address
    email["To"] = Address(display_name=delivery.recipient.name or "", addr_spec=delivery.destination.address)
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = message_id_for(delivery.delivery_id, from_address)
    email["X-Tidings-Delivery-Id"] = delivery.delivery_id
    email.set_content(message.text or message.body or "")
    if message.html:
        email.add_alternative(message.html, subtype="html")
    for name, value in message.headers.items():
        if "\r" in value or "\n" in value:
            raise PermanentDeliveryError(f"email header {name} contains a line break; refusing")
        email[name] = value
    return email


class SmtpProvider:
    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
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
            raise TransientDeliveryError(
                f"SMTP authentication failed ({exc.code}); check smtp.username/smtp.password"
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
