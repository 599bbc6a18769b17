"""Delivery in batches (events.pump): commits coalesce into a few jobs, one job sends many
events to one endpoint, one request each; an endpoint failing backs off alone; a worker
killed mid-batch loses nothing and the events go again with their webhook-ids; each
user's events go in sequence order."""

from __future__ import annotations

import json
import os
import signal
import time as wall
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq import SimpleWorker

from events import delivery
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event, EventType
from events.outbox import events_emit
from events.queues import events_queue
from tests.conftest import EVENTS_SECRET
from tests.fakes import FakeEventReceiver
from tests.test_events import run_events_worker
from tests.test_faults import postgres_only
from tests.test_faults_events import events_worker

pytestmark = pytest.mark.django_db


def emit(user, n: int = 1, type: str = EventType.USER_OPTED_OUT) -> list[int]:
    """``n`` events for ``user``, each in a commit of its own (as webhooks make them)."""
    ids = []
    for i in range(n):
        with transaction.atomic():
            ids.append(events_emit(type=type, user_id=user.pk, local_date=None, data={"n": i}))
    return ids


def sent_sequences(receiver) -> list[tuple[int, int]]:
    """(user id, sequence) of each request the receiver got, in the order it got them."""
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    return [(body["data"]["user"]["id"], body["data"]["sequence"]) for body in bodies]


@pytest.fixture
def second_receiver():
    receiver = FakeEventReceiver().start()
    yield receiver
    receiver.stop()


def test_a_rush_of_commits_asks_for_one_job_and_it_sends_every_event(
    event_receiver, make_user, django_capture_on_commit_callbacks
):
    users = [make_user() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        ids = [pk for user in users for pk in emit(user, 2)]
    assert events_queue().count == 1  # six commits, one fan-out job
    run_events_worker()
    expected = Event.objects.filter(pk__in=ids).values_list("webhook_id", flat=True)
    assert Counter(event_receiver.webhook_ids()) == Counter(expected)  # each once, its own request
    assert set(Delivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.DELIVERED, 1)}
    assert DeliveryAttempt.objects.count() == 6


def test_each_users_events_go_in_sequence_order(
    event_receiver, make_user, django_capture_on_commit_callbacks
):
    first, second = make_user(), make_user()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # interleaved commits
            emit(first)
            emit(second)
    run_events_worker()
    sent = sent_sequences(event_receiver)
    for user in (first, second):
        assert [seq for uid, seq in sent if uid == user.pk] == [1, 2, 3]


def test_a_batch_mixing_endpoints_sends_each_endpoint_the_types_it_wants(
    event_receiver, second_receiver, make_user, django_capture_on_commit_callbacks
):
    Endpoint.objects.create(
        name="days only", url=second_receiver.url, secret=EVENTS_SECRET, event_types=["day.missed"]
    )
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        opted_out = emit(user, 2)
        missed = emit(user, 1, type=EventType.DAY_MISSED)
    run_events_worker()
    webhook_ids = dict(Event.objects.values_list("pk", "webhook_id"))
    assert sorted(event_receiver.webhook_ids()) == sorted(webhook_ids[pk] for pk in opted_out + missed)
    assert second_receiver.webhook_ids() == [webhook_ids[missed[0]]]


def test_one_endpoint_failing_backs_off_alone_and_gets_every_event_later_in_order(
    event_receiver, second_receiver, make_user, django_capture_on_commit_callbacks
):
    Endpoint.objects.create(name="healthy", url=second_receiver.url, secret=EVENTS_SECRET)
    event_receiver.status = 500
    user = make_user()
    start = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ids = emit(user, 3)
    run_events_worker()
    assert [seq for _, seq in sent_sequences(second_receiver)] == [1, 2, 3]  # not held back
    assert len(event_receiver.requests) == 1  # the batch stopped at the first failure
    failing = Endpoint.objects.get(from_environment=True)
    waiting = Delivery.objects.filter(endpoint=failing).order_by("event_id")
    assert [d.status for d in waiting] == [DeliveryStatus.PENDING] * 3
    assert [d.attempts for d in waiting] == [1, 0, 0]  # the unsent ones' tries not counted
    first_retry = (start + timedelta(seconds=29), start + timedelta(minutes=1))
    assert all(first_retry[0] < d.next_attempt_at < first_retry[1] for d in waiting)
    # More events while it backs off: the healthy endpoint gets them, the failing one is left alone.
    with django_capture_on_commit_callbacks(execute=True):
        ids += emit(user, 1)
    run_events_worker()
    assert len(event_receiver.requests) == 1 and len(second_receiver.requests) == 4

    event_receiver.status = 200
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        delivery.events_sweep()
        run_events_worker()
    webhook_ids = dict(Event.objects.values_list("pk", "webhook_id"))
    assert event_receiver.webhook_ids()[1:] == [webhook_ids[pk] for pk in ids]  # in order, the first again
    assert event_receiver.webhook_ids()[0] == webhook_ids[ids[0]]
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert Endpoint.objects.get(pk=failing.pk).failing_since is None


