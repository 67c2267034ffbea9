"""Turning pydantic validation errors into messages a person can act on.

Used at every boundary (client, CLI, workflow input, signals), so a problem reads the same
wherever it is found. Input values are never echoed: they may hold personal data or secrets.
"""

from __future__ import annotations

from pydantic import ValidationError


def validation_message(exc: ValidationError, what: str = "notification request") -> str:
    """`invalid <what>:` followed by one `  <field path>: <problem>` line per error."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(p) for p in err["loc"]) or "(request)"
        lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid {what}:\n" + "\n".join(lines)
