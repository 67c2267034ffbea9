"""Unknown settings keys are errors that name the key, from a file and from the environment.

A typo such as `[temporal] adress = ...` used to be ignored, so the worker silently ran with the
default address. These tests go through `load_settings`, the function every command uses.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.models import RetrySpec
from tidings.settings import Settings, SettingsError, load_settings

SECTIONS = sorted(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and name not in {"retry", "push_success"}
)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set variables for the block only (hypothesis examples cannot use monkeypatch)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def settings_error(**env: str) -> str:
    with environment(**env), pytest.raises(SettingsError) as info:
        load_settings()
    return str(info.value)


def test_typo_in_file_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text('[temporal]\nadress = "temporal:7233"\n')
    message = settings_error(TIDINGS_SETTINGS=str(path))
    assert "temporal.adress: unknown setting (did you mean address?)" in message
    assert "temporal:7233" not in message


def test_typo_in_environment_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "tidings.toml"
    empty.write_text("")
    message = settings_error(TIDINGS_SETTINGS=str(empty), TIDINGS_SMTP__PASWORD="hunter2")
    assert "smtp.pasword: unknown setting (did you mean password?)" in message
    assert "hunter2" not in message


def test_unknown_retry_field_and_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text("[retry.email]\nmax_attempts = 3\n\n[temporl]\naddress = 'x'\n")
    message = settings_error(TIDINGS_SETTINGS=str(path))
    assert "retry.email.max_attempts: unknown setting (did you mean maximum_attempts?)" in message
    assert "temporl: unknown setting (did you mean temporal?)" in message


def test_a_key_after_a_section_header_belongs_to_that_section(tmp_path: Path) -> None:
    """The mistake tidings.example.toml used to make: a top-level key written under [store]."""
    path = tmp_path / "tidings.toml"
    path.write_text('[store]\nbackend = "sqlite"\npush_success = "all"\n')
    assert "store.push_success: unknown setting" in settings_error(TIDINGS_SETTINGS=str(path))


def test_known_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "tidings.toml"
    path.write_text('push_success = "all"\n[temporal]\naddress = "temporal:7233"\n')
    with environment(TIDINGS_SETTINGS=str(path), TIDINGS_SMTP__PORT="2525"):
        loaded = load_settings()
    assert (loaded.push_success, loaded.temporal.address, loaded.smtp.port) == ("all", "temporal:7233", 2525)


def _known(section: str) -> set[str]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type)
    return set(getattr(annotation, "model_fields", {}))


keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda k: "__" not in k)
secrets = st.from_regex(r"[A-Za-z0-9]{12,24}", fullmatch=True).map(lambda s: "S3CRET" + s)


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(SECTIONS), key=keys, secret=secrets, via_env=st.booleans())
def test_any_unknown_key_is_named_and_its_value_never_shown(
    section: str, key: str, secret: str, via_env: bool
) -> None:
    if key in _known(section):
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tidings.toml"
        if via_env:
            path.write_text("")
            env = {f"TIDINGS_{section.upper()}__{key.upper()}": secret}
        else:
            path.write_text(f'[{section}]\n{key} = "{secret}"\n')
            env = {}
        message = settings_error(TIDINGS_SETTINGS=str(path), **env)
    assert f"{section}.{key}: unknown setting" in message
    assert secret not in message


@settings(max_examples=30, deadline=None)
@given(key=keys, secret=secrets)
def test_any_unknown_retry_key_is_named(key: str, secret: str) -> None:
    if key in RetrySpec.model_fields:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tidings.toml"
        path.write_text(f'[retry.sms]\n{key} = "{secret}"\n')
        message = settings_error(TIDINGS_SETTINGS=str(path))
    assert f"retry.sms.{key}: unknown setting" in message and secret not in message


# Text a path, namespace or task queue could hold, minus what no file system or TOML file can
# carry (NUL, lone surrogates).
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(address=names, namespace=names, task_queue=names, folder=names)
def test_the_dev_stacks_cli_settings_file_reads_back(
    address: str, namespace: str, task_queue: str, folder: str
) -> None:
    """What `tidings dev` writes for the CLI is what the CLI reads, whatever the characters."""
    from tidings.starters.dev import write_cli_settings

    with tempfile.TemporaryDirectory() as data:
        wanted = Settings.model_validate(
            {
                "temporal": {"address": address, "namespace": namespace, "task_queue": task_queue},
                "store": {"sqlite_path": Path(data) / folder / "tidings.sqlite3"},
            }
        )
        path = write_cli_settings(wanted, Path(data))
        with environment(TIDINGS_SETTINGS=str(path)):
            loaded = load_settings()
    assert loaded.temporal.model_dump() == wanted.temporal.model_dump()
    assert loaded.store.sqlite_path == wanted.store.sqlite_path
