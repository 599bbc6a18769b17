"""The tick's repair sweeps: calls that earlier ticks, dead workers or lost webhooks left
without a job or without a final state."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef

from . import bulk, capacity, days, queues, retry_buckets, selectors
from .batching import enqueue_batches
from .dispatch import calls_mark_missed_for_capacity
from .models import TERMINAL_STATUSES, Call, CallResult, CallStatus
from .outcomes import calls_schedule_retries, humanize_delay
from .policy import policy_current
from .slots import first_attempt_release, zone_or_none

logger = logging.getLogger("relevel.calls")
User = get_user_model()


def dispatchers_ensure(*, now: datetime, paused: bool = False) -> None:
    """Calls waiting for a free line with nobody dispatching them (its worker was killed,
    and no webhook or batch came since to start another; or calls were paused, which stops
    the dispatchers): one starts now, unless calls are paused."""
    if paused:
        return
    for provider in capacity.capped_providers():
        waiting = capacity.capacity_counts(provider, now=now.timestamp()).waiting
        if waiting and capacity.dispatcher_ensure(provider):
            logger.warning("Calls wait for a free %s line and no dispatcher ran: one is started", provider)


# Stuck calls (unconfirmed, or without a final status) failed per page and transaction.
STUCK_PAGE_SIZE = 2000
# Queued calls the stranded sweep reads per page: one query and one or two Redis round trips.
STRANDED_PAGE_SIZE = 5000
STRANDED_COLUMNS = ("id", "job_id", "scheduled_for", "attempt", "user_id", "manual")


def calls_reenqueue_stranded(
    *, now: datetime, window: timedelta, page_size: int = STRANDED_PAGE_SIZE, paused: bool = False
) -> tuple[int, int]:
    """Enqueue again the queued calls whose job will never run: Redis was down during the
    claim or lost its data, or the batch job carrying the call died before reaching it.
    Returns (re-enqueued, expired).

    Every queued call due before the stranded threshold is looked at, page by page in
    (scheduled_for, id) order, so a rush of any size is repaired in one tick: calls whose
    job is still live are skipped without holding up the ones after them. A call is left
    alone while its batch job or its own job is still live (a long backlog), and a race with
    a worker is harmless (taking a call is conditional on it being queued). A call whose
    window closed meanwhile is not placed late (at night, after a long outage): it is
    marked missed, saying why, whether its job was lost or is still waiting. While calls are
    paused nothing is enqueued again (workers would only hold it): calls are only expired.
    """
    before = now - timedelta(seconds=settings.CALL_STRANDED_AFTER_SECONDS)
    reenqueued = expired = 0
    after: tuple[datetime, int] | None = None
    while True:
        page = list(
            selectors.calls_queued_before(before=before, after=after).values_list(*STRANDED_COLUMNS)[
                :page_size
            ]
        )
        if not page:
            break
        page_reenqueued, page_expired = _repair_stranded_page(page, now=now, window=window, paused=paused)
        reenqueued += page_reenqueued
        expired += page_expired
        if len(page) < page_size:
            break
        last_id, _, last_due, *_ = page[-1]
        after = (last_due, last_id)
    if reenqueued:
        logger.warning("%s queued calls had no live job in Redis: enqueued again", reenqueued)
    return reenqueued, expired


def _repair_stranded_page(
    page: list[tuple[int, str, datetime, int, int, bool]], *, now: datetime, window: timedelta, paused: bool
) -> tuple[int, int]:
    live = _live_calls(page)
    # A call waiting for a free line has no job and needs none: the dispatcher sends it, or
    # records it missed for capacity once its window closes.
    waiting = _waiting_for_capacity([call_id for call_id, *_ in page if call_id not in live])
    lost: list[int] = []
    late: list[int] = []
    late_for_capacity: dict[str, list[int]] = defaultdict(list)
    first_attempts: list[tuple[int, int, datetime]] = []
    retries: list[int] = []
    settled_waiting: dict[str, list[int]] = defaultdict(list)
    for call_id, _, scheduled_for, attempt, user_id, manual in page:
        is_live = call_id in live
        if call_id in waiting:
            if now < scheduled_for + window:
                continue
            # Recorded missed below: out of the waiting set too, where nobody would take it.
            settled_waiting[waiting[call_id]].append(call_id)
            if not paused:
                late_for_capacity[waiting[call_id]].append(call_id)
                continue
        if now >= scheduled_for + window:
            # Past its window a call is never dialed, live job or not (the worker would mark
            # it missed anyway): a job nobody runs (no worker, or none running RQ's scheduler
            # to release a delayed retry) must not keep it queued for ever.
            (late if is_live else lost).append(call_id)
        elif is_live or paused:
            continue
        elif attempt == 1 and not manual:
            first_attempts.append((call_id, user_id, scheduled_for))
        else:
            # Retries, and manual calls (attempt 1 too, but never part of a spread slot:
            # call now means now).
            retries.append(call_id)
    expired = _mark_missed(
        lost,
        now=now,
        error=(
            "Calls were paused until its window closed."
            if paused
            else "Its job was lost (Redis down or flushed) and its window closed before a tick found it."
        ),
    )
    expired += _mark_missed(
        late,
        now=now,
        error=(
            "Calls were paused until its window closed."
            if paused
            else "Its window closed while its job was still waiting: no worker took it in time (workers "
            "down or behind, or none running RQ's scheduler, which releases delayed retries)."
        ),
    )
    for provider, call_ids in late_for_capacity.items():
        expired += calls_mark_missed_for_capacity(call_ids, provider=provider)
    for provider, call_ids in settled_waiting.items():
        capacity.capacity_forget(provider, call_ids)
    reenqueued = _reenqueue_in_batches(first_attempts, now=now)
    # Retries and manual calls travel alone (call-<pk>), at once.
    reenqueued += sum(queues.enqueue_place_call(call_id) for call_id in retries)
    return reenqueued, expired


def _waiting_for_capacity(call_ids: list[int]) -> dict[int, str]:
    """Which of these calls wait in a capped provider's waiting set: {call id: provider}."""
    waiting: dict[int, str] = {}
    for provider in capacity.capped_providers():
        waiting.update(dict.fromkeys(capacity.calls_waiting_for_capacity(provider, call_ids), provider))
    return waiting


