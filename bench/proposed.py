"""Prototype, for measurement only, of the change BENCHMARKS.md recommends for the tick.

The app code is not changed here: ``patched()`` swaps two helpers of calls.services for the
length of a measurement. Both send one array per column (PostgreSQL ``unnest``) instead of
one placeholder per value, so a 1,000-user batch costs two short statements whatever its
size, with no Django expression tree to build and no 10,000-placeholder query for psycopg
to parse:

* the claim's INSERT ... VALUES (500 rows x 20 placeholders) ... ON CONFLICT DO NOTHING
  RETURNING becomes INSERT ... SELECT FROM unnest(arrays) ... ON CONFLICT DO NOTHING RETURNING;
* ``User.objects.bulk_update(users, ["next_call_at"])`` (UPDATE ... SET next_call_at =
  CASE WHEN id=1 THEN ... 1,000 branches ... END WHERE id IN (...)) becomes
  UPDATE users_user SET next_call_at = v.t FROM unnest(ids, slots) AS v(id, t) WHERE id = v.id;
* where the app names batch jobs after their first call's id with one
  UPDATE calls_call SET job_id = ... WHERE id IN (...) per batch job (2,000 statements in a
  100k rush), one UPDATE ... FROM unnest(ids, job_ids) does the whole claim batch.
"""

from __future__ import annotations

import contextlib
import inspect
from unittest import mock

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

INSERT_UNNEST = """
INSERT INTO calls_call (
    user_id, to_number, agent_id, attempt, local_date, status, scheduled_for, provider, job_id,
    error, completed_at, last_status_at, provider_payloads, transcript, recording_url, created_at
)
SELECT v.*, '[]'::jsonb, '', '', %s
FROM unnest(
    %s::bigint[], %s::varchar[], %s::varchar[], %s::smallint[], %s::date[], %s::varchar[],
    %s::timestamptz[], %s::varchar[], %s::varchar[], %s::text[], %s::timestamptz[], %s::timestamptz[]
) AS v
ON CONFLICT (user_id, local_date, attempt) DO NOTHING
RETURNING id, job_id
"""

UPDATE_UNNEST = """
UPDATE users_user AS u SET next_call_at = v.next_call_at
FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, next_call_at)
WHERE u.id = v.id
"""


def _returns_pairs() -> bool:
    """The app's helper returned (id, job_id) pairs in one version and ids in the next."""
    from calls import services

    return "tuple" in str(inspect.signature(services._insert_calls_ignoring_conflicts).return_annotation)


def insert_calls_ignoring_conflicts(calls, *, pairs: bool = True) -> list:
    if not calls:
        return []
    columns = list(
        zip(
            *(
                (
                    c.user_id, c.to_number, c.agent_id, c.attempt, c.local_date, c.status, c.scheduled_for,
                    c.provider, c.job_id, c.error, c.completed_at, c.last_status_at,
                )
                for c in calls
            )
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(INSERT_UNNEST, [timezone.now(), *map(list, columns)])
        rows = cursor.fetchall()
    # RETURNING follows the input order here (one unnest, no conflicts reorder it), which
    # the app's batching by first call id relies on.
    return [(row[0], row[1]) for row in rows] if pairs else [row[0] for row in rows]


def name_batches(call_ids: list[int]) -> dict[str, list[int]]:
    """The app's _name_batches with one UPDATE for the whole claim, not one per batch job."""
    from django.conf import settings

    from calls import queues

    batches: dict[str, list[int]] = {}
    size = settings.CALL_BATCH_SIZE
    for start in range(0, len(call_ids), size):
        chunk = call_ids[start : start + size]
        batches[queues.batch_job_id(chunk[0])] = chunk
    ids = [call_id for chunk in batches.values() for call_id in chunk]
    jobs = [job_id for job_id, chunk in batches.items() for _ in chunk]
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE calls_call AS c SET job_id = v.job_id FROM unnest(%s::bigint[], %s::varchar[]) "
                "AS v(id, job_id) WHERE c.id = v.id",
                [ids, jobs],
            )
    return batches


def bulk_update_next_call_at(users, fields) -> int:
    assert list(fields) == ["next_call_at"]
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_UNNEST, [[u.pk for u in users], [u.next_call_at for u in users]])
        return cursor.rowcount


@contextlib.contextmanager
def patched():
    from calls import services

    User = get_user_model()
    pairs = _returns_pairs()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(
                services, "_insert_calls_ignoring_conflicts",
                lambda calls: insert_calls_ignoring_conflicts(calls, pairs=pairs),
            )
        )
        stack.enter_context(mock.patch.object(User.objects, "bulk_update", bulk_update_next_call_at))
        if hasattr(services, "_name_batches"):
            stack.enter_context(mock.patch.object(services, "_name_batches", name_batches))
        yield
