"""RQ entry points of the dashboard: thin, call a service."""

from __future__ import annotations

from calls.jobs import job

from . import rollups


@job
def refresh_daily_stats() -> str:
    """Enqueued by the page when a day's rollup is missing or stale
    (rollups.daily_stats_refresh_if_stale), and by rqscheduler on DASHBOARD_REFRESH_CRON."""
    return rollups.daily_stats_refresh(budget_seconds=rollups.JOB_BUDGET_SECONDS).line()
