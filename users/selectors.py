"""Reads on users."""

from __future__ import annotations

from datetime import time

from django.db.models import Q, QuerySet

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
