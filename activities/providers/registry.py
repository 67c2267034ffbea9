"""Which provider serves which `Destination.provider` name, built from the worker's settings.

A provider whose credentials are missing from settings is simply absent: a delivery that needs
it fails permanently with a message that names the settings to fill in.
"""

from __future__ import annotations

from tidings.activities.inbox import InboxProvider
from tidings.activities.providers.apns import ApnsProvider
from tidings.activities.providers.base import Provider
from tidings.activities.providers.fcm import FcmProvider
from tidings.activities.providers.slack import SlackProvider
from tidings.activities.providers.smtp import SmtpProvider
from tidings.activities.providers.twilio import TwilioProvider
from tidings.activities.providers.webhook import WebhookProvider
from tidings.activities.providers.webpush import WebPushProvider
from tidings.activities.store.base import SubscriberStore
from tidings.settings import NamedSmtpSettings, NamedTwilioSettings, Settings

SETTINGS_HINT: dict[str, str] = {
    "fcm": "fcm.project_id and fcm.service_account_file",
    "apns": "apns.team_id, apns.key_id, apns.private_key_file and apns.topic",
    "webpush": "webpush.vapid_private_key",
    "twilio": "twilio.account_sid, twilio.auth_token and twilio.from_number or twilio.messaging_service_sid",
}


def build_providers(settings: Settings, store: SubscriberStore) -> dict[str, Provider]:
    """Every provider whose settings are complete. Broken credentials files stop the worker."""
    providers: list[Provider] = [
        SmtpProvider(settings.smtp),
        WebhookProvider(settings.webhook),
        SlackProvider(settings.slack),  # incoming webhooks need no settings; chat.postMessage the bot token
    ]
    if settings.fcm.project_id and settings.fcm.service_account_file:
        providers.append(FcmProvider(settings.fcm))
    if settings.apns.team_id and settings.apns.key_id and settings.apns.private_key_file:
        providers.append(ApnsProvider(settings.apns))
    if settings.webpush.vapid_private_key is not None:
        providers.append(WebPushProvider(settings.webpush))
    twilio = settings.twilio
    if twilio.account_sid and twilio.auth_token and (twilio.from_number or twilio.messaging_service_sid):
        providers.append(TwilioProvider(twilio, settings.receiver, store))
    providers.append(InboxProvider(store.inbox))
    providers.extend(_named_providers(settings, store))
    return {p.name: p for p in providers}


def _named_providers(settings: Settings, store: SubscriberStore) -> list[Provider]:
    """`[providers.NAME]` instances (further relays and accounts for failover).

    A relay that sets no `from_address` sends with `smtp.from_address`, so the Message-ID
    (`<delivery id@from domain>`) is the same whichever relay delivers."""
    named: list[Provider] = []
    for name, section in settings.providers.items():
        if isinstance(section, NamedSmtpSettings):
            if "from_address" not in section.model_fields_set:
                section = section.model_copy(update={"from_address": settings.smtp.from_address})
            named.append(SmtpProvider(section, name=name))
        elif isinstance(section, NamedTwilioSettings):
            named.append(TwilioProvider(section, settings.receiver, store, name=name))
    return named
