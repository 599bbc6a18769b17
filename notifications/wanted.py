"""Whether anyone wants to hear from us when a day is missed: the engine asks before doing
the day's bookkeeping (calls/days.py), so a deployment where nobody turned notifications on
pays nothing for them. Read again every few seconds per process, like the events'
endpoints (events/endpoints.py), never per call."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.db.models import Q

NOTIFY_WANTED_CACHE_SECONDS = 30.0

_cache: dict[str, float | bool] = {"until": 0.0, "wanted": False}


def notifications_wanted() -> bool:
    """Whether any person has SMS or e-mail on for a missed day (as of a few seconds ago)."""
    now = time.monotonic()
    if now >= _cache["until"]:
        try:
            _cache["wanted"] = (
                get_user_model().objects.filter(Q(notify_sms=True) | Q(notify_email=True)).exists()
            )
        except DatabaseError:
            # Inside a failed transaction, say: the caller's own statement reports it.
            return bool(_cache["wanted"])
        _cache["until"] = now + NOTIFY_WANTED_CACHE_SECONDS
    return bool(_cache["wanted"])


def notifications_wanted_clear() -> None:
    """Forget the cached answer (a person's preference just changed; tests)."""
    _cache["until"] = 0.0
