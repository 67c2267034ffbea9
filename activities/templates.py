"""Templates: per-channel, per-locale message parts rendered with jinja2.

A template is a folder `<templates>/<template_id>/` with a `template.toml` manifest and one file
per part and locale, `<part>.<locale>.<ext>`:

    push_title  push_body  email_subject  email_text  email_html  sms  chat  webhook (JSON)

The manifest declares the variables a caller must give (`variables`), those it may give
(`optional`), and whether the messages can be unsubscribed from (`unsubscribable`).

Rendering is sandboxed and strict: a missing variable is an error, never a blank. Only HTML parts
are autoescaped; email subjects, push titles and SMS texts refuse line breaks (`SINGLE_LINE_PARTS`:
a variable holding CR/LF must not inject headers or reshape the message); push bodies are cut with
an ellipsis; webhook parts must render to JSON (use `|tojson` for values). A link built from a
variable goes through `|url`, which allows only http, https and mailto (`SAFE_LINK_SCHEMES`):
autoescaping stops markup, not a `javascript:` URL in an href. Locales fall back from `pt-BR` to
`pt` to the default locale, part by part.

The client try-renders every part of every locale with the request's own variables
(`validate_template_content`), so anything that would fail in the worker fails the request
instead; the worker checks again (a template folder may change in between) and turns a failure
into a permanent `RenderError`.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from tidings.activities.rendering import InlineRenderer, RenderedMessage, RenderError
from tidings.models import Channel, Content, Recipient

BUNDLED = Path(__file__).resolve().parent.parent / "tidings" / "templates"
PUSH_TITLE_MAX = 65
PUSH_BODY_MAX = 178
PARTS = {
    "push_title": "txt",
    "push_body": "txt",
    "email_subject": "txt",
    "email_text": "txt",
    "email_html": "html",
    "sms": "txt",
    "chat": "txt",
    "webhook": "json",
}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SINGLE_LINE_PARTS = frozenset({"email_subject", "push_title", "sms"})
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines splits on
SAFE_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_IGNORED_IN_LINKS = re.compile("[\t\n\r]")


def safe_url(value: object) -> str:
    """The `|url` filter: a link from a variable, only if its scheme is http, https or mailto.

    The value is read as a browser reads an href (tabs and newlines anywhere and leading or
    trailing spaces and control characters are dropped, the scheme is case-insensitive), so
    ` javascript:` or `JaVa\tScRiPt:` cannot slip past. A link without a scheme is refused too:
    a relative link means nothing in an email. The error names the scheme only, never the URL,
    which may hold a token (a password-reset link).
    """
    link = _IGNORED_IN_LINKS.sub("", str(value)).strip("".join(map(chr, range(0x21))))
    match = _SCHEME.match(link)
    if match is None:
        raise RenderError("a link variable (|url) has no http, https or mailto scheme")
    scheme = match.group(1).lower()
    if scheme not in SAFE_LINK_SCHEMES:
        raise RenderError(f"a link variable (|url) has scheme {scheme[:20]!r}; only http, https, mailto")
    return link


@dataclass(frozen=True)
class TemplateManifest:
    template_id: str
    description: str = ""
    variables: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    unsubscribable: bool = False
    locales: frozenset[str] = field(default_factory=frozenset)


def truncate(text: str, limit: int) -> str:
    """Cut at a word boundary when one is near, and end with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


