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

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from calls.bulk import array_cursor

from .endpoints import endpoints_want
from .models import DayMark, Event, UserEventSequence
from .queues import fan_out_request

logger = logging.getLogger("relevel.events")
User = get_user_model()


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
    """events_emit for several events at once: one statement and one enqueue for all."""
    wanted = [draft for draft in drafts if endpoints_want(draft.type)]
    if not wanted:
        return []
    now = timezone.now()
    # No savepoint inside the caller's transaction: two round trips fewer on the webhook's path.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            ids = _insert_set(wanted, now=now)
        else:
            ids = [_insert_one(draft, now=now) for draft in sorted(wanted, key=lambda d: d.user_id)]
    transaction.on_commit(_fan_out_request)
    return ids


def _fan_out_request() -> None:
    # One coalesced job for every commit of a rush, not one per commit (events.pump); a
    # commit while that job is queued costs one Redis SET that changes nothing.
    fan_out_request()


def events_emit_marking_days(
    *,
    drafts: Sequence[EventDraft],
    marks: Sequence[tuple[tuple[int, date, str], EventDraft | None]],
) -> set[tuple[int, date, str]]:
    """days_mark and events_emit_many together, in the caller's transaction: ``drafts``
    are written as events_emit_many writes them; each of ``marks`` ((user id, local date,
    type), and the event that goes with it, or None) is recorded as days_mark records it, and
    its event is written only if the mark is new. The marks that are new.

    On PostgreSQL one statement does both (the day mark, then the events and the users'
    sequences): a round trip less on the webhook's path than days_mark then events_emit_many.
    The events take their sequence numbers in the order given, ``drafts`` first."""
    if connection.vendor != "postgresql" or not marks:
        new = days_mark(marks=[mark for mark, _ in marks])
        events_emit_many(drafts=[*drafts, *(draft for mark, draft in marks if draft and mark in new)])
        return new
    wanted = [(draft, None) for draft in drafts if endpoints_want(draft.type)]
    wanted += [(draft, mark) for mark, draft in marks if draft is not None and endpoints_want(draft.type)]
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        written, new = _insert_set_marking(wanted, [mark for mark, _ in marks], now=now)
    if written:
        transaction.on_commit(_fan_out_request)
    return new


def _insert_set_marking(
    drafts: Sequence[tuple[EventDraft, tuple[int, date, str] | None]],
    marks: Sequence[tuple[int, date, str]],
    *,
    now: datetime,
) -> tuple[int, set[tuple[int, date, str]]]:
    """_insert_set and days_mark in one statement: the marks first (in user order, as
    days_mark), then the drafts whose mark is None or new. (events written, new marks)"""
    sequences, events, users, day_marks = (
        UserEventSequence._meta.db_table,
        Event._meta.db_table,
        User._meta.db_table,
        DayMark._meta.db_table,
    )
    parameters = [
        [mark[0] for mark in marks],
        [mark[1] for mark in marks],
        [str(mark[2]) for mark in marks],
        [draft.user_id for draft, _ in drafts],
        [new_webhook_id() for _ in drafts],
        [str(draft.type) for draft, _ in drafts],
        [draft.local_date for draft, _ in drafts],
        [draft.occurred_at or now for draft, _ in drafts],
        [json.dumps(dict(draft.data), default=str) for draft, _ in drafts],
        [None if mark is None else str(mark[2]) for _, mark in drafts],
    ]
    # Bound in binary (array_cursor), as _insert_set's: a rush found missed sends thousands.
    with array_cursor(rows=len(drafts) + len(marks)) as (cursor, a):
        cursor.execute(
            f"WITH marks AS (INSERT INTO {day_marks} (user_id, local_date, type)"
            f" SELECT * FROM unnest({a}::bigint[], {a}::date[], {a}::text[]) ORDER BY 1"
            " ON CONFLICT DO NOTHING RETURNING user_id, local_date, type),"
            f" drafts AS (SELECT t.* FROM unnest({a}::bigint[], {a}::text[], {a}::text[], {a}::date[],"
            f" {a}::timestamptz[], {a}::text[]::jsonb[], {a}::text[])"
            " WITH ORDINALITY AS t(user_id, webhook_id, type, local_date, occurred_at, data, mark, ord)"
            " WHERE t.mark IS NULL OR EXISTS (SELECT FROM marks m WHERE m.user_id = t.user_id"
            " AND m.local_date = t.local_date AND m.type = t.mark)),"
            " input AS (SELECT d.*, row_number() OVER (PARTITION BY d.user_id ORDER BY d.ord) AS n,"
            " count(*) OVER (PARTITION BY d.user_id) AS c FROM drafts d),"
            " counts AS (SELECT user_id, max(c) AS c FROM input GROUP BY user_id),"
            f" seq AS (INSERT INTO {sequences} (user_id, last) SELECT user_id, c FROM counts ORDER BY user_id"
            f" ON CONFLICT (user_id) DO UPDATE SET last = {sequences}.last + EXCLUDED.last"
            " RETURNING user_id, last),"
            f" written AS (INSERT INTO {events} (webhook_id, type, user_id, external_id, sequence,"
            " local_date, occurred_at, data, fanned_out_at)"
            " SELECT i.webhook_id, i.type, i.user_id, u.external_id, seq.last - i.c + i.n, i.local_date,"
            " i.occurred_at, i.data, NULL"
            f" FROM input i JOIN seq ON seq.user_id = i.user_id LEFT JOIN {users} u ON u.id = i.user_id"
            " ORDER BY i.ord RETURNING id)"
            " SELECT (SELECT count(*) FROM written), m.user_id, m.local_date, m.type"
            " FROM (SELECT 1) AS one LEFT JOIN marks m ON true",
            parameters,
        )
        rows = cursor.fetchall()
    new = {(user_id, local_date, type) for _, user_id, local_date, type in rows if user_id is not None}
    return rows[0][0], new


