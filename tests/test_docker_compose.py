"""docker-compose.yml, checked statically (no Docker engine on these machines).

Every TIDINGS_* variable it sets must name a real settings field, so a typo in the deployment
cannot silently fall back to a default.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tidings.search_attributes import REGISTRATION
from tidings.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def settings_field_exists(variable: str) -> bool:
    path = variable.removeprefix("TIDINGS_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(path) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def test_services_and_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgresql", "tidings-database", "temporal", "temporal-ui", "worker", "receiver"} <= set(
        services
    )
    assert "7233:7233" in services["temporal"]["ports"]
    assert "8080:8080" in services["temporal-ui"]["ports"]
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["stop_signal"] == "SIGTERM"


def test_every_tidings_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    names = [
        name
        for service in compose["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith("TIDINGS_")
    ]
    assert names, "the worker is configured through TIDINGS_* variables"
    unknown = [n for n in names if not settings_field_exists(n)]
    assert unknown == []


def test_search_attributes_are_registered(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["temporal-search-attributes"]["command"])
    for name, kind in REGISTRATION.items():
        assert f"{name}={kind}" in script


def test_no_secret_values_in_the_file() -> None:
    text = COMPOSE.read_text()
    assert "${TIDINGS_DB_PASSWORD:-" in text  # the store's password, from the environment
    for variable in ("SMTP_PASSWORD", "TWILIO_AUTH_TOKEN", "SLACK_BOT_TOKEN", "VAPID_PRIVATE_KEY"):
        assert f"${{{variable}:-}}" in text  # taken from the environment, empty by default


def test_worker_and_receiver_share_a_postgresql_store(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dsns = set()
    for name in ("worker", "receiver"):
        env = services[name]["environment"]
        assert env["TIDINGS_STORE__BACKEND"] == "postgres"
        assert "TIDINGS_STORE__SQLITE_PATH" not in env
        settings = Settings.model_validate(
            {"store": {"backend": "postgres", "dsn": env["TIDINGS_STORE__DSN"]}}
        )
        assert settings.store.dsn is not None
        dsns.add(settings.store.dsn.get_secret_value())
        assert (
            services[name]["depends_on"]["tidings-database"]["condition"] == "service_completed_successfully"
        )
        assert not any(str(v).endswith(":/data") for v in services[name].get("volumes", []))
    [dsn] = dsns  # one database for both
    # the PostgreSQL service Temporal uses, a database of its own, the password from the environment
    assert dsn.startswith("postgresql://tidings:${TIDINGS_DB_PASSWORD:-tidings}@postgresql:5432/tidings")
    assert dsn.rsplit("/", 1)[1] != services["temporal"]["environment"]["POSTGRES_USER"]
    assert "CREATE DATABASE tidings" in " ".join(services["tidings-database"]["command"])


def test_the_worker_scales(compose: dict[str, Any]) -> None:
    """`docker compose up --scale worker=3`: no fixed name, no published port, no local state."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert [v for v in worker.get("volumes", []) if not str(v).endswith(":ro")] == []


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_docker_compose_config_accepts_it() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_payload_encryption_is_on_with_keys_from_the_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("worker", "receiver", "codec-server"):
        env = services[name]["environment"]
        assert env["TIDINGS_CODEC__ENABLED"] == "true"
        assert env["TIDINGS_CODEC__KEYS"] == "${TIDINGS_CODEC_KEYS:-}"  # never a key in the file
    server = services["codec-server"]
    assert server["command"] == ["codec-server"]
    assert server["environment"]["TIDINGS_CODEC_SERVER__AUTH_TOKEN"] == "${CODEC_SERVER_TOKEN:-}"
    assert server["environment"]["TIDINGS_CODEC_SERVER__ALLOWED_ORIGINS"] == '["http://localhost:8080"]'
