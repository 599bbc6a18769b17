"""Everything relevel says to Redis/RQ goes through here, or through the modules split
from it on this module's connection: calls/capacity.py (live-call leases) and
calls/retry_buckets.py (outcome retries gathered per instant).

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

from .providers.http import threads_per_process

# Jobs are named by dotted path, so that this module (which the services import) never
# imports calls.jobs (which imports the services): RQ resolves the path in the worker.
SCHEDULE_CALLS_JOB = "calls.jobs.schedule_calls"
PLACE_CALLS_JOB = "calls.jobs.place_calls"
PLACE_CALL_JOB = "calls.jobs.place_call"
SIMULATOR_WEBHOOK_JOB = "calls.jobs.simulator_send_webhook"
ANALYSE_CALL_JOB = "calls.jobs.analyse_call"
ANALYSE_CALLS_JOB = "calls.jobs.analyse_calls"
# Ended calls waiting for their analysis: the webhook's one RPUSH (calls.outcomes).
ANALYSIS_PENDING_KEY = "relevel:analysis:pending"
ANALYSIS_BATCH = 200

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


def user_busy_job_id(call_id: int, *, at: datetime) -> str:
    """The job that looks again at a call whose user was on another call, at ``at``: a name
    of its own, as the call's own job (call-<pk>) may be the one running now."""
    return f"call-{call_id}-after-{at.astimezone(UTC):%Y%m%dT%H%M%S}"


def job_options() -> dict[str, Any]:
    return {"result_ttl": settings.JOB_RESULT_TTL, "failure_ttl": settings.JOB_FAILURE_TTL}


def rq_retry(intervals: list[int]) -> Retry | None:
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def batch_job_id(first_call_id: int) -> str:
    """A tick's batch job is named after its first call, which no other batch can share:
    enqueueing the same batch twice names the same job."""
    return f"place-calls-{first_call_id}"


def requeued_batch_job_id(first_call_id: int, *, at: datetime) -> str:
    """A batch of calls that lost their job, enqueued again by the tick at ``at``: a name of
    its own, never that of the dead job it replaces (whose result RQ may still keep)."""
    return f"place-calls-{first_call_id}-requeued-{at.astimezone(UTC):%Y%m%dT%H%M%S}"


