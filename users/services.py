"""Writes on users."""

from __future__ import annotations

from collections.abc import Iterable


def users_set_call_enabled(*, users: Iterable, enabled: bool) -> int:
    """Enable or disable calls for users, keeping each one's next call in step."""
    changed = 0
    for user in users:
        if user.call_enabled != enabled:
            user.call_enabled = enabled
            user.save(update_fields=["call_enabled"])
            changed += 1
    return changed
