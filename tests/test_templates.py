"""Templates: strict variables, escaping, locales, length rules, header injection, email end to end."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN_DIR
from tidings.activities.rendering import RenderError
from tidings.activities.store.sqlite import SqliteStore
from tidings.activities.templates import PUSH_BODY_MAX, TemplateRenderer, truncate, validate_template_content
from tidings.models import Channel, Content, Phase, Recipient
from tidings.receiver.app import Receiver
from tidings.sandbox.asgi_server import UvicornServer
from tidings.sandbox.smtp import SmtpSink, free_port
from tidings.settings import Settings
from tidings.starters.client import InvalidRequestError, TidingsClient, validate_request
from tidings.workers.worker import running_worker

SHIPPED = {"name": "Ada", "order_id": "123", "carrier": "DHL"}


def render(
    template_id: str, variables: dict[str, Any], channel: Channel, locale: str = "en", **kw: Any
) -> Any:
    content = Content(template_id=template_id, variables=variables)
    return TemplateRenderer(**kw).render(content, Recipient(id="u", locale=locale), channel)


def test_html_is_escaped_and_text_is_not() -> None:
    evil = {**SHIPPED, "name": "<script>alert(1)</script>"}
    message = render("order_shipped", evil, Channel.email)
    assert "<script>" not in message.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert message.text.startswith("Hello <script>alert(1)</script>,")
    push = render("order_shipped", evil, Channel.push)
    assert push.body.startswith("<script>alert(1)</script>, your order")


def test_webhook_part_is_json_even_with_quotes() -> None:
    message = render("order_shipped", {**SHIPPED, "carrier": 'The "Fast" Co'}, Channel.webhook)
    assert message.webhook_json == {"event": "order_shipped", "order_id": "123", "carrier": 'The "Fast" Co'}


def test_missing_and_unknown_variables_are_refused_at_the_client() -> None:
    with pytest.raises(ValueError, match="needs variables: carrier"):
        validate_template_content(
            Content(template_id="order_shipped", variables={"name": "A", "order_id": "1"})
        )
    with pytest.raises(ValueError, match="does not use variables: nmae"):
        validate_template_content(Content(template_id="welcome", variables={"name": "A", "nmae": "typo"}))
    with pytest.raises(InvalidRequestError, match="unknown template 'nope'"):
        validate_request({"recipients": ["u"], "channels": ["email"], "content": {"template_id": "nope"}})


def test_strict_undefined_at_render_time(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "template.toml").write_text('variables = ["name"]\n')
    (folder / "push_title.en.txt").write_text("Hi {{ name }} {{ surname }}\n")
    with pytest.raises(RenderError, match="'surname' is undefined"):
        render("broken", {"name": "A"}, Channel.push, directory=tmp_path)


def test_locale_fallback() -> None:
    assert render("welcome", {"name": "Ana"}, Channel.push, "pt-BR").title == "Bem-vindo, Ana!"
    assert render("welcome", {"name": "Jo"}, Channel.push, "de-AT").title == "Willkommen, Jo!"
    assert render("welcome", {"name": "Zoé"}, Channel.push, "fr").title == "Welcome, Zoé!"
    # a part missing in pt falls back to the default locale
    assert render("welcome", {"name": "Ana"}, Channel.email, "pt-BR").subject == "Welcome to Tidings, Ana"


def test_email_html_never_mixes_languages() -> None:
    message = render("order_shipped", SHIPPED, Channel.email, "de")
    assert message.subject == "Deine Bestellung #123 ist unterwegs" and message.text.startswith("Hallo Ada")
    assert message.html is None  # no German HTML part: plain text rather than English HTML


def test_push_body_is_truncated_with_an_ellipsis() -> None:
    message = render("order_shipped", {**SHIPPED, "carrier": "a very slow carrier " * 20}, Channel.push)
    assert len(message.body) <= PUSH_BODY_MAX and message.body.endswith("…")
    assert truncate("short", 10) == "short"


def test_subject_with_a_line_break_is_refused() -> None:
    with pytest.raises(RenderError, match="line break"):
        render("order_shipped", {**SHIPPED, "order_id": "1\r\nBcc: victim@example.com"}, Channel.email)


def test_template_render_cli(tmp_path: Path) -> None:
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps(SHIPPED))
    env = {**os.environ, "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    done = subprocess.run(
        [str(BIN_DIR / "tidings"), "template", "render", "order_shipped", "--vars", str(variables),
         "--locale", "de", "--channel", "email"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["email"]["subject"] == "Deine Bestellung #123 ist unterwegs"
    bad = subprocess.run([str(BIN_DIR / "tidings"), "template", "render", "order_shipped"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "needs variables: name, order_id, carrier" in bad.stderr
    listed = subprocess.run(
        [str(BIN_DIR / "tidings"), "template", "list"], capture_output=True, text=True, env=env
    )
    ids = [t["id"] for t in json.loads(listed.stdout)]
    assert ids == ["digest", "order_shipped", "password_reset", "security_alert", "welcome"]


async def test_templated_email_end_to_end_with_one_click_unsubscribe(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    store: SqliteStore,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    smtp_sink.save_dir = tmp_path / "mail"
    port = free_port()
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "receiver": {"public_url": f"http://127.0.0.1:{port}", "link_signing_key": "k" * 32},
        }
    )
    server = UvicornServer(Receiver(configured, ts_env.client, store.receipts, store).app(), port=port)
    await server.start()
    await store.put(Recipient(id="buyer", name="Ada Buyer", email="ada@example.com", locale="en"))
    queue = f"templates-{uuid.uuid4().hex[:8]}"
    try:
        async with running_worker(ts_env.client, configured, store, task_queue=queue):
            tidings = TidingsClient(ts_env.client, task_queue=queue)
            variables = {**SHIPPED, "name": "Ada <b>", "tracking_url": "https://track.example.com/1"}
            [handle] = await tidings.send(
                {"id": "tpl-1", "recipients": ["buyer"], "channels": ["email"], "category": "orders",
                 "content": {"template_id": "order_shipped", "variables": variables}}
            )  # fmt: skip
            state = await handle.result()
        assert state.phase is Phase.delivered
        [email] = smtp_sink.received
        assert email.get_content_type() == "multipart/alternative"
        text, html = (part.get_content() for part in email.iter_parts())
        assert "Hello Ada <b>," in text and "Hello Ada &lt;b&gt;," in html
        assert email["Subject"] == "Your order #123 has shipped"
        assert email["Message-ID"] == f"<{state.destinations[0].delivery_id}@tidings.localhost>"
        assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = email["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith(f"http://127.0.0.1:{port}/u/")
        # on the wire: the plain <URL> mail clients offer one-click unsubscribe for, not RFC 2047 words
        raw = (tmp_path / "mail" / "00001.eml").read_bytes()
        [line] = [h for h in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if h.startswith(b"List-Unsubscribe:")]
        assert line == f"List-Unsubscribe: <{unsubscribe}>".encode()
        async with httpx.AsyncClient() as client:
            done = await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
        stored = await store.get("buyer")
        assert stored is not None and "orders" in stored.preferences.opted_out_categories
    finally:
        await server.stop()


def shipped_request(**variables: Any) -> dict[str, Any]:
    return {
        "recipients": ["u"],
        "channels": ["email"],
        "content": {"template_id": "order_shipped", "variables": {**SHIPPED, **variables}},
    }


UNSAFE_LINKS = [
    "javascript:alert(document.cookie)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "\x01javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/phish",
    "track.example.com/1",
]


@pytest.mark.parametrize("link", UNSAFE_LINKS)
def test_links_from_variables_must_be_http_https_or_mailto(link: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"part email_html: a link variable \(\|url\) has"):
        validate_request(shipped_request(tracking_url=link))
    # and the worker refuses it too (a permanent RenderError), should the client check be skipped
    with pytest.raises(RenderError, match=r"only http, https, mailto|no http, https or mailto"):
        render("order_shipped", {**SHIPPED, "tracking_url": link}, Channel.email)


def test_the_refusal_never_shows_the_link() -> None:
    """A link may carry a secret (a password-reset token): errors name its scheme only."""
    with pytest.raises(InvalidRequestError) as refused:
        validate_request(
            {"recipients": ["u"], "channels": ["email"],
             "content": {"template_id": "password_reset",
                         "variables": {"name": "A", "valid_minutes": 5, "reset_url": "ftp://x/reset?t=SECRET"}}}
        )  # fmt: skip
    assert "'ftp'" in str(refused.value) and "SECRET" not in str(refused.value)


@pytest.mark.parametrize(
    "link", ["https://track.example.com/1?a=1&b=2", "http://track.example.com/1", "mailto:help@example.com"]
)
def test_http_https_and_mailto_links_still_work(link: str) -> None:
    assert validate_request(shipped_request(tracking_url=link))
    message = render("order_shipped", {**SHIPPED, "tracking_url": link}, Channel.email)
    assert f'<a href="{link.replace("&", "&amp;")}">' in message.html
    assert f"Track it: {link}" in message.text
    assert render("order_shipped", {**SHIPPED, "tracking_url": link}, Channel.sms).sms_text.endswith(link)


@pytest.mark.parametrize(
    ("template_id", "variables", "part"),
    [
        ("order_shipped", {**SHIPPED, "order_id": "1\r\nBcc: victim@example.com"}, "push_title"),
        ("order_shipped", {**SHIPPED, "order_id": "1\n2"}, "push_title"),
        (
            "security_alert",
            {"name": "A", "event": "sign-in\u2028x", "when": "now", "location": "Oslo"},
            "push_title",
        ),
        (
            "password_reset",
            {"name": "A", "valid_minutes": "5\r\n", "reset_url": "https://x.example/r"},
            "sms",
        ),
        ("welcome", {"name": "Ana\rX"}, "push_title"),
    ],
)
def test_line_breaks_from_variables_in_single_line_parts_are_refused_at_the_client(
    template_id: str, variables: dict[str, Any], part: str
) -> None:
    request = {
        "recipients": ["u"],
        "channels": ["email"],
        "content": {"template_id": template_id, "variables": variables},
    }
    with pytest.raises(InvalidRequestError, match=f"part {part}: contains a line break"):
        validate_request(request)


def test_push_title_with_a_line_break_is_refused_at_the_client() -> None:
    variables = {"name": "A", "event": "x\ny", "when": "now", "location": "Oslo"}
    with pytest.raises(ValueError, match=r"part (push_title|email_subject): contains a line break"):
        validate_template_content(Content(template_id="security_alert", variables=variables))
    with pytest.raises(RenderError, match="part push_title: contains a line break"):
        render("security_alert", variables, Channel.push)


def test_the_client_try_renders_with_the_requests_own_variables(tmp_path: Path) -> None:
    """A part that fails only for some values is caught for those values, before anything starts."""
    folder = tmp_path / "order_event"
    folder.mkdir()
    (folder / "template.toml").write_text('variables = ["amount"]\n')
    (folder / "push_title.en.txt").write_text("Paid {{ amount }}\n")
    (folder / "webhook.en.json").write_text('{"amount": {{ amount }}}\n')
    validate_template_content(Content(template_id="order_event", variables={"amount": 12}), tmp_path)
    with pytest.raises(ValueError, match="webhook part is not JSON"):
        validate_template_content(
            Content(template_id="order_event", variables={"amount": "12 EUR"}), tmp_path
        )
    with pytest.raises(ValueError, match=r"'dict object' has no attribute|is undefined"):
        (folder / "push_title.en.txt").write_text("Paid {{ amount.value }}\n")
        validate_template_content(Content(template_id="order_event", variables={"amount": {}}), tmp_path)


def test_a_subject_line_break_is_refused_at_the_client(tmp_path: Path) -> None:
    folder = tmp_path / "receipt"
    folder.mkdir()
    (folder / "template.toml").write_text('variables = ["order"]\n')
    (folder / "email_subject.en.txt").write_text("Receipt for {{ order }}\n")
    (folder / "email_text.en.txt").write_text("Thanks for {{ order }}\n")
    validate_template_content(Content(template_id="receipt", variables={"order": "#1"}), tmp_path)
    with pytest.raises(ValueError, match="part email_subject: contains a line break"):
        validate_template_content(
            Content(template_id="receipt", variables={"order": "#1\r\nBcc: victim@example.com"}), tmp_path
        )
