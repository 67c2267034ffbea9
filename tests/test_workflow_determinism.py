"""The workflows (notification, digest, broadcast) run outside Temporal's sandbox in workers
(tidings.workers.worker: `worker_runner`), so nothing stops their code at run time from reading
the clock, drawing random numbers or doing I/O. These checks keep it deterministic instead:

- the code that runs inside the workflow (the modules below) calls nothing nondeterministic and
  imports no module that does I/O, threads or randomness (a static check of their syntax trees);
- the workflow module imports no other module of ours without it being listed here, either as
  workflow-side code (checked) or as a module it takes only activity names from;
- the workers really run it unsandboxed, while every notification the test suite starts is
  replayed inside the sandbox (tests/conftest.py `assert_histories_replay` uses `workflow_runner`),
  which refuses nondeterministic calls at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import tidings
from tidings.workers.worker import worker_runner, workflow_runner

ROOT = Path(tidings.__file__).parent

# Modules whose code runs inside the workflow (decisions, models it builds, Web UI texts).
WORKFLOW_SIDE = [
    "workflows/notification.py",
    "workflows/digest.py",
    "workflows/broadcast.py",
    "workflows/inputs.py",
    "workflows/worker_policy.py",
    "planning.py",
    "quiet_hours.py",
    "redaction.py",
    "validation.py",
    "search_attributes.py",
    "telemetry/metrics.py",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "models").glob("*.py"))),
]
# Imported by the workflow only for the names of its activities; their code runs in activities.
ACTIVITY_NAMES_ONLY = {
    "tidings.activities.delivery",
    "tidings.activities.subscribers",
    "tidings.activities.broadcast",
}
WORKFLOWS = ["workflows/notification.py", "workflows/digest.py", "workflows/broadcast.py"]

FORBIDDEN_MODULES = {
    "random", "secrets", "time", "socket", "ssl", "subprocess", "threading", "multiprocessing",
    "concurrent", "sqlite3", "asyncpg", "httpx", "aiohttp", "requests", "os",
    "shutil", "tempfile", "signal",
}  # fmt: skip
FORBIDDEN_CALLS = {
    "now", "utcnow", "today", "fromtimestamp", "uuid1", "uuid4", "getenv", "sleep", "open",
    "perf_counter", "monotonic", "time_ns", "urandom", "getrandbits", "token_hex", "token_bytes",
    "create_task", "run_in_executor", "to_thread", "get_event_loop", "get_running_loop",
}  # fmt: skip
# Calls by these names that are deterministic: the workflow API's own clock and ids.
# `asyncio.create_task` in a workflow runs on Temporal's deterministic event loop (the broadcast's
# sliding window of batches); `to_thread`, `run_in_executor` and loop lookups stay forbidden.
ALLOWED_CALLS = {("workflow", "now"), ("workflow", "uuid4"), ("asyncio", "create_task")}


def _imported(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _calls(tree: ast.AST) -> list[tuple[str | None, str, int]]:
    """(owner, name, line) of every call: `datetime.now()` is ('datetime', 'now')."""
    found: list[tuple[str | None, str, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            found.append((owner, func.attr, node.lineno))
        elif isinstance(func, ast.Name):
            found.append((None, func.id, node.lineno))
    return found


@pytest.mark.parametrize("module", WORKFLOW_SIDE)
def test_workflow_side_code_calls_nothing_nondeterministic(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(), module)
    bad_imports = [n for n in _imported(tree) if n.split(".")[0] in FORBIDDEN_MODULES]
    assert not bad_imports, f"{module} imports {bad_imports}: not allowed in workflow-side code"
    bad_calls = [
        f"{owner + '.' if owner else ''}{name}() on line {line}"
        for owner, name, line in _calls(tree)
        if name in FORBIDDEN_CALLS and (owner, name) not in ALLOWED_CALLS
    ]
    assert not bad_calls, f"{module} calls {bad_calls}: use workflow.now()/workflow.uuid4(), no I/O"


@pytest.mark.parametrize("workflow_module", WORKFLOWS)
def test_the_workflows_import_only_checked_modules_of_ours(workflow_module: str) -> None:
    checked = {"tidings." + m.removesuffix(".py").replace("/", ".") for m in WORKFLOW_SIDE}
    checked = {m.removesuffix(".__init__") for m in checked} | {"tidings.models", "tidings.telemetry"}
    tree = ast.parse((ROOT / workflow_module).read_text())
    ours = {n for n in _imported(tree) if n.startswith("tidings")}
    unchecked = {
        n
        for n in ours
        if n not in checked
        and n.rsplit(".", 1)[0] not in checked | ACTIVITY_NAMES_ONLY
        and n not in ACTIVITY_NAMES_ONLY
        and n != "tidings"
    }
    assert not unchecked, f"add {sorted(unchecked)} to WORKFLOW_SIDE (and keep them deterministic)"


def test_the_check_catches_a_clock_read() -> None:
    tree = ast.parse("from datetime import datetime\ndef f():\n    return datetime.now()\n")
    assert ("datetime", "now", 3) in _calls(tree)
    assert ("workflow", "now") in ALLOWED_CALLS


def test_workers_run_unsandboxed_and_replays_run_in_the_sandbox() -> None:
    assert isinstance(worker_runner(), UnsandboxedWorkflowRunner)
    assert isinstance(workflow_runner(), SandboxedWorkflowRunner)
