"""Fault injection: whatever breaks, no due call is lost and none is placed twice untraced.

Cases that need real processes (a worker killed with SIGKILL, schedulers racing) run
against PostgreSQL, as CI does; the in-process ones run on any database.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time as wall
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from django.db import DatabaseError, connection, connections
from django.utils import timezone
from rq import Queue, SimpleWorker

from calls import claim, jobs, placement, queues, scheduling, sweeps
from calls import outcomes as call_outcomes
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from tests.clock import midday_user_fields
from tests.fakes import RedisServer
from users.models import User

ROOT = Path(__file__).resolve().parent.parent
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs several processes on one database: PostgreSQL (CI)"
)
pytestmark = pytest.mark.django_db(transaction=True)


def seed_due_users(count: int, *, next_call_at: datetime) -> list[int]:
    # Users whose clock shows noon: their retries stay on the call's local day.
    fields = midday_user_fields(next_call_at)
    User.objects.bulk_create(
        (
            User(username=f"fault{i}", phone=f"+9197{i:08d}", next_call_at=next_call_at, **fields)
            for i in range(count)
        ),
        batch_size=5000,
    )
    return list(User.objects.values_list("id", flat=True))


def burst(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=True)


def assert_each_called_once(user_ids, fake_callkaro) -> None:
    first = Call.objects.filter(attempt=1)
    assert sorted(first.values_list("user_id", flat=True)) == sorted(user_ids)
    dialed = [r["json"]["metadata"]["user_id"] for r in fake_callkaro.requests]
    assert sorted(dialed) == sorted(str(pk) for pk in user_ids), "a user was dialed twice or never"


def burst_worker_command(*extra: str) -> list[str]:
    """A real worker process, as deployed, that drains the queues and exits."""
    return [
        sys.executable,
        "manage.py",
        "rqworker",
        "daily-calls-tick",
        "daily-calls",
        "--burst",
        "--worker-class",
        "rq.worker.SimpleWorker",
        *extra,
    ]


def child_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": django_settings.REDIS_URL,
    }
    env.update(extra)
    return env


# 1. Redis stops right after a tick commits its claims -------------------------------------


def test_redis_stopped_after_the_claims_commit_loses_no_call(fake_callkaro, monkeypatch, caplog):
    server = RedisServer().start()
    try:
        queue = Queue("daily-calls", connection=redis.Redis.from_url(server.url))
        monkeypatch.setattr(queues, "calls_queue", lambda: queue)
        now = timezone.now().replace(second=0, microsecond=0)
        user_ids = seed_due_users(40, next_call_at=now)
        real_enqueue = queues.enqueue_call_batches

        def stop_redis_then_enqueue(batches):
            server.stop()  # the claims are committed; Redis goes away before the enqueue
            return real_enqueue(batches)

        monkeypatch.setattr(queues, "enqueue_call_batches", stop_redis_then_enqueue)
        with caplog.at_level(logging.ERROR, logger="relevel.calls"):
            down = scheduling.calls_schedule_due(now=now)
        assert (down.claimed, down.enqueued, down.enqueue_failed) == (40, 0, 40)
        assert "will be enqueued by a later tick" in caplog.text

        server.start()  # back, and empty
        monkeypatch.setattr(queues, "enqueue_call_batches", real_enqueue)
        up = scheduling.calls_schedule_due(now=now + timedelta(minutes=5))
        assert (up.claimed, up.reenqueued) == (0, 40)
        burst(queue)
        assert_each_called_once(user_ids, fake_callkaro)
        assert set(Call.objects.values_list("status", flat=True)) == {CallStatus.RINGING}
    finally:
        server.cleanup()


# 1b. A rush slot whose jobs Redis lost -----------------------------------------------------

RUSH = 25_000


def test_a_rush_whose_jobs_redis_lost_is_enqueued_again_whole_within_its_window(redis_conn, caplog):
    """25,000 users share one slot (one scheduled_for); Redis restarts empty after the claim.
    The next tick must reach every one of them, not the first page again and again."""
    started = wall.monotonic()
    now = timezone.now().replace(second=0, microsecond=0)
    seed_due_users(RUSH, next_call_at=now)
    claim = scheduling.calls_schedule_due(now=now)
    assert (claim.claimed, claim.enqueued) == (RUSH, RUSH)
    redis_conn.flushdb()  # every batch job of the rush is gone; the calls stay queued

    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        later = [scheduling.calls_schedule_due(now=now + timedelta(minutes=m)) for m in (5, 10)]
    assert [tick.reenqueued for tick in later] == [RUSH, 0]
    assert [tick.missed for tick in later] == [0, 0]

    # Every queued call rides in exactly one live batch job, the one its row names (which is
    # how the second tick knew to leave them alone).
    queue = Queue("daily-calls", connection=redis_conn)
    jobs = queue.job_class.fetch_many(queue.get_job_ids(), connection=redis_conn)
    assert {job.func_name for job in jobs} == {"calls.jobs.place_calls"}
    assert len(jobs) == RUSH // django_settings.CALL_BATCH_SIZE
    carried = {pk: job.id for job in jobs for pk in job.args[0]}
    assert len(carried) == sum(len(job.args[0]) for job in jobs) == RUSH
    assert dict(Call.objects.filter(status=CallStatus.QUEUED).values_list("id", "job_id")) == carried

    # No worker comes (or none runs in time): once the window closes, the jobs are still
    # live in Redis, but the calls are missed, all of them, saying why; none is left queued.
    closed = scheduling.calls_schedule_due(now=now + timedelta(minutes=15))
    assert (closed.reenqueued, closed.missed) == (0, RUSH)
    assert not Call.objects.filter(status=CallStatus.QUEUED).exists()
    assert (
        Call.objects.filter(
            status=CallStatus.MISSED, error__startswith="Its window closed while its job was still waiting"
        ).count()
        == RUSH
    )
    print(f"\n{RUSH:,}-call rush: seed, claim and 3 ticks in {wall.monotonic() - started:.1f} s")


# 2. A worker killed with SIGKILL in the middle of a provider request -----------------------


@postgres_only
def test_a_worker_killed_mid_request_leaves_an_unconfirmed_call_then_one_traced_retry(
    fake_callkaro, redis_conn, settings
):
    fake_callkaro.delay = 30  # the provider "hangs" long enough to be killed mid-request
    now = timezone.now().replace(second=0, microsecond=0)
    [user_id] = seed_due_users(1, next_call_at=now)
    assert scheduling.calls_schedule_due(now=now).enqueued == 1

    worker = subprocess.Popen(
        burst_worker_command(),
        cwd=ROOT,
        env=child_env(CALLKARO_BASE_URL=fake_callkaro.url, CALLKARO_READ_TIMEOUT="60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = wall.monotonic() + 30
        while not fake_callkaro.requests and wall.monotonic() < deadline:
            wall.sleep(0.05)
        assert fake_callkaro.requests, "the worker never reached the provider"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    call = Call.objects.get(attempt=1)
    assert call.status == CallStatus.DIALING  # mid-request: the outcome is unknown

    # The next tick past the dialing timeout (once RQ's heartbeat for the dead job ran out)
    # makes it unconfirmed: the provider may be ringing the user, so no retry yet.
    # From the real clock, not the minute the test began at: the worker took the call later.
    later = timezone.now() + timedelta(seconds=settings.CALL_DIALING_TIMEOUT_SECONDS + 60)
    assert scheduling.calls_schedule_due(now=later).abandoned == 1
    assert scheduling.calls_schedule_due(now=later).abandoned == 0  # once
    call.refresh_from_db()
    assert call.status == CallStatus.UNCONFIRMED and "may or may not have placed it" in call.error
    assert not Call.objects.filter(attempt=2).exists()
    # No webhook came: failed (saying so) after the unconfirmed timeout, with one retry.
    latest = later + timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 1)
    assert scheduling.calls_schedule_due(now=latest).unconfirmed == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED and call.outcome_inferred
    retry = Call.objects.get(attempt=2)
    assert (retry.retry_of_id, retry.status) == (call.pk, CallStatus.QUEUED)

    # Whatever RQ does with the killed job, attempt 1 is never dialed again.
    fake_callkaro.delay = 0
    placement.call_place(call_id=call.pk)
    with time_machine.travel(retry.scheduled_for + timedelta(seconds=1), tick=True):  # its time
        placement.call_place(call_id=retry.pk)
    assert [r["json"]["metadata"]["call_id"] for r in fake_callkaro.requests] == [str(call.pk), str(retry.pk)]
    assert User.objects.get(pk=user_id).calls.count() == 2


# 3. A misbehaving provider: bounded retries with backoff, then a defined state --------------


@pytest.mark.parametrize("fault", ["http-429", "http-503", "refused"])
def test_a_provider_refusing_before_acting_gets_three_attempts_then_the_call_fails_with_one_retry(
    fake_callkaro, settings, fault
):
    if fault == "http-429":
        fake_callkaro.respond_with((429, {"status": "error", "message": "Too many requests"}))
    elif fault == "http-503":
        fake_callkaro.respond_with((503, {"status": "error", "message": "Service unavailable"}))
    else:
        settings.CALLKARO_BASE_URL = "http://127.0.0.1:9"
    from calls.providers import reset_provider_cache

    reset_provider_cache()
    now = timezone.now().replace(second=0, microsecond=0)
    seed_due_users(3, next_call_at=now)
    scheduling.calls_schedule_due(now=now)
    burst(queues.calls_queue())

    if fault != "refused":
        assert len(fake_callkaro.requests) == 3 * 3  # 3 users x 3 attempts, no storm
    else:  # nothing answers to count requests: each call's own job used both of its retries
        for call in Call.objects.filter(attempt=1):
            job = queues.calls_queue().fetch_job(queues.call_job_id(call.pk))
            assert job is not None and job.retries_left == 0
    first = Call.objects.filter(attempt=1)
    assert set(first.values_list("status", flat=True)) == {CallStatus.FAILED}
    assert all(call.error for call in first)
    retries = Call.objects.filter(attempt=2)
    assert retries.count() == 3 and set(retries.values_list("status", flat=True)) == {CallStatus.QUEUED}


@pytest.mark.parametrize("fault", ["http-500", "http-502", "read-timeout", "200-not-json", "200-without-id"])
def test_a_provider_that_may_have_placed_the_call_is_asked_once_and_the_webhook_settles_it(
    fake_callkaro, settings, fault, client
):
    """Never a blind re-dial: one request per user, then the webhook (found by our id in
    the metadata) or the unconfirmed timeout decides, with at most one retry."""
    if fault == "http-500":
        fake_callkaro.respond_with((500, {"status": "error", "message": "Server error"}))
    elif fault == "http-502":
        fake_callkaro.respond_with((502, b"<html>Bad gateway</html>"))
    elif fault == "read-timeout":
        settings.CALLKARO_READ_TIMEOUT = 0.2
        fake_callkaro.delay = 0.5
    elif fault == "200-not-json":
        fake_callkaro.respond_with((200, b"<html>OK</html>"))
    else:
        fake_callkaro.respond_with((200, {"status": "done", "message": "Call queued successfully"}))
    from calls.providers import reset_provider_cache

    reset_provider_cache()
    settings.CALLKARO_WEBHOOK_TOKEN = "t" * 32
    now = timezone.now().replace(second=0, microsecond=0)
    seed_due_users(2, next_call_at=now)
    scheduling.calls_schedule_due(now=now)
    burst(queues.calls_queue())
    assert len(fake_callkaro.requests) == 2  # one each, no re-send
    answered, silent = Call.objects.filter(attempt=1).order_by("pk")
    assert {answered.status, silent.status} == {CallStatus.UNCONFIRMED}

    # The first one's webhook arrives, naming it by our id: settled, no retry.
    webhook = {
        "event": "call_ended",
        "data": {
            "callSid": "ck-late-1",
            "hangup_reason": "CLIENT_INITIATED",
            "call_metadata": {"call_id": str(answered.pk)},
        },
    }
    response = client.post(
        f"/api/webhooks/callkaro?token={'t' * 32}", data=webhook, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["status"] == "completed"
    # The other never hears back: failed after the timeout, with exactly one retry.
    later = timezone.now() + timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 60)
    scheduling.calls_schedule_due(now=later)
    scheduling.calls_schedule_due(now=later)
    answered.refresh_from_db()
    silent.refresh_from_db()
    assert (answered.status, answered.provider_call_id) == (CallStatus.COMPLETED, "ck-late-1")
    assert silent.status == CallStatus.FAILED and silent.outcome_inferred
    assert list(Call.objects.filter(attempt=2).values_list("retry_of_id", flat=True)) == [silent.pk]


# 4. Webhook storms: duplicates and out-of-order statuses, concurrently ---------------------


@postgres_only
def test_a_storm_of_duplicate_and_out_of_order_webhooks_ends_in_the_right_state(
    make_user, make_call, on_the_calls_day
):
    outcomes = {}
    for i in range(30):
        call = make_call(user=make_user(), status=CallStatus.RINGING, provider_call_id=f"ck-storm-{i}")
        outcomes[call.provider_call_id] = CallStatus.NO_ANSWER if i % 3 == 0 else CallStatus.COMPLETED
    events = [
        CallEvent(provider_call_id=pid, status=status)
        for pid, final in outcomes.items()
        for status in (CallStatus.RINGING, CallStatus.IN_PROGRESS, final)
        for _ in range(4)
    ]
    random.Random(7).shuffle(events)
    retry_flags = []
    lock = threading.Lock()

    def deliver(chunk):
        try:
            for event in chunk:
                result = call_outcomes.call_apply_event(event=event)
                with lock:
                    retry_flags.append(result.retry_scheduled)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    for pid, final in outcomes.items():
        assert Call.objects.get(provider_call_id=pid).status == final
    unanswered = sum(1 for final in outcomes.values() if final == CallStatus.NO_ANSWER)
    assert Call.objects.filter(attempt=2).count() == unanswered
    assert retry_flags.count(True) == unanswered


# 5. Two scheduler processes and repeated manual triggers over 10,000 due users -------------


@postgres_only
def test_racing_schedulers_and_manual_triggers_give_exactly_one_first_attempt(redis_conn):
    now = timezone.now().replace(second=0, microsecond=0)
    user_ids = seed_due_users(10_000, next_call_at=now)
    for _ in range(3):
        queues.enqueue_tick()  # manual triggers, run by the workers below
    env = child_env()
    commands = [[sys.executable, "manage.py", "schedule_calls"]] * 2 + [
        burst_worker_command("--max-jobs", "3")
    ] * 2
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs

    claimed = Call.objects.filter(attempt=1)
    assert claimed.count() == 10_000
    assert sorted(claimed.values_list("user_id", flat=True)) == sorted(user_ids)
    # No call rides in two batch jobs, whether those jobs still wait or already ran...
    queue = Queue("daily-calls", connection=redis_conn)
    job_ids = (
        queue.get_job_ids()
        + queue.finished_job_registry.get_job_ids()
        + queue.failed_job_registry.get_job_ids()
    )
    carried = [
        pk
        for job in queue.job_class.fetch_many(job_ids, connection=redis_conn)
        if job is not None and job.func_name == "calls.jobs.place_calls"
        for pk in job.args[0]
    ]
    assert len(carried) == len(set(carried)) == 10_000
    # ...and none was left without a live job (the check a later tick makes).
    assert sweeps.calls_reenqueue_stranded(now=now + timedelta(hours=1), window=timedelta(days=1)) == (
        0,
        0,
    )


# 6. The database connection drops in the middle of a tick ----------------------------------


@postgres_only
def test_a_tick_that_loses_its_database_connection_says_so_and_the_next_tick_finishes(
    monkeypatch, caplog, redis_conn
):
    # A worker's connection as in production: kept for CONN_MAX_AGE, not closed per job.
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    now = timezone.now().replace(second=0, microsecond=0)
    user_ids = seed_due_users(50, next_call_at=now)
    monkeypatch.setattr(claim, "TICK_BATCH_SIZE", 20)
    real_claim = claim.claim_due_batch
    batches = []

    def claim_then_drop(**kwargs):
        batches.append(1)
        if len(batches) == 2:  # kill this connection from the outside, mid-tick
            kill_backend(connection.cursor().connection.info.backend_pid)
        return real_claim(**kwargs)

    monkeypatch.setattr(claim, "claim_due_batch", claim_then_drop)
    with caplog.at_level(logging.ERROR, logger="relevel.calls"), pytest.raises(DatabaseError):
        jobs.schedule_calls()
    assert "failed: database error" in caplog.text and "the next tick completes the work" in caplog.text

    # The next tick runs on the same worker, whose connection is now dead: the job itself
    # must replace it (nothing here closes it by hand).
    monkeypatch.setattr(claim, "claim_due_batch", real_claim)
    jobs.schedule_calls()
    claimed = Call.objects.filter(attempt=1)
    assert sorted(claimed.values_list("user_id", flat=True)) == sorted(user_ids)
    carried = [pk for job in Queue("daily-calls", connection=redis_conn).jobs for pk in job.args[0]]
    assert sorted(carried) == sorted(claimed.values_list("id", flat=True))


@postgres_only
def test_a_worker_whose_idle_connection_was_killed_recovers_at_its_next_job(monkeypatch, redis_conn):
    """PostgreSQL restarted (or killed idle sessions) between two jobs of a long-lived worker."""
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)  # kept, as in production
    jobs.schedule_calls()  # the worker's connection is open and idle now
    kill_backend(connection.connection.info.backend_pid)

    now = timezone.now().replace(second=0, microsecond=0)
    user_ids = seed_due_users_outside_this_connection(5, next_call_at=now)
    jobs.schedule_calls()
    assert sorted(Call.objects.filter(attempt=1).values_list("user_id", flat=True)) == sorted(user_ids)


def kill_backend(pid: int) -> None:
    """Terminate a PostgreSQL session from another connection, as a restart would."""
    killer = connections["default"].__class__(connection.settings_dict, alias="killer")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()


def seed_due_users_outside_this_connection(count: int, *, next_call_at: datetime) -> list[int]:
    """Seed through a connection of its own, leaving the (dead) default one untouched."""
    seeder = connections["default"].__class__(connection.settings_dict, alias="seeder")
    try:
        with seeder.cursor() as cursor:
            for i in range(count):
                cursor.execute(
                    "INSERT INTO users_user (password, is_superuser, username, first_name, last_name, "
                    "email, is_staff, is_active, date_joined, name, phone, local_tz, call_enabled, "
                    "call_time, next_call_at) VALUES ('', false, %s, '', '', '', false, true, now(), "
                    "'', %s, 'UTC', true, %s, %s) RETURNING id",
                    [f"idle{i}", f"+9196{i:08d}", next_call_at.time(), next_call_at],
                )
        with seeder.cursor() as cursor:
            cursor.execute("SELECT id FROM users_user WHERE username LIKE 'idle%%'")
            return [row[0] for row in cursor.fetchall()]
    finally:
        seeder.close()
