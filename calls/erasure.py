"""The calls' part of forgetting a person (users.erasure.forget_person).

The call rows stay, for counting (the dashboard's rollups, the forecast's history), but
carry nothing that identifies the person: no number, no payloads, transcript or recording,
no result's summary, turns, transcript, extracted data or call-back note, no provider id;
errors that quoted the number, the name or the e-mail address have it replaced. Queued
calls are canceled, and the RQ jobs of every one of the person's calls (whose descriptions
hold the number's last four digits) are deleted from Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Value
from django.db.models.functions import Replace

from . import queues
from .models import RESULT_CONTENT_ERASED, Call, CallResult, CallStatus
from .selectors import ANY_KIND

logger = logging.getLogger("relevel.calls")

ERASED = "[erased]"
FORGOTTEN_REASON = "The person was forgotten (erasure)."
# A shorter name would be replaced inside ordinary words of an error ("Al" in "Already").
MIN_SCRUBBED_LENGTH = 3


def call_jobs_delete(*, call_ids: Iterable[int]) -> int:
    """Delete the RQ jobs ``call-<id>`` (queued, scheduled, finished or failed) of these
    calls; returns how many there were. A job a worker is running is left to finish: its
    call is no longer queued, so it dials nothing."""
    queue = queues.calls_queue()
    ids = [queues.call_job_id(call_id) for call_id in call_ids]
    deleted = 0
    for start in range(0, len(ids), 500):
        for job in queue.job_class.fetch_many(ids[start : start + 500], connection=queue.connection):
            if job is not None:
                job.delete()
                deleted += 1
    return deleted


def calls_erase_person(*, user_id: int, identifiers: Iterable[str], now: datetime) -> int:
    """Cancel the person's queued calls and strip every call of theirs of what identifies
    them (``identifiers``: their phone, name, e-mail). Runs in the caller's transaction;
    the Redis jobs go when it commits. Returns how many calls were changed."""
    # ANY_KIND: the person's calls from the user's two indexes; by user_id alone each of the
    # statements below was a scan of every call (281 ms each on 2,000,000 calls).
    calls = Call.objects.filter(ANY_KIND, user_id=user_id)
    calls.filter(status=CallStatus.QUEUED).update(
        status=CallStatus.CANCELED, error=FORGOTTEN_REASON, last_status_at=now, completed_at=now
    )
    for value in sorted(
        {v for v in identifiers if v and len(v) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True
    ):
        calls.filter(error__contains=value).update(error=Replace("error", Value(value), Value(ERASED)))
    changed = calls.update(
        to_number="", provider_payloads=[], transcript="", recording_url="", provider_call_id=None
    )
    # Their results' words go too; sentiment, cost and flags stay for the dashboard's counts.
    CallResult.objects.filter(call__in=calls.values("pk")).update(**RESULT_CONTENT_ERASED)
    call_ids = list(calls.values_list("pk", flat=True))
    queues.on_commit(lambda: call_jobs_delete(call_ids=call_ids))
    logger.info("User %s forgotten: %s call(s) stripped", user_id, changed)
    return changed
