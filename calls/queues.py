"""Everything relevel says to Redis/RQ goes through here.

Jobs are always enqueued after the database transaction that created their call commits
(``transaction.on_commit``), so a worker never looks for a row that is not there yet, and
a rolled-back claim never leaves a job behind. Job ids are deterministic (``call-<pk>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

# Jobs are named by dotted path, so that this module (which the services import) never
# imports calls.jobs (which imports the services): RQ resolves the path in the worker.
SCHEDULE_CALLS_JOB = "calls.jobs.schedule_calls"
PLACE_CALLS_JOB = "calls.jobs.place_calls"
PLACE_CALL_JOB = "calls.jobs.place_call"
SIMULATOR_WEBHOOK_JOB = "calls.jobs.simulator_send_webhook"

logger = logging.getLogger("relevel.calls")


@lru_cache(maxsize=8)
def _redis_connection(url: str, timeout: float) -> Redis:
    # One connection pool per process and URL: django-rq builds a new pool on every
    # get_queue(). REDIS_SOCKET_TIMEOUT makes a Redis that stops answering fail a command
    # in seconds instead of hanging the request or job (redis-py resets the pool by itself
    # after a fork). Timeouts written in the URL's query win over these.
    return Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
    )


def _queue(name: str) -> Queue:
    # commit_mode="auto": we defer to on_commit ourselves, the same way for enqueue and
    # enqueue_at (django-rq only defers plain enqueue).
    connection = _redis_connection(settings.RQ_QUEUES[name]["URL"], settings.REDIS_SOCKET_TIMEOUT)
    return django_rq.get_queue(name, commit_mode="auto", connection=connection)


def queue_named(name: str) -> Queue:
    """Any queue of RQ_QUEUES, on relevel's connection (with its timeouts)."""
    return _queue(name)


def calls_queue() -> Queue:
    return _queue(settings.CALLS_QUEUE)


def tick_queue() -> Queue:
    return _queue(settings.TICK_QUEUE)


def call_job_id(call_id: int) -> str:
    return f"call-{call_id}"


def _job_options() -> dict[str, Any]:
    return {"result_ttl": settings.JOB_RESULT_TTL, "failure_ttl": settings.JOB_FAILURE_TTL}


def _retry(intervals: list[int]) -> Retry | None:
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def batch_job_id(first_call_id: int) -> str:
    """A tick's batch job is named after its first call, which no other batch can share:
    enqueueing the same batch twice names the same job."""
    return f"place-calls-{first_call_id}"


def requeued_batch_job_id(first_call_id: int, *, at: datetime) -> str:
    """A batch of calls that lost their job, enqueued again by the tick at ``at``: a name of
    its own, never that of the dead job it replaces (whose result RQ may still keep)."""
    return f"place-calls-{first_call_id}-requeued-{at.astimezone(UTC):%Y%m%dT%H%M%S}"


