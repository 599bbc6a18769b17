"""Outcome retries gathered per instant and released in batch jobs (calls/retries.py):
one job for the retries of a bucket, none stranded or dialed twice whatever Redis does."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from rq import SimpleWorker
from rq.job import Job

from calls import outcomes, placement, queues, retry_buckets, sweeps
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from tests.fakes import free_port
from tests.retry_buckets import gathered, retry_release, scheduled_jobs
from tests.test_dispatch import cap

pytestmark = pytest.mark.django_db(transaction=True)
# Not on a bucket's edge: the retry (30 minutes later, 15:35:02) waits for 15:35:05.
NOW = datetime(2026, 11, 28, 15, 5, 2, tzinfo=UTC)
BUCKET_AT = datetime(2026, 11, 28, 15, 35, 5, tzinfo=UTC)


def unanswered(make_call, *, at: datetime = NOW, **fields) -> Call:
    """A ringing first attempt that the provider reports unanswered at ``at``; its retry."""
    call = make_call(
        status=CallStatus.RINGING, provider_call_id=f"ck-{make_call(status='canceled').pk}", **fields
    )
    with time_machine.travel(at, tick=False):
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id=call.provider_call_id, status=CallStatus.NO_ANSWER, raw={})
        )
    assert result.retry_scheduled
    return Call.objects.get(retry_of=call)


def burst_at(when: datetime) -> None:
    """A worker with RQ's scheduler, at ``when``: releases what is due, runs everything."""
    queue = queues.calls_queue()
    with time_machine.travel(when, tick=True):
        SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=True)


def dialed_call_ids(fake_callkaro) -> list[int]:
    return sorted(int(request["json"]["metadata"]["call_id"]) for request in fake_callkaro.requests)


def test_two_retries_due_in_the_same_seconds_share_one_job_that_places_both(
    fake_callkaro, make_call, redis_conn
):
    first = unanswered(make_call)
    second = unanswered(make_call, at=NOW + timedelta(seconds=2))  # due 15:35:04, same bucket
    assert first.scheduled_for < second.scheduled_for < BUCKET_AT

    job_id, released_at = retry_release(first)
    assert retry_release(second) == (job_id, released_at)
    assert scheduled_jobs() == [job_id] and released_at == BUCKET_AT

    burst_at(BUCKET_AT - timedelta(seconds=1))  # not its time: the job stays scheduled
    assert fake_callkaro.requests == [] and scheduled_jobs() == [job_id]
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert dialed_call_ids(fake_callkaro) == [first.pk, second.pk]
    assert set(Call.objects.filter(attempt=2).values_list("status", flat=True)) == {CallStatus.RINGING}
    assert gathered(retry_buckets.retry_bucket(first.scheduled_for)) == set()
    assert queues.calls_queue().fetch_job(job_id).return_value() == {"placed": 2}


def test_retries_of_different_instants_get_a_job_each(make_call, redis_conn):
    first = unanswered(make_call)
    later = unanswered(make_call, at=NOW + timedelta(seconds=4))  # due 15:35:06: the next bucket
    assert retry_release(later)[1] == BUCKET_AT + timedelta(seconds=5)
    assert sorted(scheduled_jobs()) == sorted([retry_release(first)[0], retry_release(later)[0]])


def test_a_retry_added_after_its_buckets_job_took_the_calls_gets_a_job_of_its_own(
    fake_callkaro, make_call, redis_conn, monkeypatch
):
    """The late add: a webhook decided its retry's bucket before the bucket's job ran, but its
    commit reached Redis just after the job had taken the calls. The job clears the bucket's
    marker as it takes them, so the late retry finds none and schedules a new job (the
    bucket's second, under a name of its own: the first is still running)."""
    early = unanswered(make_call)
    held: list[tuple[int, int]] = []
    real_gather = outcomes._gather_retries
    monkeypatch.setattr(
        outcomes,
        "_gather_retries",
        lambda buckets: held.extend((call_id, bucket) for bucket, ids in buckets.items() for call_id in ids),
    )
    late = unanswered(make_call, at=NOW + timedelta(seconds=1))
    monkeypatch.setattr(outcomes, "_gather_retries", real_gather)
    bucket = retry_buckets.retry_bucket(early.scheduled_for)
    assert held == [(late.pk, bucket)]

    real_take = retry_buckets.retries_take
    second_jobs: list[str | None] = []

    def take_then_the_late_retry_arrives(bucket_taken: int) -> list[int]:
        taken = real_take(bucket_taken)
        if held:
            call_id, its_bucket = held.pop()
            second_jobs.append(retry_buckets.retries_gather([call_id], bucket=its_bucket, now=BUCKET_AT))
        return taken

    monkeypatch.setattr(retry_buckets, "retries_take", take_then_the_late_retry_arrives)
    burst_at(BUCKET_AT + timedelta(seconds=1))

    assert second_jobs == [retry_buckets.retry_bucket_job_id(bucket, generation=2)]
    assert dialed_call_ids(fake_callkaro) == [early.pk, late.pk]  # each once
    late.refresh_from_db()
    assert late.status == CallStatus.RINGING and late.job_id == second_jobs[0]
    first_job = queues.calls_queue().fetch_job(retry_buckets.retry_bucket_job_id(bucket))
    assert first_job.return_value() == {"placed": 1}


