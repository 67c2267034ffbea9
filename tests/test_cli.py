"""The `tidings` command line, run as a user runs it: a subprocess with settings in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN_DIR

TIDINGS = str(BIN_DIR / "tidings")


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "TIDINGS_STORE__SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "TIDINGS_TEMPORAL__ADDRESS": "127.0.0.1:1",  # nothing listens: commands here must not need it
        **(env or {}),
    }
    return subprocess.run([TIDINGS, *args], capture_output=True, text=True, env=environment, timeout=60)


def ok(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_subscriber_lifecycle(tmp_path: Path) -> None:
    added = ok(
        run(
            tmp_path,
            "subscriber",
            "add",
            "user-42",
            "--email",
            "ada@example.com",
            "--timezone",
            "Europe/Berlin",
        )
    )
    assert added["email"] == "ada@example.com" and added["timezone"] == "Europe/Berlin"
    prefs = ok(
        run(tmp_path, "subscriber", "preferences", "user-42", "--opt-out-channel", "sms",
            "--opt-out-category", "marketing", "--quiet-hours", "22:00-07:00")
    )  # fmt: skip
    assert prefs["opted_out_channels"] == ["sms"] and prefs["quiet_hours"] == {
        "start": "22:00:00",
        "end": "07:00:00",
    }
    devices = ok(
        run(tmp_path, "subscriber", "add-device", "user-42", "phone-1", "--platform", "fcm", "--token", "t0k")
    )
    assert [d["id"] for d in devices] == ["phone-1"]
    ok(run(tmp_path, "subscriber", "update", "user-42", "--locale", "de"))
    shown = ok(run(tmp_path, "subscriber", "show", "user-42"))
    assert shown["locale"] == "de" and shown["devices"][0]["token"] == "t0k"
    assert ok(run(tmp_path, "subscriber", "remove-device", "user-42", "phone-1")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["subscriber", "add", "u1", "--timezone", "Mars/Base"], "unknown IANA time zone 'Mars/Base'"),
        (["subscriber", "add", "u1", "--email", "nope"], "malformed email address 'nope'"),
        (["subscriber", "show", "ghost"], "no subscriber with id 'ghost'"),
        (["subscriber", "add-device", "ghost", "d1", "--platform", "apns"], "a apns device needs a token"),
        (["send", "--to", "u1"], "--channel email"),
        (["send", "--to", "u1", "--channel", "fax", "--title", "x"], "channels.0.channel"),
        (["send", "--to", "u1", "--channel", "email"], "content needs a title or body"),
        (
            ["send", "--to", "u1", "--channel", "email", "--title", "x", "--schedule-at", "tomorrow"],
            "schedule_at",
        ),
        (["send", "--to", "u1", "--channel", "email", "--title", "x", "--data", "novalue"], "key=value"),
        (["reschedule", "x", "soon"], "not an ISO 8601 timestamp"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_settings_are_reported(tmp_path: Path) -> None:
    done = run(tmp_path, "subscriber", "show", "u1", env={"TIDINGS_SMTP__PORT": "seventy"})
    assert done.returncode == 2 and "smtp.port" in done.stderr


def test_unreachable_temporal_is_reported(tmp_path: Path) -> None:
    done = run(tmp_path, "status", "anything")
    assert done.returncode == 1
    assert "cannot reach Temporal at 127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tidings.starters.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "subscriber" in done.stdout


def test_send_flags_build_the_documented_request() -> None:
    from tidings.starters.cli import build_parser, build_send_request
    from tidings.starters.client import parse_request

    args = build_parser().parse_args(
        ["send", "--to", "u1", "--channel", "in_app>push>email", "--channel", "webhook",
         "--escalate-after", "in_app=PT10M", "--escalate-after", "push=PT1H",
         "--title", "Hi", "--data", "order=123", "--priority", "high", "--category", "orders"]
    )  # fmt: skip
    request = parse_request(build_send_request(args))
    first, second = request.channels
    assert [first.channel, *first.fallback] == ["in_app", "push", "email"]
    assert {c.value: d.total_seconds() for c, d in first.escalate_after.items()} == {
        "in_app": 600,
        "push": 3600,
    }
    assert second.channel == "webhook" and request.content.data == {"order": "123"}


def test_escalation_for_unknown_channel_is_refused(tmp_path: Path) -> None:
    done = run(
        tmp_path, "send", "--to", "u1", "--channel", "email", "--title", "x", "--escalate-after", "sms=PT1M"
    )
    assert done.returncode == 2 and "--escalate-after names 'sms'" in done.stderr
