"""The events' part of forgetting a person (users.erasure.forget_person): their events stay
in the outbox (a receiver's sequence has no gap) without the external id or data, deliveries
still pending are given up (nothing about a forgotten person goes out after the erasure),
and the product's answers logged for them are blanked (a receiver may echo what it got)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .models import Delivery, DeliveryAttempt, DeliveryStatus, Event


def events_erase_person(*, user_id: int, identifiers: Iterable[str], now: datetime) -> int:
    """Strip the person's events; returns how many. Runs in the caller's transaction."""
    changed = Event.objects.filter(user_id=user_id).update(external_id=None, data={})
    Delivery.objects.filter(event__user_id=user_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    DeliveryAttempt.objects.filter(delivery__event__user_id=user_id).update(response_excerpt="", error="")
    return changed