def _insert_set(drafts: Sequence[EventDraft], *, now: datetime) -> list[int]:
    """Every draft in one statement (PostgreSQL). Each user's sequence row is moved on by
    the number of its events, and they take the numbers in order. The upsert holds those
    rows' locks until commit, which orders concurrent writers for a user, and a rollback
    takes the numbers back, so a user's sequence has no gaps. The rows are upserted in user
    order: two transactions writing for the same users wait for each other, never deadlock."""
    sequences, events, users = (
        UserEventSequence._meta.db_table,
        Event._meta.db_table,
        User._meta.db_table,
    )
    columns = (
        [draft.user_id for draft in drafts],
        [new_webhook_id() for _ in drafts],
        [str(draft.type) for draft in drafts],
        [draft.local_date for draft in drafts],
        [draft.occurred_at or now for draft in drafts],
        [json.dumps(dict(draft.data), default=str) for draft in drafts],
    )
    # Bound in binary (array_cursor): quoted into the SQL text in Python, the arrays of a
    # rush found missed (a call.ended and a day.missed per user) cost more than the insert.
    with array_cursor(rows=len(drafts)) as (cursor, a):
        cursor.execute(
            "WITH input AS ("
            " SELECT t.*, row_number() OVER (PARTITION BY t.user_id ORDER BY t.ord) AS n,"
            " count(*) OVER (PARTITION BY t.user_id) AS c"
            f" FROM unnest({a}::bigint[], {a}::text[], {a}::text[], {a}::date[], {a}::timestamptz[],"
            f" {a}::text[]::jsonb[])"
            " WITH ORDINALITY AS t(user_id, webhook_id, type, local_date, occurred_at, data, ord)),"
            " counts AS (SELECT user_id, max(c) AS c FROM input GROUP BY user_id),"
            f" seq AS (INSERT INTO {sequences} (user_id, last) SELECT user_id, c FROM counts ORDER BY user_id"
            f" ON CONFLICT (user_id) DO UPDATE SET last = {sequences}.last + EXCLUDED.last"
            " RETURNING user_id, last)"
            f" INSERT INTO {events} (webhook_id, type, user_id, external_id, sequence, local_date,"
            " occurred_at, data, fanned_out_at)"
            " SELECT i.webhook_id, i.type, i.user_id, u.external_id, seq.last - i.c + i.n, i.local_date,"
            " i.occurred_at, i.data, NULL"
            f" FROM input i JOIN seq ON seq.user_id = i.user_id LEFT JOIN {users} u ON u.id = i.user_id"
            " ORDER BY i.ord RETURNING id",
            list(columns),
        )
        return [row[0] for row in cursor.fetchall()]


def _insert_one(draft: EventDraft, *, now: datetime) -> int:
    """One event, on a database other than PostgreSQL (development on SQLite)."""
    sequence, _ = UserEventSequence.objects.get_or_create(user_id=draft.user_id)
    UserEventSequence.objects.filter(pk=draft.user_id).update(last=sequence.last + 1)
    external_id = User.objects.filter(pk=draft.user_id).values_list("external_id", flat=True).first()
    return Event.objects.create(
        webhook_id=new_webhook_id(),
        type=draft.type,
        user_id=draft.user_id,
        external_id=external_id,
        sequence=sequence.last + 1,
        local_date=draft.local_date,
        occurred_at=draft.occurred_at or now,
        data=json.loads(json.dumps(dict(draft.data), default=str)),
    ).pk


def days_mark(*, marks: Sequence[tuple[int, date, str]]) -> set[tuple[int, date, str]]:
    """Record that users' days were found reached or missed ((user id, local date, type));
    the marks that are new (concurrent callers wait on the unique index, and all but one
    find a mark there). One statement for all of them."""
    if not marks:
        return set()
    if connection.vendor != "postgresql":
        return {mark for mark in marks if day_mark(user_id=mark[0], local_date=mark[1], type=mark[2])}
    with array_cursor(rows=len(marks)) as (cursor, a):
        cursor.execute(
            f"INSERT INTO {DayMark._meta.db_table} (user_id, local_date, type)"
            f" SELECT * FROM unnest({a}::bigint[], {a}::date[], {a}::text[]) ORDER BY 1"
            " ON CONFLICT DO NOTHING RETURNING user_id, local_date, type",
            [[m[0] for m in marks], [m[1] for m in marks], [str(m[2]) for m in marks]],
        )
        return {(user_id, local_date, type) for user_id, local_date, type in cursor.fetchall()}


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
