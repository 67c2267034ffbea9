"""Turning a notification's content into the parts each channel needs.

Rendering happens inside the provider activity, not in the workflow: the rendered text never
enters workflow history, and a template change reaches the next attempt.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from tidings.models import Channel, Content, Recipient


class RenderError(Exception):
    """The content cannot be rendered for this channel (missing variable, unknown template)."""


class RenderedMessage(BaseModel):
    """Every part a channel may use; providers read the parts of their channel."""

    title: str | None = None
    body: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms_text: str | None = None
    chat_text: str | None = None
    webhook_json: dict[str, Any] | None = None
    data: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    url: str | None = None
    collapse_key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra email headers")
    platform_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    unsubscribable: bool = False


class InlineRenderer:
    """Renders inline content (title/body/data) for every channel without templates."""

    def render(self, content: Content, recipient: Recipient, channel: Channel) -> RenderedMessage:
        title = content.title or ""
        body = content.body or ""
        one_line = f"{title}: {body}" if title and body else (title or body)
        link = f"\n{content.url}" if content.url else ""
        return RenderedMessage(
            title=content.title,
            body=content.body,
            subject=content.title or one_line[:78],
            text=(body or title) + link,
            sms_text=one_line + (f" {content.url}" if content.url else ""),
            chat_text=f"*{title}*\n{body}" if title and body else one_line,
            webhook_json={
                "title": content.title,
                "body": content.body,
                "data": content.data,
                "url": content.url,
                "recipient_id": recipient.id,
            },
            data=content.data,
            image=content.image,
            url=content.url,
            collapse_key=content.collapse_key,
            platform_overrides=dict(content.platform_overrides),
        )


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
