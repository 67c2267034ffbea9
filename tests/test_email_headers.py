"""Email headers as they leave for the SMTP server: one-click unsubscribe and unbuildable headers.

Messages are rendered and link-tracked by the worker's own classes and sent by the SMTP provider to
the SMTP sink; assertions read the raw bytes the sink received, as a mail client would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.activities.delivery import LinkTracking
from tidings.activities.providers.base import PermanentDeliveryError
from tidings.activities.providers.smtp import MAX_HEADER_LINE, SmtpProvider, build_email
from tidings.activities.rendering import RenderedMessage
from tidings.activities.templates import TemplateRenderer
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient
from tidings.sandbox.smtp import SmtpSink
from tidings.settings import SmtpSettings

FROM = "Tidings <notifications@shop.example.com>"
VARIABLES = {"name": "Ada", "order_id": "123", "carrier": "DHL"}


def delivery(name: str | None = "Ada Buyer", category: str | None = "orders") -> DeliveryInput:
    return DeliveryInput(
        delivery_id="2f1c9a3e-0000-5000-8000-0000000000e1",
        workflow_id="notification-e1",
        notification_id="e1",
        destination=Destination(channel=Channel.email, provider="smtp", address="ada@example.com"),
        # Built without validation: the request boundary refuses such names today, but a profile
        # stored before that (or a store edited by hand) may still hold one.
        recipient=Recipient(id="buyer-" + "7" * 40, email="ada@example.com").model_copy(
            update={"name": name}
        ),
        content=Content(template_id="order_shipped", variables=VARIABLES),
        priority=Priority.normal,
        category=category,
    )


def rendered(d: DeliveryInput, public_url: str) -> RenderedMessage:
    message = TemplateRenderer().render(d.content, d.recipient, Channel.email)
    LinkTracking(public_url, b"k" * 32).apply(d, message)
    return message


def raw_headers(raw: bytes) -> list[bytes]:
    """The header lines exactly as sent (continuation lines kept as separate lines)."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


def header_line(raw: bytes, name: bytes) -> tuple[bytes, bytes | None]:
    """A header's raw line, and the line after it (a continuation if it starts with whitespace)."""
    lines = raw_headers(raw)
    [index] = [i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + b":")]
    return lines[index], lines[index + 1] if index + 1 < len(lines) else None


async def send(d: DeliveryInput, message: RenderedMessage, sink: SmtpSink) -> bytes:
    provider = SmtpProvider(SmtpSettings(host=sink.host, port=sink.port, timeout=5, from_address=FROM))
    await provider.send(d, message)
    assert sink.save_dir is not None
    [saved] = sorted(sink.save_dir.glob("*.eml"))
    return saved.read_bytes()


@pytest.mark.parametrize("public_url", ["https://r.example.com", "https://receiver.example.com/" + "p" * 400])
async def test_list_unsubscribe_goes_out_as_a_plain_url_for_one_click(
    tmp_path: Path, public_url: str
) -> None:
    d = delivery()
    message = rendered(d, public_url)
    with SmtpSink(save_dir=tmp_path) as sink:
        raw = await send(d, message, sink)
    line, following = header_line(raw, b"List-Unsubscribe")
    value = line.split(b": ", 1)[1]
    assert value.startswith(b"<" + public_url.encode() + b"/u/") and value.endswith(b">")
    assert b"=?" not in value
    assert following is None or not following[:1].isspace()  # one line: the URL is not folded apart
    assert len(line) <= MAX_HEADER_LINE
    assert (
        header_line(raw, b"List-Unsubscribe-Post")[0] == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    )
    [received] = sink.received
    assert received["List-Unsubscribe"] == message.headers["List-Unsubscribe"]


async def test_an_unsubscribe_url_too_long_for_one_header_line_fails_permanently(tmp_path: Path) -> None:
    d = delivery()
    message = rendered(d, "https://receiver.example.com/" + "p" * MAX_HEADER_LINE)
    with SmtpSink(save_dir=tmp_path) as sink:
        with pytest.raises(PermanentDeliveryError, match="List-Unsubscribe is longer than the 998"):
            await send(d, message, sink)
        assert not sink.received


@pytest.mark.parametrize(
    "name",
    [
        "Ada\r\nBcc: victim@example.com",
        "Ada\nBcc: victim@example.com",
        "Ada\rX",
    ],
)
async def test_a_recipient_name_that_cannot_be_a_header_fails_permanently(tmp_path: Path, name: str) -> None:
    """The same name fails on every attempt: permanent, so it is not retried."""
    d = delivery(name=name)
    with SmtpSink(save_dir=tmp_path) as sink:
        with pytest.raises(PermanentDeliveryError, match=r"cannot build the email \(To\)"):
            await send(d, rendered(d, "https://r.example.com"), sink)
        assert not sink.received


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=80), subject=st.text(max_size=120))
def test_any_name_or_subject_builds_an_email_or_fails_permanently(name: str, subject: str) -> None:
    d = delivery(name=name or None)
    message = RenderedMessage(subject=subject or "x", text="body")
    try:
        email = build_email(d, message, FROM)
    except PermanentDeliveryError:
        return
    email.as_bytes()  # and what was built can be sent