def batch_job_timeout(calls: int) -> int:
    """Long enough for a batch against a provider that answers only at its timeouts: rounds
    of ``threads`` calls, each up to connect + read timeout. A job cut short by RQ leaves its
    unsent calls for the next tick, but the ones in flight lose their answer."""
    rounds = -(-calls // threads_per_process())
    per_call = max(
        settings.CALLKARO_CONNECT_TIMEOUT + settings.CALLKARO_READ_TIMEOUT,
        settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT,
    )
    worst = rounds * per_call
    return max(settings.CALL_JOB_TIMEOUT, int(worst) + 30)


def enqueue_call_batches(
    batches: dict[str, list[int]],
    *,
    at: Mapping[str, datetime] | None = None,
    describe: Callable[[list[int]], str] | None = None,
) -> int:
    """Enqueue place-calls batch jobs {job_id: call ids} in one Redis round trip.

    ``at`` {job_id: when} schedules those jobs instead, for RQ's scheduler to release then (a
    spread slot's later steps); the others are queued at once. A batch job tries each call
    once; a call that meets a transient provider error goes on to a job of its own
    (enqueue_place_call) that RQ retries with backoff. ``describe`` words a job's
    description from its call ids (a tick's first attempts unless the caller says).
    """
    from .job_descriptions import batch_job_description

    at = at or {}
    describe = describe or batch_job_description
    jobs = [
        (
            dict(
                args=(call_ids,),
                job_id=job_id,
                timeout=batch_job_timeout(len(call_ids)),
                description=describe(call_ids),
                **job_options(),
            ),
            at.get(job_id),
        )
        for job_id, call_ids in batches.items()
        if call_ids
    ]
    enqueue_jobs(PLACE_CALLS_JOB, jobs)
    return sum(len(ids) for ids in batches.values())


def enqueue_jobs(func: str, jobs: list[tuple[dict[str, Any], datetime | None]]) -> None:
    """Enqueue jobs of ``func`` on the calls queue in one Redis round trip: each is its
    fields (RQ's job options) and when RQ's scheduler releases it (None: queued at once)."""
    queue = calls_queue()
    job_datas = [Queue.prepare_data(func, **fields) for fields, when in jobs if when is None]
    # enqueue_many takes immediate jobs only; a scheduled job is saved and put in the
    # scheduled registry (schedule_job) on the same pipeline.
    scheduled = [
        (queue.create_job(func, status=JobStatus.SCHEDULED, **fields), when)
        for fields, when in jobs
        if when is not None
    ]
    if not job_datas and not scheduled:
        return
    with queue.connection.pipeline() as pipe:
        if job_datas:
            queue.enqueue_many(job_datas, pipeline=pipe)
        for job, when in scheduled:
            queue.schedule_job(job, when, pipeline=pipe)
        pipe.execute()


def _whole_second_after(at: datetime) -> datetime:
    """RQ scores a scheduled job by whole seconds, truncated: a job for 12:33:45.7 is
    released at 12:33:45, before its call is due, and the worker would leave the call
    queued with no job. Rounding up releases it at 12:33:46, just after."""
    if at.microsecond == 0:
        return at
    return at.replace(microsecond=0) + timedelta(seconds=1)


def enqueue_place_call(
    call_id: int,
    *,
    at: datetime | None = None,
    retry_intervals: list[int] | None = None,
    description: str | None = None,
    job_id: str | None = None,
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
    job_id = job_id or call_job_id(call_id)
    if job_id not in live_job_ids([job_id]):
        existing = queue.fetch_job(job_id)
        if existing is not None:
            existing.delete()
    from .job_descriptions import call_job_description

    options = dict(
        job_id=job_id,
        # The call, its user and attempt in the dashboard (a query unless the caller says).
        description=description or call_job_description(call_id),
        retry=rq_retry(retry_intervals),
        job_timeout=settings.CALL_JOB_TIMEOUT,
        unique=True,
        **job_options(),
    )
    try:
        if at is None:
            queue.enqueue(PLACE_CALL_JOB, call_id, **options)
        else:
            queue.enqueue_at(_whole_second_after(at), PLACE_CALL_JOB, call_id, **options)
    except DuplicateJobError:
        return False
    return True


def analysis_note(call_id: int) -> None:
    """Note an ended call for analysis: one RPUSH, the only cost the webhook pays for it (an
    RQ job per call would cost it about a millisecond of CPU). ANALYSIS_CRON's job hands the
    noted calls to workers in batches. A Redis failure is logged, never raised: the outcome
    is committed and its payloads kept, so the call can be analysed later."""
    try:
        redis_connection().rpush(ANALYSIS_PENDING_KEY, call_id)
    except RedisError as exc:
        logger.error("Redis unreachable (%s): call %s is not noted for analysis", type(exc).__name__, call_id)


def analysis_note_many(call_ids: list[int]) -> None:
    """analysis_note for several calls in one RPUSH (the tick's sweep of calls whose note
    was lost). Raises RedisError: the tick logs it and tries again next time."""
    if call_ids:
        redis_connection().rpush(ANALYSIS_PENDING_KEY, *call_ids)


ANALYSIS_SWEPT_KEY = "relevel:analysis:swept-until"


def analysis_swept_until() -> int:
    """The last call id the sweep noted, while its notes may still be waiting to be
    analysed (0 once that time is over): the next tick goes on after it, not again."""
    return int(redis_connection().get(ANALYSIS_SWEPT_KEY) or 0)


def analysis_swept_set(call_id: int, *, seconds: int) -> None:
    redis_connection().set(ANALYSIS_SWEPT_KEY, call_id, ex=seconds)


def analysis_take_noted(*, limit: int) -> list[int]:
    """Pop up to ``limit`` noted call ids, oldest first, de-duplicated (a call noted twice,
    Retell's call_ended then call_analyzed, is analysed once, from all its payloads)."""
    popped = redis_connection().lpop(ANALYSIS_PENDING_KEY, limit) or []
    return list(dict.fromkeys(int(value) for value in popped))


def enqueue_analysis(call_ids: list[int]) -> int:
    """Jobs of ANALYSIS_BATCH calls each, in one pipeline; the number of jobs."""
    batches = [call_ids[start : start + ANALYSIS_BATCH] for start in range(0, len(call_ids), ANALYSIS_BATCH)]
    if not batches:
        return 0
    queue = calls_queue()
    queue.enqueue_many(
        [
            Queue.prepare_data(
                ANALYSE_CALLS_JOB,
                args=(batch,),
                description=f"Analyse {len(batch)} ended calls ({batch[0]}...)",
                result_ttl=settings.JOB_RESULT_TTL,
                failure_ttl=settings.JOB_FAILURE_TTL,
            )
            for batch in batches
        ]
    )
    return len(batches)


def on_commit(func: Callable[[], Any]) -> None:
    """Run ``func`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(func)


def enqueue_in(delay: timedelta, func: str, *args: Any) -> Job:
    """Run the job at dotted path ``func`` after ``delay``."""
    return calls_queue().enqueue_in(delay, func, *args, **job_options())


CALENDAR_RESCHEDULE_JOB = "calls.jobs.reschedule_calendars"


def enqueue_calendar_reschedule() -> Job:
    """Move everyone's next call after the policy's days off changed (users.calendar)."""
    return tick_queue().enqueue(
        CALENDAR_RESCHEDULE_JOB,
        description="Moving next calls after the call policy's days off changed",
        **job_options(),
    )


def enqueue_tick(*, description: str = "Scheduling tick, triggered now (not the cron's)") -> Job:
    """Enqueue one scheduling tick now (the manual trigger)."""
    return tick_queue().enqueue(SCHEDULE_CALLS_JOB, description=description, **job_options())


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


def redis_connection() -> Redis:
    """The calls queue's Redis connection (relevel's own keys live there too)."""
    # The calls queue's connection, without building the queue: an RQ Queue object per
    # call was most of the CPU of the webhook's one RPUSH (analysis_note).
    return _redis_connection(settings.RQ_QUEUES[settings.CALLS_QUEUE]["URL"], settings.REDIS_SOCKET_TIMEOUT)