def test_a_retry_added_before_the_job_takes_the_calls_never_schedules_a_second_job(make_call, redis_conn):
    first = unanswered(make_call)
    bucket = retry_buckets.retry_bucket(first.scheduled_for)
    # Another webhook's retry for the same instant, the bucket's job still waiting.
    assert retry_buckets.retries_gather([987654], bucket=bucket, now=NOW) is None
    assert scheduled_jobs() == [retry_buckets.retry_bucket_job_id(bucket)]
    assert retry_buckets.retries_take(bucket) == [first.pk, 987654]
    assert retry_buckets.retries_take(bucket) == []  # taken once


def test_a_call_already_taken_by_another_job_is_not_dialed_again_by_its_bucket(
    fake_callkaro, make_call, redis_conn
):
    retry = unanswered(make_call)
    with time_machine.travel(BUCKET_AT, tick=True):
        assert placement.call_place(call_id=retry.pk) == "placed"  # say, a job of its own
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert dialed_call_ids(fake_callkaro) == [retry.pk]
    job = queues.calls_queue().fetch_job(retry.job_id)
    assert job.return_value() == {"skipped": 1}


def test_a_bucket_larger_than_a_batch_hands_the_rest_to_batch_jobs(
    fake_callkaro, make_call, redis_conn, settings
):
    settings.CALL_BATCH_SIZE = 2
    retries = [unanswered(make_call, at=NOW + timedelta(milliseconds=100 * i)) for i in range(5)]
    assert len(scheduled_jobs()) == 1
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert dialed_call_ids(fake_callkaro) == sorted(retry.pk for retry in retries)
    # The rows name the jobs that carried them, for the sweeps.
    job_ids = dict(Call.objects.filter(attempt=2).values_list("pk", "job_id"))
    ids = sorted(job_ids)
    assert job_ids[ids[0]] == job_ids[ids[1]] == retries[0].job_id
    assert job_ids[ids[2]] == job_ids[ids[3]] == queues.batch_job_id(ids[2])
    assert job_ids[ids[4]] == queues.batch_job_id(ids[4])
    handed_on = queues.calls_queue().fetch_job(queues.batch_job_id(ids[2]))
    assert handed_on.description == f"Batch of 2 retries from call {ids[2]}"


def test_a_retry_gathered_while_redis_is_down_is_still_true_and_placed_by_a_tick(
    fake_callkaro, make_call, redis_conn, monkeypatch, caplog, settings
):
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(queues, "redis_connection", lambda: dead)
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        retry = unanswered(make_call)  # the webhook's answer: a retry was scheduled
    monkeypatch.undo()
    assert f"retry call {retry.pk} will be enqueued by a tick" in caplog.text
    assert scheduled_jobs() == [] and retry.status == CallStatus.QUEUED
    # Not the bucket's job: webhooks' retries may schedule it, and it would not carry this one.
    assert retry.job_id == ""

    burst_at(BUCKET_AT + timedelta(seconds=1))  # nothing in Redis releases it
    assert fake_callkaro.requests == []
    found_at = retry.scheduled_for + timedelta(seconds=settings.CALL_STRANDED_AFTER_SECONDS + 1)
    with time_machine.travel(found_at, tick=False):
        window = outcomes.policy_current().window
        assert sweeps.calls_reenqueue_stranded(now=found_at, window=window) == (1, 0)
    burst_at(found_at + timedelta(seconds=1))
    assert dialed_call_ids(fake_callkaro) == [retry.pk]


def test_a_retry_whose_bucket_redis_lost_is_found_by_the_tick_and_placed_once(
    fake_callkaro, make_call, redis_conn, settings
):
    retry = unanswered(make_call)
    window = outcomes.policy_current().window
    found_at = retry.scheduled_for + timedelta(seconds=settings.CALL_STRANDED_AFTER_SECONDS + 1)
    # While its bucket's job waits (a scheduler behind), the sweep leaves it to that job.
    assert sweeps.calls_reenqueue_stranded(now=found_at, window=window) == (0, 0)

    redis_conn.flushdb()  # the bucket, its marker and its job gone
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert fake_callkaro.requests == []
    assert sweeps.calls_reenqueue_stranded(now=found_at, window=window) == (1, 0)
    burst_at(found_at + timedelta(seconds=1))
    assert dialed_call_ids(fake_callkaro) == [retry.pk]
    assert sweeps.calls_reenqueue_stranded(now=found_at + timedelta(seconds=2), window=window) == (0, 0)


