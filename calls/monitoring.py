"""Read-only status for operators and load balancers: queue counts, schedules, health.

Nothing here writes, but for tick_record: the one record of when the last tick ran, which
the tick itself writes. Registry counts are read with ZCARD rather than RQ's ``count``
property, which first runs the registry's clean-up (moving expired jobs to the failed
registry): looking at a queue must not change it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

from croniter import croniter
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue, Worker

from . import capacity, queues
from .models import Call, CallStatus

logger = logging.getLogger("relevel.api")

# The original design's name for the scheduling cron job.
SCHEDULE_CRON_NAME = "schedule-calls"
# A delayed job (a 30-minute retry, a transient error's 2 s/4 s retry) is released within a
# second of its time by the worker holding RQ's scheduler lock, or within about three
# minutes by another worker if that one died (the lock lives 61 s; workers retry it every
# 120 s). Later than this, nobody is releasing them: no worker runs --with-scheduler.
DELAYED_OVERDUE_AFTER_SECONDS = 300
_URL_CREDENTIALS = re.compile(r"(\w+://)[^@/\s]*@")


class RedisUnavailable(Exception):
    """Redis did not answer; the message is one line, safe to show (no password)."""


def _one_line(exc: BaseException) -> str:
    """The error's type and the first line of its message: no traceback."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def redis_error_reason(exc: BaseException) -> str:
    """One line for an operator, with any credentials from the Redis URLs scrubbed out."""
    reason = _URL_CREDENTIALS.sub(r"\1***@", _one_line(exc))
    for config in settings.RQ_QUEUES.values():
        password = config.get("PASSWORD") or (urlsplit(config["URL"]).password if config.get("URL") else None)
        for secret in {password, unquote(password or "")} - {None, ""}:
            reason = reason.replace(secret, "***")
    return reason[:200]


@dataclass(frozen=True)
class QueueCounts:
    name: str
    active: int
    waiting: int
    failed: int
    completed: int
    delayed: int
    overdue: int
    workers: int

    def as_dict(self) -> dict:
        return asdict(self)


def queue_counts(*, name: str) -> QueueCounts:
    """The job counts of one queue in RQ_QUEUES, read in one MULTI (a consistent snapshot).

    active = started registry, waiting = the queue itself, failed/completed = the failed
    and finished registries, delayed = scheduled registry (Bull's "delayed"), overdue = the
    delayed jobs more than DELAYED_OVERDUE_AFTER_SECONDS past their time.
    """
    queue: Queue = queues.queue_named(name)
    registries = (
        queue.started_job_registry,
        queue.failed_job_registry,
        queue.finished_job_registry,
        queue.scheduled_job_registry,
    )
    try:
        with queue.connection.pipeline(transaction=True) as pipe:
            pipe.llen(queue.key)
            for registry in registries:
                pipe.zcard(registry.key)
            _count_overdue(pipe, queue)
            waiting, active, failed, completed, delayed, overdue = pipe.execute()
        workers = Worker.count(queue=queue)
    except RedisError as exc:
        raise RedisUnavailable(redis_error_reason(exc)) from exc
    return QueueCounts(
        name=name,
        active=active,
        waiting=waiting,
        failed=failed,
        completed=completed,
        delayed=delayed,
        overdue=overdue,
        workers=workers,
    )


def _count_overdue(redis, queue: Queue) -> None:
    # The scheduled registry is scored by each job's time (epoch seconds).
    cutoff = timezone.now().timestamp() - DELAYED_OVERDUE_AFTER_SECONDS
    redis.zcount(queue.scheduled_job_registry.key, "-inf", cutoff)


def cron_schedules(*, now: datetime) -> list[dict]:
    """The recurring jobs and their next run, ``next`` in epoch milliseconds (UTC)."""
    next_run = croniter(settings.SCHEDULE_CRON, now.astimezone(UTC)).get_next(datetime)
    return [
        {
            "name": SCHEDULE_CRON_NAME,
            "cron": settings.SCHEDULE_CRON,
            "next": int(next_run.timestamp() * 1000),
        }
    ]


def calls_queue_status(*, now: datetime) -> dict:
    """The calls queue as GET /api/queue/status reports it; raises RedisUnavailable."""
    counts = queue_counts(name=settings.CALLS_QUEUE)
    return {
        "name": counts.name,
        "health": "healthy",
        "active": counts.active,
        "waiting": counts.waiting,
        "failed": counts.failed,
        "completed": counts.completed,
        "delayed": counts.delayed,
        "overdue": counts.overdue,
        "workers": counts.workers,
        "crons": cron_schedules(now=now),
    }


def queue_status_report(*, now: datetime) -> dict:
    """GET /api/queue/status: the calls queue at the top (``queue``, the original design's
    shape) and every queue, calls then tick, in ``queues``; the cron that feeds the tick
    queue is listed under it. Raises RedisUnavailable when the calls queue cannot be read."""
    queue = calls_queue_status(now=now)
    statuses = {status["name"]: status for status in all_queues_status()}
    statuses[settings.CALLS_QUEUE] = {key: value for key, value in queue.items() if key != "crons"}
    tick = statuses.get(settings.TICK_QUEUE)
    if tick is not None and tick["health"] == "healthy":
        tick["crons"] = queue["crons"]
    ordered = [settings.CALLS_QUEUE, settings.TICK_QUEUE]
    ordered += [name for name in statuses if name not in ordered]
    return {"queue": queue, "queues": [statuses[name] for name in ordered if name in statuses]}