def _live_calls(page: list[tuple[int, str, datetime, int, int, bool]]) -> set[int]:
    """The calls of the page that a live job will still place. Their batch jobs are asked
    first, a few dozen for a page of thousands; a retry whose row names its bucket's first
    job is live too if a later job of the bucket will take it
    (retry_buckets.retries_waiting_for_later_job); only the calls whose job is over (or
    that have none) are asked about a job of their own (call-<pk>: a retry, or a call its
    batch handed on after a transient error)."""
    batch_ids = sorted({job_id for _, job_id, *_ in page if job_id})
    live_batches = queues.live_job_ids(batch_ids)
    live = {call_id for call_id, job_id, *_ in page if job_id in live_batches}
    live |= retry_buckets.retries_waiting_for_later_job(
        {call_id: job_id for call_id, job_id, *_ in page if job_id and call_id not in live}
    )
    own = [queues.call_job_id(call_id) for call_id, *_ in page if call_id not in live]
    live_own = queues.live_job_ids(own)
    live.update(call_id for call_id, *_ in page if queues.call_job_id(call_id) in live_own)
    return live


def _mark_missed(call_ids: list[int], *, now: datetime, error: str) -> int:
    """Conditional on the call still being queued: a worker that took it meanwhile wins."""
    return days.calls_end(
        Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED),
        status=CallStatus.MISSED,
        error=error,
        last_status_at=now,
        completed_at=now,
    )


def _reenqueue_in_batches(calls: list[tuple[int, int, datetime]], *, now: datetime) -> int:
    """First attempts (call id, user id, slot) go back in batch jobs, as the tick sent them: a
    rush of them is a few hundred jobs in one Redis round trip, not one job each, and in a
    spread slot each waits for its step of the spread if that is still to come. The rows
    name their new job first, so the next tick sees these calls as live (or, if the enqueue
    fails, as still stranded)."""
    size = settings.CALL_BATCH_SIZE
    spread = settings.CALL_SPREAD_MINUTES
    rules = policy_current()
    # Only a spread can still put a stranded call's release ahead (they are all past their
    # slot); its step depends on the user's zone (the calling hours it must keep inside).
    zones = (
        dict(User.objects.filter(pk__in={user_id for _, user_id, _ in calls}).values_list("pk", "local_tz"))
        if spread
        else {}
    )
    by_release: dict[datetime | None, list[int]] = {}
    for call_id, user_id, slot in calls:
        tz = zone_or_none(zones.get(user_id))
        release = (
            first_attempt_release(
                slot=slot,
                user_id=user_id,
                tz=tz,
                spread_minutes=spread,
                window=rules.window,
                calling_hours=rules.calling_hours,
            )
            if tz is not None
            else None
        )
        by_release.setdefault(release if release is not None and release > now else None, []).append(call_id)
    batches: dict[str, list[int]] = {}
    at: dict[str, datetime] = {}
    for release, call_ids in by_release.items():
        for start in range(0, len(call_ids), size):
            job_id = queues.requeued_batch_job_id(call_ids[start], at=now)
            batches[job_id] = call_ids[start : start + size]
            if release is not None:
                at[job_id] = release
    bulk.update_column(Call, "job_id", {pk: job_id for job_id, chunk in batches.items() for pk in chunk})
    return enqueue_batches(batches, at=at)


