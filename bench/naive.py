"""The original design's tick, rewritten on this schema for comparison only.

It loads every enabled user, works out each one's local wall-clock time in Python, and for
each user whose call time fell in the last ``slot_minutes`` it makes one duplicate-check
query, inserts the call row and enqueues one job, one by one. (It is given the charitable
reading: the duplicate check runs for due users only, not for every user.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model

from calls import queues
from calls.jobs import place_call
from calls.models import Call, CallStatus

User = get_user_model()


@dataclass
class NaiveResult:
    scanned: int = 0
    # Users whose slot fell in the window; those handled (checked, inserted, enqueued).
    matched: int = 0
    handled: int = 0
    enqueued: int = 0
    complete: bool = True
    # Seconds spent on the per-user work of handled users (for extrapolation at a deadline).
    handle_seconds: float = 0.0


def naive_tick(*, now: datetime, slot_minutes: int = 5, deadline: float | None = None) -> NaiveResult:
    """One tick the original way. With ``deadline`` (a perf_counter value) it stops handling
    due users once past it (still scanning them all); the caller extrapolates."""
    queue = queues.calls_queue()
    options = {"result_ttl": settings.JOB_RESULT_TTL, "failure_ttl": settings.JOB_FAILURE_TTL}
    result = NaiveResult()
    for user in User.objects.filter(call_enabled=True).iterator(chunk_size=2000):
        result.scanned += 1
        if not user.phone:
            continue
        local = now.astimezone(ZoneInfo(user.local_tz))
        since = (local.hour * 60 + local.minute - user.call_time.hour * 60 - user.call_time.minute) % 1440
        if since >= slot_minutes:
            continue
        result.matched += 1
        if deadline is not None and time.perf_counter() > deadline:
            result.complete = False
            continue  # keep scanning so the load cost is whole; stop the per-user work
        started = time.perf_counter()
        result.handled += 1
        local_date = (local - timedelta(minutes=since)).date()
        if Call.objects.filter(user_id=user.pk, local_date=local_date, attempt=1).exists():
            result.handle_seconds += time.perf_counter() - started
            continue
        call = Call.objects.create(
            user_id=user.pk,
            to_number=user.phone,
            agent_id=settings.CALLKARO_AGENT_ID,
            attempt=1,
            local_date=local_date,
            status=CallStatus.QUEUED,
            scheduled_for=now,
            provider=settings.CALL_PROVIDER,
        )
        queue.enqueue(place_call, call.pk, job_id=queues.call_job_id(call.pk), **options)
        result.enqueued += 1
        result.handle_seconds += time.perf_counter() - started
    return result
