"""GET /metrics: Prometheus gauges computed from the database and Redis at scrape time.

No process keeps a counter of its own: every value is read when Prometheus asks, so any web
process gives the same answer for the whole deployment (every web server, worker and
scheduler). Each read is bounded (an index range, a set's size), so a scrape costs the same
at a thousand users as at a million. A dependency that is down gives
``relevel_up{dependency=...} 0`` and the gauges it would have fed are left out; the rest are
still answered.

django-rq 4.2's own collector (django_rq.contrib.prometheus.RQCollector) works on RQ 3.0
but is not reused: its registry counts run RQ's clean-up (a scrape would fail or re-run
abandoned jobs, which is the tick's job), one Redis error fails its whole scrape, and its
``rq_*`` names and per-worker series (a new name per worker start) are not this endpoint's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from redis.exceptions import RedisError

from events.delivery import deliveries_undelivered, endpoints_disabled_automatically

from . import health_checks, monitoring

logger = logging.getLogger("relevel.api")

# The by-status gauges look this far back: a sliding window (no jump at midnight), read
# through the (status, scheduled_for) index. Counting is linear in the rows it covers: at
# 1M users an hour of calls is ~0.2 s, a day's ~1 s per scrape (docs/operating/monitoring.md).
CALLS_WINDOW = timedelta(hours=1)
QUEUE_STATES = ("queued", "scheduled", "started", "failed", "finished")


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"relevel_{name}", documentation, labels=list(labels))


def _database_families(now: datetime) -> list[Metric]:
    calls = _gauge(
        "calls",
        "Calls due in the last hour (scheduled_for, a sliding window), by current status, "
        "provider and attempt (1 the day's call, 2+ its retries, manual a call now).",
        ("status", "provider", "attempt"),
    )
    for count in monitoring.calls_counted(due_after=now - CALLS_WINDOW):
        calls.add_metric([count.status, count.provider or "none", count.attempt], count.count)
    undialed = monitoring.first_attempts_undialed(now=now, late_before=now)
    due = _gauge(
        "first_attempts_undialed",
        "First attempts still queued after their time (due in the last 2 days); a rush is "
        "briefly many, see _oldest_seconds.",
    )
    due.add_metric([], undialed.due)
    oldest = _gauge(
        "first_attempts_undialed_oldest_seconds",
        "How long the oldest first attempt still queued after its time has waited (0: none).",
    )
    oldest.add_metric([], (now - undialed.oldest).total_seconds() if undialed.oldest else 0)
    return [calls, due, oldest, *_conversation_families(now)]


def _conversation_families(now: datetime) -> list[Metric]:
    """What the calls yielded (calls.results): cost, voicemails, opt-outs, the budget."""
    from .budget import budget_state, month_costs

    cost = _gauge("call_cost_month", "Cost recorded this UTC month, by currency.", ("currency",))
    for currency, total in month_costs(now=now).items():
        cost.add_metric([currency or "none"], float(total))
    heard = monitoring.results_counted(since=now - timedelta(hours=24))
    voicemails = _gauge("voicemails_24h", "Calls that reached voicemail, ended in the last 24 hours.")
    voicemails.add_metric([], heard.voicemails)
    opt_outs = _gauge(
        "opt_outs_heard_24h", "Users who asked on a call not to be called again, last 24 hours."
    )
    opt_outs.add_metric([], heard.opt_outs)
    state = budget_state(now=now)
    reached = _gauge("budget_reached", "1 when the monthly budget is reached and calls are paused.")
    reached.add_metric([], int(state.reached))
    families = [cost, voicemails, opt_outs, reached]
    if state.budget is not None:
        budget = _gauge("monthly_budget", "The call policy's monthly budget.", ("currency",))
        budget.add_metric([state.currency], float(state.budget))
        families.append(budget)
    return families


def _events_families(now: datetime) -> list[Metric]:
    """Events to the product's app (docs/events.md): what waits, and endpoints turned off."""
    count, oldest_at = deliveries_undelivered(now=now)
    undelivered = _gauge(
        "events_undelivered", "Event deliveries not yet delivered to an active endpoint (retries included)."
    )
    undelivered.add_metric([], count)
    oldest = _gauge(
        "events_undelivered_oldest_seconds",
        "Age of the oldest event still to be delivered to an active endpoint (0: none).",
    )
    oldest.add_metric([], max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0)
    disabled = _gauge(
        "event_endpoints_disabled",
        "Endpoints relevel disabled itself: a 410 Gone, or every delivery failing for "
        "EVENTS_DISABLE_AFTER_SECONDS (an operator turning one off does not count).",
    )
    disabled.add_metric([], endpoints_disabled_automatically())
    return [undelivered, oldest, disabled]


def _tick_families(now: datetime) -> list[Metric]:
    last = monitoring.tick_last()
    if last is None:
        return []
    ended = _gauge("tick_last_end_timestamp_seconds", "When the last scheduling tick ended (Unix time).")
    ended.add_metric([], last.finished_at.timestamp())
    since = _gauge("tick_since_last_seconds", "Seconds since the last scheduling tick ended.")
    since.add_metric([], max(0.0, (now - last.finished_at).total_seconds()))
    duration = _gauge("tick_last_duration_seconds", "How long the last scheduling tick took.")
    duration.add_metric([], last.duration_seconds)
    failed = _gauge("tick_last_failed", "1 if the last scheduling tick ended on a database error.")
    failed.add_metric([], int(last.failed))
    summary = _gauge(
        "tick_last_summary",
        "The last tick's summary line: users due, calls claimed, enqueued, missed, re-enqueued, ...",
        ("field",),
    )
    for field, value in sorted(last.summary.items()):
        summary.add_metric([field], value)
    return [ended, since, duration, failed, summary]


