"""Which endpoints receive events: the admin's, and one from the environment.

The engine asks endpoints_want(type) before writing an event. The answer comes from a list
each process keeps for EVENTS_ENDPOINTS_CACHE_SECONDS, so that with no endpoint at all the
engine's hot paths (the webhook, the tick) pay nothing but that look-up.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import DatabaseError

from .models import Endpoint, EventType

ENVIRONMENT_ENDPOINT_NAME = "environment (EVENTS_WEBHOOK_URL)"

_cache: dict[str, object] = {"until": 0.0, "types": frozenset()}


def endpoints_cache_clear() -> None:
    """Forget the list (tests, and the admin after an endpoint is saved)."""
    _cache["until"] = 0.0


def _wanted_types() -> frozenset[str]:
    if settings.EVENTS_WEBHOOK_URL:
        return frozenset(EventType.values)
    types: set[str] = set()
    for event_types in Endpoint.objects.filter(active=True).values_list("event_types", flat=True):
        types.update(event_types or EventType.values)
    return frozenset(types)


def endpoints_want(event_type: str) -> bool:
    """Whether any active endpoint receives ``event_type`` (as of a few seconds ago)."""
    now = time.monotonic()
    if now >= _cache["until"]:
        try:
            _cache["types"] = _wanted_types()
        except DatabaseError:
            # Inside a failed transaction, say: the caller's own statement reports it.
            return event_type in _cache["types"]
        _cache["until"] = now + settings.EVENTS_ENDPOINTS_CACHE_SECONDS
    return event_type in _cache["types"]


def endpoint_from_environment_sync() -> Endpoint | None:
    """The endpoint EVENTS_WEBHOOK_URL names, its row created or brought in step (URL and
    secret; whether it is active stays the operator's, or a 410's, decision)."""
    if not settings.EVENTS_WEBHOOK_URL:
        return None
    endpoint = Endpoint.objects.filter(from_environment=True).first()
    if endpoint is None:
        endpoint, _ = Endpoint.objects.get_or_create(
            name=ENVIRONMENT_ENDPOINT_NAME,
            defaults={
                "url": settings.EVENTS_WEBHOOK_URL,
                "secret": settings.EVENTS_WEBHOOK_SECRET,
                "from_environment": True,
            },
        )
    if (endpoint.url, endpoint.secret) != (settings.EVENTS_WEBHOOK_URL, settings.EVENTS_WEBHOOK_SECRET):
        endpoint.url, endpoint.secret = settings.EVENTS_WEBHOOK_URL, settings.EVENTS_WEBHOOK_SECRET
        endpoint.save(update_fields=["url", "secret"])
    return endpoint


def endpoints_active() -> list[Endpoint]:
    endpoint_from_environment_sync()
    return list(Endpoint.objects.filter(active=True))
