"""The dashboard's daily rollup: every chart's numbers, one local day at a time.

Why a rollup. At 1,000,000 users calls_call grows by about 1.2M rows a day (first attempts
and retries), so 30 days are ~36M rows. Reading them on every page view would take tens of
seconds (BENCHMARKS.md, "Dashboard"); the charts' numbers of one day come to about a hundred
(calls by status, dialed and answered calls by local hour, placement lag p50/p95, users
reached by attempt, missed calls by reason, calls and answers by agent variant). They are
computed once per day by the queries below (four passes over the day's rows on the
``local_date`` index: ~5 s for a day of 1M users, BENCHMARKS.md) and stored in DailyStat;
the page reads ~3,000 rows.

Which days. A day is a ``Call.local_date``: the calendar date in each user's own zone. The
charts show the 30 days before today (the deployment's TIME_ZONE date, see selectors) and
today so far, so that a first run's calls are on them; the glance's counts are a snapshot of
their own (dashboard.glance), recomputed every minute while someone looks. Today is an open
day like the others; the page also recomputes it itself once it is TODAY_REFRESH_AFTER old
when that is cheap (its last computation took under a quarter of a second, or, before the
first, today has at most 10,000 calls: a first run, a small deployment), as it does the
snapshot. A day's calls keep
changing until every zone's day is over, the last being UTC-12 (day + 1 at 12:00 UTC), plus
a first attempt's window and the wait for a late outcome (CALL_OUTCOME_TIMEOUT_SECONDS).
Until then the day is "open" and recomputed every
REFRESH_AFTER; the first computation after it is "final" and never redone.

Who computes. rqscheduler enqueues ``dashboard.jobs.refresh_daily_stats`` on the tick queue
every 10 minutes (DASHBOARD_REFRESH_CRON, calls.cron), so that the figures are ready when an
operator opens the page. The page calls ``daily_stats_refresh_if_stale`` (a query of at most
31 rows, one of today's snapshot, one of today's rollup row and, if any is missing or
stale, a Redis round trip); it
enqueues the same job under a fixed job id on the calls queue. The job computes today's
snapshot, then days newest first for at most JOB_BUDGET_SECONDS; the page shows the figures
it has meanwhile, saying how old. Not from the tick: the tick's timings stay the engine's
own. ``manage.py refresh_dashboard`` computes everything at once. Two refreshes at once are
harmless: each day is computed under a row lock taken with SKIP LOCKED, and written in one
transaction, so the page sees a day's old numbers or its new ones, never a mix.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, CharField, Count, F, Q, Value, When
from django.db.models.functions import ExtractMinute, Floor, TruncHour
from django.utils import timezone
from redis.exceptions import RedisError

from calls import queues
from calls.models import Call, CallStatus
from calls.policy import policy_current
from calls.slots import zone_or_none

from . import glance
from .models import DailyStat, RollupDay

logger = logging.getLogger("relevel.dashboard")

DAYS = 30
# An open day (its calls still changing) is recomputed this long after its last computation.
REFRESH_AFTER = timedelta(minutes=10)
# One refresh job computes days for about this long; the next tick's job does the rest.
JOB_BUDGET_SECONDS = 60.0
REFRESH_JOB = "dashboard.jobs.refresh_daily_stats"
# RQ kills a job after this: the budget, the day it was computing when the budget ran out.
REFRESH_JOB_TIMEOUT = int(JOB_BUDGET_SECONDS * 3)
REFRESH_JOB_ID = "dashboard-daily-stats"
# The zone whose day ends last: UTC-12 (Etc/GMT+12), 12 hours after UTC's.
LAST_ZONE_LAG = timedelta(hours=12)

# Why a call was missed, from the texts relevel writes (calls/scheduling.py, placement.py):
# the first reason whose phrase the error contains, in this order ("Calls were paused until
# the window ..." is paused, not a closed window). Anything else is "other".
MISSED_REASONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("paused", "Calls paused", ("paused",)),
    ("calling_hours", "Outside calling hours", ("calling hours",)),
    ("capacity", "Provider capacity", ("capacity", "concurrency")),
    ("job_lost", "Job lost (Redis)", ("job was lost",)),
    ("behind", "Window closed (scheduler or workers behind)", ("window", "local day", "no scheduler tick")),
]
OTHER_REASON = ("other", "Other")
# The retry recovery chart's last column collects every later attempt.
RECOVERY_ATTEMPTS = 3


def window_and_margin() -> timedelta:
    """How long after a local day's end its calls may still change."""
    return policy_current().window + timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)


