"""The built-in cron schedule that `manage.py rqscheduler` runs on RQ's own cron scheduler."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils.module_loading import import_string
from django_rq.cron import DjangoCronScheduler
from redis.exceptions import RedisError
from rq.exceptions import StopRequested

from .jobs import schedule_calls

TICK_CRON_NAME = "schedule-calls"
DASHBOARD_CRON_NAME = "refresh-dashboard"
# By dotted path: the engine's modules never import the dashboard, which reads them.
DASHBOARD_REFRESH_JOB = "dashboard.jobs.refresh_daily_stats"
NOTIFY_SWEEP_CRON_NAME = "sweep-notifications"
NOTIFY_SWEEP_JOB = "notifications.jobs.sweep_notifications"
EVENTS_SWEEP_CRON_NAME = "sweep-events"
# On the events queue: a sweep waiting on a slow receiver never holds up a tick.
EVENTS_SWEEP_JOB = "events.jobs.sweep_events"
ANALYSIS_CRON_NAME = "analyse-calls"
# Seconds between tries while Redis does not answer: quick at first (a restart takes a
# second or two), then every 30 s.
REDIS_RETRY_DELAYS = (1, 2, 5, 10, 30)


class OutageTolerantCronScheduler(DjangoCronScheduler):
    """RQ's cron scheduler, riding out Redis outages.

    RQ's loop (``CronScheduler.start``) lets a Redis error out, so a Redis restart or a
    network blip ended `rqscheduler`, and every tick with it, until someone restarted it.
    This is the same loop with Redis errors caught: one log line, a wait, another try. A
    tick that fell due meanwhile stays due (RQ moves a cron job on only once it is
    enqueued), so it is enqueued, once, as soon as Redis answers.
    """

    def start(self) -> None:
        self.log.info("CronScheduler %s: starting...", self.name)
        self._install_signal_handlers()
        registered = False
        failures = 0
        try:
            while True:
                try:
                    if not registered:
                        self.register_birth()
                        registered = True
                    if self.enqueue_jobs():
                        self.save()  # the cron jobs' timings, for the dashboard
                    self.heartbeat()
                except RedisError as exc:
                    delay = REDIS_RETRY_DELAYS[min(failures, len(REDIS_RETRY_DELAYS) - 1)]
                    failures += 1
                    self.log.error(
                        "CronScheduler %s: Redis unreachable (%s: %s); trying again in %s s",
                        self.name,
                        type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "",
                        delay,
                    )
                    time.sleep(delay)
                    continue
                if failures:
                    self.log.warning(
                        "CronScheduler %s: Redis answers again after %s failed tries", self.name, failures
                    )
                    failures = 0
                sleep_time = self.calculate_sleep_interval()
                if sleep_time > 0:
                    time.sleep(sleep_time)
        except KeyboardInterrupt:
            self.log.info("CronScheduler %s: received KeyboardInterrupt", self.name)
        except StopRequested:
            self.log.info("CronScheduler %s: stop requested", self.name)
        finally:
            try:
                self.register_death()
            except RedisError as exc:
                self.log.warning("CronScheduler %s: could not unregister (%s)", self.name, type(exc).__name__)
            self.log.info("CronScheduler %s: shutdown complete", self.name)


def build_cron_scheduler(*, logging_level: int = logging.INFO) -> OutageTolerantCronScheduler:
    """A cron scheduler with the tick registered on SCHEDULE_CRON and the dashboard's rollup
    refresh on DASHBOARD_REFRESH_CRON (unless that is empty), both on the tick queue.

    RQ's cron has no leader lock, so two schedulers both enqueue the tick; that is harmless
    because a tick claims each slot at most once (see calls.scheduling.calls_schedule_due),
    and so is a second refresh (each day is computed under a SKIP LOCKED row lock).
    """
    scheduler = OutageTolerantCronScheduler(logging_level=logging_level)
    scheduler.register(
        schedule_calls,
        queue_name=settings.TICK_QUEUE,
        cron=settings.SCHEDULE_CRON,
        name=TICK_CRON_NAME,
        result_ttl=settings.JOB_RESULT_TTL,
        failure_ttl=settings.JOB_FAILURE_TTL,
        # A tick that takes longer than the cron period is already a problem to see.
        job_timeout=600,
    )

    def register(func, *, queue: str, cron: str, name: str, timeout: int) -> None:
        scheduler.register(
            func,
            queue_name=queue,
            cron=cron,
            name=name,
            result_ttl=settings.JOB_RESULT_TTL,
            failure_ttl=settings.JOB_FAILURE_TTL,
            job_timeout=timeout,
        )

    if settings.DASHBOARD_REFRESH_CRON:
        from dashboard.rollups import REFRESH_JOB_TIMEOUT

        # So that the figures are fresh when an operator opens the page, not computed then.
        # It works for at most a minute (rollups.JOB_BUDGET_SECONDS): a tick behind it on
        # the same queue waits that long at worst, well inside a call's window.
        register(
            import_string(DASHBOARD_REFRESH_JOB),
            queue=settings.TICK_QUEUE,
            cron=settings.DASHBOARD_REFRESH_CRON,
            name=DASHBOARD_CRON_NAME,
            timeout=REFRESH_JOB_TIMEOUT,
        )
    if settings.NOTIFY_SWEEP_CRON:
        # Messages whose send job Redis lost are sent by it (docs/notifications.md).
        register(
            import_string(NOTIFY_SWEEP_JOB),
            queue=settings.TICK_QUEUE,
            cron=settings.NOTIFY_SWEEP_CRON,
            name=NOTIFY_SWEEP_CRON_NAME,
            timeout=120,
        )
    if settings.ANALYSIS_CRON:
        from .jobs import analyse_noted_calls

        # Hands the calls the webhooks noted to workers in batches (calls.analysis); it only
        # pops ids and enqueues, a second scheduler's copy finds the list already empty.
        register(
            analyse_noted_calls,
            queue=settings.TICK_QUEUE,
            cron=settings.ANALYSIS_CRON,
            name=ANALYSIS_CRON_NAME,
            timeout=120,
        )
    if settings.EVENTS_SWEEP_CRON:
        # Re-sends the events that a lost job or a killed worker left undelivered.
        register(
            import_string(EVENTS_SWEEP_JOB),
            queue=settings.EVENTS_QUEUE,
            cron=settings.EVENTS_SWEEP_CRON,
            name=EVENTS_SWEEP_CRON_NAME,
            timeout=300,
        )
    return scheduler
