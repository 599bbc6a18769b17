"""RQ entry points: thin, take ids, call a service."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from rq import get_current_job

from . import analysis, dispatch, retention, retries, scheduling
from .providers import provider_named


def job(func: Callable[..., Any]) -> Callable[..., Any]:
    """Treat each job as Django treats a request: drop a database connection that is broken
    (a PostgreSQL restart, failover, idle kill) or older than CONN_MAX_AGE, before and after.
    A worker runs for days on one connection; without this, one restart of the database
    would fail every later job until someone restarted the workers."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


@job
def schedule_calls() -> str:
    """The scheduler tick (cron */5 by default, or a manual trigger)."""
    return scheduling.calls_schedule_due().line()


@job
def place_call(call_id: int) -> str:
    job = get_current_job()
    # RQ counts down retries_left as it re-runs a job after an exception; on the last run
    # a transient error is recorded as the call's outcome instead of raised.
    is_last_try = job is None or not job.retries_left
    return dispatch.call_dispatch_one(call_id=call_id, is_last_try=is_last_try)


@job
def place_calls(call_ids: list[int]) -> dict[str, int]:
    """A tick's batch of first attempts: placed concurrently (placement.calls_place_batch), or
    put to wait for a free line if the provider is capped (dispatch)."""
    return dispatch.calls_dispatch_batch(call_ids=call_ids)


@job
def place_retries(bucket: int) -> dict[str, int]:
    """The outcome retries gathered for one instant (calls.retries), placed as a batch."""
    current = get_current_job()
    return retries.retries_release(bucket=bucket, job_id=current.id if current else None)


@job
def dispatch_calls(provider: str) -> dict[str, int]:
    """Send a capped provider's waiting calls as lines come free (see calls.dispatch)."""
    return dispatch.calls_dispatch_waiting(provider=provider)


@job
def analyse_calls(call_ids: list[int]) -> dict[str, int]:
    """Ended calls' results and what was heard in them, after the webhook (calls.analysis)."""
    return analysis.calls_analyse(call_ids=call_ids)


@job
def analyse_noted_calls() -> str:
    """ANALYSIS_CRON: hand the calls the webhooks noted to workers in batches."""
    return analysis.noted_calls_dispatch()


@job
def reschedule_calendars() -> str:
    """Everyone's next call moved after the policy's days off changed (users.calendar)."""
    from users.calendar import users_calendar_reschedule

    return f"{users_calendar_reschedule()} next calls moved"


def simulator_send_webhook(payload: dict) -> int:
    """The simulator's delayed status callback to our own webhook."""
    return provider_named("simulator").send_webhook(payload)


@job
def prune_data() -> str:
    """The nightly retention prune (RETENTION_CRON, calls.retention)."""
    return retention.data_prune().line()
