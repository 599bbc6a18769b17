"""Read-only status for operators and load balancers: queue counts, schedules, health.

Nothing here writes. Registry counts are read with ZCARD rather than RQ's ``count``
property, which first runs the registry's clean-up (moving expired jobs to the failed
registry): looking at a queue must not change it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from croniter import croniter
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue, Worker

from . import queues

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
    for name in settings.RQ_QUEUES:
        try:
            counts = queue_counts(name=name)
        except RedisUnavailable as exc:
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
