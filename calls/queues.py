"""Everything relevel says to Redis/RQ goes through here.

Jobs are always enqueued after the database transaction that created their call commits
(``transaction.on_commit``), so a worker never looks for a row that is not there yet, and
a rolled-back claim never leaves a job behind. Job ids are deterministic (``call-<pk>``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import django_rq
from django.conf import settings
from django.db import transaction
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job


def calls_queue() -> Queue:
    # commit_mode="auto": we defer to on_commit ourselves, the same way for enqueue and
    # enqueue_at (django-rq only defers plain enqueue).
    return django_rq.get_queue(settings.CALLS_QUEUE, commit_mode="auto")


def call_job_id(call_id: int) -> str:
    return f"call-{call_id}"


def _job_options() -> dict[str, Any]:
    return {"result_ttl": settings.JOB_RESULT_TTL, "failure_ttl": settings.JOB_FAILURE_TTL}


def _place_call_retry() -> Retry:
    # Transient provider errors: RQ runs the job again after 2 s, then 4 s (3 attempts).
    intervals = list(settings.CALL_PLACE_RETRY_INTERVALS)
    return Retry(max=len(intervals), interval=intervals)


def enqueue_call_jobs(call_ids: Iterable[int]) -> int:
    """Enqueue place-call jobs for new calls in one Redis round trip; returns how many."""
    from calls.jobs import place_call

    queue = calls_queue()
    job_datas = [
        Queue.prepare_data(
            place_call,
            args=(call_id,),
            job_id=call_job_id(call_id),
            retry=_place_call_retry(),
            timeout=settings.CALL_JOB_TIMEOUT,
            **_job_options(),
        )
        for call_id in call_ids
    ]
    if not job_datas:
        return 0
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(job_datas, pipeline=pipe)
        pipe.execute()
    return len(job_datas)


def schedule_call_job(call_id: int, at: datetime) -> bool:
    """Put a call's job on RQ's scheduled registry; False if that job already exists."""
    from calls.jobs import place_call

    try:
        calls_queue().enqueue_at(
            at,
            place_call,
            call_id,
            job_id=call_job_id(call_id),
            retry=_place_call_retry(),
            job_timeout=settings.CALL_JOB_TIMEOUT,
            unique=True,
            **_job_options(),
        )
    except DuplicateJobError:
        return False
    return True


def enqueue_call_job_unique(call_id: int) -> bool:
    """Enqueue one call's job now unless a job with its id exists; True if enqueued."""
    from calls.jobs import place_call

    try:
        calls_queue().enqueue(
            place_call,
            call_id,
            job_id=call_job_id(call_id),
            retry=_place_call_retry(),
            job_timeout=settings.CALL_JOB_TIMEOUT,
            unique=True,
            **_job_options(),
        )
    except DuplicateJobError:
        return False
    return True


def on_commit(func: Callable[[], Any]) -> None:
    """Run ``func`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(func)


def enqueue_in(delay: timedelta, func: Callable, *args: Any) -> Job:
    return calls_queue().enqueue_in(delay, func, *args, **_job_options())


def enqueue_tick() -> Job:
    """Enqueue one scheduling tick now (the manual trigger)."""
    from calls.jobs import schedule_calls

    return calls_queue().enqueue(schedule_calls, **_job_options())


def existing_job_ids(job_ids: list[str]) -> set[str]:
    """Which of these jobs Redis still holds, in one round trip."""
    if not job_ids:
        return set()
    connection = calls_queue().connection
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(Job.key_for(job_id))
        found = pipe.execute()
    return {job_id for job_id, exists in zip(job_ids, found) if exists}
