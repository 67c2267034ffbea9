"""JSON files given to the CLI (`--request`, `--vars`, `--subscription`): read them or say why not.

A file nested deeper than any real request made `json.loads` (or, a little shallower, the
conversions after it) die with a RecursionError traceback. Nesting is capped well above what a
notification needs (platform overrides and Slack blocks stay far below it) and checked without
recursion, so such a file is refused with a message naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tidings.models import nesting_depth

MAX_JSON_DEPTH = 64


class JsonInputError(ValueError):
    """A JSON file given on the command line cannot be used; the message names the file and flag."""


def read_json_file(path: str, flag: str) -> Any:
    """The JSON value in `path`, given with `flag`; `JsonInputError` if unreadable or too deep."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise JsonInputError(f"{flag}: cannot read {path}: {exc}") from None
    too_deep = JsonInputError(
        f"{flag}: {path} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels; "
        "a Tidings input never needs that many"
    )
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{flag}: {path} is not valid JSON: {exc}") from None
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value
