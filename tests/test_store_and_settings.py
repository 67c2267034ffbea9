from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tidings.activities.store.base import Store, UnknownRecipientError
from tidings.models import Channel, Device, Preferences, Recipient
from tidings.settings import SettingsError, load_settings


async def test_store_round_trip_and_devices(any_store: Store) -> None:
    store = any_store
    await store.put(Recipient(id="u1", email="u1@example.com", timezone="Europe/Berlin"))
    await store.add_device("u1", Device(id="phone", platform="fcm", token="tok-1"))
    await store.add_device("u1", Device(id="phone", platform="fcm", token="tok-2"))  # same id replaces
    r = await store.get("u1")
    assert r is not None and [d.token for d in r.devices] == ["tok-2"]
    assert r.devices[0].registered_at is not None
    await store.set_preferences("u1", Preferences(opted_out_channels={Channel.sms}))
    assert (await store.get("u1")).preferences.opted_out_channels == {Channel.sms}  # type: ignore[union-attr]
    await store.remove_device("u1", "phone")
    assert (await store.get("u1")).devices == []  # type: ignore[union-attr]
    with pytest.raises(LookupError, match="no device 'phone'"):
        await store.remove_device("u1", "phone")
    with pytest.raises(UnknownRecipientError, match="tidings subscriber add"):
        await store.add_device("ghost", Device(id="x", platform="fcm", token="t"))


async def test_deactivation_respects_newer_registration(any_store: Store) -> None:
    store = any_store
    registered = datetime(2026, 5, 1, tzinfo=UTC)
    await store.put(
        Recipient(id="u1", devices=[Device(id="d", platform="apns", token="ab", registered_at=registered)])
    )
    # the provider saw the token invalid before the device registered again: keep it
    assert not await store.deactivate_device("u1", "d", "Unregistered", registered - timedelta(days=1))
    assert (await store.get("u1")).devices[0].active  # type: ignore[union-attr]
    assert await store.deactivate_device("u1", "d", "Unregistered", registered + timedelta(days=1))
    device = (await store.get("u1")).devices[0]  # type: ignore[union-attr]
    assert not device.active and device.deactivated_reason == "Unregistered"


def test_settings_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text(
        '[smtp]\nhost = "mail.internal"\npassword = "hunter2"\n[retry.email]\nmaximum_attempts = 9\n'
    )
    monkeypatch.setenv("TIDINGS_SETTINGS", str(path))
    monkeypatch.setenv("TIDINGS_TEMPORAL__ADDRESS", "temporal:7233")
    settings = load_settings()
    assert settings.smtp.host == "mail.internal"
    assert settings.temporal.address == "temporal:7233"
    assert settings.retry_for(Channel.email).maximum_attempts == 9
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()


def test_bad_settings_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text('[smtp]\nport = "seventy"\npassword = "hunter2"\n')
    monkeypatch.setenv("TIDINGS_SETTINGS", str(path))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "smtp.port" in str(info.value) and "hunter2" not in str(info.value)


def test_missing_settings_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_SETTINGS", "/nonexistent/tidings.toml")
    with pytest.raises(SettingsError, match="not a file"):
        load_settings()


def test_example_settings_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / "tidings.example.toml"
    monkeypatch.setenv("TIDINGS_SETTINGS", str(example))
    settings = load_settings()
    assert settings.retry_for(Channel.email).maximum_attempts == 6
    assert settings.retry_for(Channel.webhook).maximum_attempts == 8
    assert settings.temporal.task_queue == "notifications"