class TemplateCatalog:
    def __init__(self, directory: Path | None = None, default_locale: str = "en") -> None:
        self.directory = (directory or BUNDLED).resolve()
        self.default_locale = default_locale
        loader = FileSystemLoader(str(self.directory))
        options: dict[str, Any] = {
            "loader": loader,
            "undefined": StrictUndefined,
            "keep_trailing_newline": False,
        }
        self._text = SandboxedEnvironment(autoescape=False, **options)
        self._html = SandboxedEnvironment(autoescape=True, **options)
        for env in (self._text, self._html):
            env.filters["url"] = safe_url

    def manifest(self, template_id: str) -> TemplateManifest:
        if not _ID.match(template_id):
            raise ValueError(f"template ids are lowercase letters, digits, _ and -; got {template_id!r}")
        path = self.directory / template_id / "template.toml"
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            known = ", ".join(self.template_ids) or "none"
            raise ValueError(f"unknown template {template_id!r} (known: {known})") from None
        locales = {p.name.split(".")[1] for p in path.parent.iterdir() if p.name.count(".") == 2}
        return TemplateManifest(
            template_id=template_id,
            description=str(data.get("description", "")),
            variables=tuple(data.get("variables", ())),
            optional=tuple(data.get("optional", ())),
            unsubscribable=bool(data.get("unsubscribable", False)),
            locales=frozenset(locales),
        )

    @cached_property
    def template_ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.parent.name for p in self.directory.glob("*/template.toml"))

    def locale_chain(self, locale: str) -> list[str]:
        chain = [locale]
        if "-" in locale:
            chain.append(locale.split("-")[0])
        chain.append(self.default_locale)
        return list(dict.fromkeys(chain))

    def render_part(
        self,
        manifest: TemplateManifest,
        part: str,
        locale: str,
        variables: dict[str, Any],
        *,
        exact: bool = False,
    ) -> str | None:
        """One part in the best locale available (only `locale` itself when `exact`), or None."""
        return self.render_part_in(manifest, part, locale, variables, exact=exact)[0]

    def render_part_in(
        self,
        manifest: TemplateManifest,
        part: str,
        locale: str,
        variables: dict[str, Any],
        *,
        exact: bool = False,
    ) -> tuple[str | None, str | None]:
        """Like `render_part`, also saying which locale was used."""
        env = self._html if PARTS[part] == "html" else self._text
        for candidate in [locale] if exact else self.locale_chain(locale):
            name = f"{manifest.template_id}/{part}.{candidate}.{PARTS[part]}"
            try:
                template = env.get_template(name)
            except TemplateNotFound:
                continue
            try:
                text = template.render(**variables).strip()
            except (TemplateError, RenderError) as exc:
                raise RenderError(f"template {manifest.template_id!r} part {part}: {exc}") from None
            if part in SINGLE_LINE_PARTS and _LINE_BREAK.search(text):
                raise RenderError(f"template {manifest.template_id!r} part {part}: contains a line break")
            return text, candidate
        return None, None

    def check(self, content: Content) -> TemplateManifest:
        """Refuse a request whose template is unknown or lacks variables; try-render every part.

        The try-render uses the request's own variables (the recipient is a stand-in: recipients are
        loaded in the worker), in every locale the template has, so a variable that would put a
        line break into a subject, an unsafe link into an email or break the webhook JSON is
        refused here, before a notification starts.
        """
        assert content.template_id is not None
        manifest = self.manifest(content.template_id)
        missing = [v for v in manifest.variables if v not in content.variables]
        if missing:
            raise ValueError(f"template {manifest.template_id!r} needs variables: {', '.join(missing)}")
        unknown = sorted(set(content.variables) - set(manifest.variables) - set(manifest.optional))
        if unknown:
            raise ValueError(
                f"template {manifest.template_id!r} does not use variables: {', '.join(unknown)}"
            )
        variables = _variables(content, Recipient(id="validation"), manifest)
        try:
            for locale in sorted(manifest.locales or {self.default_locale}):
                for part in PARTS:
                    text = self.render_part(manifest, part, locale, variables)
                    if part == "webhook" and text:
                        _webhook_json(manifest, text)
        except RenderError as exc:
            raise ValueError(str(exc)) from None
        return manifest


def _variables(content: Content, recipient: Recipient, manifest: TemplateManifest) -> dict[str, Any]:
    """The caller's variables, optional ones not given as None, and the recipient's profile."""
    return {
        **dict.fromkeys(manifest.optional),
        **content.variables,
        "recipient": {"id": recipient.id, "name": recipient.name, "locale": recipient.locale},
    }


def _webhook_json(manifest: TemplateManifest, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RenderError(f"template {manifest.template_id!r} webhook part is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RenderError(f"template {manifest.template_id!r} webhook part is not a JSON object")
    return value


def validate_template_content(content: Content, directory: Path | None = None) -> None:
    """Called by the client before a notification starts: a bad template request fails there."""
    TemplateCatalog(directory).check(content)


class TemplateRenderer:
    """The worker's renderer: templates when the content names one, inline content otherwise."""

    def __init__(self, directory: Path | None = None, default_locale: str = "en") -> None:
        self.catalog = TemplateCatalog(directory, default_locale)
        self._inline = InlineRenderer()

    def render(self, content: Content, recipient: Recipient, channel: Channel) -> RenderedMessage:
        if content.template_id is None:
            return self._inline.render(content, recipient, channel)
        try:
            manifest = self.catalog.manifest(content.template_id)
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        variables = _variables(content, recipient, manifest)
        locale = recipient.locale

        def part(name: str) -> str | None:
            return self.catalog.render_part(manifest, name, locale, variables)

        title = part("push_title")
        body = part("push_body")
        message = RenderedMessage(
            title=truncate(title, PUSH_TITLE_MAX) if title else None,
            body=truncate(body, PUSH_BODY_MAX) if body else None,
            data=content.data,
            image=content.image,
            url=content.url,
            collapse_key=content.collapse_key,
            platform_overrides=dict(content.platform_overrides),
            unsubscribable=manifest.unsubscribable,
        )
        if channel is Channel.email:
            subject = part("email_subject") or title or ""
            if "\n" in subject or "\r" in subject:
                raise RenderError(
                    f"template {manifest.template_id!r}: the email subject contains a line break"
                )
            message.subject = subject
            text, text_locale = self.catalog.render_part_in(manifest, "email_text", locale, variables)
            message.text = text or body
            # the HTML alternative in the same language as the text, or none: never a mix
            html_locale = text_locale or locale
            message.html = self.catalog.render_part(
                manifest, "email_html", html_locale, variables, exact=bool(text)
            )
        elif channel is Channel.sms:
            message.sms_text = part("sms") or body
        elif channel is Channel.slack:
            message.chat_text = part("chat") or body
        elif channel is Channel.webhook:
            raw = part("webhook")
            message.webhook_json = _webhook_json(manifest, raw) if raw else {"title": title, "body": body}
        return message
