"""Every job says in the queues dashboard which call, user and attempt it is for, with the
user's phone cut to its last four digits."""

from datetime import UTC, date, datetime

import pytest
from django.conf import settings
from django.urls import reverse
from rq.job import Job

from calls import queues, retry_buckets
from calls.models import CallStatus

pytestmark = pytest.mark.django_db


def test_a_call_job_names_the_call_its_user_and_the_attempt_of_how_many(make_user, make_call, redis_conn):
    user = make_user(phone="+919876543210")
    first = make_call(user=user, status=CallStatus.NO_ANSWER)
    retry = make_call(user=user, attempt=2, retry_of=first)
    assert queues.enqueue_place_call(retry.pk)
    job = Job.fetch(queues.call_job_id(retry.pk), connection=redis_conn)
    # CALL_MAX_RETRIES is 2: three attempts a day.
    assert job.description == f"Call {retry.pk} for user {user.pk} (…3210), attempt 2 of 3"
    assert "9876543210" not in job.description


def test_a_users_own_retry_setting_and_a_manual_call_are_described_as_such(make_user, make_call, redis_conn):
    user = make_user(phone="+14155550123", max_retries=0)
    call = make_call(user=user)
    manual = make_call(user=user, manual=True, local_date=date(2026, 11, 29))
    queues.enqueue_place_call(call.pk)
    queues.enqueue_place_call(manual.pk)
    describe = lambda c: Job.fetch(queues.call_job_id(c.pk), connection=redis_conn).description  # noqa: E731
    assert describe(call) == f"Call {call.pk} for user {user.pk} (…0123), attempt 1 of 1"
    assert describe(manual) == f"Manual call {manual.pk} for user {user.pk} (…0123)"


def test_a_caller_may_give_the_description_itself(make_call, redis_conn):
    call = make_call()
    queues.enqueue_place_call(call.pk, description="Call now from the admin")
    assert (
        Job.fetch(queues.call_job_id(call.pk), connection=redis_conn).description == "Call now from the admin"
    )


def test_a_batch_job_names_its_size_and_first_call(make_call, redis_conn):
    calls = [make_call() for _ in range(3)]
    job_id = queues.batch_job_id(calls[0].pk)
    assert queues.enqueue_call_batches({job_id: [c.pk for c in calls]}) == 3
    assert (
        Job.fetch(job_id, connection=redis_conn).description
        == f"Batch of 3 first attempts from call {calls[0].pk}"
    )


def test_an_outcome_retries_job_names_its_instant(make_call, redis_conn):
    bucket = retry_buckets.retry_bucket(datetime(2026, 11, 28, 15, 35, 2, tzinfo=UTC))
    job_id = retry_buckets.retries_gather(
        [make_call().pk], bucket=bucket, now=datetime(2026, 11, 28, 15, 5, tzinfo=UTC)
    )
    assert (
        Job.fetch(job_id, connection=redis_conn).description
        == "Outcome retries due at 2026-11-28 15:35:05 UTC"
    )


def test_a_triggered_tick_says_so(redis_conn):
    job = queues.enqueue_tick()
    assert (
        Job.fetch(job.id, connection=redis_conn).description
        == "Scheduling tick, triggered now (not the cron's)"
    )


def test_the_dashboards_job_page_shows_the_description(admin_client, make_user, make_call):
    call = make_call(user=make_user(phone="+919876543210"))
    queues.enqueue_place_call(call.pk)
    index = list(settings.RQ_QUEUES).index(settings.CALLS_QUEUE)
    response = admin_client.get(
        reverse("django_rq:job_detail", kwargs={"queue_index": index, "job_id": queues.call_job_id(call.pk)})
    )
    assert response.status_code == 200
    html = response.content.decode()
    description = f"Call {call.pk} for user {call.user_id} (…3210), attempt 1 of 3"
    assert f'id="job-description"><strong>{description}</strong>' in html
    assert "+919876543210" not in html
