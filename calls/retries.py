"""Outcome retries released in batches at their time, as the tick releases first attempts.

A webhook's retry (outcomes.call_schedule_retry) joins the Redis bucket of its time rounded
up to RETRY_GATHER_SECONDS, and the bucket's first retry schedules one job for that instant
(retry_buckets.retries_gather). When it runs, the job takes every call id of the bucket out of
Redis and places them as a batch (dispatch.calls_dispatch_batch): one take, one round of
dial-time checks, one read of the agents' variables and one write of the answers for up to
CALL_BATCH_SIZE retries, where a job per retry did each of them once per call.

Nothing here needs to be exact for a call to be placed once: a call is dialed only by the
worker that moves it queued -> dialing under its row lock (placement.take_calls_for_dialing),
and a call whose bucket Redis lost is found by the tick's stranded sweep, because its row
names the bucket's job (sweeps.calls_reenqueue_stranded).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from redis.exceptions import RedisError

from . import bulk, dispatch, queues, retry_buckets
from .job_descriptions import retry_batch_job_description
from .models import Call, CallStatus

logger = logging.getLogger("relevel.calls")


def retries_release(*, bucket: int, job_id: str | None = None) -> dict[str, int]:
    """Place the retries gathered in ``bucket``: the first CALL_BATCH_SIZE in this job, the
    others handed to batch jobs of that size so that other workers place them at the same
    time. Returns what happened, counted.

    ``job_id``: this job's own id. The rows name the bucket's first job; a call carried by
    another job (a later generation of the bucket, or a batch this one hands on) is renamed
    first, so that the sweeps see it as live while that job is."""
    call_ids = retry_buckets.retries_take(bucket)
    if not call_ids:
        return {}
    try:
        return _release(bucket, call_ids, job_id=job_id)
    except BaseException:
        # (RQ's timeout too.) Back in the bucket for this job's next try, which RQ makes;
        # a call already dialed is not dialed again (its row is no longer queued).
        try:
            retry_buckets.retries_put_back(bucket, call_ids)
        except RedisError:
            logger.error("Redis unreachable: %s retries will be enqueued by a tick", len(call_ids))
        raise


def _release(bucket: int, call_ids: list[int], *, job_id: str | None) -> dict[str, int]:
    size = settings.CALL_BATCH_SIZE
    own, rest = call_ids[:size], call_ids[size:]
    batches = {
        queues.batch_job_id(rest[start]): rest[start : start + size] for start in range(0, len(rest), size)
    }
    later_job = job_id if job_id and job_id != retry_buckets.retry_bucket_job_id(bucket) else None
    carriers: dict[int, str] = dict.fromkeys(own, later_job) if later_job else {}
    carriers.update({pk: name for name, pks in batches.items() for pk in pks})
    if carriers:
        queued = set(
            Call.objects.filter(pk__in=list(carriers), status=CallStatus.QUEUED).values_list("pk", flat=True)
        )
        bulk.update_column(Call, "job_id", {pk: name for pk, name in carriers.items() if pk in queued})
    if batches:
        try:
            queues.enqueue_call_batches(batches, describe=retry_batch_job_description)
        except RedisError as exc:
            # Their rows name jobs that never were: the tick's stranded sweep enqueues them.
            logger.error(
                "Redis unreachable (%s): %s retries will be enqueued by a tick", type(exc).__name__, len(rest)
            )
    counts = dispatch.calls_dispatch_batch(call_ids=own)
    if batches:
        counts = {**counts, "handed_on": len(rest)}
    logger.info(
        "Released %s retries due at %s: %s",
        len(call_ids),
        f"{datetime.fromtimestamp(bucket, tz=UTC):%Y-%m-%d %H:%M:%S} UTC",
        counts,
    )
    return counts
