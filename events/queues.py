"""Everything the events app says to Redis and RQ: the events queue and its connection,
its jobs (events_enqueue), the coalesced requests for the pump's jobs (events.pump) and an
endpoint's back-off.

Asking is coalesced: a key in Redis set with NX says "a job for this is queued", so a rush
of ten thousand commits enqueues a handful of jobs, not ten thousand. The job deletes its
key (pump_started) before it looks at the database, so whatever commits after that look
asks for (and gets) a job of its own. Jobs by dotted path: nothing here imports the code
the jobs run, which asks for jobs itself.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import lru_cache

import django_rq
from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

logger = logging.getLogger("relevel.events")

# The pump's jobs (events.pump): the fan-out of new events, and one endpoint's deliveries.
FAN_OUT_JOB = "events.jobs.fan_out_pending"
ENDPOINT_JOB = "events.jobs.deliver_endpoint"
FAN_OUT_KEY = "fan-out"
# How long a "job queued" key lives if its job is lost with it still set (a failed
# enqueue deletes it at once): past this, the next commit or the sweep asks again.
QUEUED_KEY_SECONDS = 60


def _queued_key(name: str) -> str:
    return f"relevel:events:queued:{name}"


def _backoff_key(endpoint_id: int) -> str:
    return f"relevel:events:backoff:{endpoint_id}"


# The path before the pump: one job creates and sends a list of events' deliveries.
DELIVER_EVENTS_JOB = "events.jobs.deliver_events"


@lru_cache(maxsize=4)
def _redis_connection(url: str, timeout: float) -> Redis:
    # One pool per process, as calls.queues keeps: django-rq builds a new pool (a new TCP
    # connection) on every get_queue(), which would cost the webhook a connect per event.
    return Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
    )


def events_redis() -> Redis:
    """The events queue's Redis connection, without building the queue (an RQ Queue object
    costs more CPU than the one command a commit sends: pump_request)."""
    return _redis_connection(settings.RQ_QUEUES[settings.EVENTS_QUEUE]["URL"], settings.REDIS_SOCKET_TIMEOUT)


def events_queue() -> Queue:
    """The events queue (commit_mode "auto": callers enqueue from on_commit themselves)."""
    return django_rq.get_queue(settings.EVENTS_QUEUE, commit_mode="auto", connection=events_redis())


def events_enqueue(func: str, *args: object, job_id: str | None = None, at: datetime | None = None) -> None:
    """Enqueue ``func(*args)`` on the events queue, or schedule it for ``at``, with the
    results kept as every job's are. Raises RedisError: the caller says what the sweep
    will do instead."""
    options: dict = dict(
        job_id=job_id, result_ttl=settings.JOB_RESULT_TTL, failure_ttl=settings.JOB_FAILURE_TTL
    )
    if at is None:
        events_queue().enqueue(func, *args, **options)
    else:
        events_queue().enqueue_at(at, func, *args, **options)


def enqueue_fan_out(event_ids: list[int]) -> None:
    """Enqueue one job that creates and sends these events' deliveries one by one (the
    path before events.pump, kept for jobs already queued and the benchmark's comparison).
    Redis down: the sweep
    finds the events within a minute or two (EVENTS_SWEEP_CRON) and sends them."""
    try:
        events_enqueue(DELIVER_EVENTS_JOB, event_ids, job_id=f"events-{event_ids[0]}-{len(event_ids)}")
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): %s event(s) will be sent by the sweep",
            type(exc).__name__,
            len(event_ids),
        )


def pump_request(name: str, func: str, *args: object) -> bool:
    """Enqueue ``func(*args)`` unless a job for ``name`` is queued already; True if
    enqueued. Redis down: nothing (the sweep asks again once it is back)."""
    redis = events_redis()
    key = _queued_key(name)
    try:
        # The queue is built only when a job is enqueued: most commits stop at this SET.
        # Its value is when it was asked for: the job gathers from then (pump_started).
        if not redis.set(key, repr(time.time()), nx=True, ex=QUEUED_KEY_SECONDS):
            return False
        try:
            events_enqueue(func, *args)
        except RedisError:
            redis.delete(key)
            raise
    except RedisError as exc:
        logger.error("Redis unreachable (%s): the sweep will send %s's events", type(exc).__name__, name)
        return False
    return True


def pump_started(name: str) -> None:
    """A job asked for under ``name`` begins: later commits must ask for a new one.

    It first lets EVENTS_GATHER_SECONDS pass since the commit that asked for it: the
    commits of those moments find the key still set and ride along, instead of each
    enqueueing a job of its own once the last one started. Webhooks coming steadily (not
    in one burst) would otherwise cost a fan-out job and an endpoint job per commit. A job
    that starts later than that (a busy queue) does not wait."""
    redis = events_redis()
    key = _queued_key(name)
    try:
        asked_at = redis.get(key)
        if asked_at is not None:
            wait = float(asked_at) + settings.EVENTS_GATHER_SECONDS - time.time()
            if wait > 0:
                time.sleep(min(wait, settings.EVENTS_GATHER_SECONDS))
        redis.delete(key)
    except (RedisError, ValueError):
        pass  # the key expires by itself


def fan_out_request() -> bool:
    """The outbox's one call per commit: have the new events fanned out and sent."""
    return pump_request(FAN_OUT_KEY, FAN_OUT_JOB)


def endpoint_request(endpoint_id: int) -> bool:
    return pump_request(f"endpoint-{endpoint_id}", ENDPOINT_JOB, endpoint_id)


def endpoint_back_off_set(endpoint_id: int, *, until: float, seconds: int) -> None:
    """Leave the endpoint alone until ``until`` (epoch seconds, the clock the jobs read);
    the key expires after ``seconds``, which only tidies up. Raises RedisError."""
    events_redis().set(_backoff_key(endpoint_id), until, ex=seconds)


def endpoint_back_off_until(endpoint_id: int) -> float | None:
    """Until when the endpoint is left alone, if it is; None if Redis does not answer."""
    try:
        until = events_redis().get(_backoff_key(endpoint_id))
    except RedisError:
        return None
    return float(until) if until is not None else None
