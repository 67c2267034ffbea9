"""The preference center: a signed link from the email footer opens a server-rendered page; the
form (CSRF-protected) opts out of categories and channels and sets quiet hours and time zone;
critical categories cannot be turned off; the JSON behind it is `/v1/me/preferences`."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.api_support import LINK_KEY, ApiKeyMaker, bearer, flipped, subscriber_token
from tidings.activities.delivery import PREFERENCES_LINK_TEXT, LinkTracking
from tidings.activities.store.base import Store
from tidings.activities.templates import TemplateRenderer
from tidings.api.keys import Scope
from tidings.links import Purpose, expiring_token
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient

ORDER = {"name": "Ada", "order_id": "1", "carrier": "DHL"}
MEMBER = {"id": "member", "email": "member@example.com", "name": "Ada <Admin>", "timezone": "Europe/Berlin"}


def form_fields(page: str) -> dict[str, str]:
    """What a browser would submit: the hidden CSRF field and every checked, enabled checkbox."""
    fields = {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1)}  # type: ignore[union-attr]
    for name in re.findall(r'<input type="checkbox" name="([^"]+)" checked>', page):
        fields[name] = "on"
    return fields


async def link_for(api: httpx.AsyncClient, key: str, recipient_id: str = "member") -> str:
    response = await api.post(f"/v1/subscribers/{recipient_id}/preference-link", headers=bearer(key))
    assert response.status_code == 200, response.text
    return str(urlsplit(response.json()["url"]).path)


async def test_opt_out_in_the_page_skips_the_next_notification(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers, Scope.send, Scope.read)
    assert (await api.put("/v1/subscribers/member", json=MEMBER, headers=bearer(key))).status_code == 200
    path = await link_for(api, key)
    page = await api.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Ada &lt;Admin&gt;" in page.text and "<Admin>" not in page.text
    assert "security (always sent: not optional)" in page.text and 'name="category:security"' not in page.text
    fields = form_fields(page.text)
    assert {"category:marketing", "category:comments", "channel:email"} <= set(fields)
    del fields["category:marketing"]
    fields |= {"quiet_start": "22:00", "quiet_end": "07:00", "timezone": "America/New_York"}
    saved = await api.post(path, data=fields, headers={"Origin": "http://127.0.0.1:8090"})
    assert saved.status_code == 200 and "Saved." in saved.text
    member = await store.get("member")
    assert member is not None and member.preferences.opted_out_categories == {"marketing"}
    assert member.timezone == "America/New_York" and member.preferences.quiet_hours is not None
    assert str(member.preferences.quiet_hours.start) == "22:00:00"
    body = {"recipients": ["member"], "channels": [{"channel": "email"}], "content": {"title": "Sale"},
            "category": "marketing", "id": "sale-1"}  # fmt: skip
    assert (await api.post("/v1/notifications", json=body, headers=bearer(key))).status_code == 202
    state: dict[str, Any] = {}
    for _ in range(300):
        state = (await api.get("/v1/notifications/sale-1~member", headers=bearer(key))).json()
        if state["phase"] not in ("scheduled", "sending"):
            break
        await asyncio.sleep(0.05)
    assert state["phase"] == "skipped_by_preferences", state


async def test_forms_are_protected_and_links_must_be_genuine(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers)
    await api.put("/v1/subscribers/member", json=MEMBER, headers=bearer(key))
    path = await link_for(api, key)
    fields = form_fields((await api.get(path)).text)
    del fields["category:comments"]
    token = path.removeprefix("/preferences/")
    body, _, mac = token.partition(".")
    refused = {
        "no csrf": (path, {k: v for k, v in fields.items() if k != "csrf"}, {}),
        "forged csrf": (path, {**fields, "csrf": "9999999999.00"}, {}),
        "another page's origin": (path, fields, {"Origin": "https://evil.example"}),
        "cross-site fetch": (path, fields, {"Sec-Fetch-Site": "cross-site"}),
        "tampered link": (f"/preferences/{body}.{flipped(mac)}", fields, {}),
    }
    for what, (url, data, headers) in refused.items():
        response = await api.post(url, data=data, headers=headers)
        assert response.status_code == 403, what
    member = await store.get("member")
    assert member is not None and member.preferences.opted_out_categories == set()
    expired = expiring_token(LINK_KEY.encode(), Purpose.preferences, "member", timedelta(seconds=-1))[0]
    other_purpose = subscriber_token("member")
    for bad in (expired, other_purpose, f"{body}.{flipped(mac)}", "junk"):
        response = await api.get(f"/preferences/{bad}")
        assert response.status_code == 403 and "not valid" in response.text
    # a csrf token belongs to its link: one from another subscriber's page does not work here
    await api.put("/v1/subscribers/other", json={**MEMBER, "id": "other"}, headers=bearer(key))
    their_fields = form_fields((await api.get(await link_for(api, key, "other"))).text)
    assert (await api.post(path, data={**fields, "csrf": their_fields["csrf"]})).status_code == 403


async def test_preferences_json_and_critical_categories(
    api: httpx.AsyncClient, api_key: ApiKeyMaker, store: Store
) -> None:
    key = await api_key(Scope.subscribers)
    await api.put("/v1/subscribers/member", json=MEMBER, headers=bearer(key))
    token = subscriber_token("member")
    view = (await api.get("/v1/me/preferences", headers=bearer(token))).json()
    assert view["timezone"] == "Europe/Berlin" and view["quiet_hours"] is None
    assert {"category": "security", "enabled": True, "critical": True} in view["categories"]
    assert [c["channel"] for c in view["channels"]] == [c.value for c in Channel]
    update = {"channels": {"sms": False}, "categories": {"comments": False},
              "quiet_hours": {"start": "23:00", "end": "06:30"}}  # fmt: skip
    changed = await api.put("/v1/me/preferences", json=update, headers=bearer(token))
    assert changed.status_code == 200, changed.text
    assert {"channel": "sms", "enabled": False} in changed.json()["channels"]
    member = await store.get("member")
    assert member is not None and member.preferences.opted_out_channels == {Channel.sms}
    critical = await api.put(
        "/v1/me/preferences", json={"categories": {"security": False}}, headers=bearer(token)
    )
    assert critical.status_code == 422 and "security" in critical.json()["detail"]
    service = await api.put(
        "/v1/subscribers/member/preferences", json={"opted_out_categories": ["security"]}, headers=bearer(key)
    )
    assert service.status_code == 422
    bad = await api.put("/v1/me/preferences", json={"timezone": "Mars/Olympus", "channels": {"pigeon": True}},
                        headers=bearer(token))  # fmt: skip
    assert bad.status_code == 422 and len(bad.json()["errors"]) == 2


def test_emails_to_stored_subscribers_link_to_the_preference_center() -> None:
    delivery = DeliveryInput(
        delivery_id="d-pref", workflow_id="notification-p", notification_id="p",
        destination=Destination(channel=Channel.email, provider="smtp", address="ada@example.com"),
        recipient=Recipient(id="member", email="ada@example.com"), recipient_stored=True,
        content=Content(template_id="order_shipped", variables=ORDER), priority=Priority.normal,
    )  # fmt: skip
    links = LinkTracking("http://r.example", LINK_KEY.encode(), ("https://api.example", timedelta(days=30)))
    message = TemplateRenderer().render(delivery.content, delivery.recipient, Channel.email)
    links.apply(delivery, message)
    assert message.text is not None and message.html is not None
    [url] = re.findall(r"https://api\.example/preferences/\S+", message.text)
    assert f"{PREFERENCES_LINK_TEXT}: {url}" in message.text
    assert f'<a href="{url}">{PREFERENCES_LINK_TEXT}</a>' in message.html
    assert message.html.startswith("<p>Hello Ada,</p>")  # the footer comes after the message
    inline = delivery.model_copy(update={"recipient_stored": False})  # no stored profile: no center
    message = TemplateRenderer().render(inline.content, inline.recipient, Channel.email)
    links.apply(inline, message)
    assert PREFERENCES_LINK_TEXT not in (message.text or "")


async def test_the_footer_link_opens_the_page(api: httpx.AsyncClient, api_key: ApiKeyMaker) -> None:
    key = await api_key(Scope.subscribers)
    await api.put("/v1/subscribers/member", json=MEMBER, headers=bearer(key))
    delivery = DeliveryInput(
        delivery_id="d-pref", workflow_id="notification-p", notification_id="p",
        destination=Destination(channel=Channel.email, provider="smtp", address="ada@example.com"),
        recipient=Recipient(id="member", email="ada@example.com"), recipient_stored=True,
        content=Content(title="Hi", body="there"), priority=Priority.normal,
    )  # fmt: skip
    message = TemplateRenderer().render(delivery.content, delivery.recipient, Channel.email)
    LinkTracking("http://r", LINK_KEY.encode(), ("http://127.0.0.1:8090", timedelta(days=1))).apply(
        delivery, message
    )
    [url] = re.findall(r"http://127\.0\.0\.1:8090(/preferences/\S+)", message.text or "")
    assert (await api.get(url)).status_code == 200