def calls_fail_stuck(*, now: datetime, page_size: int = STUCK_PAGE_SIZE) -> tuple[int, int]:
    """Give a final state to sent calls that will never get one by themselves: those the
    provider never confirmed, and those whose final webhook never came. Returns (unconfirmed
    failed, silent failed). Every such call is failed in this tick, however many (a
    provider's outage leaves a whole rush unconfirmed), page by page."""
    unconfirmed = _fail_calls(
        selectors.calls_unconfirmed_since,
        timeout=timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS),
        now=now,
        page_size=page_size,
        error=(
            "Sent, but neither the provider's answer nor its webhook arrived within "
            f"{humanize_delay(settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS)}."
        ),
    )
    silent = _fail_calls(
        selectors.calls_without_outcome_since,
        timeout=timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS),
        now=now,
        page_size=page_size,
        error=(
            "No final status from the provider within "
            f"{humanize_delay(settings.CALL_OUTCOME_TIMEOUT_SECONDS)} (a lost webhook)."
        ),
    )
    return unconfirmed, silent


def calls_unconfirm_abandoned(*, now: datetime, page_size: int = 1000) -> int:
    """Calls left ``dialing`` by a job that is over (its worker was killed mid-request):
    whether the provider got the request is unknown, so they are never failed and retried
    at once (a second ring) but made ``unconfirmed``, to wait for a webhook like any call
    whose answer was lost. A call whose job is still running (waiting in a slow batch) is
    left alone, however long it takes; keyset pages, so such calls never hide the
    abandoned ones behind them."""
    before = now - timedelta(seconds=settings.CALL_DIALING_TIMEOUT_SECONDS)
    count, after_id, reaped = 0, 0, False
    while True:
        page = list(
            selectors.calls_dialing_since(before=before, after_id=after_id).values_list("id", "job_id")[
                :page_size
            ]
        )
        if not page:
            break
        if not reaped:
            queues.reap_abandoned_jobs(now=now)
            reaped = True
        job_ids = {queues.call_job_id(call_id) for call_id, _ in page} | {j for _, j in page if j}
        live = queues.live_job_ids(sorted(job_ids))
        abandoned = [
            call_id
            for call_id, job_id in page
            if job_id not in live and queues.call_job_id(call_id) not in live
        ]
        count += Call.objects.filter(pk__in=abandoned, status=CallStatus.DIALING).update(
            status=CallStatus.UNCONFIRMED,
            error="Its worker stopped while dialing: the provider may or may not have placed it.",
            last_status_at=now,
        )
        if len(page) < page_size:
            break
        after_id = page[-1][0]
    if count:
        logger.warning("%s calls were left dialing by a worker that stopped: now unconfirmed", count)
    return count


# The columns of a stuck call that failing it and scheduling its retry read.
_STUCK_COLUMNS = ("id", "status", "last_status_at", "user_id", "attempt", "local_date", "manual")
_STUCK_COLUMNS += ("agent_id", "variant_id", "provider")


