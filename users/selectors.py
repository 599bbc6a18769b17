"""Reads on users."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from django.db.models import Q, QuerySet

from calls.models import Call
from calls.slots import zone_or_none

from .models import User


def users_calling_outside_hours(*, start: time, end: time) -> QuerySet:
    """Callable users whose daily call time lies outside the calling hours [start, end)
    (an end before the start runs past midnight): their slots are recorded missed."""
    outside = (
        Q(call_time__lt=start) | Q(call_time__gte=end)
        if start < end
        else Q(call_time__lt=start, call_time__gte=end)
    )
    return User.objects.filter(outside, call_enabled=True, phone__isnull=False)


def user_by_external_id(*, external_id: str) -> User | None:
    return User.objects.filter(external_id=external_id).first()


def user_local_date(*, user: User, now: datetime) -> date:
    """The user's local calendar date at ``now`` (UTC's for a zone this host does not know)."""
    return now.astimezone(zone_or_none(user.local_tz) or UTC).date()


def user_calls_on(*, user: User, local_date: date) -> QuerySet:
    """The user's calls of one local day, first attempt first (the unique constraint's index)."""
    return Call.objects.filter(user=user, local_date=local_date).order_by("attempt", "pk")
