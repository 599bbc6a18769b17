"""The built-in cron schedule that `manage.py rqscheduler` runs on RQ's own cron scheduler."""

from __future__ import annotations

import logging

from django.conf import settings
from django_rq.cron import DjangoCronScheduler

from .jobs import schedule_calls

TICK_CRON_NAME = "schedule-calls"


def build_cron_scheduler(*, logging_level: int = logging.INFO) -> DjangoCronScheduler:
    """A cron scheduler with the tick registered on SCHEDULE_CRON.

    RQ's cron has no leader lock, so two schedulers both enqueue the tick; that is harmless
    because a tick claims each slot at most once (see calls.scheduling.calls_schedule_due).
    """
    scheduler = DjangoCronScheduler(logging_level=logging_level)
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
    return scheduler
