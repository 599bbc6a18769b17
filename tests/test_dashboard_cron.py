"""rqscheduler refreshes the dashboard's rollup on its own (DASHBOARD_REFRESH_CRON), so that
the figures are fresh when an operator opens the page rather than computed then."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker

from calls.cron import ANALYSIS_CRON_NAME, DASHBOARD_CRON_NAME, TICK_CRON_NAME, build_cron_scheduler
from dashboard import rollups
from dashboard.models import RollupDay

ROOT = Path(__file__).resolve().parent.parent


def crons_by_name(scheduler):
    return {cron_job.name: cron_job for cron_job in scheduler.get_jobs()}


def test_the_schedule_refreshes_the_dashboard_every_10_minutes_on_the_tick_queue(settings, redis_conn):
    crons = crons_by_name(build_cron_scheduler())

    assert {TICK_CRON_NAME, DASHBOARD_CRON_NAME, ANALYSIS_CRON_NAME} <= set(crons)
    refresh = crons[DASHBOARD_CRON_NAME]
    assert (refresh.cron, refresh.queue_name, refresh.func_name) == (
        "*/10 * * * *",
        settings.TICK_QUEUE,
        "dashboard.jobs.refresh_daily_stats",
    )
    assert refresh.job_options["job_timeout"] == rollups.REFRESH_JOB_TIMEOUT


def test_the_refresh_cron_follows_its_setting_and_an_empty_one_turns_it_off(settings, redis_conn):
    settings.DASHBOARD_REFRESH_CRON = "7 * * * *"
    assert crons_by_name(build_cron_scheduler())[DASHBOARD_CRON_NAME].cron == "7 * * * *"

    settings.DASHBOARD_REFRESH_CRON = ""
    assert DASHBOARD_CRON_NAME not in crons_by_name(build_cron_scheduler())


def test_the_analysis_cron_hands_noted_calls_out_every_minute_and_an_empty_one_turns_it_off(
    settings, redis_conn
):
    analysis = crons_by_name(build_cron_scheduler())[ANALYSIS_CRON_NAME]
    assert (analysis.cron, analysis.queue_name, analysis.func_name) == (
        "* * * * *",
        settings.TICK_QUEUE,
        "calls.jobs.analyse_noted_calls",
    )

    settings.ANALYSIS_CRON = ""
    assert ANALYSIS_CRON_NAME not in crons_by_name(build_cron_scheduler())


@pytest.mark.django_db(transaction=True)
def test_the_enqueued_refresh_computes_the_days_when_a_worker_runs_it(settings, redis_conn):
    scheduler = build_cron_scheduler()
    refresh = crons_by_name(scheduler)[DASHBOARD_CRON_NAME]
    for cron_job in scheduler.get_jobs():  # only the refresh is due
        cron_job.next_enqueue_time = datetime.now(UTC) + timedelta(hours=1)
    refresh.next_enqueue_time = datetime.now(UTC) - timedelta(seconds=1)
    scheduler.enqueue_jobs()

    queue = Queue(settings.TICK_QUEUE, connection=redis_conn)
    [job] = queue.jobs
    assert job.func_name == "dashboard.jobs.refresh_daily_stats"
    assert job.result_ttl == settings.JOB_RESULT_TTL and job.failure_ttl == settings.JOB_FAILURE_TTL

    SimpleWorker([queue], connection=redis_conn).work(burst=True)

    assert job.get_status(refresh=True) == "finished"
    # The days before today, and today so far.
    assert job.return_value() == f"refreshed={rollups.DAYS + 1} remaining=0"
    assert RollupDay.objects.count() == rollups.DAYS + 1


def test_a_refresh_cron_that_is_not_a_cron_expression_stops_start_up_with_one_line():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "DASHBOARD_REFRESH_CRON": "every ten minutes",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DASHBOARD_REFRESH_CRON 'every ten minutes' is not a valid cron expression" in result.stderr
