"""Today's counts for the dashboard's "today at a glance", kept as a snapshot.

Why not live. At 1,000,000 users today holds ~1M calls by the afternoon. Counting them took
1.0 s (one pass on the ``local_date`` index) plus 3.6 s for "not reached" (an anti-join
probing the retry_of_id index once per unanswered call) on the benchmark's machine, several
times the whole page's budget; in one statement as below, still 0.8-2.4 s
(BENCHMARKS.md, "Dashboard"). No index turns that into an index-only scan, because today's
rows are never all-visible: the tick and the webhooks keep rewriting them. So the refresh
job (dashboard.rollups.daily_stats_refresh) computes today's counts first, and the page
reads one row. Once the snapshot is TODAY_REFRESH_AFTER old, the page recomputes it itself
when its last computation took under TODAY_INLINE_SECONDS (a small deployment, a first run:
milliseconds), and otherwise enqueues that job; so while someone watches, the numbers are
at most about a minute old. rqscheduler's cron (DASHBOARD_REFRESH_CRON) keeps them recent
while nobody does. A snapshot older than TODAY_STALE_AFTER (no worker ran the job, or a new
day began) is not shown: the page computes the counts itself, slowly but right, and stores
them.

What is happening right now (calls in flight, retries pending) stays live in the selector:
two index reads by status, small whatever the history.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

from django.db.models import Count, FilteredRelation, Q

from calls import forecast
from calls.models import Call, CallStatus
from users.calendar import people_off_on

from .models import TodaySnapshot

TODAY_REFRESH_AFTER = timedelta(minutes=1)
# A computation that took less than this is redone by the page itself, not left to a job:
# the measured time of the last one decides, so a million users' page never waits for it.
TODAY_INLINE_SECONDS = 0.25
# Before today's rollup was first computed, its cost is judged by today's calls: up to this
# many, four passes over them take milliseconds.
TODAY_INLINE_CALLS = 10_000
TODAY_STALE_AFTER = timedelta(minutes=15)
UNANSWERED = (CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.VOICEMAIL)
# Snapshots of days before this many are deleted when today's is stored.
KEEP_DAYS = 7


def today_counts_compute(day: date) -> dict[str, int]:
    """Local day ``day``'s calls by status ("status_<status>"), and "due", "called" and
    "not_reached" (users whose last attempt ended unanswered with no retry to come), in one
    pass over the day's rows."""
    # The retry of a call always has its call's local date: joining only that day's rows
    # lets PostgreSQL hash the day's retries (one more pass over the day), where a join on
    # retry_of alone probed the unique retry_of_id index once per unanswered call (at 1M
    # users 2.4 s for this whole statement against 3.6 s for that join alone). A NOT EXISTS
    # inside the FILTER would be a subplan per row (6.4 s).
    rows = (
        Call.objects.filter(local_date=day)
        .annotate(same_day_retry=FilteredRelation("retry", condition=Q(retry__local_date=day)))
        .values_list("status")
        .annotate(
            calls=Count("id"),
            due=Count("id", filter=Q(attempt=1, manual=False)),
            called=Count("id", filter=Q(dialed_at__isnull=False)),
            not_reached=Count(
                "id", filter=Q(manual=False, status__in=UNANSWERED, same_day_retry__isnull=True)
            ),
        )
        .order_by()
    )
    counts = {f"status_{status}": 0 for status in CallStatus.values}
    counts.update(due=0, called=0, not_reached=0)
    for status, calls, due, called, not_reached in rows:
        counts[f"status_{status}"] = calls
        counts["due"] += due
        counts["called"] += called
        counts["not_reached"] += not_reached
    return counts


def next_24_hours_compute(*, now: datetime) -> dict:
    """The capacity forecast of the next 24 hours (calls.forecast), as the snapshot keeps it:
    a GROUP BY over every callable user, too slow to run per page view at a million users."""
    summary = forecast.capacity_summary(now=now)
    return {
        "from": forecast.slot_start(now).isoformat(),
        "provider": summary.provider,
        "max_live_calls": summary.max_live_calls,
        "average_call_seconds": summary.average_call_seconds,
        "slots": [
            [slot.start.isoformat(), slot.due, slot.capacity, slot.will_miss, slot.skipped]
            for slot in summary.slots
        ],
    }


def today_snapshot_store(day: date, *, now: datetime) -> TodaySnapshot:
    started = time.perf_counter()
    counts = today_counts_compute(day)
    counts["skipped"] = people_off_on(local_date=day).count()
    counts["next_24_hours"] = next_24_hours_compute(now=now)
    snapshot, _ = TodaySnapshot.objects.update_or_create(
        day=day,
        defaults={"computed_at": now, "seconds": time.perf_counter() - started, "counts": counts},
    )
    TodaySnapshot.objects.filter(day__lt=day - timedelta(days=KEEP_DAYS)).delete()
    return snapshot


def today_snapshot_freshen(day: date, *, now: datetime) -> tuple[bool, int]:
    """Recompute ``day``'s snapshot here if it is missing, or TODAY_REFRESH_AFTER old and its
    last computation took under TODAY_INLINE_SECONDS; return whether it is still old (for a
    job to redo) and the day's calls it counted."""
    row = TodaySnapshot.objects.filter(day=day).values_list("computed_at", "seconds", "counts").first()
    if row is None or (row[0] <= now - TODAY_REFRESH_AFTER and row[1] < TODAY_INLINE_SECONDS):
        return False, _calls_counted(today_snapshot_store(day, now=now).counts)
    return row[0] <= now - TODAY_REFRESH_AFTER, _calls_counted(row[2])


def _calls_counted(counts: dict) -> int:
    return sum(value for key, value in counts.items() if key.startswith("status_"))


def today_snapshot_read(day: date, *, now: datetime) -> TodaySnapshot:
    """The stored snapshot of ``day`` if it is recent enough to show, else one computed (and
    stored) now."""
    snapshot = TodaySnapshot.objects.filter(day=day).first()
    if snapshot is not None and snapshot.computed_at > now - TODAY_STALE_AFTER:
        return snapshot
    return today_snapshot_store(day, now=now)