def test_retries_for_a_capped_provider_wait_for_a_line_and_are_placed(
    fake_callkaro, make_call, redis_conn, settings
):
    cap(settings, "callkaro", live=2)
    retries = [unanswered(make_call), unanswered(make_call, at=NOW + timedelta(seconds=1))]
    job_id = retry_release(retries[0])[0]
    # The bucket's job admits both to the waiting set and starts a dispatcher, which the same
    # worker runs next and which sends them as lines allow.
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert queues.calls_queue().fetch_job(job_id).return_value() == {"waiting_for_capacity": 2}
    assert dialed_call_ids(fake_callkaro) == sorted(retry.pk for retry in retries)
    assert set(Call.objects.filter(attempt=2).values_list("status", flat=True)) == {CallStatus.RINGING}


def test_a_bucket_job_that_fails_puts_its_calls_back_and_its_next_try_places_them(
    fake_callkaro, make_call, redis_conn, monkeypatch
):
    from calls import dispatch

    retry = unanswered(make_call)
    job_id, _ = retry_release(retry)
    real_dispatch = dispatch.calls_dispatch_batch
    failures = []

    def failing_once(*, call_ids):
        if not failures:
            failures.append(call_ids)
            raise RuntimeError("the database went away mid-job")
        return real_dispatch(call_ids=call_ids)

    monkeypatch.setattr(dispatch, "calls_dispatch_batch", failing_once)
    taken_back: list[int] = []
    real_take = retry_buckets.retries_take

    def recording_take(bucket):
        ids = real_take(bucket)
        taken_back.extend(ids)
        return ids

    monkeypatch.setattr(retry_buckets, "retries_take", recording_take)

    # The tests' CALL_PLACE_RETRY_INTERVALS are 0,0: RQ tries the job again at once.
    burst_at(BUCKET_AT + timedelta(seconds=1))
    assert failures == [[retry.pk]]
    assert taken_back == [retry.pk, retry.pk]  # put back by the failed try, taken by the next
    assert dialed_call_ids(fake_callkaro) == [retry.pk]  # once
    assert Call.objects.get(pk=retry.pk).status == CallStatus.RINGING
    assert gathered(retry_buckets.retry_bucket(retry.scheduled_for)) == set()
    assert queues.calls_queue().fetch_job(job_id).return_value() == {"placed": 1}


def test_a_bucket_gathers_more_calls_at_once_than_one_redis_script_can_take(redis_conn):
    """A sweep of stuck calls after an outage may retry tens of thousands in one instant:
    Lua's unpack() fails beyond about 8,000 values, so they go in by chunks, and the bucket
    still gets one job."""
    bucket = retry_buckets.retry_bucket(BUCKET_AT)
    call_ids = list(range(1, 20_001))
    job_id = retry_buckets.retries_gather(call_ids, bucket=bucket, now=NOW)
    assert job_id == retry_buckets.retry_bucket_job_id(bucket)
    assert scheduled_jobs() == [job_id]
    assert retry_buckets.retries_take(bucket) == call_ids


def test_a_retry_waiting_for_its_buckets_later_job_is_not_taken_for_stranded(make_call, redis_conn, settings):
    """A retry gathered after its bucket's first job ran waits for the bucket's second job,
    and its row still names the first (renamed only when the second takes it): the tick's
    stranded sweep, past its threshold with that job still queued (workers behind), must
    not give it a job of its own as if it were lost."""
    early = unanswered(make_call)
    bucket = retry_buckets.retry_bucket(early.scheduled_for)
    first_job = retry_buckets.retry_bucket_job_id(bucket)
    assert retry_buckets.retries_take(bucket) == [early.pk]  # the first job runs...
    redis_conn.hset(Job.key_for(first_job), "status", "finished")  # ...and is done
    late = unanswered(make_call, at=NOW + timedelta(seconds=1))
    assert late.job_id == first_job
    second_job = retry_buckets.retry_bucket_job_id(bucket, generation=2)
    assert second_job in scheduled_jobs() and late.pk in gathered(bucket)

    found_at = late.scheduled_for + timedelta(seconds=settings.CALL_STRANDED_AFTER_SECONDS + 1)
    with time_machine.travel(found_at, tick=False):
        window = outcomes.policy_current().window
        assert sweeps.calls_reenqueue_stranded(now=found_at, window=window) == (1, 0)  # the early one
    assert queues.call_job_id(late.pk) not in queues.calls_queue().job_ids
    assert queues.call_job_id(early.pk) in queues.calls_queue().job_ids

    redis_conn.hset(Job.key_for(second_job), "status", "finished")  # the second, lost in turn
    with time_machine.travel(found_at, tick=False):
        assert sweeps.calls_reenqueue_stranded(now=found_at, window=window) == (1, 0)  # now the late one
    assert queues.call_job_id(late.pk) in queues.calls_queue().job_ids
