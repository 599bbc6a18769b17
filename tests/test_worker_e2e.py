"""End to end: tick -> RQ worker (burst) -> fake CallKaro on 127.0.0.1 -> webhook -> retry."""

import time as wall
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from calls import outcomes, retry_buckets, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from calls.queues import calls_queue
from tests.clock import midday_user_fields

pytestmark = pytest.mark.django_db(transaction=True)


def due_now(make_user, **fields):
    # A user whose clock shows noon: the retries made here stay on the call's local day.
    user = make_user(**midday_user_fields(timezone.now()), **fields)
    assert user.next_call_at <= timezone.now()
    return user


def run_worker_burst():
    queue = calls_queue()
    worker = SimpleWorker([queue], connection=queue.connection)
    worker.work(burst=True, with_scheduler=True)


def test_due_users_are_called_once_with_the_right_request(fake_callkaro, make_user):
    users = [due_now(make_user) for _ in range(3)]
    scheduling.calls_schedule_due()
    run_worker_burst()
    scheduling.calls_schedule_due()  # a second tick changes nothing
    run_worker_burst()

    assert sorted(r["json"]["to_number"] for r in fake_callkaro.requests) == sorted(u.phone for u in users)
    assert all(r["headers"]["X-API-KEY"] == "test-api-key" for r in fake_callkaro.requests)
    assert set(Call.objects.values_list("status", flat=True)) == {CallStatus.RINGING}
    assert Call.objects.count() == 3


def test_a_provider_503_is_retried_by_rq_and_then_placed_once(fake_callkaro, make_user):
    fake_callkaro.respond_with(
        (503, {"status": "error", "message": "upstream down"}),
        (200, {"status": "done", "message": "Call queued successfully", "call_sid": "ck-ok"}),
    )
    due_now(make_user)
    scheduling.calls_schedule_due()
    run_worker_burst()
    assert len(fake_callkaro.requests) == 2
    call = Call.objects.get()
    assert (call.status, call.provider_call_id) == (CallStatus.RINGING, "ck-ok")


def test_a_provider_that_stays_down_fails_the_call_after_three_attempts(fake_callkaro, make_user, redis_conn):
    fake_callkaro.respond_with((503, {"status": "error", "message": "maintenance"}))
    due_now(make_user)
    scheduling.calls_schedule_due()
    run_worker_burst()
    assert len(fake_callkaro.requests) == 3  # 1 + 2 RQ retries, no storm
    first = Call.objects.get(attempt=1)
    assert first.status == CallStatus.FAILED and "503" in first.error
    assert Call.objects.get(attempt=2).status == CallStatus.QUEUED  # the 30-minute outcome retry


def test_a_provider_400_is_not_retried(fake_callkaro, make_user):
    fake_callkaro.respond_with((400, {"status": "error", "message": "Invalid agent"}))
    due_now(make_user)
    scheduling.calls_schedule_due()
    run_worker_burst()
    assert len(fake_callkaro.requests) == 1
    call = Call.objects.get()
    assert call.status == CallStatus.FAILED and "Invalid agent" in call.error
    assert len(FailedJobRegistry("daily-calls", connection=calls_queue().connection)) == 0


def test_an_unanswered_call_is_retried_after_the_configured_delay(fake_callkaro, make_user, settings):
    settings.CALL_RETRY_DELAY_SECONDS = 1
    settings.RETRY_GATHER_SECONDS = 2
    due_now(make_user)
    scheduling.calls_schedule_due()
    run_worker_burst()
    first = Call.objects.get()
    result = outcomes.call_apply_event(
        event=CallEvent(provider_call_id=first.provider_call_id, status="no_answer")
    )
    assert result.retry_scheduled

    run_worker_burst()  # not due yet: the scheduler leaves it
    assert len(fake_callkaro.requests) == 1
    # Its instant's job is released at the retry's time rounded up to RETRY_GATHER_SECONDS.
    retry_due = Call.objects.get(attempt=2).scheduled_for
    released = datetime.fromtimestamp(retry_buckets.retry_bucket(retry_due), UTC)
    wall.sleep(max(0.0, (released - timezone.now()).total_seconds()) + 1.2)
    run_worker_burst()  # due: promoted and placed
    assert len(fake_callkaro.requests) == 2
    retry = Call.objects.get(attempt=2)
    assert retry.status == CallStatus.RINGING and retry.retry_of == first
