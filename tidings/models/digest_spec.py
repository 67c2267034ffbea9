"""What a request says about its digest (see `digests.py` for how the digest workflow runs it).

Pure and free of I/O: imported inside Temporal's workflow sandbox.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tidings.models.caps import Window, iso_duration
from tidings.models.fields import Identifier, Model, _check_json_value, serialized_size

DEFAULT_DIGEST_TEMPLATE = "digest"
MAX_DIGEST_ITEMS = 500
MAX_DIGEST_SPEC_BYTES = 4 * 1024


class DigestSpec(Model):
    """How events join one digest: `{"key": "comments:post-9", "window": "PT10M",
    "max_items": 50, "mode": "fixed"}`, `{"key": ..., "window": "PT5M", "mode": "sliding",
    "max_window": "PT1H"}` or `{"key": ..., "until_local_time": "08:00"}`."""

    key: Identifier = Field(description="with the recipient, names the digest (letters, digits, _ . : @ -)")
    window: Window | None = Field(default=None, description="ISO 8601 duration, 1 second to 31 days")
    max_items: int = Field(default=50, ge=1, le=MAX_DIGEST_ITEMS)
    mode: Literal["fixed", "sliding"] = "fixed"
    max_window: Window | None = Field(
        default=None, description="sliding only: the longest a window stays open"
    )
    until_local_time: time | None = Field(
        default=None, description="instead of a window: until the recipient's next HH:MM in their time zone"
    )
    template_id: str = Field(default=DEFAULT_DIGEST_TEMPLATE, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    variables: Annotated[dict[str, Any], AfterValidator(_check_json_value)] = Field(
        default_factory=dict, description="more variables for the digest template"
    )

    @model_validator(mode="after")
    def _one_kind_of_window(self) -> DigestSpec:
        if (self.window is None) == (self.until_local_time is None):
            raise ValueError('a digest needs either a window ("PT10M") or until_local_time ("08:00")')
        if self.until_local_time is not None:
            if self.mode != "fixed" or self.max_window is not None:
                raise ValueError("until_local_time is a fixed window: no mode sliding, no max_window")
            if self.until_local_time.tzinfo is not None:
                raise ValueError("until_local_time is a wall-clock time in the recipient's zone, no offset")
        if self.mode == "sliding":
            if self.max_window is None:
                raise ValueError(
                    "a sliding digest needs max_window, so that a steady trickle cannot delay it"
                )
            if self.window is not None and self.max_window < self.window:
                raise ValueError("max_window must not be shorter than window")
        elif self.max_window is not None:
            raise ValueError("max_window is for mode sliding")
        if serialized_size(self, "the digest") > MAX_DIGEST_SPEC_BYTES:
            raise ValueError(
                f"a digest (with its variables) is limited to {MAX_DIGEST_SPEC_BYTES} bytes of JSON"
            )
        reserved = {"items", "count", "first", "last", "key"} & set(self.variables)
        if reserved:
            raise ValueError(
                f"digest variables cannot be named {', '.join(sorted(reserved))}: the digest sets them"
            )
        return self

    def describe(self) -> str:
        if self.until_local_time is not None:
            return f"until {self.until_local_time.strftime('%H:%M')} local time"
        assert self.window is not None
        if self.mode == "sliding":
            assert self.max_window is not None
            return f"sliding {iso_duration(self.window)} (at most {iso_duration(self.max_window)})"
        return f"fixed {iso_duration(self.window)}"
