"""Everything relevel says to Redis/RQ goes through here.

Jobs are always enqueued after the database transaction that created their call commits
(``transaction.on_commit``), so a worker never looks for a row that is not there yet, and
a rolled-back claim never leaves a job behind. Job ids are deterministic (``call-<pk>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

    queue = calls_queue()
    at = at or {}
    describe = describe or batch_job_description

    def job_fields(job_id: str, call_ids: list[int]) -> dict[str, Any]:
        return dict(
            args=(call_ids,),
            job_id=job_id,
            timeout=batch_job_timeout(len(call_ids)),
            description=describe(call_ids),
            **job_options(),
        )

    job_datas = [
        Queue.prepare_data(PLACE_CALLS_JOB, **job_fields(job_id, call_ids))
        for job_id, call_ids in batches.items()
        if call_ids and job_id not in at
    ]
    # enqueue_many takes immediate jobs only; a scheduled job is saved and put in the
    # scheduled registry (schedule_job) on the same pipeline.
    scheduled = [
        (
            queue.create_job(PLACE_CALLS_JOB, status=JobStatus.SCHEDULED, **job_fields(job_id, call_ids)),
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


# --- Live-call leases ----------------------------------------------------------------------
# Providers cap live calls. Each capped provider has, in Redis (so the cap is one across
# every worker process and machine):
#   live     sorted set, call id -> when its lease runs out (a call sent and not yet ended);
#   waiting  sorted set, call id -> when its window closes (calls due, waiting for a line);
#   sent     sorted set of the last second's sends, for PROVIDER_MAX_CALLS_PER_SECOND;
#   hold     a key that stops all sending for a moment (the provider said it is full);
#   dispatcher  who is dispatching this provider's calls now (calls/dispatch.py).
# Leases, not counters: a worker that dies holding a line gives it back when its lease runs
# out. Times are the callers' clocks (epoch seconds), as the database's are.

DISPATCH_CALLS_JOB = "calls.jobs.dispatch_calls"
# How long one dispatch job keeps dispatching before it hands over to a fresh job (so that
# RQ's job timeout, a deploy or a restart never cuts a dispatcher off mid-call for long).
DISPATCHER_BUDGET_SECONDS = 240


def _capacity_key(provider: str, part: str) -> str:
    return f"relevel:capacity:{provider}:{part}"


def _live_calls_key(provider: str) -> str:
    return _capacity_key(provider, "live")


# Take up to ARGV[4] calls from the waiting set, earliest deadline first, as far as free
# lines and the per-second rate allow, each leased until now + ARGV[5]. Calls whose window
# closes before ARGV[6] are taken out as missed. Returns {taken, deadlines, missed, lost}:
# with a token (ARGV[7]), nothing is done unless the dispatcher lock (KEYS[5]) holds it
# (lost = 1), in the same atomic step.
_TAKE_SCRIPT = """
local live, waiting, sent, hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, lease, miss_before = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if ARGV[7] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[7] then return {{}, {}, {}, 1} end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
local missed = redis.call('ZRANGEBYSCORE', waiting, '-inf', miss_before)
if #missed > 0 then redis.call('ZREMRANGEBYSCORE', waiting, '-inf', miss_before) end
if want <= 0 or redis.call('EXISTS', hold) == 1 then return {{}, {}, missed, 0} end
if cap > 0 then want = math.min(want, cap - redis.call('ZCARD', live)) end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - 1)
  want = math.min(want, rate - redis.call('ZCARD', sent))
