"""The outbox: events_emit writes an event in the caller's transaction; its delivery is
enqueued when that transaction commits (and never, if it rolls back).

The engine's services call events_emit (never signals), inside the transaction of the
change the event reports. When no endpoint wants a type, events_emit writes nothing and
costs a look at a list this process keeps (events.endpoints).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import django_rq
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from .endpoints import endpoints_want
from .models import DayMark, Event, UserEventSequence

logger = logging.getLogger("relevel.events")
User = get_user_model()

FAN_OUT_JOB = "events.jobs.deliver_events"


@dataclass(frozen=True)
class EventDraft:
    """One event to write: what events_emit takes, for events_emit_many."""

    type: str
    user_id: int
    local_date: date | None
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


def new_webhook_id() -> str:
    # The spec's ids look like msg_<random>; no full stop (it delimits the signed content).
    return f"msg_{uuid.uuid4().hex}"


def events_emit(
    *,
    type: str,
    user_id: int,
    local_date: date | None,
    data: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> int | None:
    """Write one event to the outbox, in the caller's transaction; its id, or None when no
    endpoint wants ``type`` (nothing written). Delivery is enqueued once the transaction
    commits. ``data`` holds the type's own fields; every event also carries the user's id
    and external_id, the local date, its stable id and the user's sequence number."""
    ids = events_emit_many(
        drafts=[
            EventDraft(
                type=type, user_id=user_id, local_date=local_date, data=data or {}, occurred_at=occurred_at
            )
        ]
    )
    return ids[0] if ids else None


def events_emit_many(*, drafts: Sequence[EventDraft]) -> list[int]:
    """events_emit for several events at once (one enqueue for all of them)."""
    wanted = [draft for draft in drafts if endpoints_want(draft.type)]
    if not wanted:
        return []
    now = timezone.now()
    # By user: two transactions emitting for the same users take their sequence rows' locks
    # in one order, so they wait for each other rather than deadlock.
    wanted.sort(key=lambda draft: draft.user_id)
    # No savepoint inside the caller's transaction: two round trips fewer on the webhook's path.
    with transaction.atomic(savepoint=False):
        ids = [_insert(draft, now=now) for draft in wanted]
    transaction.on_commit(lambda: enqueue_fan_out(ids))
    return ids


def _insert(draft: EventDraft, *, now: datetime) -> int:
    occurred_at = draft.occurred_at or now
    data = json.dumps(dict(draft.data), default=str)
    webhook_id = new_webhook_id()
    if connection.vendor != "postgresql":
        sequence, _ = UserEventSequence.objects.get_or_create(user_id=draft.user_id)
        UserEventSequence.objects.filter(pk=draft.user_id).update(last=sequence.last + 1)
        external_id = User.objects.filter(pk=draft.user_id).values_list("external_id", flat=True).first()
        return Event.objects.create(
            webhook_id=webhook_id,
            type=draft.type,
            user_id=draft.user_id,
            external_id=external_id,
            sequence=sequence.last + 1,
            local_date=draft.local_date,
            occurred_at=occurred_at,
            data=json.loads(data),
        ).pk
    # One statement: the sequence's upsert holds its row lock until commit, which orders
    # concurrent writers for this user, and a rollback takes the number back (no gaps).
    sequences, events, users = (
        UserEventSequence._meta.db_table,
        Event._meta.db_table,
        User._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH seq AS (INSERT INTO {sequences} (user_id, last) VALUES (%s, 1) "
            f"ON CONFLICT (user_id) DO UPDATE SET last = {sequences}.last + 1 RETURNING last) "
            f"INSERT INTO {events} (webhook_id, type, user_id, external_id, sequence, local_date, "
            f"occurred_at, data, fanned_out_at) "
            f"SELECT %s, %s, %s, (SELECT external_id FROM {users} WHERE id = %s), seq.last, %s, %s, "
            f"%s::jsonb, NULL FROM seq RETURNING id",
            [
                draft.user_id,
                webhook_id,
                draft.type,
                draft.user_id,
                draft.user_id,
                draft.local_date,
                occurred_at,
                data,
            ],
        )
        return cursor.fetchone()[0]


def day_mark(*, user_id: int, local_date: date, type: str) -> bool:
    """Record that a user's day was found reached or missed; True the first time only
    (concurrent callers wait on the unique index, and all but one find it there)."""
    if connection.vendor != "postgresql":
        _, created = DayMark.objects.get_or_create(user_id=user_id, local_date=local_date, type=type)
        return created
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DayMark._meta.db_table} (user_id, local_date, type) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING id",
            [user_id, local_date, type],
        )
        return cursor.fetchone() is not None


def events_queue():
    return django_rq.get_queue(settings.EVENTS_QUEUE, commit_mode="auto")


def enqueue_fan_out(event_ids: list[int]) -> None:
    """Enqueue the job that creates and sends the events' deliveries. Redis down: the sweep
    finds the events within a minute or two (EVENTS_SWEEP_CRON) and sends them."""
    try:
        events_queue().enqueue(
            FAN_OUT_JOB,
            event_ids,
            job_id=f"events-{event_ids[0]}-{len(event_ids)}",
            result_ttl=settings.JOB_RESULT_TTL,
            failure_ttl=settings.JOB_FAILURE_TTL,
        )
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): %s event(s) will be sent by the sweep",
            type(exc).__name__,
            len(event_ids),
        )
