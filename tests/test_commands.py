"""The project's own commands: one tick now, and the cron scheduler with the built-in schedule."""

import os
import signal
import subprocess
import sys
import time as wall
from datetime import UTC, datetime, time, timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from rq import Queue

from calls.cron import TICK_CRON_NAME, build_cron_scheduler
from calls.models import Call

ROOT = Path(__file__).resolve().parent.parent
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 in Asia/Kolkata


@pytest.mark.django_db(transaction=True)
def test_schedule_calls_runs_one_tick_and_prints_its_summary(make_user, redis_conn):
    with time_machine.travel(SLOT - timedelta(hours=1), tick=False):
        make_user(call_time=time(20, 30))
    out = StringIO()
    with time_machine.travel(SLOT + timedelta(minutes=1), tick=False):
        call_command("schedule_calls", stdout=out)
    assert out.getvalue().strip() == (
        "schedule_calls: due=1 claimed=1 enqueued=1 missed=0 re-enqueued=0 abandoned=0"
    )
    assert Call.objects.count() == 1


def test_the_cron_schedule_puts_the_tick_on_its_own_queue(settings, redis_conn):
    settings.SCHEDULE_CRON = "*/5 * * * *"
    settings.DASHBOARD_REFRESH_CRON = ""  # the tick alone (the dashboard's: test_dashboard_cron.py)
    settings.NOTIFY_SWEEP_CRON = ""  # (the notifications' sweep: test_notifications_once.py)
    settings.EVENTS_SWEEP_CRON = ""  # (the events' sweep: test_events.py)
    settings.ANALYSIS_CRON = ""  # (the analysis': test_dashboard_cron.py too)
    settings.RETENTION_CRON = ""  # (the retention prune: test_retention.py)
    scheduler = build_cron_scheduler()
    [cron_job] = scheduler.get_jobs()
    assert (cron_job.name, cron_job.cron, cron_job.queue_name) == (
        TICK_CRON_NAME,
        "*/5 * * * *",
        settings.TICK_QUEUE,
    )
    assert cron_job.func_name == "calls.jobs.schedule_calls"
    cron_job.next_enqueue_time = datetime.now(UTC) - timedelta(seconds=1)  # due now
    scheduler.enqueue_jobs()
    [job] = Queue(settings.TICK_QUEUE, connection=redis_conn).jobs
    assert job.func_name == "calls.jobs.schedule_calls"
    assert job.result_ttl == settings.JOB_RESULT_TTL and job.failure_ttl == settings.JOB_FAILURE_TTL


def test_rqscheduler_starts_without_a_config_file_and_stops_on_sigterm(settings):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "relevel.settings_test", "REDIS_URL": settings.REDIS_URL}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqscheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not (lines and "registering birth" in lines[-1]) and len(lines) < 20:
            lines.append(process.stdout.readline())  # up to the moment it handles signals
        assert any(
            line.startswith("rqscheduler: schedule-calls on '*/5 * * * *' -> queue daily-calls-tick")
            for line in lines
        ), lines
        assert any(
            line.startswith("rqscheduler: refresh-dashboard on '*/10 * * * *' -> queue daily-calls-tick")
            for line in lines
        ), lines
        wall.sleep(1)  # RQ installs its handlers, then registers; a signal mid-birth is RQ's race
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
