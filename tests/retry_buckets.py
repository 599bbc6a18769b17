"""What the tests ask Redis about outcome retries, gathered per instant (calls/retries.py)."""

from __future__ import annotations

from datetime import datetime

from rq.registry import ScheduledJobRegistry

from calls import queues, retry_buckets
from calls.models import Call


def gathered(bucket: int) -> set[int]:
    """The call ids waiting in a bucket for its job."""
    members = queues.redis_connection().smembers(retry_buckets.bucket_key(bucket, "calls"))
    return {int(member) for member in members}


def scheduled_jobs() -> list[str]:
    return ScheduledJobRegistry(queue=queues.calls_queue()).get_job_ids(cleanup=False)


def retry_release(retry: Call) -> tuple[str, datetime | None]:
    """The job that will release ``retry`` (its row names it, its bucket holds it) and when
    RQ's scheduler releases that job (None if it is not scheduled)."""
    bucket = retry_buckets.retry_bucket(retry.scheduled_for)
    job_id = retry_buckets.retry_bucket_job_id(bucket)
    assert retry.job_id == job_id
    assert retry.pk in gathered(bucket)
    registry = ScheduledJobRegistry(queue=queues.calls_queue())
    if job_id not in registry.get_job_ids(cleanup=False):
        return job_id, None
    return job_id, registry.get_scheduled_time(job_id)
