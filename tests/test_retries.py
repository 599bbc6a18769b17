"""Outcome retries: when, how many, exactly once, and when they are dropped."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rq.registry import ScheduledJobRegistry

from calls import outcomes, placement, scheduling, sweeps
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from tests.retry_buckets import retry_release, scheduled_jobs
from users.services import user_save

pytestmark = pytest.mark.django_db(transaction=True)
NOW = datetime(2026, 11, 28, 15, 5, tzinfo=UTC)


def ringing_call(make_call, **fields):
    fields.setdefault("status", CallStatus.RINGING)
    fields.setdefault("provider_call_id", f"ck-{fields.get('attempt', 1)}")
    return make_call(**fields)


def outcome(call, status):
    with time_machine.travel(NOW, tick=False):
        return outcomes.call_apply_event(
            event=CallEvent(provider_call_id=call.provider_call_id, status=status, raw={"status": status})
        )


@pytest.mark.parametrize("status", [CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY])
def test_an_unanswered_call_is_retried_after_the_delay(make_call, redis_conn, caplog, status):
    call = ringing_call(make_call)
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        result = outcome(call, status)
    assert result.applied and result.retry_scheduled
    retry = Call.objects.get(retry_of=call)
    assert (retry.attempt, retry.status) == (2, CallStatus.QUEUED)
    assert retry.scheduled_for == NOW + timedelta(seconds=1800)
    # Released with the other retries of its instant (a multiple of RETRY_GATHER_SECONDS,
    # which NOW + 30 minutes already is), by one job.
    job_id, released_at = retry_release(retry)
    assert scheduled_jobs() == [job_id]
    assert released_at == NOW + timedelta(seconds=1800)
    assert f"Scheduled retry 1/2 for call {call.pk} in 30 minutes" in caplog.text


def test_a_completed_call_is_not_retried(make_call, redis_conn):
    call = ringing_call(make_call)
    result = outcome(call, CallStatus.COMPLETED)
    assert result.applied and not result.retry_scheduled
    assert Call.objects.count() == 1


def test_the_same_outcome_delivered_twice_schedules_one_retry(make_call, redis_conn):
    call = ringing_call(make_call)
    first, second = outcome(call, CallStatus.NO_ANSWER), outcome(call, CallStatus.NO_ANSWER)
    assert (first.retry_scheduled, second.retry_scheduled, second.applied) == (True, False, False)
    assert Call.objects.filter(attempt=2).count() == 1
    assert len(ScheduledJobRegistry("daily-calls", connection=redis_conn)) == 1


def test_the_third_attempt_is_the_last(make_user, make_call, caplog, redis_conn):
    user = make_user()
    first = ringing_call(make_call, user=user, attempt=1, status=CallStatus.BUSY)
    second = ringing_call(make_call, user=user, attempt=2, status=CallStatus.NO_ANSWER, retry_of=first)
    third = ringing_call(make_call, user=user, attempt=3, retry_of=second)
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        result = outcome(third, CallStatus.FAILED)
    assert result.applied and not result.retry_scheduled
    assert not Call.objects.filter(attempt=4).exists()
    assert f"Call {third.pk} - max retries (2) reached" in caplog.text


def test_the_second_retry_logs_its_number(make_user, make_call, caplog, redis_conn):
    user = make_user()
    first = ringing_call(make_call, user=user, attempt=1, status=CallStatus.BUSY)
    second = ringing_call(make_call, user=user, attempt=2, retry_of=first)
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        assert outcome(second, CallStatus.BUSY).retry_scheduled
    assert f"Scheduled retry 2/2 for call {second.pk}" in caplog.text
    assert Call.objects.get(attempt=3).retry_of == second


def test_max_retries_follows_the_setting(settings, make_call, redis_conn):
    settings.CALL_MAX_RETRIES = 0
    call = ringing_call(make_call)
    assert not outcome(call, CallStatus.BUSY).retry_scheduled
    assert Call.objects.count() == 1


def test_no_retry_is_scheduled_for_a_user_who_disabled_calls(make_user, make_call, redis_conn):
    user = make_user()
    call = ringing_call(make_call, user=user)
    user.call_enabled = False
    user.save()
    assert not outcome(call, CallStatus.NO_ANSWER).retry_scheduled
    assert Call.objects.count() == 1


def test_a_retry_that_comes_due_after_the_user_disabled_calls_is_dropped(make_user, make_call, redis_conn):
    user = make_user()
    call = ringing_call(make_call, user=user)
    outcome(call, CallStatus.NO_ANSWER)
    retry = Call.objects.get(retry_of=call)
    user.call_enabled = False
    user_save(user=user)  # cancels the waiting retry at once (tests/test_profile_changes.py)
    retry.refresh_from_db()
    assert (retry.status, retry.error) == (CallStatus.CANCELED, "User disabled calls.")
    assert placement.call_place(call_id=retry.pk) == "skipped"


def test_a_retry_whose_user_was_disabled_by_a_raw_update_is_canceled_when_it_comes_due(
    make_user, make_call, redis_conn
):
    user = make_user()
    call = ringing_call(make_call, user=user)
    outcome(call, CallStatus.NO_ANSWER)
    retry = Call.objects.get(retry_of=call)
    type(user).objects.filter(pk=user.pk).update(call_enabled=False)
    assert placement.call_place(call_id=retry.pk) == "canceled"
    retry.refresh_from_db()
    assert retry.status == CallStatus.CANCELED


def test_a_retry_whose_job_redis_lost_is_enqueued_by_the_first_tick_after_it_is_due(make_call, redis_conn):
    call = ringing_call(make_call)
    outcome(call, CallStatus.NO_ANSWER)
    retry = Call.objects.get(retry_of=call)
    redis_conn.flushdb()
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        assert scheduling.calls_schedule_due().reenqueued == 0  # not due yet: nothing to do
    with time_machine.travel(NOW + timedelta(minutes=35), tick=False):
        assert scheduling.calls_schedule_due().reenqueued == 1
    assert redis_conn.exists(f"rq:job:call-{retry.pk}")


def test_a_call_left_dialing_by_a_dead_worker_is_unconfirmed_then_failed_and_retried_once(
    make_call, settings, redis_conn
):
    """The worker died mid-request: maybe placed, so no retry until the webhook had its time."""
    call = make_call(status=CallStatus.DIALING, dialed_at=NOW - timedelta(minutes=11), job_id="place-calls-1")
    with time_machine.travel(NOW, tick=False):
        summary = scheduling.calls_schedule_due()
    call.refresh_from_db()
    assert summary.abandoned == 1
    assert call.status == CallStatus.UNCONFIRMED and "stopped while dialing" in call.error
    assert not Call.objects.filter(retry_of=call).exists()

    later = NOW + timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 1)
    with time_machine.travel(later, tick=False):
        summary = scheduling.calls_schedule_due()
        scheduling.calls_schedule_due()
    call.refresh_from_db()
    assert summary.unconfirmed == 1
    assert call.status == CallStatus.FAILED and call.outcome_inferred
    assert "neither the provider's answer nor its webhook" in call.error
    assert Call.objects.filter(retry_of=call, attempt=2).count() == 1


def test_a_call_still_waiting_in_a_live_batch_job_is_not_taken_for_abandoned(make_call, redis_conn):
    """A slow batch: its calls wait in the pool, long after they were taken (defect 4)."""
    from rq.job import Job

    call = make_call(status=CallStatus.DIALING, dialed_at=NOW - timedelta(hours=1), job_id="place-calls-77")
    redis_conn.hset(Job.key_for("place-calls-77"), "status", "started")
    with time_machine.travel(NOW, tick=False):
        summary = scheduling.calls_schedule_due()
    call.refresh_from_db()
    assert summary.abandoned == 0 and call.status == CallStatus.DIALING


def test_a_ringing_call_whose_final_webhook_was_lost_is_failed_and_retried(make_call, settings, redis_conn):
    call = ringing_call(
        make_call, last_status_at=NOW - timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS + 1)
    )
    with time_machine.travel(NOW, tick=False):
        summary = scheduling.calls_schedule_due()
    call.refresh_from_db()
    assert summary.silent == 1
    assert call.status == CallStatus.FAILED and "No final status from the provider" in call.error
    assert Call.objects.filter(retry_of=call).count() == 1


def test_an_answered_call_whose_final_webhook_was_lost_is_failed_without_a_retry(make_call, settings):
    call = ringing_call(
        make_call,
        status=CallStatus.IN_PROGRESS,
        last_status_at=NOW - timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS + 1),
    )
    with time_machine.travel(NOW, tick=False):
        assert scheduling.calls_schedule_due().silent == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert not Call.objects.filter(retry_of=call).exists()


def test_a_recent_ringing_call_is_left_alone(make_call):
    call = ringing_call(make_call, last_status_at=NOW - timedelta(minutes=5))
    with time_machine.travel(NOW, tick=False):
        assert scheduling.calls_schedule_due().silent == 0
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING


def test_abandoned_dialing_calls_behind_a_page_of_live_ones_are_still_reached(make_call, redis_conn):
    """The sweep pages past calls still live in a slow batch (defect 2's pattern, for dialing)."""
    from rq.job import Job

    live = [
        make_call(status=CallStatus.DIALING, dialed_at=NOW - timedelta(hours=1), job_id="place-calls-live")
        for _ in range(3)
    ]
    redis_conn.hset(Job.key_for("place-calls-live"), "status", "started")
    dead = make_call(status=CallStatus.DIALING, dialed_at=NOW - timedelta(hours=1), job_id="place-calls-dead")
    assert sweeps.calls_unconfirm_abandoned(now=NOW, page_size=2) == 1
    dead.refresh_from_db()
    assert dead.status == CallStatus.UNCONFIRMED
    assert {c.status for c in Call.objects.filter(pk__in=[c.pk for c in live])} == {CallStatus.DIALING}


def test_a_delayed_job_is_never_released_before_its_call_is_due(redis_conn):
    """RQ keeps a scheduled job's time in whole seconds, truncated: the job must be set for
    the second after its call is due, or a worker takes the call early and leaves it queued."""
    from datetime import UTC, datetime

    from rq.registry import ScheduledJobRegistry

    from calls import queues

    due = datetime(2026, 11, 28, 15, 30, 45, 700000, tzinfo=UTC)
    assert queues.enqueue_place_call(12345, at=due)
    released_at = ScheduledJobRegistry(queue=queues.calls_queue()).get_scheduled_time("call-12345")
    assert released_at >= due
    assert released_at == datetime(2026, 11, 28, 15, 30, 46, tzinfo=UTC)
