"""Outcome retries, gathered in Redis per instant, until their job releases them
(calls/retries.py). Split from calls/queues.py, whose connection and job options it uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from . import queues

# A webhook's retry does not get a job of its own: its call id joins the set of its bucket
# (its time rounded up to RETRY_GATHER_SECONDS), and the first retry of a bucket schedules
# the one job that releases them all at the bucket's time (calls/retries.py). Per bucket:
#   calls       set of the call ids gathered;
#   job         a marker: a job is scheduled and has not run yet;
#   generation  how many jobs the bucket has had (a retry added after its job ran gets a
#               new one, under a new name: the first cannot be rescheduled while it runs).
PLACE_RETRIES_JOB = "calls.jobs.place_retries"
RETRY_JOB_PREFIX = "place-retries-"
# A bucket's calls and generation outlive any job that may still pop them by far.
RETRY_BUCKET_TTL_SECONDS = 86_400
# The marker outlives the bucket's time by this much: long enough for the job to run, short
# enough that a marker left by a scheduling that failed half-way blocks nobody for long.
RETRY_MARKER_MARGIN_SECONDS = 60
# Call ids per SADD: Lua's unpack() fails beyond about 8,000 values, and a sweep of stuck
# calls after an outage may retry tens of thousands in one bucket.
GATHER_CHUNK = 1_000

# Add call ids (ARGV[3..]) to a bucket; if no job is scheduled for it, mark one (for
# ARGV[2] seconds) and return the bucket's new generation, else 0. Atomic with
# _TAKE_RETRIES_SCRIPT: a retry is either in the set a job pops, or it finds no marker and
# schedules a job of its own.
_GATHER_RETRIES_SCRIPT = """
redis.call('SADD', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if not redis.call('SET', KEYS[2], 1, 'NX', 'EX', ARGV[2]) then return 0 end
local generation = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return generation
"""

# A bucket's job runs: the marker first (a retry added from now on schedules a new job),
# then all the call ids, taken out.
_TAKE_RETRIES_SCRIPT = """
redis.call('DEL', KEYS[2])
local ids = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return ids
"""


def retry_bucket(due: datetime) -> int:
    """The bucket a retry due at ``due`` is released with: the epoch second, a multiple of
    RETRY_GATHER_SECONDS, at or after ``due`` (never before: the call would not be due)."""
    gather = settings.RETRY_GATHER_SECONDS
    second = int(due.timestamp())
    if second < due.timestamp():
        second += 1
    return -(-second // gather) * gather


def retry_bucket_job_id(bucket: int, *, generation: int = 1) -> str:
    """The bucket's job: its first is named after the bucket alone (the name its retries'
    rows carry), any later one (a retry added after the first ran) after its generation."""
    name = f"{RETRY_JOB_PREFIX}{bucket}"
    return name if generation == 1 else f"{name}-{generation}"


def bucket_key(bucket: int, part: str) -> str:
    return f"relevel:retries:{bucket}:{part}"


def retries_waiting_for_later_job(call_jobs: dict[int, str]) -> set[int]:
    """Of these calls {call id: the job its row names}, the retries still in their bucket
    whose row names the bucket's first job while a later job of the bucket will still run:
    the first ran, and these were gathered after it (a webhook's a moment late, a sweep's
    next page), so the second takes them. Their rows are renamed only when it does, so the
    stranded sweep asks here before it takes such a call for lost. One round trip, two if
    any bucket had a later job."""
    by_bucket: dict[int, list[int]] = {}
    for call_id, job_id in call_jobs.items():
        bucket = job_id.removeprefix(RETRY_JOB_PREFIX)
        if bucket != job_id and bucket.isdigit():
            by_bucket.setdefault(int(bucket), []).append(call_id)
    if not by_bucket:
        return set()
    with queues.redis_connection().pipeline(transaction=False) as pipe:
        for bucket, call_ids in by_bucket.items():
            pipe.get(bucket_key(bucket, "generation"))
            pipe.smismember(bucket_key(bucket, "calls"), call_ids)
        answers = pipe.execute()
    waiting: dict[str, list[int]] = {}  # the bucket's latest job -> its calls still gathered
    for (bucket, call_ids), generation, gathered in zip(
        by_bucket.items(), answers[::2], answers[1::2], strict=True
    ):
        if generation is not None and int(generation) > 1:
            latest = retry_bucket_job_id(bucket, generation=int(generation))
            waiting[latest] = [call_id for call_id, member in zip(call_ids, gathered, strict=True) if member]
    live = queues.live_job_ids(sorted(waiting))
    return {call_id for job_id, call_ids in waiting.items() if job_id in live for call_id in call_ids}


def retries_gather(call_ids: list[int], *, bucket: int, now: datetime) -> str | None:
    """Add committed retries to their bucket and, if this is the first since the bucket's
    job was last scheduled (or ran), schedule that job for the bucket's time (at once if it
    has come). Returns the job id scheduled, None if one was already waiting. One round
    trip, two for the first retry of a bucket, one more for over GATHER_CHUNK calls.
    Raises RedisError; a job that could not be scheduled leaves no marker behind, if Redis
    lets it go. Chunks that went in before a failure wait in the set with no job: the tick's
    stranded sweep finds their calls, and a job that takes them later finds them placed."""
    if not call_ids:
        return None
    connection = queues.redis_connection()
    at = datetime.fromtimestamp(bucket, tz=UTC)
    ahead = max(0, int((at - now).total_seconds()))
    calls_key, marker = bucket_key(bucket, "calls"), bucket_key(bucket, "job")
    # All but the last chunk go in first, the last with the script: a job that takes the
    # bucket in between places the early ones, and the script then finds no marker and
    # schedules a job for the rest.
    head, last = call_ids[:-GATHER_CHUNK], call_ids[-GATHER_CHUNK:]
    if head:
        with connection.pipeline(transaction=False) as pipe:
            for start in range(0, len(head), GATHER_CHUNK):
                pipe.sadd(calls_key, *head[start : start + GATHER_CHUNK])
            pipe.expire(calls_key, ahead + RETRY_BUCKET_TTL_SECONDS)
            pipe.execute()
    generation = connection.eval(
        _GATHER_RETRIES_SCRIPT,
        3,
        calls_key,
        marker,
        bucket_key(bucket, "generation"),
        ahead + RETRY_BUCKET_TTL_SECONDS,
        ahead + RETRY_MARKER_MARGIN_SECONDS,
        *last,
    )
    if not generation:
        return None
    job_id = retry_bucket_job_id(bucket, generation=int(generation))
    try:
        _schedule_retries_job(bucket, job_id=job_id, at=at if at > now else None)
    except RedisError:
        # Without the marker, the bucket's next retry schedules the job; if even this fails
        # the marker runs out by itself, and the tick's stranded sweep finds the calls.
        try:
            connection.delete(marker)
        except RedisError:
            pass
        raise
    return job_id


def _schedule_retries_job(bucket: int, *, job_id: str, at: datetime | None) -> None:
    from .job_descriptions import retries_job_description

    fields: dict[str, Any] = dict(
        args=(bucket,),
        job_id=job_id,
        # It places CALL_BATCH_SIZE calls itself and hands any more to batch jobs.
        timeout=queues.batch_job_timeout(settings.CALL_BATCH_SIZE),
        description=retries_job_description(datetime.fromtimestamp(bucket, tz=UTC)),
        # A try that failed put its calls back (retries.retries_release): the next takes them.
        retry=queues.rq_retry(list(settings.CALL_PLACE_RETRY_INTERVALS)),
        **queues.job_options(),
    )
    queues.enqueue_jobs(PLACE_RETRIES_JOB, [(fields, at)])


def retries_put_back(bucket: int, call_ids: list[int]) -> None:
    """Return call ids a bucket's job took but could not place (it failed): its next try
    (RQ retries it) or the bucket's next job takes them again. Raises RedisError."""
    if call_ids:
        key = bucket_key(bucket, "calls")
        with queues.redis_connection().pipeline() as pipe:
            pipe.sadd(key, *call_ids)
            pipe.expire(key, RETRY_BUCKET_TTL_SECONDS)
            pipe.execute()


def retries_take(bucket: int) -> list[int]:
    """The bucket's call ids, taken out of Redis (its job runs now), in id order."""
    ids = queues.redis_connection().eval(
        _TAKE_RETRIES_SCRIPT, 2, bucket_key(bucket, "calls"), bucket_key(bucket, "job")
    )
    return sorted(int(call_id) for call_id in ids)
