"""Fault injection for events to the product's app (the fault suite's events part): a
worker killed mid-delivery, and the receiver down through a rush. No event is lost, none
is sent more often than its tries, and calls go out on time whatever the receiver does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as wall
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import SimpleWorker

from calls import outcomes as call_outcomes
from calls import scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from events import delivery
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, EventType
from events.outbox import events_emit
from events.queues import events_queue
from tests.test_faults import ROOT, burst_worker_command, child_env, postgres_only, seed_due_users

pytestmark = pytest.mark.django_db(transaction=True)
# Users in the rush (issue 19): twenty thousand events pile up while the receiver is down.
RUSH = 10_000


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


def events_worker_running(event_receiver) -> subprocess.Popen:
    """A real worker process on the events queue that keeps running (not in burst mode)
    until the test ends it, delivering to ``event_receiver``."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", settings.EVENTS_QUEUE]
        + ["--worker-class", "rq.worker.SimpleWorker"],
        cwd=ROOT,
        env=child_env(
            EVENTS_WEBHOOK_URL=event_receiver.url,
            EVENTS_WEBHOOK_SECRET=settings.EVENTS_WEBHOOK_SECRET,
            EVENTS_READ_TIMEOUT="2",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def outcome_for(call_id: int) -> str:
    # Two in three answered, the rest unanswered (no retry: each user's day ends at once).
    return CallStatus.NO_ANSWER if call_id % 3 == 0 else CallStatus.COMPLETED


def outcomes_reported_while_placing(calls_worker: subprocess.Popen, on_the_way) -> int:
    """The provider reports each call's outcome as soon as the worker has placed it, while
    the worker places the rest: a webhook per call, as in production. How many reported."""
    reported = 0
    while True:
        worker_done = calls_worker.poll() is not None
        ringing = list(
            Call.objects.filter(status=CallStatus.RINGING)
            .order_by("pk")
            .values_list("pk", "provider_call_id")[:500]
        )
        for call_id, provider_call_id in ringing:
            call_outcomes.call_apply_event(
                event=CallEvent(provider_call_id=provider_call_id, status=outcome_for(call_id), retry=False)
            )
        reported += len(ringing)
        on_the_way(reported)
        if worker_done and not ringing:
            return reported
        if not ringing:
            wall.sleep(0.1)


@postgres_only
def test_the_receiver_down_through_a_rush_gets_every_event_later_and_calls_go_out_on_time(
    event_receiver, fake_callkaro
):
    started = wall.monotonic()
    # Down, two ways: first it drops every connection unanswered (nothing reaches the app),
    # then, half-way through the rush, it answers 503 (the app sees those requests).
    event_receiver.down, event_receiver.delay = True, 0.02
    now = timezone.now().replace(second=0, microsecond=0)
    user_ids = seed_due_users(RUSH, next_call_at=now)
    assert scheduling.calls_schedule_due(now=now).enqueued == RUSH

    def halfway(reported: int) -> None:
        if reported >= RUSH // 2 and event_receiver.down:
            event_receiver.status, event_receiver.delay, event_receiver.down = 503, 0, False

    # Real workers, as deployed: one places the rush against the fake provider, one grinds
    # on the dead receiver the whole time; the provider's webhooks come in meanwhile.
    deliverer = events_worker_running(event_receiver)
    calls_worker = subprocess.Popen(
        burst_worker_command(),
        cwd=ROOT,
        env=child_env(CALLKARO_BASE_URL=fake_callkaro.url, CALLKARO_READ_TIMEOUT="60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reported = outcomes_reported_while_placing(calls_worker, halfway)
        assert calls_worker.wait(timeout=60) == 0
    finally:
        for worker in (calls_worker, deliverer):
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)
    placed_at = wall.monotonic()
    placed = Call.objects.filter(attempt=1)
    statuses = Counter(placed.values_list("status", flat=True))
    assert reported == placed.count() == RUSH == len(fake_callkaro.requests), statuses
    assert not Call.objects.exclude(status__in=[CallStatus.COMPLETED, CallStatus.NO_ANSWER]).exists()
    assert not Call.objects.filter(attempt__gt=1).exists()
    # On time: every call dialed inside its window, though no event got through.
    window = timedelta(minutes=settings.CALL_TIME_WINDOW_MINUTES)
    late = [
        pk
        for pk, dialed, due in placed.values_list("pk", "dialed_at", "scheduled_for")
        if dialed - due >= window
    ]
    assert late == []
    # call.ended, then day.reached or day.missed, for each user, as each call ended.
    assert Event.objects.count() == RUSH * 2
    assert DeliveryAttempt.objects.filter(status_code__isnull=True).exists()  # tried, and dropped
    assert not Delivery.objects.filter(status=DeliveryStatus.DELIVERED).exists()

    # Still answering 503 at the first retries, then up.
    events_delivered_after_the_sweep(minutes=2)
    assert DeliveryAttempt.objects.filter(status_code=503).exists()
    event_receiver.status = 200
    for minutes in (10, 45, 120):  # past the next retries' times, however many each had
        events_delivered_after_the_sweep(minutes=minutes)
        if not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists():
            break
    assert not Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()

    # Every event arrived, with its own webhook-id; each as many times as it was tried and
    # reached the app (its 503s and its one 200), never more: no duplicate but a retry.
    received = Counter(event_receiver.webhook_ids())
    webhook_ids = dict(Event.objects.values_list("pk", "webhook_id"))
    assert set(received) == set(webhook_ids.values())
    reached = Counter(
        webhook_ids[event_id]
        for event_id in DeliveryAttempt.objects.filter(status_code__isnull=False).values_list(
            "delivery__event_id", flat=True
        )
    )
    assert received == reached
    assert Counter(
        DeliveryAttempt.objects.filter(status_code=200).values_list("delivery__event_id", flat=True)
    ) == Counter(dict.fromkeys(webhook_ids, 1))
    assert any(count > 1 for count in received.values())  # some were tried while it said 503
    missed = sum(1 for pk in placed.values_list("pk", flat=True) if outcome_for(pk) == CallStatus.NO_ANSWER)
    types = Counter(Event.objects.values_list("type", flat=True))
    assert types == {"call.ended": RUSH, "day.reached": RUSH - missed, "day.missed": missed}
    assert sorted(user_ids) == sorted(
        Event.objects.filter(type="call.ended").values_list("user_id", flat=True)
    )
    print(
        f"\n{RUSH:,}-user rush with the receiver down: placed and reported in "
        f"{placed_at - started:.1f} s, {len(webhook_ids):,} events delivered "
        f"({sum(received.values()):,} requests) in {wall.monotonic() - placed_at:.1f} s more"
    )