def all_queues_status() -> list[dict]:
    """Every queue in RQ_QUEUES, each healthy with its counts or unhealthy with a reason."""
    statuses = []
    # A Redis that did not answer for one queue is not asked again for the next on the same
    # URL: one timeout per Redis, not per queue, whatever the number of queues.
    failed: dict[str, str] = {}
    for name, config in settings.RQ_QUEUES.items():
        url = config.get("URL", "")
        if url in failed:
            statuses.append({"name": name, "health": "unhealthy", "reason": failed[url]})
            continue
        try:
            counts = queue_counts(name=name)
        except RedisUnavailable as exc:
            failed[url] = str(exc)
            statuses.append({"name": name, "health": "unhealthy", "reason": str(exc)})
            continue
        statuses.append({"name": name, "health": "healthy", **counts.as_dict()})
    return statuses


def database_problem() -> str | None:
    """None when the default database answers a query, else one line saying why not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return _one_line(exc)[:200]
    return None


def redis_problem() -> str | None:
    """None when the calls queue's Redis answers PING, else one line saying why not."""
    try:
        queues.calls_queue().connection.ping()
    except RedisError as exc:
        return redis_error_reason(exc)
    return None


def scheduler_problem() -> str | None:
    """None when no delayed job of the calls queue is overdue (or Redis does not answer:
    redis_problem says so), else one line saying how many are."""
    queue = queues.calls_queue()
    try:
        with queue.connection.pipeline(transaction=False) as pipe:
            _count_overdue(pipe, queue)
            [overdue] = pipe.execute()
    except RedisError:
        return None
    if not overdue:
        return None
    return (
        f"{overdue} delayed job(s) more than {DELAYED_OVERDUE_AFTER_SECONDS} s past their time: "
        "is a worker running with --with-scheduler?"
    )


def dependency_problems() -> dict[str, str]:
    """What is down, by name ("database", "redis"), with the reason; empty when all is up."""
    problems = {"database": database_problem(), "redis": redis_problem()}
    return {name: reason for name, reason in problems.items() if reason}


# --- The last tick, live workers, provider capacity, undialed first attempts -------------
# Shared by the health checks (calls/health_checks.py) and the Prometheus collector
# (calls/metrics.py): every value is read from Redis or the database when asked, so it is
# the same whichever web or worker process answers.

# One hash, rewritten by every tick: nothing else in Redis or the database says when the
# last tick ran (a tick run by `manage.py schedule_calls` has no RQ job at all).
LAST_TICK_KEY = "relevel:tick:last"


@dataclass(frozen=True)
class LastTick:
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    failed: bool
    summary: dict[str, int]


def tick_record(*, started_at: datetime, summary, failed: bool) -> None:
    """Record that a tick (``summary``, a scheduling.TickSummary) has just ended.

    Called once at the end of every tick, failed or not. Redis being down costs only this
    record (the checks then say Redis is down): a tick never fails for it."""
    finished_at = timezone.now()
    mapping = {
        "started_at": started_at.timestamp(),
        "finished_at": finished_at.timestamp(),
        # The tick's own ``now`` is when it started (unless a caller passed one: tests).
        "duration_seconds": max(0.0, (finished_at - started_at).total_seconds()),
        "failed": int(failed),
        **{f"summary:{name}": value for name, value in asdict(summary).items()},
    }
    try:
        queues.calls_queue().connection.hset(LAST_TICK_KEY, mapping=mapping)
    except RedisError as exc:
        logger.warning("Could not record the tick's end in Redis: %s", redis_error_reason(exc))


def tick_last() -> LastTick | None:
    """The last tick recorded, or None if none is (never run, or Redis lost its data);
    raises RedisError."""
    raw = queues.calls_queue().connection.hgetall(LAST_TICK_KEY)
    if not raw:
        return None
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    return LastTick(
        started_at=datetime.fromtimestamp(float(fields["started_at"]), tz=UTC),
        finished_at=datetime.fromtimestamp(float(fields["finished_at"]), tz=UTC),
        duration_seconds=float(fields["duration_seconds"]),
        failed=fields["failed"] == "1",
        summary={
            key.removeprefix("summary:"): int(value)
            for key, value in fields.items()
            if key.startswith("summary:")
        },
    )


def cron_scheduler_started_at() -> datetime | None:
    """When the latest live rqscheduler (RQ's cron scheduler, calls.cron) started, or None if
    none is registered; raises RedisError. A scheduler that just started has not ticked yet."""
    from rq.cron import CronScheduler

    schedulers = CronScheduler.all(connection=queues.tick_queue().connection)
    return max((scheduler.created_at for scheduler in schedulers), default=None)