end
if want <= 0 then return {{}, {}, missed, 0} end
local picked = redis.call('ZRANGE', waiting, 0, want - 1, 'WITHSCORES')
local taken, deadlines = {}, {}
for i = 1, #picked, 2 do
  local id = picked[i]
  taken[#taken + 1] = id
  deadlines[#deadlines + 1] = picked[i + 1]
  redis.call('ZREM', waiting, id)
  redis.call('ZADD', live, now + lease, id)
  if rate > 0 then redis.call('ZADD', sent, now, id .. ':' .. now) end
end
if rate > 0 then redis.call('EXPIRE', sent, 5) end
return {taken, deadlines, missed, 0}
"""

# End a call's lease; returns {calls still waiting, whether a dispatcher is on them}.
_RELEASE_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
return {redis.call('ZCARD', KEYS[2]), redis.call('EXISTS', KEYS[3])}
"""

# The dispatcher's lock is renewed or released only by its holder.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def provider_is_capped(provider: str) -> bool:
    """Whether this provider's calls wait for a free line (or a free second) before sending."""
    return bool(
        settings.PROVIDER_MAX_LIVE_CALLS.get(provider) or settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider)
    )


def capped_providers() -> list[str]:
    return [provider for provider in settings.CALL_PROVIDERS if provider_is_capped(provider)]


def redis_connection() -> Redis:
    """The calls queue's Redis connection (relevel's own keys live there too)."""
    # The calls queue's connection, without building the queue: an RQ Queue object per
    # call was most of the CPU of the webhook's one RPUSH (analysis_note).
    return _redis_connection(settings.RQ_QUEUES[settings.CALLS_QUEUE]["URL"], settings.REDIS_SOCKET_TIMEOUT)


def capacity_admit(provider: str, deadlines: dict[int, float]) -> None:
    """Put calls in the provider's waiting set, each scored by when its window closes (a
    call already there keeps the earlier deadline)."""
    if deadlines:
        redis_connection().zadd(
            _capacity_key(provider, "waiting"), {str(k): v for k, v in deadlines.items()}, lt=True
        )


@dataclass(frozen=True)
class CapacityTake:
    taken: dict[int, float]  # call id -> its deadline, in deadline order
    missed: list[int]  # calls whose window closed while they waited
    lost: bool = False  # the dispatcher's lock is not the caller's (nothing was done)


def capacity_take(
    provider: str,
    *,
    now: float,
    want: int,
    lease_seconds: float,
    send_margin: float = 0.0,
    token: str | None = None,
) -> CapacityTake:
    """Lease lines for up to ``want`` waiting calls, earliest deadline first (atomic across
    processes). A call whose window closes within ``send_margin`` seconds is missed. With a
    dispatcher's ``token``, only while its lock is still that dispatcher's (else ``lost``)."""
    taken, deadlines, missed, lost = redis_connection().eval(
        _TAKE_SCRIPT,
        5,
        _capacity_key(provider, "live"),
        _capacity_key(provider, "waiting"),
        _capacity_key(provider, "sent"),
        _capacity_key(provider, "hold"),
        _capacity_key(provider, "dispatcher"),
        now,
        settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0),
        settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider, 0),
        want,
        lease_seconds,
        f"({now + send_margin}",  # exclusive: a window closing later than that is still open
        token or "",
    )
    return CapacityTake(
        taken={int(call_id): float(deadline) for call_id, deadline in zip(taken, deadlines, strict=True)},
        missed=[int(call_id) for call_id in missed],
        lost=bool(lost),
    )


def capacity_extend(provider: str, call_id: int, *, until: float) -> None:
    """Keep a sent call's line until ``until`` (its outcome frees it sooner). A call whose
    outcome already came (and freed the line) is not leased again."""
    redis_connection().zadd(_live_calls_key(provider), {str(call_id): until}, xx=True)


def capacity_give_back(provider: str, deadlines: dict[int, float], *, hold_seconds: float = 0) -> None:
    """Calls taken but not sent: free their lines and put them back in the waiting set; with
    ``hold_seconds``, nobody sends to this provider for that long (it said it is full, or
    it is unreachable: sending again at once would only be refused again)."""
    if not deadlines:
        return
    with redis_connection().pipeline() as pipe:
        pipe.zrem(_live_calls_key(provider), *map(str, deadlines))
        pipe.zadd(_capacity_key(provider, "waiting"), {str(k): v for k, v in deadlines.items()}, lt=True)
        if hold_seconds > 0:
            pipe.set(_capacity_key(provider, "hold"), 1, px=int(hold_seconds * 1000))
        pipe.execute()


def capacity_free(provider: str, call_ids: list[int]) -> None:
    """Free the lines of calls that were taken and will not be sent (or were refused for good)."""
    if call_ids:
        redis_connection().zrem(_live_calls_key(provider), *map(str, call_ids))


def capacity_forget(provider: str, call_ids: list[int]) -> None:
    """Take calls out of the provider's waiting set: settled elsewhere (the tick recorded
    them missed), nobody is to take them."""
    if call_ids:
        redis_connection().zrem(_capacity_key(provider, "waiting"), *map(str, call_ids))


@dataclass(frozen=True)
class CapacityCounts:
    live: int
    waiting: int


def capacity_counts(provider: str, *, now: float) -> CapacityCounts:
    return capacity_counts_of([provider], now=now)[provider]


