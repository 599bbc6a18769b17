"""Delivery in batches: one job sends many events to one endpoint.

The outbox does not enqueue a job per event. A commit that wrote events asks for the
fan-out job (events_fan_out_pending), and the fan-out asks for one delivery job per
endpoint (endpoint_deliver_due). Asking is coalesced (events.queues): a rush of ten
thousand commits enqueues a handful of jobs, not ten thousand.

A delivery job claims its endpoint's due deliveries a batch at a time (one UPDATE ...
RETURNING over SELECT ... FOR UPDATE SKIP LOCKED, which moves their next try a lease
ahead), sends each as its own request over the thread's keep-alive session, and records
the batch's outcomes in one transaction. The guarantees of events.delivery hold: a worker
killed mid-batch leaves the claimed rows due again once the lease is over, and the sweep
asks for their endpoint's job, which sends them under the same webhook-id.

A batch stops at its endpoint's first failure: the failed delivery takes its retry delay,
the rest of the batch waits with it (not counted as tries), and the endpoint backs off for
that delay (a key in Redis) while the other endpoints' jobs go on. Bounded by
EVENTS_BATCH_SIZE per claim and EVENTS_BATCH_SECONDS per job; a job that stops at the bound
asks for another.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from .delivery import claim_lease, events_fan_out, payload_body, settle_failure
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event
from .queues import (
    ENDPOINT_JOB,
    FAN_OUT_KEY,
    endpoint_back_off_set,
    endpoint_back_off_until,
    endpoint_request,
    events_enqueue,
    fan_out_request,
    pump_started,
)
from .transport import Answer, webhook_post

logger = logging.getLogger("relevel.events")

FAN_OUT_BATCH = 1000


def events_fan_out_pending(*, now: datetime | None = None) -> int:
    """Create the deliveries of every event not fanned out yet (oldest first, in batches)
    and ask for each active endpoint's delivery job; how many events were fanned out."""
    pump_started(FAN_OUT_KEY)
    deadline = time.monotonic() + settings.EVENTS_BATCH_SECONDS
    done = 0
    while True:  # at least one batch, whatever the bound: a job that does nothing asks forever
        ids = list(
            Event.objects.filter(fanned_out_at__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)[:FAN_OUT_BATCH]
        )
        if not ids:
            break
        events_fan_out(event_ids=ids, now=now)
        done += len(ids)
        if len(ids) < FAN_OUT_BATCH:
            break
        if time.monotonic() >= deadline:
            fan_out_request()  # the rest in a job of its own
            break
    for endpoint_id in Endpoint.objects.filter(active=True).values_list("id", flat=True):
        endpoint_request(endpoint_id)
    return done


@dataclass
class _Claimed:
    delivery_id: int
    attempts: int
    event: Event


def _claim(*, endpoint_id: int, now: datetime, limit: int) -> list[_Claimed]:
    """Up to ``limit`` due deliveries of an active endpoint, their next try moved a lease
    ahead and their tries counted, in one statement; in each user's sequence order."""
    lease_until = now + claim_lease()
    if connection.vendor != "postgresql":
        return _claim_one_by_one(endpoint_id=endpoint_id, now=now, limit=limit, lease_until=lease_until)
    deliveries, events, endpoints = (
        Delivery._meta.db_table,
        Event._meta.db_table,
        Endpoint._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {deliveries} d SET attempts = d.attempts + 1, next_attempt_at = %s"
            f" FROM {events} e"
            f" WHERE e.id = d.event_id AND d.id IN (SELECT c.id FROM {deliveries} c"
            f"  JOIN {endpoints} p ON p.id = c.endpoint_id AND p.active"
            "  WHERE c.endpoint_id = %s AND c.status = 'pending' AND c.next_attempt_at <= %s"
            "  ORDER BY c.next_attempt_at, c.event_id LIMIT %s FOR UPDATE OF c SKIP LOCKED)"
            " RETURNING d.id, d.attempts, e.id, e.webhook_id, e.type, e.user_id, e.external_id,"
            " e.sequence, e.local_date, e.occurred_at, e.data",
            [lease_until, endpoint_id, now, limit],
        )
        rows = cursor.fetchall()
    claimed = []
    for delivery_id, attempts, *event in rows:
        pk, webhook_id, type_, user_id, external_id, sequence, local_date, occurred_at, data = event
        claimed.append(
            _Claimed(
                delivery_id,
                attempts,
                Event(
                    pk=pk,
                    webhook_id=webhook_id,
                    type=type_,
                    user_id=user_id,
                    external_id=external_id,
                    sequence=sequence,
                    local_date=local_date,
                    occurred_at=occurred_at,
                    # Django reads jsonb as text (JSONField parses it): so does this.
                    data=json.loads(data) if isinstance(data, str | bytes) else data,
                ),
            )
        )
    return sorted(claimed, key=lambda c: (c.event.user_id, c.event.sequence))


def _claim_one_by_one(
    *, endpoint_id: int, now: datetime, limit: int, lease_until: datetime
) -> list[_Claimed]:
    """The claim on a database without UPDATE ... RETURNING over SKIP LOCKED (SQLite)."""
    due = Delivery.objects.filter(
        endpoint_id=endpoint_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
        endpoint__active=True,
    )
    claimed = []
    for pk in due.order_by("next_attempt_at", "event_id").values_list("id", flat=True)[:limit]:
        if due.filter(pk=pk).update(attempts=F("attempts") + 1, next_attempt_at=lease_until):
            row = Delivery.objects.select_related("event").get(pk=pk)
            claimed.append(_Claimed(pk, row.attempts, row.event))
    return sorted(claimed, key=lambda c: (c.event.user_id, c.event.sequence))


