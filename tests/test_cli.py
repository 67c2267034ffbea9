"""The `tidings` command line, run as a user runs it: a subprocess with settings in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import BIN_DIR
from tidings.models import Channel

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


def test_unreachable_temporal_on_send_exits_1(tmp_path: Path) -> None:
    done = run(tmp_path, "send", "--to", "u1", "--channel", "email", "--title", "x", "--wait")
    assert done.returncode == 1 and "cannot reach Temporal at 127.0.0.1:1" in done.stderr


def test_opt_outs_per_category_and_channel(tmp_path: Path) -> None:
    ok(run(tmp_path, "subscriber", "add", "u1", "--email", "ada@example.com"))
    prefs = ok(
        run(tmp_path, "subscriber", "preferences", "u1",
            "--opt-out-category-channel", "orders=sms", "--opt-out-category-channel", "marketing=email",
            "--opt-out-category-channel", "marketing=push")
    )  # fmt: skip
    assert {k: sorted(v) for k, v in prefs["opted_out_category_channels"].items()} == {
        "orders": ["sms"],
        "marketing": ["email", "push"],
    }
    prefs = ok(
        run(tmp_path, "subscriber", "preferences", "u1",
            "--opt-in-category-channel", "marketing=email", "--opt-in-category-channel", "orders=sms",
            "--opt-in-category-channel", "never-set=slack")
    )  # fmt: skip
    assert prefs["opted_out_category_channels"] == {"marketing": ["push"]}
    assert prefs["opted_out_channels"] == [] and prefs["opted_out_categories"] == []
    shown = ok(run(tmp_path, "subscriber", "show", "u1"))
    assert shown["preferences"]["opted_out_category_channels"] == {"marketing": ["push"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("orders", "--opt-out-category-channel takes CATEGORY=CHANNEL (e.g. marketing=sms), got 'orders'"),
        ("=sms", "takes CATEGORY=CHANNEL"),
        ("orders=", "takes CATEGORY=CHANNEL"),
        ("orders=fax", "--opt-out-category-channel: unknown channel 'fax' in 'orders=fax'; channels: push,"),
    ],
)
def test_bad_category_channel_is_refused(tmp_path: Path, spec: str, message: str) -> None:
    ok(run(tmp_path, "subscriber", "add", "u1"))
    done = run(tmp_path, "subscriber", "preferences", "u1", "--opt-out-category-channel", spec)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert ok(run(tmp_path, "subscriber", "show", "u1"))["preferences"]["opted_out_category_channels"] == {}


@given(st.text(max_size=30))
def test_category_channel_parses_or_says_what_it_takes(spec: str) -> None:
    from tidings.starters.cli import UsageError, category_channel

    try:
        category, channel = category_channel(spec, "--opt-out-category-channel")
    except UsageError as exc:
        assert str(exc).startswith("--opt-out-category-channel")
        return
    assert category and category == category.strip() and isinstance(channel, Channel)
    assert category == spec.partition("=")[0].strip()
    assert channel.value == spec.partition("=")[2].strip()


categories = st.text(min_size=1, max_size=20).filter(lambda c: bool(c.strip()) and "=" not in c)


@given(categories, st.sampled_from(list(Channel)))
def test_category_channel_round_trips(category: str, channel: Channel) -> None:
    from tidings.starters.cli import category_channel

    assert category_channel(f"{category}={channel.value}", "--x") == (category.strip(), channel)


DEEP_ARRAY = "[" * 100_000 + "]" * 100_000  # json.loads itself fails with a RecursionError


def nested_object(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("document", [DEEP_ARRAY, nested_object(65)], ids=["100000-deep", "65-deep"])
@pytest.mark.parametrize(
    "args",
    [
        ["send", "--request", "{file}"],
        ["send", "--to", "u1", "--channel", "email", "--template", "welcome", "--vars", "{file}"],
        ["subscriber", "add-device", "u1", "web", "--platform", "webpush", "--subscription", "{file}"],
        ["template", "render", "welcome", "--vars", "{file}"],
    ],
    ids=["request", "vars", "subscription", "template-vars"],
)
def test_deeply_nested_json_files_are_refused(tmp_path: Path, document: str, args: list[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text(document)
    done = run(tmp_path, *[a.replace("{file}", str(path)) for a in args])
    assert done.returncode == 2, done.stderr
    flag = next(a for a in args if a.startswith("--") and args[args.index(a) + 1] == "{file}")
    assert f"{flag}: {path} nests arrays/objects deeper than 64 levels" in done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr


def test_a_request_nested_within_the_limit_gets_through(tmp_path: Path) -> None:
    """Nesting below the limit is not refused: this request reaches the (absent) server."""
    overrides = json.loads(nested_object(10))
    request = {"recipients": [{"id": "u1", "email": "ada@example.com"}], "channels": ["email"],
               "content": {"title": "x", "platform_overrides": {"slack": overrides}}}  # fmt: skip
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    done = run(tmp_path, "send", "--request", str(path))
    assert done.returncode == 1 and "cannot reach Temporal" in done.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=30,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    return 0


@given(json_values)
def test_json_depth_matches_the_recursive_definition(value: Any) -> None:
    from tidings.models import nesting_depth as json_depth

    assert json_depth(value) == reference_depth(value)
