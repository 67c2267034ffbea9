"""What a recipient may change about what they receive: everything but critical categories."""

from __future__ import annotations

from tidings.api.problems import ApiProblem
from tidings.models import Preferences
from tidings.settings import Settings


def check_opt_outs(settings: Settings, preferences: Preferences) -> None:
    """Refuse (422) opting out of a category the settings list as critical (`api.critical_categories`).

    Security alerts and the like must reach people; the preference center shows those categories
    as not optional, and the API refuses what the page would not offer."""
    critical = set(settings.api.critical_categories)
    refused = sorted(
        critical & (preferences.opted_out_categories | set(preferences.opted_out_category_channels))
    )
    if refused:
        raise ApiProblem(
            422, "not optional", f"critical categories cannot be turned off: {', '.join(refused)}"
        )
