"""Exactly once under concurrency: several ticks at once over many due users (PostgreSQL)."""

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection, connections
from rq import Queue

from calls import claim
from calls.models import Call
from calls.scheduling import calls_schedule_due
from users.models import User

SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks (SKIP LOCKED) are PostgreSQL's; CI runs it"
    ),
]


def seed_due_users(count: int) -> list[int]:
    User.objects.bulk_create(
        User(
            username=f"due{i}",
            phone=f"+9198{i:08d}",
            local_tz="Asia/Kolkata",
            call_time=time(20, 30),
            next_call_at=SLOT,
        )
        for i in range(count)
    )
    return list(User.objects.values_list("id", flat=True))


def run_ticks_in_parallel(n_threads: int, now: datetime) -> list:
    barrier = threading.Barrier(n_threads)
    summaries, errors = [], []

    def run():
        try:
            barrier.wait()
            summaries.append(calls_schedule_due(now=now))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return summaries


def test_parallel_ticks_give_each_due_user_exactly_one_first_attempt(redis_conn):
    user_ids = seed_due_users(3000)
    summaries = run_ticks_in_parallel(6, SLOT + timedelta(minutes=1))

    assert sum(s.claimed for s in summaries) == 3000
    per_user = Call.objects.filter(attempt=1).values_list("user_id", flat=True)
    assert sorted(per_user) == sorted(user_ids)
    enqueued = [pk for job in Queue("daily-calls", connection=redis_conn).jobs for pk in job.args[0]]
    assert sorted(enqueued) == sorted(Call.objects.values_list("id", flat=True))
    # And a late straggler tick (a manual trigger) finds nothing left to do.
    assert calls_schedule_due(now=SLOT + timedelta(minutes=2)).claimed == 0
    assert User.objects.filter(next_call_at=SLOT + timedelta(days=1)).count() == 3000


def test_ticks_racing_on_stale_next_call_at_values_still_call_once(redis_conn):
    """Even if next_call_at is rewound (a stale admin save), the constraint holds the line."""
    seed_due_users(500)
    run_ticks_in_parallel(3, SLOT + timedelta(minutes=1))
    User.objects.update(next_call_at=SLOT)  # every user looks due again
    summaries = run_ticks_in_parallel(3, SLOT + timedelta(minutes=6))
    assert sum(s.claimed for s in summaries) == 0
    assert sum(s.due for s in summaries) == 500
    assert Call.objects.count() == 500


def test_one_tick_claims_a_rush_on_two_connections_each_user_once(monkeypatch, redis_conn):
    """A first batch that comes back full makes the tick claim on CLAIM_CONNECTIONS connections
    (calls.claim.claim_all_due): every user once, every call in one job, and the tick's
    summary counts the helper's batches too."""
    monkeypatch.setattr(claim, "TICK_BATCH_SIZE", 50)
    monkeypatch.setattr(claim, "CLAIM_CONNECTIONS", 2)
    user_ids = seed_due_users(600)
    backends: dict[int, int] = {}  # backend pid -> users claimed on that connection
    real_claim = claim.claim_due_batch

    def counting_claim(**kwargs) -> int:
        taken = real_claim(**kwargs)
        pid = connection.connection.info.backend_pid
        backends[pid] = backends.get(pid, 0) + taken
        return taken

    monkeypatch.setattr(claim, "claim_due_batch", counting_claim)
    summary = calls_schedule_due(now=SLOT + timedelta(minutes=1))

    assert len(backends) == 2 and all(backends.values()), backends
    assert summary.due == summary.claimed == summary.enqueued == 600
    per_user = Call.objects.filter(attempt=1).values_list("user_id", flat=True)
    assert sorted(per_user) == sorted(user_ids)
    enqueued = [pk for job in Queue("daily-calls", connection=redis_conn).jobs for pk in job.args[0]]
    assert sorted(enqueued) == sorted(Call.objects.values_list("id", flat=True))
    assert User.objects.filter(next_call_at=SLOT + timedelta(days=1)).count() == 600


def test_a_rush_claimed_on_one_connection_when_told_so(monkeypatch, redis_conn):
    monkeypatch.setattr(claim, "TICK_BATCH_SIZE", 50)
    monkeypatch.setattr(claim, "CLAIM_CONNECTIONS", 1)
    seed_due_users(200)
    threads = set()
    real_claim = claim.claim_due_batch

    def recording_claim(**kwargs) -> int:
        threads.add(threading.current_thread().name)
        return real_claim(**kwargs)

    monkeypatch.setattr(claim, "claim_due_batch", recording_claim)
    assert calls_schedule_due(now=SLOT + timedelta(minutes=1)).claimed == 200
    assert threads == {threading.current_thread().name}
