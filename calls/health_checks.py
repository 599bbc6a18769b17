"""Is relevel calling people? The checks behind `manage.py check_calls`, `GET
/api/health?detail=1` and the matching Prometheus gauges (calls/metrics.py).

Each check reads the database or Redis (through calls.monitoring, read-only) and gives one
result; a failed one is a problem with a stable code and one line for an operator, never a
traceback. Checks that need Redis or the database are not run while it is down: that
dependency's own check is the one problem to report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from events.models import Endpoint

from . import monitoring

DEFAULT_LATE_MINUTES = 10


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    # False when a dependency it reads was down: not a problem of its own.
    ran: bool = True

    @property
    def problem(self) -> Problem | None:
        return None if self.ok or not self.ran else Problem(code=self.name, message=self.message)

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message}


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_database() -> CheckResult:
    reason = monitoring.database_problem()
    if reason:
        return CheckResult("database", False, f"the database is down: {reason}")
    return CheckResult("database", True, "the database answers")


def check_redis() -> CheckResult:
    reason = monitoring.redis_problem()
    if reason:
        return CheckResult("redis", False, f"Redis is down: {reason}")
    return CheckResult("redis", True, "Redis answers")


def check_tick(*, now: datetime) -> CheckResult:
    """The last tick ended within twice SCHEDULE_CRON's period, and did its work."""
    period = monitoring.cron_period_seconds(now=now)
    last = monitoring.tick_last()
    cron = f"SCHEDULE_CRON '{settings.SCHEDULE_CRON}' ticks every {_minutes(period)}"
    if last is None:
        # A first start (`dev.py start`, a new deployment): rqscheduler is up and its first
        # tick not due yet is no problem; no scheduler, or one that never ticked, is.
        started = monitoring.cron_scheduler_started_at()
        if started is not None and (now - started).total_seconds() <= 2 * period:
            return CheckResult(
                "tick",
                True,
                f"no scheduling tick yet: rqscheduler started {_minutes((now - started).total_seconds())} "
                f"ago ({cron})",
            )
        return CheckResult(
            "tick", False, f"no scheduling tick has been recorded ({cron}): is rqscheduler running?"
        )
    age = (now - last.finished_at).total_seconds()
    if age > 2 * period:
        return CheckResult(
            "tick",
            False,
            f"no scheduling tick for {_minutes(age)} ({cron}): are rqscheduler and a worker on "
            f"{settings.TICK_QUEUE} running?",
        )
    if last.failed:
        return CheckResult(
            "tick", False, f"the last scheduling tick ({_minutes(age)} ago) failed on a database error"
        )
    return CheckResult(
        "tick", True, f"the last tick ended {_minutes(age)} ago and took {last.duration_seconds:.1f} s"
    )


def check_first_attempts(*, now: datetime, late_minutes: int) -> CheckResult:
    """No first attempt is still queued ``late_minutes`` after its time."""
    undialed = monitoring.first_attempts_undialed(now=now, late_before=now - timedelta(minutes=late_minutes))
    if undialed.late:
        oldest = (now - undialed.oldest).total_seconds()
        return CheckResult(
            "first_attempts",
            False,
            f"{undialed.late} first attempt(s) due more than {late_minutes} min ago not dialed yet "
            f"(the oldest due {_minutes(oldest)} ago): are workers on {settings.CALLS_QUEUE} running "
            "and keeping up?",
        )
    return CheckResult(
        "first_attempts",
        True,
        f"no first attempt is waiting more than {late_minutes} min ({undialed.due} due now)",
    )


def check_delayed_jobs() -> CheckResult:
    late = monitoring.scheduler_problem()
    if late:
        return CheckResult("delayed_jobs", False, late)
    return CheckResult("delayed_jobs", True, "no delayed job is overdue")


def check_workers() -> CheckResult:
    """Every queue has a live worker (the tick's queue too: without one no tick runs)."""
    workers = monitoring.workers_live()
    # The events queue needs a worker only once events are sent somewhere (docs/events.md).
    try:
        events_on = bool(settings.EVENTS_WEBHOOK_URL) or Endpoint.objects.filter(active=True).exists()
    except DatabaseError:
        events_on = False  # the database check says so
    served = [name for name in settings.RQ_QUEUES if name != settings.EVENTS_QUEUE or events_on]
    idle = [name for name in served if not any(name in worker.queues for worker in workers)]
    if idle:
        start = [settings.WORKER_QUEUES] if set(idle) & set(settings.WORKER_QUEUES) else []
        start += [[settings.EVENTS_QUEUE]] if settings.EVENTS_QUEUE in idle else []
        commands = " and ".join(f"`manage.py rqworker {' '.join(names)} --with-scheduler`" for names in start)
        return CheckResult(
            "workers", False, f"no live worker on queue(s) {', '.join(idle)}: start {commands}"
        )
    return CheckResult("workers", True, f"{len(workers)} live worker(s)")


def checks_run(*, now: datetime, late_minutes: int = DEFAULT_LATE_MINUTES) -> list[CheckResult]:
    """Every check, in a fixed order; those whose dependency is down are listed as not run."""
    database, redis = check_database(), check_redis()
    dependent: list[tuple[str, CheckResult, Callable[[], CheckResult]]] = [
        ("tick", redis, lambda: check_tick(now=now)),
        ("first_attempts", database, lambda: check_first_attempts(now=now, late_minutes=late_minutes)),
        ("delayed_jobs", redis, check_delayed_jobs),
        ("workers", redis, check_workers),
    ]
    results = [database, redis]
    for name, dependency, check in dependent:
        if not dependency.ok:
            down = "the database" if dependency.name == "database" else "Redis"
            results.append(CheckResult(name, False, f"not checked: {down} is down", ran=False))
            continue
        try:
            results.append(check())
        except DatabaseError as exc:  # it went down since its own check
            results.append(
                CheckResult(
                    name,
                    False,
                    f"could not check: the database failed: {monitoring.database_error_reason(exc)}",
                )
            )
        except RedisError as exc:
            results.append(
                CheckResult(
                    name, False, f"could not check: Redis failed: {monitoring.redis_error_reason(exc)}"
                )
            )
    return results


def problems_found(results: list[CheckResult]) -> list[Problem]:
    return [result.problem for result in results if result.problem is not None]
