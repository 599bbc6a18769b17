"""Delivering the outbox: deliveries created per endpoint, tried, retried, swept, replayed.

At least once: a delivery is claimed (a conditional UPDATE that moves its next try a lease
ahead) before its request, and settled after it. A worker killed in between, or a job
Redis lost, leaves it due again, and the sweep sends it once more, under the same
webhook-id, so a receiver de-duplicates on that header.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from .endpoints import endpoints_active
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event
from .queues import endpoint_request, events_enqueue, fan_out_request
from .transport import Answer, webhook_post

logger = logging.getLogger("relevel.events")

DELIVER_JOB = "events.jobs.deliver"
# The sweep leaves alone what is due since less than this: its own job is about to run.
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 100


def payload_body(event: Event) -> str:
    """The JSON body of every delivery of ``event``: the same bytes each time."""
    data = {
        "event_id": event.webhook_id,
        "sequence": event.sequence,
        "user": {"id": event.user_id, "external_id": event.external_id},
        "local_date": event.local_date.isoformat()
        if isinstance(event.local_date, date)
        else event.local_date,
        **event.data,
    }
    body = {
        "type": event.type,
        "timestamp": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=False)


def claim_lease() -> timedelta:
    """How long a claimed delivery is left alone: its request's longest, and a margin."""
    return timedelta(seconds=settings.EVENTS_CONNECT_TIMEOUT + settings.EVENTS_READ_TIMEOUT + 30)


def retry_delay(attempts: int) -> timedelta | None:
    """The wait after the ``attempts``-th failed try (None: give up). Up to 10% later, at
    random, so that a receiver that comes back is not hit by every retry at once."""
    schedule = settings.EVENTS_RETRY_SCHEDULE_SECONDS
    if attempts > len(schedule):
        return None
    seconds = schedule[attempts - 1]
    return timedelta(seconds=seconds * random.uniform(1.0, 1.1))  # noqa: S311 - jitter, not security


def events_fan_out(*, event_ids: Iterable[int], now: datetime | None = None) -> list[int]:
    """Create the deliveries of events not fanned out yet, one per active endpoint that
    wants the type; the ids of those deliveries."""
    now = now or timezone.now()
    endpoints = endpoints_active()
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(event_ids), fanned_out_at__isnull=True)
            .only("id", "type")
        )
        if not events:
            return []
        Delivery.objects.bulk_create(
            [
                Delivery(event_id=event.pk, endpoint_id=endpoint.pk, next_attempt_at=now)
                for event in events
                for endpoint in endpoints
                if endpoint.wants(event.type)
            ],
            ignore_conflicts=True,
        )
        Event.objects.filter(pk__in=[event.pk for event in events]).update(fanned_out_at=now)
    return list(
        Delivery.objects.filter(event_id__in=[event.pk for event in events], status=DeliveryStatus.PENDING)
        .order_by("event_id")
        .values_list("id", flat=True)
    )


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str:
    """Try one delivery if it is due; what became of it ("delivered", "retry", "failed",
    "disabled", or "skipped" when it was not due or another worker has it). ``now``: the
    clock to use throughout (tests); by default the real one, read again after the request."""
    clock_given = now is not None
    now = now or timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
        endpoint__active=True,
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + claim_lease())
    if not claimed:
        return "skipped"
    delivery = Delivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    event, endpoint = delivery.event, delivery.endpoint
    answer = webhook_post(
        url=endpoint.url,
        secret=endpoint.secret,
        webhook_id=event.webhook_id,
        body=payload_body(event),
        at=now,
    )
    return _settle(delivery, answer, now=now if clock_given else timezone.now())


def _settle(delivery: Delivery, answer: Answer, *, now: datetime) -> str:
    endpoint = delivery.endpoint
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            response_excerpt=answer.excerpt,
            error=answer.error,
        )
        if answer.ok:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None
            )
            if endpoint.failing_since is not None:  # as read with the delivery: no write per success
                Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            return "delivered"
        outcome, _ = settle_failure(
            delivery_id=delivery.pk,
            attempts=delivery.attempts,
            webhook_id=delivery.event.webhook_id,
            endpoint=endpoint,
            answer=answer,
            now=now,
            enqueue_retry=True,
        )
        return outcome