def _queue_families() -> list[Metric]:
    jobs = _gauge(
        "queue_jobs",
        "RQ jobs now: queued (waiting), scheduled (delayed retries), started, failed and finished "
        "(kept JOB_FAILURE_TTL / JOB_RESULT_TTL).",
        ("queue", "state"),
    )
    overdue = _gauge(
        "queue_delayed_overdue",
        f"Delayed jobs more than {monitoring.DELAYED_OVERDUE_AFTER_SECONDS} s past their time: no "
        "worker runs RQ's scheduler (--with-scheduler).",
        ("queue",),
    )
    queue_workers = _gauge("queue_workers", "Live workers serving each queue.", ("queue",))
    workers = monitoring.workers_live()
    for name in settings.RQ_QUEUES:
        counts = monitoring.queue_counts(name=name)
        values = (counts.waiting, counts.delayed, counts.active, counts.failed, counts.completed)
        for state, value in zip(QUEUE_STATES, values, strict=True):
            jobs.add_metric([name, state], value)
        overdue.add_metric([name], counts.overdue)
        queue_workers.add_metric([name], sum(name in worker.queues for worker in workers))
    by_state = _gauge("workers", "Live RQ workers (their heartbeat renews them), by state.", ("state",))
    states: dict[str, int] = {"busy": 0, "idle": 0}
    for worker in workers:
        states[worker.state] = states.get(worker.state, 0) + 1
    for state, value in sorted(states.items()):
        by_state.add_metric([state], value)
    return [jobs, overdue, queue_workers, by_state]


def _capacity_families(now: datetime) -> list[Metric]:
    live = _gauge(
        "provider_live_calls",
        "Calls live at each provider now: unexpired leases in relevel:capacity:<provider>:live.",
        ("provider",),
    )
    waiting = _gauge(
        "provider_calls_waiting",
        "Calls waiting for a free live-call slot: relevel:capacity:<provider>:waiting.",
        ("provider",),
    )
    for capacity in monitoring.provider_capacities(now=now):
        live.add_metric([capacity.provider], capacity.live)
        waiting.add_metric([capacity.provider], capacity.waiting)
    return [live, waiting]


def _settings_families(now: datetime) -> list[Metric]:
    period = _gauge(
        "tick_cron_period_seconds",
        "Seconds between scheduling ticks by SCHEDULE_CRON (the last gap, for an irregular one).",
    )
    period.add_metric([], monitoring.cron_period_seconds(now=now))
    cap = _gauge(
        "provider_live_calls_max", "PROVIDER_MAX_LIVE_CALLS for each provider (0: no cap).", ("provider",)
    )
    for provider in settings.CALL_PROVIDERS:
        cap.add_metric([provider], settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0))
    return [period, cap]


class RelevelCollector:
    """A prometheus_client collector: everything is read in ``collect``, at scrape time."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        seconds = _gauge("scrape_part_duration_seconds", "How long this scrape's reads took.", ("part",))
        started = time.monotonic()
        results = health_checks.checks_run(now=now)
        seconds.add_metric(["checks"], time.monotonic() - started)
        by_name = {result.name: result for result in results}
        up = {"database": by_name["database"].ok, "redis": by_name["redis"].ok}
        families = _settings_families(now)

        if up["database"]:
            started = time.monotonic()
            try:
                families += _database_families(now) + _events_families(now)
            except DatabaseError as exc:
                up["database"] = False
                logger.error("Metrics: database failed: %s", monitoring.database_error_reason(exc))
            seconds.add_metric(["database"], time.monotonic() - started)
        if up["redis"]:
            started = time.monotonic()
            try:
                families += _tick_families(now) + _queue_families() + _capacity_families(now)
            except (RedisError, monitoring.RedisUnavailable) as exc:
                up["redis"] = False
                reason = (
                    exc
                    if isinstance(exc, monitoring.RedisUnavailable)
                    else monitoring.redis_error_reason(exc)
                )
                logger.error("Metrics: Redis failed: %s", reason)
            seconds.add_metric(["redis"], time.monotonic() - started)

        dependency = _gauge(
            "up", "1 when the dependency answers (0: its gauges are left out).", ("dependency",)
        )
        for name, is_up in up.items():
            dependency.add_metric([name], int(is_up))
        check_ok = _gauge(
            "check_ok",
            "1 when the check of `manage.py check_calls` passes (first attempts late by its default "
            f"{health_checks.DEFAULT_LATE_MINUTES} min); left out when its dependency is down.",
            ("check",),
        )
        for result in results:
            if result.ran:
                check_ok.add_metric([result.name], int(result.ok))
        yield dependency
        yield check_ok
        yield from families
        yield seconds


@lru_cache(maxsize=1)
def metrics_registry() -> CollectorRegistry:
    """A registry of our own (not prometheus_client's global one, whose default collectors
    describe only the process answering) holding the one collector."""
    registry = CollectorRegistry()
    registry.register(RelevelCollector())
    return registry


def metrics_exposition() -> tuple[bytes, str]:
    """The scrape's body, in the Prometheus text format, and its content type."""
    return generate_latest(metrics_registry()), CONTENT_TYPE_PLAIN_0_0_4
