"""Fault injection for events to the product's app (the fault suite's events part): a
worker killed mid-delivery, and the receiver down through a rush. No event is lost, none
is sent more often than its tries, and calls go out on time whatever the receiver does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time as wall
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rq import Queue, SimpleWorker

from calls import outcomes as call_outcomes
from calls import scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from events import delivery
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, EventType
from events.outbox import events_emit, events_queue
from tests.test_faults import ROOT, child_env, postgres_only, seed_due_users

pytestmark = pytest.mark.django_db(transaction=True)
# Users in the rush: enough for hundreds of events in flight, small enough for the suite.
# The 10,000-user version is the benchmark's (bench/run.py --only events).
RUSH = 200


def events_worker(event_receiver) -> subprocess.Popen:
    """A real worker process on the events queue, delivering to ``event_receiver``, in burst
    mode (it stops once the queue is empty), for a test to kill mid-delivery."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", settings.EVENTS_QUEUE, "--burst"]
        + ["--worker-class", "rq.worker.SimpleWorker"],
        cwd=ROOT,
        env=child_env(
            EVENTS_WEBHOOK_URL=event_receiver.url,
            EVENTS_WEBHOOK_SECRET=settings.EVENTS_WEBHOOK_SECRET,
            EVENTS_READ_TIMEOUT="60",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def drain_events() -> None:
    queue = events_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def events_delivered_after_the_sweep(minutes: float) -> None:
    """The clock moved ``minutes`` on: the sweep finds what is due and a worker sends it."""
    with time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=True):
        delivery.events_sweep()
        drain_events()


@postgres_only
def test_a_worker_killed_mid_delivery_loses_no_event_and_it_is_sent_again_with_its_webhook_id(
    event_receiver, make_user
):
    user = make_user()
    with transaction.atomic():
        pk = events_emit(type=EventType.USER_OPTED_OUT, user_id=user.pk, local_date=None, data={})
    event_receiver.delay = 30  # the receiver hangs: the worker is killed in the middle
    worker = events_worker(event_receiver)
    try:
        deadline = wall.monotonic() + 30
        while not event_receiver.requests and wall.monotonic() < deadline:
            wall.sleep(0.05)
        assert event_receiver.requests, "the worker never reached the receiver"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    claimed = Delivery.objects.get()
    assert claimed.status == DeliveryStatus.PENDING and claimed.attempts == 1  # the outcome unknown
    assert not DeliveryAttempt.objects.exists()

    event_receiver.delay = 0
    delivery.events_sweep()
    drain_events()
    assert len(event_receiver.requests) == 1  # within its lease: nobody sends it again yet
    events_delivered_after_the_sweep(minutes=3)  # the lease is over
    webhook_id = Event.objects.get(pk=pk).webhook_id
    assert event_receiver.webhook_ids() == [webhook_id, webhook_id]
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED


def test_redis_flushed_with_jobs_in_it_loses_no_event(event_receiver, make_user, redis_conn):
    users = [make_user() for _ in range(5)]
    with transaction.atomic():
        ids = [
            events_emit(type=EventType.USER_OPTED_OUT, user_id=user.pk, local_date=None, data={})
            for user in users
        ]
    assert events_queue().count == 1  # one job for the five events (events.pump), about to be lost
    redis_conn.flushdb()
    events_delivered_after_the_sweep(minutes=2)
    expected = set(Event.objects.filter(pk__in=ids).values_list("webhook_id", flat=True))
    assert Counter(event_receiver.webhook_ids()) == Counter(expected)


@postgres_only
def test_the_receiver_down_through_a_rush_gets_every_event_later_and_calls_go_out_on_time(
    event_receiver, fake_callkaro, redis_conn
):
    event_receiver.down, event_receiver.delay = True, 0.02  # it hangs a moment, then drops us
    now = timezone.now().replace(second=0, microsecond=0)
    user_ids = seed_due_users(RUSH, next_call_at=now)
    # A backlog already waits for the receiver when the rush begins.
    with transaction.atomic():
        for user_id in user_ids:
            events_emit(
                type=EventType.USER_OPTED_OUT, user_id=user_id, local_date=None, data={"source": "api"}
            )
    assert scheduling.calls_schedule_due(now=now).enqueued == RUSH

    # The events worker grinds on the dead receiver the whole time, in its own thread, while
    # a calls worker places the rush.
    stop = threading.Event()

    def events_worker() -> None:
        # A worker's loop, job by job (RQ's own worker needs the main thread for signals).
        queue = events_queue()
        try:
            while not stop.is_set():
                for job_id in queue.job_ids:
                    queue.remove(job_id)
                    job = queue.fetch_job(job_id)
                    if job is not None:
                        job.func(*job.args, **job.kwargs)
                wall.sleep(0.05)
        finally:
            connection.close()

    grinding = threading.Thread(target=events_worker)
    grinding.start()
    try:
        calls = Queue(settings.CALLS_QUEUE, connection=redis_conn)
        SimpleWorker([calls], connection=redis_conn).work(burst=True)
        placed = Call.objects.filter(attempt=1)
        assert placed.count() == RUSH and not placed.filter(status=CallStatus.QUEUED).exists()
        # On time: every call dialed inside its window, though no event got through.
        window = timedelta(minutes=settings.CALL_TIME_WINDOW_MINUTES)
        assert all(call.dialed_at - call.scheduled_for < window for call in placed)
        # The provider reports the outcomes: two in three answered, the rest unanswered.
        for n, call in enumerate(placed.order_by("pk")):
            status = CallStatus.COMPLETED if n % 3 else CallStatus.NO_ANSWER
            call_outcomes.call_apply_event(
                event=CallEvent(provider_call_id=call.provider_call_id, status=status, retry=False)
            )
    finally:
        stop.set()
        grinding.join(timeout=120)
    # The backlog, then call.ended and day.reached or day.missed for each user.
    assert Event.objects.count() == RUSH * 3
    assert DeliveryAttempt.objects.filter(status_code__isnull=True).exists()  # it was tried, and failed
    assert event_receiver.requests == []
    assert not Delivery.objects.filter(status=DeliveryStatus.DELIVERED).exists()

    event_receiver.down, event_receiver.delay = False, 0
    for minutes in (2, 10, 45):  # past the first retries' times, however many each had
        events_delivered_after_the_sweep(minutes=minutes)
        if not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists():
            break
    assert not Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()
    received = Counter(event_receiver.webhook_ids())
    assert set(received) == set(Event.objects.values_list("webhook_id", flat=True))  # every event
    # None doubled: after the receiver came back, each event arrived once (the tries before
    # it were all dropped connections, which the receiver never saw).
    assert set(received.values()) == {1}
    types = Counter(Event.objects.values_list("type", flat=True))
    assert types == {
        "user.opted_out": RUSH,
        "call.ended": RUSH,
        "day.reached": RUSH - len(range(0, RUSH, 3)),
        "day.missed": len(range(0, RUSH, 3)),  # every third call unanswered
    }
    assert sorted(user_ids) == sorted(
        Event.objects.filter(type="call.ended").values_list("user_id", flat=True)
    )