def placement_threads_per_process() -> int:
    """A worker process's share of PROVIDER_MAX_CONCURRENCY (at least one): the calls it
    has in flight at once."""
    return max(1, settings.PROVIDER_MAX_CONCURRENCY // settings.QUEUE_CONCURRENCY)


def batch_job_timeout(calls: int) -> int:
    """Long enough for a batch against a provider that answers only at its timeouts: rounds
    of ``threads`` calls, each up to connect + read timeout. A job cut short by RQ leaves its
    unsent calls for the next tick, but the ones in flight lose their answer."""
    rounds = -(-calls // placement_threads_per_process())
    per_call = max(
        settings.CALLKARO_CONNECT_TIMEOUT + settings.CALLKARO_READ_TIMEOUT,
        settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT,
    )
    worst = rounds * per_call
    return max(settings.CALL_JOB_TIMEOUT, int(worst) + 30)


def enqueue_call_batches(batches: dict[str, list[int]], *, at: Mapping[str, datetime] | None = None) -> int:
    """Enqueue place-calls batch jobs {job_id: call ids} in one Redis round trip.

    ``at`` {job_id: when} schedules those jobs instead, for RQ's scheduler to release then (a
    spread slot's later steps); the others are queued at once. A batch job tries each call
    once; a call that meets a transient provider error goes on to a job of its own
    (enqueue_place_call) that RQ retries with backoff.
    """
    queue = calls_queue()
    at = at or {}
    options = _job_options()
    job_datas = [
        Queue.prepare_data(
            PLACE_CALLS_JOB,
            args=(call_ids,),
            job_id=job_id,
            timeout=batch_job_timeout(len(call_ids)),
            **options,
        )
        for job_id, call_ids in batches.items()
        if call_ids and job_id not in at
    ]
    # enqueue_many takes immediate jobs only; a scheduled job is saved and put in the
    # scheduled registry (schedule_job) on the same pipeline.
    scheduled = [
        (
            queue.create_job(
                PLACE_CALLS_JOB,
                args=(call_ids,),
                job_id=job_id,
                timeout=batch_job_timeout(len(call_ids)),
                status=JobStatus.SCHEDULED,
                **options,
            ),
            at[job_id],
        )
        for job_id, call_ids in batches.items()
        if call_ids and job_id in at
    ]
    if not job_datas and not scheduled:
        return 0
    with queue.connection.pipeline() as pipe:
        if job_datas:
            queue.enqueue_many(job_datas, pipeline=pipe)
        for job, when in scheduled:
            queue.schedule_job(job, when, pipeline=pipe)
        pipe.execute()
    return sum(len(ids) for ids in batches.values())


def enqueue_place_call(
    call_id: int, *, at: datetime | None = None, retry_intervals: list[int] | None = None
) -> bool:
    """Give one call a job of its own ("call-<pk>"), now or at ``at``; False if one is live.

    Used for outcome retries, calls whose job Redis lost, and calls a batch could not
    place. A finished or failed job of the same id (its result is kept for a day) is
    replaced; a live one (queued, scheduled, started) is left alone. Two callers racing may
    replace each other's job; the call's own status (queued -> dialing under a row lock) is
    what keeps it from being dialed twice.
    """
    if retry_intervals is None:
        retry_intervals = list(settings.CALL_PLACE_RETRY_INTERVALS)
    queue = calls_queue()
    job_id = call_job_id(call_id)
    if job_id not in live_job_ids([job_id]):
        existing = queue.fetch_job(job_id)
        if existing is not None:
            existing.delete()
    options = dict(
        job_id=job_id,
        retry=_retry(retry_intervals),
        job_timeout=settings.CALL_JOB_TIMEOUT,
        unique=True,
        **_job_options(),
    )
    try:
        if at is None:
            queue.enqueue(PLACE_CALL_JOB, call_id, **options)
        else:
            queue.enqueue_at(at, PLACE_CALL_JOB, call_id, **options)
    except DuplicateJobError:
        return False
    return True


def on_commit(func: Callable[[], Any]) -> None:
    """Run ``func`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(func)


def enqueue_in(delay: timedelta, func: str, *args: Any) -> Job:
    """Run the job at dotted path ``func`` after ``delay``."""
    return calls_queue().enqueue_in(delay, func, *args, **_job_options())


def enqueue_tick() -> Job:
    """Enqueue one scheduling tick now (the manual trigger)."""
    return tick_queue().enqueue(SCHEDULE_CALLS_JOB, **_job_options())


# A job in one of these states will still run; any other (finished, failed, stopped,
# canceled, or gone) will not.
LIVE_JOB_STATUSES = {b"queued", b"scheduled", b"started", b"deferred"}


def reap_abandoned_jobs(*, now: datetime) -> None:
    """Let RQ settle the jobs whose worker died mid-job (their heartbeat ran out before
    ``now``): failed, or re-run if they have retries left. Until then such a job still says
    "started", and the calls it carried would look as if a worker were still on them."""
    StartedJobRegistry(queue=calls_queue()).cleanup(timestamp=now.timestamp())


def live_job_ids(job_ids: list[str]) -> set[str]:
    """Which of these jobs will still run, in one Redis round trip."""
    if not job_ids:
        return set()
    connection = calls_queue().connection
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
    return {job_id for job_id, status in zip(job_ids, statuses, strict=True) if status in LIVE_JOB_STATUSES}


# --- Live-call leases ----------------------------------------------------------------------
# A provider's live calls are members of a sorted set scored by when their lease runs out:
# a call is live from the moment it is sent until its outcome (or the lease's end), across
# every worker process and machine. See calls/dispatch.py.


def _live_calls_key(provider: str) -> str:
    return f"relevel:capacity:{provider}:live"


def live_call_ended(*, provider: str, call_id: int) -> None:
    """A call reached its outcome: its live-call slot is free for the next one.

    Called after the commit that recorded the outcome. Redis being down costs nothing but
    the slot's lease, which runs out by itself (PROVIDER_LIVE_CALL_TIMEOUT_SECONDS)."""
    if not settings.PROVIDER_MAX_LIVE_CALLS.get(provider):
        return
    try:
        calls_queue().connection.zrem(_live_calls_key(provider), str(call_id))
    except RedisError as exc:
        logger.warning(
            "Call %s: could not free its live-call slot (%s); its lease will run out", call_id, exc
        )