def test_a_job_claims_a_batch_at_a_time_until_none_is_due(
    event_receiver, make_user, settings, django_capture_on_commit_callbacks
):
    settings.EVENTS_BATCH_SIZE = 2
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        emit(user, 5)
    with CaptureQueriesContext(connection) as queries:
        run_events_worker()
    claims = [q for q in queries if q["sql"].startswith("UPDATE") and "SKIP LOCKED" in q["sql"]]
    assert len(claims) == 4  # 2 + 2 + 1, then one that finds none due
    assert [seq for _, seq in sent_sequences(event_receiver)] == [1, 2, 3, 4, 5]


def test_a_job_past_its_time_stops_and_another_takes_over(
    event_receiver, make_user, settings, django_capture_on_commit_callbacks
):
    settings.EVENTS_BATCH_SECONDS = 0  # every job stops after its first request
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        emit(user, 3)
    run_events_worker()
    assert [seq for _, seq in sent_sequences(event_receiver)] == [1, 2, 3]
    assert set(Delivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.DELIVERED, 1)}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_loses_nothing_and_resends_with_the_same_webhook_ids(
    event_receiver, make_user
):
    user = make_user()
    ids = emit(user, 4)  # four commits, their jobs queued for the worker below
    # The third request hangs: the worker is killed after two were answered, mid-batch.
    event_receiver.status = lambda n: (setattr(event_receiver, "delay", 30 if n == 3 else 0), 200)[1]
    worker = events_worker(event_receiver)
    try:
        deadline = wall.monotonic() + 30
        while len(event_receiver.requests) < 3 and wall.monotonic() < deadline:
            wall.sleep(0.05)
        assert len(event_receiver.requests) == 3, "the worker never reached the third request"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    first_pass = event_receiver.webhook_ids()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}  # not recorded
    event_receiver.status, event_receiver.delay = 200, 0
    queue = events_queue()
    with time_machine.travel(timezone.now() + timedelta(minutes=3), tick=True):  # the lease is over
        delivery.events_sweep()
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
    webhook_ids = [Event.objects.get(pk=pk).webhook_id for pk in ids]
    assert event_receiver.webhook_ids()[len(first_pass) :] == webhook_ids  # all again, same ids, in order
    assert first_pass == webhook_ids[:3]
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}


def test_commits_in_the_moments_after_a_request_share_its_job(settings, redis_conn):
    """A job waits EVENTS_GATHER_SECONDS from the commit that asked for it before it looks,
    so commits coming steadily (webhooks, not one burst) share a job instead of each
    enqueueing one as soon as the last job started; one that commits after the job began
    to look gets a job of its own."""
    import threading

    from events import queues

    settings.EVENTS_GATHER_SECONDS = 2.0
    assert queues.fan_out_request()  # the first commit: a job is enqueued
    job_starts = threading.Thread(target=queues.pump_started, args=(queues.FAN_OUT_KEY,))
    job_starts.start()  # an idle worker takes it at once
    wall.sleep(0.2)
    assert not queues.fan_out_request()  # a commit a moment later rides along
    job_starts.join()
    assert queues.fan_out_request()  # once the job looks, a new commit asks for a new job
    assert len(events_queue().get_jobs()) == 2


def test_a_job_that_starts_late_does_not_wait(settings, redis_conn, monkeypatch):
    from events import queues

    settings.EVENTS_GATHER_SECONDS = 30.0
    slept: list[float] = []
    monkeypatch.setattr(queues.time, "sleep", slept.append)
    assert queues.fan_out_request()
    redis_conn.set("relevel:events:queued:fan-out", repr(wall.time() - 31))  # asked 31 s ago
    queues.pump_started(queues.FAN_OUT_KEY)
    assert slept == []  # the gather is long over: a busy queue's job does not wait more
    assert queues.fan_out_request()
