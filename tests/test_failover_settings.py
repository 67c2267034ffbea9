"""Failover settings: named providers, per-channel provider lists, budgets and breakers.

Every mistake is refused when the settings load, with a message naming the key (never a value:
it may be a secret); configurations without the new sections work as before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.activities.failover.chains import ProviderChains
from tidings.activities.providers.registry import build_providers
from tidings.activities.store.sqlite import SqliteStore
from tidings.models import Channel, RetrySpec
from tidings.settings import (
    BUILT_IN_PROVIDERS,
    PROVIDER_NAME,
    NamedSmtpSettings,
    SettingsError,
    load_settings,
)

SECRET = "s3cret-" + "q" * 20
BACKUP = {"kind": "smtp", "host": "relay2.example.com", "password": SECRET}
TWILIO = {
    "kind": "twilio",
    "account_sid": "AC" + "2" * 32,
    "auth_token": SECRET,
    "from_number": "+15005550006",
}


def error(**values: Any) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(**values)
    message = str(info.value)
    assert SECRET not in message
    return message


def test_settings_without_failover_are_unchanged(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.channels == {} and settings.providers == {}
    assert settings.chain_for(Channel.email) == []
    assert ProviderChains.from_settings(settings).route("smtp", [], attempt=1, now=datetime.now(UTC)) is None


async def test_named_providers_are_built_next_to_the_usual_ones(tmp_path: Path) -> None:
    settings = load_settings(
        smtp={"from_address": "Shop <shop@example.com>"},
        providers={"smtp_backup": BACKUP, "sms_b": TWILIO},
        channels={"email": {"providers": ["smtp", "smtp_backup"]}, "sms": {"providers": ["sms_b"]}},
    )
    store = await SqliteStore.open(tmp_path / "s.sqlite3")
    try:
        providers = build_providers(settings, store)
        assert {"smtp", "smtp_backup", "sms_b"} <= set(providers)
        assert providers["smtp_backup"].name == "smtp_backup"
        for provider in providers.values():
            await provider.aclose()
    finally:
        await store.aclose()
    assert settings.chain_for(Channel.email) == ["smtp", "smtp_backup"]


def test_a_toml_file_with_environment_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text(
        '[channels.email]\nproviders = ["smtp", "smtp_backup"]\n\n'
        '[providers.smtp_backup]\nkind = "smtp"\nhost = "relay2.example.com"\n\n'
        '[failover]\nattempts = 2\ntime = "PT2M"\n\n[failover.providers.smtp]\nbreaker_threshold = 3\n'
    )
    monkeypatch.setenv("TIDINGS_SETTINGS", str(path))
    monkeypatch.setenv("TIDINGS_PROVIDERS__SMTP_BACKUP__PASSWORD", SECRET)
    settings = load_settings()
    backup = settings.providers["smtp_backup"]
    assert isinstance(backup, NamedSmtpSettings)
    assert backup.password is not None and backup.password.get_secret_value() == SECRET
    smtp = settings.failover.policy_for("smtp")
    assert (smtp.attempts, smtp.time.total_seconds(), smtp.breaker_threshold) == (2, 120, 3)
    assert settings.failover.policy_for("smtp_backup").breaker_threshold == 5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {
                "channels": {"email": {"providers": ["smtp", "smtp_bakup"]}},
                "providers": {"smtp_backup": BACKUP},
            },
            "channels.email.providers: 'smtp_bakup' is not a provider (did you mean smtp_backup?); "
            'define it as [providers.smtp_bakup] with kind = "smtp"',
        ),
        (
            {
                "channels": {"sms": {"providers": ["sms_b", "smtp_backup"]}},
                "providers": {"smtp_backup": BACKUP, "sms_b": TWILIO},
            },
            "channels.sms.providers: 'smtp_backup' is a smtp provider; this channel needs twilio",
        ),
        (
            {"channels": {"sms": {"providers": ["twilio", "sms_b"]}}, "providers": {"sms_b": TWILIO}},
            "channels.sms.providers: 'twilio' needs twilio.account_sid, twilio.auth_token and",
        ),
        (
            {"channels": {"push": {"providers": ["fcm", "apns"]}}},
            "channels.push.providers: only email, sms can have several providers",
        ),
        (
            {"channels": {"email": {"providers": ["smtp", "smtp"]}}},
            "channels.email.providers: Value error, smtp listed more than once",
        ),
        (
            {"channels": {"email": {"providers": []}}},
            "channels.email.providers: List should have at least 1 item",
        ),
        (
            {"providers": {"smtp": BACKUP}},
            "providers.smtp: 'smtp' is a built-in provider; configure it in [smtp]",
        ),
        ({"providers": {"Relay-2": BACKUP}}, "providers.Relay-2: provider names are 1-40 lowercase letters"),
        (
            {"providers": {"relay": {"host": "x"}}},
            "providers.relay: Unable to extract tag using discriminator",
        ),
        ({"providers": {"relay": {**BACKUP, "hots": "x"}}}, "providers.relay.smtp.hots: unknown setting"),
        (
            {"providers": {"sms_b": {**TWILIO, "from_number": None}}},
            "a twilio provider needs from_number or messaging_service_sid",
        ),
        (
            {
                "failover": {"providers": {"smtp_bakup": {"attempts": 2}}},
                "providers": {"smtp_backup": BACKUP},
            },
            "failover.providers.smtp_bakup: no provider is named 'smtp_bakup' (did you mean smtp_backup?)",
        ),
        ({"failover": {"attempts": 0}}, "failover.attempts: Input should be greater than or equal to 1"),
        ({"failover": {"time": "PT0S"}}, "failover.time: Value error, must be longer than zero"),
        (
            {"failover": {"providers": {"smtp": {"breaker_cooldown": "-PT1S"}}}},
            "failover.providers.smtp.breaker_cooldown: Value error, must be longer than zero",
        ),
        (
            {
                "channels": {"email": {"providers": ["smtp", "smtp_backup"]}},
                "providers": {"smtp_backup": BACKUP},
                "failover": {"attempts": 6},
            },
            "retry.email.maximum_attempts is 6, but channels.email.providers needs at least 7: "
            "the failover attempt budgets of smtp plus one attempt for smtp_backup",
        ),
    ],
)
def test_mistakes_are_named(values: dict[str, Any], expected: str) -> None:
    assert expected in error(**values)


@given(st.text(min_size=1, max_size=50))
def test_any_provider_name_is_accepted_or_refused_by_name(name: str) -> None:
    values = {"providers": {name: BACKUP}, "channels": {"email": {"providers": ["smtp", name]}}}
    if PROVIDER_NAME.match(name) and name not in BUILT_IN_PROVIDERS:
        assert load_settings(**values).chain_for(Channel.email) == ["smtp", name]
    else:
        assert f"providers.{name}" in error(**values)


@given(
    budgets=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=3),
    maximum=st.integers(min_value=1, max_value=40),
)
def test_the_retry_policy_must_leave_the_last_provider_an_attempt(budgets: list[int], maximum: int) -> None:
    names = [f"relay_{i}" for i in range(len(budgets))]
    values: dict[str, Any] = {
        "providers": {name: BACKUP for name in names},
        "channels": {"email": {"providers": ["smtp", *names]}},
        "failover": {
            "providers": {name: {"attempts": n} for name, n in zip(["smtp", *names], budgets, strict=False)}
        },
        "retry": {"email": RetrySpec(maximum_attempts=maximum)},
    }
    needed = sum(budgets) + 1
    if maximum >= needed:
        settings = load_settings(**values)
        assert settings.chain_for(Channel.email)[-1] == names[-1]
    else:
        assert (
            f"retry.email.maximum_attempts is {maximum}, but channels.email.providers needs at least"
            in error(**values)
        )