def settle_failure(
    *,
    delivery_id: int,
    attempts: int,
    webhook_id: str,
    endpoint: Endpoint,
    answer: Answer,
    now: datetime,
    enqueue_retry: bool,
) -> tuple[str, datetime | None]:
    """A try that failed, in the caller's transaction: the endpoint disabled (410, or a
    day of failures), the delivery given up, or its next try scheduled; the outcome and
    when that next try is due. ``attempts`` counts this try. ``enqueue_retry``: enqueue
    the delivery's own retry job (the one-by-one path; the batch path schedules its
    endpoint's job instead)."""
    if answer.status_code == 410:
        endpoint_disable(endpoint_id=endpoint.pk, reason="It answered 410 Gone.", now=now)
        # Left due: sent if an operator turns the endpoint back on.
        Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=now)
        return "disabled", None
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    failing_since = Endpoint.objects.values_list("failing_since", flat=True).get(pk=endpoint.pk)
    if failing_since <= now - timedelta(seconds=settings.EVENTS_DISABLE_AFTER_SECONDS):
        endpoint_disable(
            endpoint_id=endpoint.pk,
            reason=f"Every delivery failed for {settings.EVENTS_DISABLE_AFTER_SECONDS // 3600} h.",
            now=now,
        )
        Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=now)
        return "disabled", None
    delay = retry_delay(attempts)
    if delay is None:
        Delivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        logger.warning("Event %s to %s: given up after %s tries", webhook_id, endpoint, attempts)
        return "failed", None
    due = now + delay
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=due)
    if enqueue_retry:
        transaction.on_commit(lambda: _enqueue_retry(delivery_id, attempts, due))
    logger.info(
        "Event %s to %s: %s, next try at %s",
        webhook_id,
        endpoint,
        answer.status_code or answer.error,
        f"{due:%H:%M:%S}",
    )
    return "retry", due


def _enqueue_retry(delivery_id: int, attempts: int, due: datetime) -> None:
    try:
        events_enqueue(DELIVER_JOB, delivery_id, job_id=f"event-delivery-{delivery_id}-{attempts}", at=due)
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): delivery %s is left to the sweep", type(exc).__name__, delivery_id
        )


def endpoint_disable(*, endpoint_id: int, reason: str, now: datetime) -> bool:
    """Stop sending to an endpoint (its deliveries wait); True if it was active."""
    disabled = Endpoint.objects.filter(pk=endpoint_id, active=True).update(
        active=False, disabled_at=now, disabled_reason=reason
    )
    if disabled:
        logger.warning("Events endpoint %s disabled: %s", endpoint_id, reason)
    return bool(disabled)


def events_sweep(*, now: datetime | None = None) -> str:
    """Send again what was never delivered: events whose fan-out job never ran, deliveries
    due for a while (a job Redis lost, a worker killed mid-request). Run by rqscheduler on
    EVENTS_SWEEP_CRON."""
    now = now or timezone.now()
    unfanned = Event.objects.filter(fanned_out_at__isnull=True, occurred_at__lte=now - SWEEP_GRACE).count()
    if unfanned:
        fan_out_request()
    due = Delivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now - SWEEP_GRACE, endpoint__active=True
    )
    count = due.count()
    for endpoint_id in sorted(set(due.values_list("endpoint_id", flat=True).distinct())) if count else ():
        endpoint_request(endpoint_id)
    line = f"Events sweep: {unfanned} event(s) fanned out again, {count} delivery(ies) sent again"
    if unfanned or count:
        logger.warning(line)
    return line


def events_replay(
    *,
    endpoint_id: int,
    event_ids: Iterable[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Send events to an endpoint again (the same webhook-id): the given ones, or every
    event that occurred in [since, until). Delivered ones are sent once more, pending ones
    at once; the endpoint's own delivery row is created where it had none. Returns how
    many deliveries were (re)queued."""
    now = now or timezone.now()
    events = Event.objects.all()
    if event_ids is not None:
        events = events.filter(pk__in=list(event_ids))
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    ids = list(events.order_by("user_id", "sequence").values_list("id", flat=True))
    with transaction.atomic():
        Delivery.objects.bulk_create(
            [Delivery(event_id=pk, endpoint_id=endpoint_id, next_attempt_at=now) for pk in ids],
            ignore_conflicts=True,
        )
        deliveries = Delivery.objects.filter(endpoint_id=endpoint_id, event_id__in=ids)
        deliveries.update(status=DeliveryStatus.PENDING, next_attempt_at=now, delivered_at=None)
        delivery_ids = list(deliveries.order_by("event_id").values_list("id", flat=True))

        def enqueue() -> None:
            for start in range(0, len(delivery_ids), SWEEP_BATCH):
                chunk = delivery_ids[start : start + SWEEP_BATCH]
                events_enqueue("events.jobs.deliver_many", chunk)

        transaction.on_commit(enqueue)
    logger.info("Replay of %s event(s) to endpoint %s", len(delivery_ids), endpoint_id)
    return len(delivery_ids)


def deliveries_undelivered(*, now: datetime) -> tuple[int, datetime | None]:
    """Pending deliveries to active endpoints, and when the oldest event among them occurred."""
    pending = Delivery.objects.filter(status=DeliveryStatus.PENDING, endpoint__active=True)
    oldest = pending.order_by("next_attempt_at").values_list("event__occurred_at", flat=True).first()
    return pending.count(), oldest


def endpoints_disabled_automatically() -> int:
    """Endpoints relevel turned off (a 410, or failing for a day), not an operator."""
    return Endpoint.objects.filter(active=False).exclude(disabled_reason="").count()
