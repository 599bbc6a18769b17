"""What the queues dashboard says a job is for (RQ's job ``description``): the call, its
user (id and the phone's last four digits, never the whole number) and its attempt.

RQ's worker logs the description of every job it starts, so it holds nothing the log
may not: an id and four digits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def _last_four(phone: str) -> str:
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return f"…{digits[-4:]}" if digits else "no phone"


def call_job_description(call_id: int) -> str:
    """ "Call 123 for user 45 (…3210), attempt 2 of 3": one query, when the job is enqueued."""
    from .models import Call
    from .policy import policy_current

    call = (
        Call.objects.filter(pk=call_id)
        .values("attempt", "manual", "to_number", "user_id", "user__max_retries")
        .first()
    )
    if call is None:
        return f"Call {call_id}"
    who = f"for user {call['user_id']} ({_last_four(call['to_number'])})"
    if call["manual"]:
        return f"Manual call {call_id} {who}"
    retries = call["user__max_retries"]
    attempts = 1 + (retries if retries is not None else policy_current().max_retries)
    return f"Call {call_id} {who}, attempt {call['attempt']} of {max(attempts, call['attempt'])}"


def batch_job_description(call_ids: Sequence[int]) -> str:
    """ "Batch of 100 first attempts from call 123" (its first call, which names the job)."""
    count = len(call_ids)
    return f"Batch of {count} first attempt{'s' if count != 1 else ''} from call {call_ids[0]}"


def retry_batch_job_description(call_ids: Sequence[int]) -> str:
    """ "Batch of 100 retries from call 123": the calls a retry bucket's job hands on."""
    count = len(call_ids)
    return f"Batch of {count} retr{'ies' if count != 1 else 'y'} from call {call_ids[0]}"


def retries_job_description(at: datetime) -> str:
    """ "Outcome retries due at 2026-11-28 15:35:05 UTC": which calls, only the job knows
    when it runs (it takes them out of its bucket)."""
    return f"Outcome retries due at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