def _fail_calls(select, *, timeout: timedelta, now: datetime, page_size: int, error: str) -> int:
    """Fail every call ``select(before=, after_id=)`` finds stuck for ``timeout``, in keyset
    pages of ``page_size`` (memory stays bounded), each page one transaction of a few
    statements: its calls locked and failed set-wise, conditional on their still being in
    the state they were found in (a webhook that settled one meanwhile wins), and their
    retries scheduled together (outcomes.calls_schedule_retries). Each retry is timed from
    its call's own deadline (last status + timeout: when it should have been failed), as if
    the tick had been there at that moment. A call the user answered (in progress) is not
    retried."""
    before = now - timeout
    count, after_id = 0, 0
    while True:
        page = list(select(before=before, after_id=after_id).values_list("id", flat=True)[:page_size])
        if not page:
            break
        with transaction.atomic():
            # The selection's own conditions again, under the lock.
            rows = list(
                select(before=before)
                .filter(pk__in=page)
                .select_for_update()
                .order_by("pk")
                .values_list(*_STUCK_COLUMNS)
            )
            failed = [dict(zip(_STUCK_COLUMNS, row, strict=True)) for row in rows]
            Call.objects.filter(pk__in=[row["id"] for row in failed]).update(
                status=CallStatus.FAILED,
                error=error,
                last_status_at=now,
                completed_at=now,
                outcome_inferred=True,
            )
            to_retry = [
                Call(**{**row, "status": CallStatus.FAILED})
                for row in failed
                if row["status"] != CallStatus.IN_PROGRESS
            ]
            calls_schedule_retries(
                calls=to_retry,
                failed_at={call.pk: call.last_status_at + timeout for call in to_retry},
                now=now,
            )
            # Their call.ended events and days, after the retries are in (calls.days).
            days.calls_ended(call_ids=[row["id"] for row in failed])
        count += len(failed)
        if len(page) < page_size:
            break
        after_id = page[-1]
    return count


# Ended calls whose analysis note was lost (Redis down or flushed after the webhook's
# commit): noted again once they have had this long to be analysed the ordinary way.
UNANALYSED_AFTER = timedelta(minutes=5)
# How far back the sweep looks: a Redis outage longer than this leaves the calls ended
# before it without a result (docs/operating/troubleshooting.md).
UNANALYSED_LOOKBACK = timedelta(hours=6)
UNANALYSED_PAGE_SIZE = 2000
UNANALYSED_PAGES_PER_TICK = 10  # 20,000 calls a tick at most; the next tick takes the rest


def calls_note_unanalysed(*, now: datetime, page_size: int = UNANALYSED_PAGE_SIZE) -> int:
    """Note again for analysis the calls a provider ended (its webhook gave the final
    status) at least UNANALYSED_AFTER ago, within UNANALYSED_LOOKBACK, that still have no
    result: their note (one RPUSH after the webhook's commit) was lost. Keyset pages in id
    order from the first call created in the lookback (the primary key's index, ids grow
    with creation), at most UNANALYSED_PAGES_PER_TICK pages a tick. A call noted twice is
    harmless (the analysis job makes one result per call and acts on it once), but a tick
    goes on where the last one stopped (for UNANALYSED_AFTER), not noting the same first
    pages again while their analysis waits in a backlog."""
    since = now - UNANALYSED_LOOKBACK
    first = Call.objects.filter(created_at__gte=since - _CREATED_BEFORE_ENDED).order_by("created_at", "pk")
    first_id = first.values_list("pk", flat=True).first()
    if first_id is None:
        return 0
    after_id, noted = max(first_id - 1, queues.analysis_swept_until()), 0
    for _ in range(UNANALYSED_PAGES_PER_TICK):
        page = list(
            Call.objects.filter(
                pk__gt=after_id,
                status__in=_ANALYSED_STATUSES,
                outcome_inferred=False,
                provider_call_id__isnull=False,
                # Implied by the end time, and on an index (status, scheduled_for): the
                # planner may take either that or the primary key's range.
                scheduled_for__gte=since - _CREATED_BEFORE_ENDED,
                completed_at__gte=since,
                completed_at__lte=now - UNANALYSED_AFTER,
            )
            .filter(~Exists(CallResult.objects.filter(call_id=OuterRef("pk"))))
            .order_by("pk")
            .values_list("pk", flat=True)[:page_size]
        )
        if not page:
            break
        queues.analysis_note_many(page)
        queues.analysis_swept_set(page[-1], seconds=int(UNANALYSED_AFTER.total_seconds()))
        noted += len(page)
        if len(page) < page_size:
            break
        after_id = page[-1]
    if noted:
        logger.warning(
            "%s ended calls had no result after %s (their note for analysis was lost): noted again",
            noted,
            humanize_delay(int(UNANALYSED_AFTER.total_seconds())),
        )
    return noted


# The statuses a provider's final webhook gives (a missed call was never dialed).
_ANALYSED_STATUSES = sorted(TERMINAL_STATUSES - {CallStatus.MISSED})
# A call ends at most this long after it was created or due (claimed ahead of its slot,
# dialed within its window, live for at most the provider's live-call timeout): generous.
_CREATED_BEFORE_ENDED = timedelta(days=1)
