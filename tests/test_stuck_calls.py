"""Calls that will never settle by themselves (issue 16, defect 5): every unconfirmed and
silent call past its timeout is failed in one tick, whatever their number, and each retry
is timed from its own call's deadline, not from the tick that reached it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine

from calls import retry_buckets, sweeps
from calls.models import Call, CallStatus
from calls.queues import calls_queue
from tests.retry_buckets import gathered, retry_release, scheduled_jobs
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 28, 15, 5, tzinfo=UTC)  # 20:35 IST: retries 30 minutes on stay on the day


def stuck_calls(count: int, *, status: str, last_status_at: datetime, **fields) -> list[Call]:
    users = User.objects.bulk_create(
        User(
            username=f"stuck{i}",
            phone=f"+9199{i:08d}",
            local_tz="Asia/Kolkata",
            call_time=time(20, 30),
        )
        for i in range(count)
    )
    return Call.objects.bulk_create(
        Call(
            user=user,
            to_number=user.phone,
            agent_id="agent-test",
            provider="callkaro",
            local_date=date(2026, 11, 28),
            scheduled_for=NOW - timedelta(hours=1),
            dialed_at=last_status_at,
            status=status,
            last_status_at=last_status_at,
            **fields,
        )
        for user in users
    )


def test_every_unconfirmed_call_past_its_timeout_is_failed_and_retried_in_one_tick(settings, redis_conn):
    timeout = timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS)
    stuck_calls(1200, status=CallStatus.UNCONFIRMED, last_status_at=NOW - timeout - timedelta(minutes=1))
    with time_machine.travel(NOW, tick=False):
        unconfirmed, silent = sweeps.calls_fail_stuck(now=NOW)
    assert (unconfirmed, silent) == (1200, 0)
    assert Call.objects.filter(attempt=1, status=CallStatus.FAILED, outcome_inferred=True).count() == 1200
    retries = Call.objects.filter(attempt=2, status=CallStatus.QUEUED)
    assert retries.count() == 1200
    # Due in the same second: one bucket and its one job, as a webhook's retries, not 1,200 jobs.
    bucket = retry_buckets.retry_bucket(retries[0].scheduled_for)
    job_id = retry_buckets.retry_bucket_job_id(bucket)
    assert retry_release(retries[0]) == (job_id, datetime.fromtimestamp(bucket, tz=UTC))
    assert set(retries.values_list("job_id", flat=True)) == {job_id}
    assert scheduled_jobs() == [job_id]
    assert gathered(bucket) == set(retries.values_list("pk", flat=True))


def test_retries_of_stuck_calls_are_due_at_their_own_deadline_plus_the_delay(settings, redis_conn):
    unconfirmed_timeout = timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS)
    silent_timeout = timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)
    delay = timedelta(seconds=settings.CALL_RETRY_DELAY_SECONDS)
    moments = {
        "early": (CallStatus.UNCONFIRMED, NOW - unconfirmed_timeout - timedelta(minutes=25)),
        "late": (CallStatus.UNCONFIRMED, NOW - unconfirmed_timeout - timedelta(minutes=5)),
        "overdue": (CallStatus.UNCONFIRMED, NOW - unconfirmed_timeout - delay - timedelta(minutes=1)),
        "silent": (CallStatus.RINGING, NOW - silent_timeout - timedelta(minutes=2)),
    }
    calls = stuck_calls(4, status=CallStatus.UNCONFIRMED, last_status_at=NOW)
    for call, (status, moment) in zip(calls, moments.values(), strict=True):
        Call.objects.filter(pk=call.pk).update(status=status, last_status_at=moment, dialed_at=moment)

    with time_machine.travel(NOW, tick=False):
        assert sweeps.calls_fail_stuck(now=NOW) == (3, 1)

    for call, (status, moment) in zip(calls, moments.values(), strict=True):
        timeout = silent_timeout if status == CallStatus.RINGING else unconfirmed_timeout
        retry = Call.objects.get(retry_of=call)
        assert retry.scheduled_for == moment + timeout + delay, status
        # Its bucket's job (named on its row, for the stranded sweep) releases it at the
        # bucket's time, its own rounded up to RETRY_GATHER_SECONDS.
        job_id, released_at = retry_release(retry)
        bucket_at = datetime.fromtimestamp(retry_buckets.retry_bucket(retry.scheduled_for), tz=UTC)
        if bucket_at > NOW:
            assert released_at == bucket_at
        else:  # due already: queued at once, its window still open
            assert released_at is None and job_id in calls_queue().job_ids


def test_an_answered_or_manual_stuck_call_is_failed_without_a_retry(settings, redis_conn):
    silent_timeout = timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)
    answered = stuck_calls(2, status=CallStatus.IN_PROGRESS, last_status_at=NOW - silent_timeout)
    Call.objects.filter(pk=answered[1].pk).update(status=CallStatus.RINGING, manual=True)
    with time_machine.travel(NOW, tick=False):
        assert sweeps.calls_fail_stuck(now=NOW) == (0, 2)
    assert set(Call.objects.values_list("status", flat=True)) == {CallStatus.FAILED}
    assert Call.objects.count() == 2


def test_each_stuck_call_failed_page_by_page_makes_its_call_ended_event(settings, event_receiver, redis_conn):
    """The set-wise path still tells the product's app, as the one-by-one path did (calls.days)."""
    from events.models import Event, EventType

    silent_timeout = timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)
    calls = stuck_calls(5, status=CallStatus.RINGING, last_status_at=NOW - silent_timeout)
    with time_machine.travel(NOW, tick=False):
        assert sweeps.calls_fail_stuck(now=NOW, page_size=2) == (0, 5)
    ended = Event.objects.filter(type=EventType.CALL_ENDED)
    assert sorted(event.data["call"]["id"] for event in ended) == sorted(call.pk for call in calls)
    assert {(event.data["call"]["status"], event.data["call"]["inferred"]) for event in ended} == {
        (CallStatus.FAILED, True)
    }