def cron_period_seconds(*, now: datetime) -> float:
    """The time between the last two runs SCHEDULE_CRON gave before ``now``: its period for a
    regular schedule (*/5: 300 s), the gap just passed for an irregular one."""
    runs = croniter(settings.SCHEDULE_CRON, now.astimezone(UTC))
    last = runs.get_prev(datetime)
    before = runs.get_prev(datetime)
    return (last - before).total_seconds()


@dataclass(frozen=True)
class LiveWorker:
    name: str
    state: str
    queues: tuple[str, ...]


def workers_live() -> list[LiveWorker]:
    """Workers that are alive now, on every queue of RQ_QUEUES; raises RedisError.

    RQ's Worker.count counts registrations, which a worker killed with SIGKILL leaves
    behind; a worker is alive while its hash lives (its heartbeat renews it) without a
    ``death``. Read-only: RQ's Worker.all would also delete the dead registrations."""
    connection = queues.calls_queue().connection
    with connection.pipeline(transaction=False) as pipe:
        for name in settings.RQ_QUEUES:
            pipe.smembers(f"rq:workers:{name}")
        memberships = pipe.execute()
    queues_of: dict[bytes, list[str]] = {}
    for name, keys in zip(settings.RQ_QUEUES, memberships, strict=True):
        for key in keys:
            queues_of.setdefault(key, []).append(name)
    keys = sorted(queues_of)
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "birth", "death", "state")
        fields = pipe.execute()
    return [
        LiveWorker(
            name=key.decode().removeprefix("rq:worker:"),
            # RQ sets a state once the worker starts its loop.
            state=state.decode() if state else "starting",
            queues=tuple(queues_of[key]),
        )
        for key, (birth, death, state) in zip(keys, fields, strict=True)
        if birth is not None and death is None
    ]


@dataclass(frozen=True)
class ProviderCapacity:
    provider: str
    live: int
    waiting: int
    max_live: int  # 0: no cap


def provider_capacities(*, now: datetime) -> list[ProviderCapacity]:
    """Each provider's live calls (unexpired leases) and calls waiting for a slot, in one
    round trip; raises RedisError."""
    counts = capacity.capacity_counts_of(list(settings.CALL_PROVIDERS), now=now.timestamp())
    return [
        ProviderCapacity(
            provider=provider,
            live=of.live,
            waiting=of.waiting,
            max_live=settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0),
        )
        for provider, of in counts.items()
    ]


# Queued first attempts are looked at this far back: the stranded sweep marks a call
# missed once its window closes, so only a dead scheduler leaves older ones queued, and the
# tick check says so. The bound keeps the count a short range of the (status,
# scheduled_for) index whatever the table's size.
UNDIALED_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class UndialedFirstAttempts:
    due: int  # queued first attempts whose time has come
    late: int  # of them, due before ``late_before``
    oldest: datetime | None  # the earliest scheduled_for among them


def first_attempts_undialed(*, now: datetime, late_before: datetime) -> UndialedFirstAttempts:
    """The day's first attempts (not retries, not manual calls) still queued after their
    time, in one indexed query; raises DatabaseError."""
    counts = Call.objects.filter(
        status=CallStatus.QUEUED,
        scheduled_for__gt=now - UNDIALED_LOOKBACK,
        scheduled_for__lte=now,
        attempt=1,
        manual=False,
    ).aggregate(
        due=Count("pk"),
        late=Count("pk", filter=Q(scheduled_for__lte=late_before)),
        oldest=Min("scheduled_for"),
    )
    return UndialedFirstAttempts(**counts)


@dataclass(frozen=True)
class CallCount:
    status: str
    provider: str
    attempt: str  # "1" the day's call, "2", "3" its retries, "manual" a call now
    count: int


def calls_counted(*, due_after: datetime) -> list[CallCount]:
    """Calls due (scheduled_for) after ``due_after``, counted by status, provider and
    attempt; raises DatabaseError. Every status is named so that PostgreSQL reads a range
    of the (status, scheduled_for) index per status rather than the whole table."""
    rows = (
        Call.objects.filter(status__in=CallStatus.values, scheduled_for__gt=due_after)
        .values_list("status", "provider", "attempt", "manual")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts: dict[tuple[str, str, str], int] = {}
    for status, provider, attempt, manual, count in rows:
        key = (status, provider, "manual" if manual else str(attempt))
        counts[key] = counts.get(key, 0) + count
    return [CallCount(*key, count=count) for key, count in sorted(counts.items())]


def database_error_reason(exc: BaseException) -> str:
    """One line for an operator: the error's type and the first line of its message."""
    return _one_line(exc)[:200]


@dataclass(frozen=True)
class ResultCounts:
    voicemails: int
    opt_outs: int


def results_counted(*, since: datetime) -> ResultCounts:
    """Voicemails (calls due since ``since``, on the status index) and opt-outs heard
    (results since ``since``, on their partial index); raises DatabaseError."""
    from .models import CallResult

    return ResultCounts(
        voicemails=Call.objects.filter(status=CallStatus.VOICEMAIL, scheduled_for__gt=since).count(),
        opt_outs=CallResult.objects.filter(opt_out_heard=True, created_at__gt=since).count(),
    )