def capacity_counts_of(providers: list[str], *, now: float) -> dict[str, CapacityCounts]:
    """Live calls (unexpired leases; one scored exactly ``now`` has run out) and calls
    waiting, per provider, in one round trip; raises RedisError."""
    with redis_connection().pipeline(transaction=False) as pipe:
        for provider in providers:
            pipe.zcount(_live_calls_key(provider), f"({now}", "+inf")
            pipe.zcard(_capacity_key(provider, "waiting"))
        counts = pipe.execute()
    return {
        provider: CapacityCounts(live=counts[2 * index], waiting=counts[2 * index + 1])
        for index, provider in enumerate(providers)
    }


def calls_waiting_for_capacity(provider: str, call_ids: list[int]) -> set[int]:
    """Which of these calls are in the provider's waiting set (they have no job, and need none)."""
    if not call_ids:
        return set()
    scores = redis_connection().zmscore(_capacity_key(provider, "waiting"), [str(pk) for pk in call_ids])
    return {pk for pk, score in zip(call_ids, scores, strict=True) if score is not None}


def dispatcher_claim(provider: str, token: str, *, ttl_seconds: float) -> bool:
    """Become the provider's dispatcher. Taking the lock also clears the "just enqueued"
    mark that dispatcher_ensure leaves: the job it marked is this one, now running. Left
    for its 5 s, the mark would outlive a dispatcher that ran and stopped within them, and
    calls admitted just after it stopped would wait with nobody to dispatch them until the
    next tick."""
    claimed = bool(
        redis_connection().set(
            _capacity_key(provider, "dispatcher"), token, nx=True, px=int(ttl_seconds * 1000)
        )
    )
    if claimed:
        redis_connection().delete(_capacity_key(provider, "dispatch-enqueued"))
    return claimed


def dispatcher_renew(provider: str, token: str, *, ttl_seconds: float) -> bool:
    return bool(
        redis_connection().eval(
            _RENEW_SCRIPT, 1, _capacity_key(provider, "dispatcher"), token, int(ttl_seconds * 1000)
        )
    )


def dispatcher_release(provider: str, token: str) -> None:
    redis_connection().eval(_UNLOCK_SCRIPT, 1, _capacity_key(provider, "dispatcher"), token)


def dispatcher_is_running(provider: str) -> bool:
    return bool(redis_connection().exists(_capacity_key(provider, "dispatcher")))


def dispatcher_ensure(provider: str) -> bool:
    """Start a dispatcher for the provider's waiting calls unless one runs or was just
    enqueued (a rush's hundred batch jobs would otherwise enqueue a hundred); True if this
    call enqueued one."""
    connection = redis_connection()
    if connection.exists(_capacity_key(provider, "dispatcher")):
        return False
    if not connection.set(_capacity_key(provider, "dispatch-enqueued"), 1, nx=True, px=5000):
        return False
    enqueue_dispatch(provider)
    return True


def enqueue_dispatch(provider: str) -> Job:
    """A job that dispatches the provider's waiting calls (one at a time runs: the others
    find its lock and return at once)."""
    # At the front: behind a rush's hundred batch jobs, the lines would stay idle until
    # every batch had been put to wait.
    return calls_queue().enqueue(
        DISPATCH_CALLS_JOB,
        provider,
        at_front=True,
        job_timeout=DISPATCHER_BUDGET_SECONDS + batch_job_timeout(1),
        description=f"Dispatch {provider}'s calls waiting for a free line",
        **job_options(),
    )


def live_call_ended(*, provider: str, call_id: int) -> None:
    """A call reached its outcome: its line is free for the next call waiting, and if calls
    wait with nobody dispatching them (the dispatcher's worker died), a dispatcher starts.

    Called after the commit that recorded the outcome. Redis being down costs nothing but
    the line's lease, which runs out by itself (PROVIDER_LIVE_CALL_TIMEOUT_SECONDS)."""
    if not provider_is_capped(provider):
        return
    try:
        waiting, dispatching = redis_connection().eval(
            _RELEASE_SCRIPT,
            3,
            _live_calls_key(provider),
            _capacity_key(provider, "waiting"),
            _capacity_key(provider, "dispatcher"),
            str(call_id),
        )
        if waiting and not dispatching:
            dispatcher_ensure(provider)
    except RedisError as exc:
        logger.warning("Call %s: its line stays taken until its lease runs out (%s)", call_id, exc)