def endpoint_deliver_due(*, endpoint_id: int, now: datetime | None = None) -> dict[str, int]:
    """Send an endpoint's due deliveries in batches until none is due, one fails, or the
    job's time is up; counts of what became of them. ``now``: a fixed clock (tests)."""
    pump_started(f"endpoint-{endpoint_id}")
    counts = {"delivered": 0, "retry": 0, "failed": 0, "disabled": 0}
    until = endpoint_back_off_until(endpoint_id)
    if until is not None and until > (now or timezone.now()).timestamp():
        return counts  # its scheduled job comes when the back-off is over
    endpoint = Endpoint.objects.filter(pk=endpoint_id, active=True).first()
    if endpoint is None:
        return counts
    deadline = time.monotonic() + settings.EVENTS_BATCH_SECONDS
    while True:
        started_at = now or timezone.now()
        batch = _claim(endpoint_id=endpoint_id, now=started_at, limit=settings.EVENTS_BATCH_SIZE)
        if not batch:
            return counts
        sent: list[tuple[_Claimed, Answer, datetime]] = []
        for claimed in batch:
            at = now or timezone.now()
            answer = webhook_post(
                url=endpoint.url,
                secret=endpoint.secret,
                webhook_id=claimed.event.webhook_id,
                body=payload_body(claimed.event),
                at=at,
            )
            sent.append((claimed, answer, now or timezone.now()))
            if not answer.ok or time.monotonic() >= deadline:
                break
        result = _settle_batch(endpoint, sent, unsent=batch[len(sent) :])
        for name, count in result.items():
            counts[name] += count
        if result["retry"] or result["failed"] or result["disabled"]:
            return counts
        if time.monotonic() >= deadline:
            endpoint_request(endpoint_id)  # more may be due: a job of its own, after the others
            return counts
        endpoint.failing_since = None


def _settle_batch(
    endpoint: Endpoint, sent: list[tuple[_Claimed, Answer, datetime]], *, unsent: list[_Claimed]
) -> dict[str, int]:
    """Record a batch's requests in one transaction: every try's log row in one INSERT,
    the delivered ones in one UPDATE; a failure (the batch's last request, if any) as
    events.delivery settles one; the unsent ones left to wait with it."""
    counts = {"delivered": 0, "retry": 0, "failed": 0, "disabled": 0}
    back_off: tuple[datetime, datetime] | None = None
    delivered = [claimed.delivery_id for claimed, answer, _ in sent if answer.ok]
    failure = next(((c, a, at) for c, a, at in sent if not a.ok), None)
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            [
                DeliveryAttempt(
                    delivery_id=claimed.delivery_id,
                    attempted_at=at,
                    status_code=answer.status_code,
                    latency_ms=answer.latency_ms,
                    response_excerpt=answer.excerpt,
                    error=answer.error,
                )
                for claimed, answer, at in sent
            ]
        )
        if delivered:
            last_at = sent[-1][2]
            Delivery.objects.filter(pk__in=delivered).update(
                status=DeliveryStatus.DELIVERED, delivered_at=last_at, next_attempt_at=None
            )
            counts["delivered"] = len(delivered)
            if endpoint.failing_since is not None:
                Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        release_at = None
        if failure is not None:
            claimed, answer, at = failure
            outcome, due = settle_failure(
                delivery_id=claimed.delivery_id,
                attempts=claimed.attempts,
                webhook_id=claimed.event.webhook_id,
                endpoint=endpoint,
                answer=answer,
                now=at,
                enqueue_retry=False,
            )
            counts[outcome] += 1
            release_at = due or at
            if due is not None:
                back_off = (due, at)
        if unsent:
            # Not tried: their tries are not counted, and they wait with the failed one.
            Delivery.objects.filter(pk__in=[c.delivery_id for c in unsent]).update(
                attempts=F("attempts") - 1, next_attempt_at=release_at or sent[-1][2]
            )
    if back_off is not None:
        # After the transaction, not on its commit: a rollback leaves the rows claimed
        # (due again after the lease), and backing off then is harmless.
        _back_off(endpoint.pk, *back_off)
    return counts


def _back_off(endpoint_id: int, due: datetime, now: datetime) -> None:
    """The endpoint is left alone until ``due``, when its job is scheduled to run."""
    # The value is the instant (the clock the jobs read); the expiry only tidies up.
    seconds = max(1, int((due - now).total_seconds()) + 60)
    try:
        endpoint_back_off_set(endpoint_id, until=due.timestamp(), seconds=seconds)
        events_enqueue(
            ENDPOINT_JOB,
            endpoint_id,
            # One scheduled job per endpoint and ten seconds: failures close together share it.
            job_id=f"events-endpoint-{endpoint_id}-at-{int(due.timestamp()) // 10}",
            at=due + timedelta(seconds=1),
        )
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): endpoint %s's retry is left to the sweep",
            type(exc).__name__,
            endpoint_id,
        )