def day_final_at(day: date, *, margin: timedelta) -> datetime:
    """The instant after which no call of local day ``day`` changes any more."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + LAST_ZONE_LAG + margin


def rollup_days(*, today: date) -> list[date]:
    """The closed-or-closing days the charts show: the DAYS days before ``today``."""
    return [today - timedelta(days=k) for k in range(DAYS, 0, -1)]


def chart_days(*, today: date) -> list[date]:
    """Every day the charts show: the DAYS days before ``today``, then today so far."""
    return [*rollup_days(today=today), today]


def days_to_refresh(*, now: datetime) -> list[date]:
    """Days whose rollup is missing, or open and stale, or open but now final; newest first
    (today first)."""
    today = timezone.localdate(now)
    margin = window_and_margin()
    known = {row.day: row for row in RollupDay.objects.filter(day__gte=today - timedelta(days=DAYS))}
    stale = []
    for day in reversed(chart_days(today=today)):
        row = known.get(day)
        if row is None:
            stale.append(day)
        elif not row.final and (
            row.computed_at <= now - REFRESH_AFTER or now >= day_final_at(day, margin=margin)
        ):
            stale.append(day)
    return stale


# --- Computing one day --------------------------------------------------------------------


def _missed_reason_expression() -> Case:
    whens = [
        When(Q.create([("error__icontains", phrase) for phrase in phrases], connector=Q.OR), then=Value(key))
        for key, _, phrases in MISSED_REASONS
    ]
    return Case(*whens, default=Value(OTHER_REASON[0]), output_field=CharField())


def _lag_percentiles(day: date) -> tuple[float, float, int] | None:
    """p50 and p95 of (dialed_at - scheduled_for) in seconds over the day's dialed daily calls."""
    calls = Call.objects.filter(local_date=day, manual=False, dialed_at__isnull=False)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP "
                "(ORDER BY EXTRACT(EPOCH FROM dialed_at - scheduled_for)), count(*) "
                "FROM calls_call WHERE local_date = %s AND NOT manual AND dialed_at IS NOT NULL",
                [day],
            )
            quantiles, count = cursor.fetchone()
        return (float(quantiles[0]), float(quantiles[1]), count) if count else None
    # SQLite (development): few calls, sorted here with the same interpolation.
    lags = sorted((d - s).total_seconds() for d, s in calls.values_list("dialed_at", "scheduled_for"))
    if not lags:
        return None
    return percentile(lags, 0.5), percentile(lags, 0.95), len(lags)


