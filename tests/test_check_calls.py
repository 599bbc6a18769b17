"""`manage.py check_calls` and the checks behind it (calls/health_checks.py): each check
passing and failing, one readable line per problem, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command
from rq import Worker

from calls import health_checks, monitoring
from calls.models import CallStatus
from calls.queues import calls_queue, queue_named
from calls.scheduling import calls_schedule_due
from tests.test_health import database_down, redis_down  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


def run(*args: str) -> tuple[int, list[str]]:
    out = StringIO()
    try:
        call_command("check_calls", *args, stdout=out)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, out.getvalue().splitlines()


def live_worker(connection) -> Worker:
    """A worker registered as RQ registers one (its heartbeat keeps it alive), on every queue."""
    worker = Worker([queue_named(name) for name in settings.WORKER_QUEUES], connection=connection)
    worker.register_birth()
    return worker


@pytest.fixture
def all_well(db, redis_conn):
    """A tick that ended a minute ago and a live worker: nothing to report."""
    with time_machine.travel(NOW - timedelta(minutes=1), tick=False):
        calls_schedule_due()
    live_worker(redis_conn)
    with time_machine.travel(NOW, tick=False):
        yield


def test_it_prints_ok_and_exits_0_when_all_is_well(all_well):
    assert run() == (0, ["OK"])


def test_quiet_prints_nothing_when_all_is_well(all_well):
    assert run("--quiet") == (0, [])


def test_a_worker_that_stopped_is_no_live_worker(all_well, redis_conn):
    [worker] = Worker.all(connection=redis_conn)
    worker.register_death()
    assert run("--quiet") == (
        1,
        [
            "workers: no live worker on queue(s) daily-calls, daily-calls-tick, notifications: start "
            "`manage.py rqworker daily-calls-tick daily-calls notifications --with-scheduler`"
        ],
    )


def test_a_worker_killed_without_unregistering_is_no_live_worker(all_well, redis_conn):
    # SIGKILL: its registration stays in RQ's sets (Worker.count still counts it), but its
    # heartbeat stops and its hash expires.
    [worker] = Worker.all(connection=redis_conn)
    redis_conn.delete(worker.key)
    assert Worker.count(queue=calls_queue()) == 1
    code, lines = run()
    assert code == 1 and [line.split(":")[0] for line in lines] == ["workers"]


def test_a_tick_recorded_long_ago_is_a_problem(db, redis_conn):
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        calls_schedule_due()
    live_worker(redis_conn)
    with time_machine.travel(NOW, tick=False):
        code, lines = run()
    assert code == 1
    assert lines == [
        "tick: no scheduling tick for 60 min (SCHEDULE_CRON '*/5 * * * *' ticks every 5 min): "
        "are rqscheduler and a worker on daily-calls-tick running?"
    ]


def test_a_tick_within_twice_the_cron_period_is_not(db, redis_conn, settings):
    settings.SCHEDULE_CRON = "0 * * * *"  # hourly: a tick 90 minutes ago is still fine
    with time_machine.travel(NOW - timedelta(minutes=90), tick=False):
        calls_schedule_due()
    live_worker(redis_conn)
    with time_machine.travel(NOW, tick=False):
        assert run() == (0, ["OK"])
    with time_machine.travel(NOW + timedelta(minutes=31), tick=False):
        assert run()[1][0].startswith(
            "tick: no scheduling tick for 2.0 h (SCHEDULE_CRON '0 * * * *' ticks every 60 min)"
        )


def test_no_tick_ever_recorded_is_a_problem(db, redis_conn):
    live_worker(redis_conn)
    with time_machine.travel(NOW, tick=False):
        assert run() == (
            1,
            [
                "tick: no scheduling tick has been recorded (SCHEDULE_CRON '*/5 * * * *' ticks every "
                "5 min): is rqscheduler running?"
            ],
        )


def test_a_tick_that_failed_is_a_problem(all_well):
    with time_machine.travel(NOW - timedelta(seconds=30), tick=False):
        monitoring.tick_record(started_at=NOW - timedelta(seconds=31), summary=_summary(), failed=True)
    assert run() == (1, ["tick: the last scheduling tick (30 s ago) failed on a database error"])


def _summary():
    from calls.scheduling import TickSummary

    return TickSummary(due=3, claimed=2)


def test_a_due_first_attempt_never_dialed_is_a_problem(all_well, make_call):
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW - timedelta(minutes=25))
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW - timedelta(minutes=12))
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW - timedelta(minutes=2))  # not late yet
    make_call(status=CallStatus.DIALING, scheduled_for=NOW - timedelta(minutes=25))  # a worker took it
    assert run() == (
        1,
        [
            "first_attempts: 2 first attempt(s) due more than 10 min ago not dialed yet (the oldest "
            "due 25 min ago): are workers on daily-calls running and keeping up?"
        ],
    )
    assert run("--late-minutes", "30") == (0, ["OK"])


def test_retries_and_manual_calls_are_not_first_attempts(all_well, make_call):
    # A late retry is a delayed job nobody released: the delayed-jobs check says so.
    make_call(status=CallStatus.QUEUED, attempt=2, scheduled_for=NOW - timedelta(minutes=25))
    make_call(status=CallStatus.QUEUED, manual=True, scheduled_for=NOW - timedelta(minutes=25))
    assert run() == (0, ["OK"])


def test_overdue_delayed_jobs_are_a_problem(all_well):
    calls_queue().enqueue_at(NOW - timedelta(minutes=10), "calls.jobs.place_call", 1)
    assert run() == (
        1,
        [
            "delayed_jobs: 1 delayed job(s) more than 300 s past their time: is a worker running "
            "with --with-scheduler?"
        ],
    )


def test_redis_down_is_one_line_without_its_password(db, redis_down):  # noqa: F811
    code, lines = run()
    assert code == 1
    assert lines == [
        "redis: Redis is down: ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused."
    ]


def test_the_database_down_is_one_line(all_well, database_down):  # noqa: F811
    code, lines = run()
    assert code == 1
    assert lines == [
        'database: the database is down: OperationalError: connection to server at "db" failed: '
        "Connection refused"
    ]


def test_late_minutes_must_be_positive(db):
    with pytest.raises(CommandError, match="--late-minutes must be 1 or more, not 0"):
        call_command("check_calls", "--late-minutes", "0")


def test_as_a_process_with_both_down_it_exits_1_with_a_line_each_and_no_traceback():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "DATABASE_URL": "postgres://relevel:s3cret-db@127.0.0.1:1/relevel",
        "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
        "REDIS_SOCKET_TIMEOUT": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check_calls"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["database", "redis"], lines
    assert lines[0].startswith("database: the database is down: OperationalError: connection failed")
    assert lines[1].startswith("redis: Redis is down: ConnectionError: Error 111 connecting to 127.0.0.1:1")
    assert "hunter2" not in result.stdout and "s3cret-db" not in result.stdout


def test_a_scheduler_that_just_started_and_has_not_ticked_yet_is_not_a_problem(db, redis_conn):
    # A first start (`dev.py start`): rqscheduler is up, its first tick not due yet.
    from calls.cron import build_cron_scheduler

    live_worker(redis_conn)
    with time_machine.travel(NOW - timedelta(seconds=20), tick=False):
        build_cron_scheduler().register_birth()
    with time_machine.travel(NOW, tick=False):
        assert run() == (0, ["OK"])
        assert health_checks.check_tick(now=NOW).message == (
            "no scheduling tick yet: rqscheduler started 20 s ago "
            "(SCHEDULE_CRON '*/5 * * * *' ticks every 5 min)"
        )
    # Still no tick two cron periods after it started: now it is one.
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        code, lines = run()
    assert code == 1 and lines[0].startswith("tick: no scheduling tick has been recorded")