def percentile(ordered: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _users_reached_by_attempt(day: date) -> tuple[int, dict[int, int]]:
    """Users with a daily call dialed on ``day``, and how many of them were first reached on
    each attempt (a user answering attempt 2 counts once, at 2, however many calls they had)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reached, COUNT(*) FROM ("
            "  SELECT user_id, MIN(CASE WHEN status = %s THEN attempt END) AS reached"
            "  FROM calls_call WHERE local_date = %s AND manual = %s AND dialed_at IS NOT NULL"
            "  GROUP BY user_id"
            ") AS per_user GROUP BY reached",
            [CallStatus.COMPLETED, day, False],
        )
        rows = cursor.fetchall()
    called = sum(count for _, count in rows)
    reached: dict[int, int] = defaultdict(int)
    for attempt, count in rows:
        if attempt is not None:
            reached[min(attempt, RECOVERY_ATTEMPTS)] += count
    return called, dict(reached)


def _by_local_hour(day: date) -> tuple[dict[int, int], dict[int, int]]:
    """Dialed and answered calls by the hour on the user's clock when dialed.

    Grouped in the database by (zone, UTC hour, quarter hour), a few thousand groups, and
    turned into local hours here with zoneinfo: every zone's offset is a whole number of
    quarter hours, so the local hour of a quarter is the local hour of each call in it. (The
    user's zone today: a user who moved is counted in the new zone's hours.)
    """
    rows = (
        Call.objects.filter(local_date=day, dialed_at__isnull=False)
        .annotate(
            zone=F("user__local_tz"),
            utc_hour=TruncHour("dialed_at", tzinfo=UTC),
            quarter=Floor(ExtractMinute("dialed_at", tzinfo=UTC) / 15),
        )
        .values_list("zone", "utc_hour", "quarter")
        .annotate(dialed=Count("id"), answered=Count("id", filter=Q(status=CallStatus.COMPLETED)))
        .order_by()
    )
    dialed: dict[int, int] = defaultdict(int)
    answered: dict[int, int] = defaultdict(int)
    for zone, utc_hour, quarter, n_dialed, n_answered in rows:
        tz = zone_or_none(zone)
        if tz is None:
            continue
        instant = utc_hour.astimezone(UTC) + timedelta(minutes=15 * int(quarter))
        hour = instant.astimezone(tz).hour
        dialed[hour] += n_dialed
        answered[hour] += n_answered
    return dict(dialed), dict(answered)


def _by_status_reason_and_variant(day: date) -> list[tuple[str, str | None, int | None, int, int]]:
    """The day's calls grouped by (status, missed reason, variant): count, and dialed count.

    One pass where there were three (calls by status, missed by reason, dialed and answered
    by variant): each of them read all the day's rows, at 1M users 1.3M, for ~0.7 s."""
    rows = (
        Call.objects.filter(local_date=day)
        .annotate(
            reason=Case(
                When(status=CallStatus.MISSED, then=_missed_reason_expression()),
                default=Value(None),
                output_field=CharField(),
            )
        )
        .values_list("status", "reason", "variant_id")
        .annotate(n=Count("id"), dialed=Count("id", filter=Q(dialed_at__isnull=False)))
        .order_by()
    )
    return list(rows)


def _results_by_variant(day: date) -> list[tuple]:
    """The day's call results (calls.results) by (variant, sentiment, currency): count,
    sentiment score sum, user talk sum and count, cost sum, opt-outs. One pass over the day's
    results, on the calls' local_date index."""
    from django.db.models import Sum

    from calls.models import CallResult

    return list(
        CallResult.objects.filter(call__local_date=day)
        .values_list("call__variant_id", "sentiment", "cost_currency")
        .annotate(
            n=Count("pk"),
            score=Sum("sentiment_score"),
            talk=Sum("user_talk_seconds"),
            talk_n=Count("user_talk_seconds"),
            cost=Sum("cost_amount"),
            opt_outs=Count("pk", filter=Q(opt_out_heard=True)),
        )
        .order_by()
    )


def _results_stats(day: date, stats: dict[tuple[str, str], float]) -> None:
    for variant_id, sentiment, currency, n, score, talk, talk_n, cost, opt_outs in _results_by_variant(day):
        if sentiment:
            stats[("sentiment", sentiment)] = stats.get(("sentiment", sentiment), 0) + n
        if cost is not None and currency:
            stats[("cost", currency)] = stats.get(("cost", currency), 0) + float(cost)
        if variant_id is None:
            continue
        key = str(variant_id)
        for metric, value in (
            ("variant_opt_out", opt_outs),
            ("variant_sentiment_sum", score or 0),
            ("variant_sentiment_n", n if sentiment else 0),
            ("variant_talk_sum", talk or 0),
            ("variant_talk_n", talk_n),
            ("variant_cost", float(cost or 0)),
        ):
            if value:
                stats[(metric, key)] = stats.get((metric, key), 0) + value


def day_stats_compute(day: date) -> dict[tuple[str, str], float]:
    """Every number the charts need about local day ``day``, keyed (metric, key)."""
    stats: dict[tuple[str, str], float] = defaultdict(float)
    for status, reason, variant_id, count, dialed in _by_status_reason_and_variant(day):
        stats[("status", status)] += count
        if reason is not None:
            stats[("missed_reason", reason)] += count
        if variant_id is not None and dialed:
            stats[("variant_dialed", str(variant_id))] += dialed
            if status == CallStatus.COMPLETED:
                stats[("variant_answered", str(variant_id))] += dialed
            elif status == CallStatus.VOICEMAIL:
                stats[("variant_voicemail", str(variant_id))] += dialed
    stats = dict(stats)
    stats[("calls", "")] = sum(v for (metric, _), v in stats.items() if metric == "status")
    if not stats[("calls", "")]:
        return stats

    dialed, answered = _by_local_hour(day)
    for hour, count in dialed.items():
        stats[("hour_dialed", str(hour))] = count
    for hour, count in answered.items():
        stats[("hour_answered", str(hour))] = count

    lag = _lag_percentiles(day)
    if lag is not None:
        stats[("lag_p50", "")], stats[("lag_p95", "")], stats[("lag_calls", "")] = lag

    called, reached = _users_reached_by_attempt(day)
    stats[("users_called", "")] = called
    for attempt, count in reached.items():
        stats[("reached_attempt", str(attempt))] = count
    _results_stats(day, stats)
    return stats


def day_stats_store(day: date, *, now: datetime, margin: timedelta | None = None) -> bool:
    """Compute and store ``day``'s rollup, replacing the old one in one transaction; False
    if another process is computing it right now (its row is locked)."""
    margin = window_and_margin() if margin is None else margin
    RollupDay.objects.bulk_create(
        [RollupDay(day=day, computed_at=datetime.min.replace(tzinfo=UTC))], ignore_conflicts=True
    )
    with transaction.atomic():
        row = RollupDay.objects.select_for_update(skip_locked=True).filter(day=day).first()
        if row is None:
            return False
        started = time.perf_counter()
        stats = day_stats_compute(day)
        DailyStat.objects.filter(day=day).delete()
        DailyStat.objects.bulk_create(
            DailyStat(day=day, metric=metric, key=key, value=value) for (metric, key), value in stats.items()
        )
        row.computed_at = now
        row.final = now >= day_final_at(day, margin=margin)
        row.calls = int(stats[("calls", "")])
        row.seconds = time.perf_counter() - started
        row.save()
    logger.info(
        "Dashboard rollup of %s: %s calls in %.1f s (%s)",
        day,
        row.calls,
        row.seconds,
        "final" if row.final else "open",
    )
    return True


def day_rollup_final_ensure(*, day: date, now: datetime) -> tuple[bool, bool]:
    """For the retention prune (calls.retention), before it deletes ``day``'s calls: whether
    the day's rollup is now stored and final, and whether it had to be computed here. False
    if another process holds the day's row (it is computing it right now)."""
    if RollupDay.objects.filter(day=day, final=True).exists():
        return True, False
    if not day_stats_store(day, now=now):
        return False, False
    return RollupDay.objects.filter(day=day, final=True).exists(), True


@dataclass
class RefreshSummary:
    refreshed: list[date] = field(default_factory=list)
    remaining: int = 0

    def line(self) -> str:
        return f"refreshed={len(self.refreshed)} remaining={self.remaining}"


def daily_stats_refresh(
    *, now: datetime | None = None, budget_seconds: float | None = None
) -> RefreshSummary:
    """Compute today's snapshot (dashboard.glance), then the missing and stale days, newest
    first, for at most ``budget_seconds`` (None: all of them)."""
    now = now or timezone.now()
    margin = window_and_margin()
    started = time.perf_counter()
    summary = RefreshSummary()
    glance.today_snapshot_store(timezone.localdate(now), now=now)
    days = days_to_refresh(now=now)
    for index, day in enumerate(days):
        if budget_seconds is not None and time.perf_counter() - started >= budget_seconds:
            summary.remaining = len(days) - index
            break
        if day_stats_store(day, now=now, margin=margin):
            summary.refreshed.append(day)
    return summary


def today_stats_freshen(today: date, *, now: datetime, calls_today: int) -> None:
    """Recompute today's rollup here when it is TODAY_REFRESH_AFTER old and cheap: its last
    computation took under TODAY_INLINE_SECONDS, or, before the first, today has at most
    TODAY_INLINE_CALLS calls. Otherwise the refresh job does it, every REFRESH_AFTER."""
    row = RollupDay.objects.filter(day=today).values_list("computed_at", "seconds").first()
    if row is not None and row[0] > now - glance.TODAY_REFRESH_AFTER:
        return
    if row is not None:
        cheap = row[1] < glance.TODAY_INLINE_SECONDS
    else:
        cheap = calls_today <= glance.TODAY_INLINE_CALLS
    if cheap:
        day_stats_store(today, now=now)


def daily_stats_refresh_if_stale(*, now: datetime) -> bool:
    """Bring today's numbers up to the minute where that is cheap (dashboard.glance), then
    enqueue the refresh job if today's snapshot or a day is missing or stale and no refresh
    job is live (one job id, so a page viewed by ten operators enqueues one). Never raises:
    without Redis the page shows the figures it has."""
    today = timezone.localdate(now)
    try:
        snapshot_old, calls_today = glance.today_snapshot_freshen(today, now=now)
        today_stats_freshen(today, now=now, calls_today=calls_today)
        stale = snapshot_old or days_to_refresh(now=now)
        if not stale or REFRESH_JOB_ID in queues.live_job_ids([REFRESH_JOB_ID]):
            return False
        queue = queues.queue_named(settings.CALLS_QUEUE)
        finished = queue.fetch_job(REFRESH_JOB_ID)
        if finished is not None:  # its result is kept for a while: make room for the new one
            finished.delete()
        queue.enqueue(
            REFRESH_JOB,
            job_id=REFRESH_JOB_ID,
            job_timeout=REFRESH_JOB_TIMEOUT,
            result_ttl=settings.JOB_RESULT_TTL,
            failure_ttl=settings.JOB_FAILURE_TTL,
        )
    except (DatabaseError, RedisError) as exc:
        logger.warning(
            "Dashboard rollup not enqueued (%s); the next page view tries again", type(exc).__name__
        )
        return False
    return True
