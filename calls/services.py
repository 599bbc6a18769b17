"""Writes: claim slots, place calls, record provider events, schedule retries.

Exactly-once comes from the database: every new call row is a conditional insert on the
(user, local_date, attempt) unique constraint, every state change is made under a row lock
or a conditional update, and jobs are enqueued only after the claim commits.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from . import bulk, queues, selectors
from .models import RETRY_STATUSES, STATUS_RANK, TERMINAL_STATUSES, Call, CallStatus
from .providers import get_provider
from .providers.base import (
    CallEvent,
    PlaceCallRequest,
    PlacedCall,
    ProviderError,
    ProviderPermanentError,
)
from .slots import next_open_slot, slot_local_date

logger = logging.getLogger("relevel.calls")
User = get_user_model()

# Users claimed per transaction: small enough to keep row locks short, large enough that
# a rush slot of 100k users is a hundred round trips, not a hundred thousand.
TICK_BATCH_SIZE = 1000


def mask_phone(phone: str | None) -> str:
    """+919876543210 -> ********3210: logs never carry a whole number."""
    if not phone:
        return "-"
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


def _humanize_delay(seconds: int) -> str:
    if seconds and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass
class TickSummary:
    due: int = 0
    claimed: int = 0
    enqueued: int = 0
    missed: int = 0
    reenqueued: int = 0
    abandoned: int = 0
    silent: int = 0
    repaired: int = 0
    enqueue_failed: int = 0

    def line(self) -> str:
        return (
            f"due={self.due} claimed={self.claimed} enqueued={self.enqueued} "
            f"missed={self.missed} re-enqueued={self.reenqueued} abandoned={self.abandoned}"
            + "".join(
                f" {name}={value}"
                for name, value in (
                    ("no-outcome", self.silent),
                    ("rescheduled", self.repaired),
                    ("enqueue-failed", self.enqueue_failed),
                )
                if value
            )
        )


# --- Claiming -----------------------------------------------------------------------------


def _insert_calls_ignoring_conflicts(calls: list[Call]) -> list[int]:
    """The conditional insert that claims: the ids of the rows really inserted."""
    return bulk.insert_ignoring_conflicts(calls, conflict_fields=["user", "local_date", "attempt"])


def _claim_due_batch(*, now: datetime, window: timedelta, summary: TickSummary) -> int:
    """Claim one batch of due users in one transaction; returns how many users it took."""
    agent_id = settings.CALLKARO_AGENT_ID
    with transaction.atomic():
        # skip_locked: a second tick running at the same time takes other users, never
        # waits on (or double-claims) these. no_key: the lock still lets other transactions
        # insert calls that reference these users (a webhook's retry).
        users = [
            DueUser(*row)
            for row in selectors.users_due_for_call(now=now)
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values_list(*DueUser.__dataclass_fields__)[:TICK_BATCH_SIZE]
        ]
        if not users:
            return 0
        first_attempts: list[Call] = []
        missed: list[Call] = []
        for user in users:
            call = _slot_call_for(user, now=now, window=window, agent_id=agent_id)
            if call is None:
                continue
            (first_attempts if call.status == CallStatus.QUEUED else missed).append(call)
        reserved = bulk.reserve_ids(Call, len(first_attempts))
        if reserved is not None:
            _name_batches_ahead(first_attempts, reserved)
        claimed_ids = _insert_calls_ignoring_conflicts(first_attempts)
        missed_ids = _insert_calls_ignoring_conflicts(missed)
        bulk.update_column(User, "next_call_at", {user.pk: user.next_call_at for user in users})
        if reserved is not None:
            job_of = {call.pk: call.job_id for call in first_attempts}
            batches: dict[str, list[int]] = {}
            for call_id in claimed_ids:
                batches.setdefault(job_of[call_id], []).append(call_id)
        else:
            batches = _name_batches(claimed_ids)
        queues.on_commit(lambda: _enqueue_claimed(batches, summary))

    summary.due += len(users)
    summary.claimed += len(claimed_ids)
    summary.missed += len(missed_ids)
    for call in missed:
        logger.info("Missed call for user %s on %s: %s", call.user_id, call.local_date, call.error)
    return len(users)


@dataclass(slots=True)
class DueUser:
    """The columns of a due user that the tick reads (rows, not models: a rush slot loads
    100,000 of them)."""

    pk: int
    phone: str | None
    local_tz: str
    call_time: time
    call_enabled: bool
    next_call_at: datetime | None

    @property
    def is_callable(self) -> bool:
        return bool(self.call_enabled and self.phone)


def _slot_call_for(user: DueUser, *, now: datetime, window: timedelta, agent_id: str) -> Call | None:
    """The call row for the user's due slot (queued, or missed if its window closed), with
    ``user.next_call_at`` moved on to the next slot; None if the user cannot be called."""
    if not user.is_callable:
        # A stale next_call_at (calls disabled by a bulk UPDATE, say): stop here.
        user.next_call_at = None
        return None
    try:
        tz = ZoneInfo(user.local_tz)
    except (ZoneInfoNotFoundError, ValueError):
        # A zone this host's tzdata does not know (a raw UPDATE, an import): one bad row
        # must not stop every tick. Parked until someone fixes the zone (the admin validates).
        logger.error("User %s has an unknown time zone %r: not scheduled", user.pk, user.local_tz)
        user.next_call_at = None
        return None
    slot = user.next_call_at
    local_date = slot_local_date(slot=slot, call_time=user.call_time, tz=tz)
    in_window = now < slot + window
    call = Call(
        user_id=user.pk,
        to_number=user.phone,
        agent_id=agent_id,
        attempt=1,
        local_date=local_date,
        status=CallStatus.QUEUED if in_window else CallStatus.MISSED,
        scheduled_for=slot,
        provider=settings.CALL_PROVIDER,
    )
    if not in_window:
        call.error = (
            f"No scheduler tick ran between {slot:%Y-%m-%d %H:%M} and "
            f"{slot + window:%H:%M} UTC, the window of this slot."
        )
        call.completed_at = call.last_status_at = now
    user.next_call_at = next_open_slot(
        call_time=user.call_time, tz=tz, now=now, window=window, after=local_date
    )
    return call


def _name_batches_ahead(calls: list[Call], ids: list[int]) -> None:
    """Give calls their reserved ids and their batch job, named after the batch's first id:
    unique for ever (a sequence never hands an id out twice), even if that row's insert
    then conflicts and the batch goes out without it."""
    size = settings.CALL_BATCH_SIZE
    for start in range(0, len(calls), size):
        job_id = queues.batch_job_id(ids[start])
        for call, pk in zip(calls[start : start + size], ids[start : start + size], strict=True):
            call.pk, call.job_id = pk, job_id


def _name_batches(call_ids: list[int]) -> dict[str, list[int]]:
    """Where no ids can be reserved (SQLite): split the inserted calls into batch jobs named
    after their first call's pk, and record each call's job on its row, in the claiming
    transaction."""
    batches: dict[str, list[int]] = {}
    size = settings.CALL_BATCH_SIZE
    for start in range(0, len(call_ids), size):
        chunk = call_ids[start : start + size]
        batches[queues.batch_job_id(chunk[0])] = chunk
    bulk.update_column(Call, "job_id", {pk: job_id for job_id, chunk in batches.items() for pk in chunk})
    return batches


def _enqueue_claimed(batches: dict[str, list[int]], summary: TickSummary) -> None:
    """Runs after the claim commits. If Redis is down the claims stand, and a later tick
    finds these queued calls without a live job and enqueues them (calls_reenqueue_stranded)."""
    try:
        summary.enqueued += queues.enqueue_call_batches(batches)
    except RedisError as exc:
        count = sum(len(ids) for ids in batches.values())
        summary.enqueue_failed += count
        logger.error(
            "Redis unreachable (%s): %s claimed calls will be enqueued by a later tick",
            type(exc).__name__,
            count,
        )


def calls_schedule_due(*, now: datetime | None = None) -> TickSummary:
    """One scheduler tick: claim and enqueue every due slot, repair what earlier ticks lost.

    Safe to run any number of times concurrently (two schedulers, a manual trigger during
    a tick): each (user, local date) gets at most one first attempt.
    """
    now = now or timezone.now()
    window = timedelta(minutes=settings.CALL_TIME_WINDOW_MINUTES)
    summary = TickSummary()
    failure: DatabaseError | None = None
    try:
        summary.repaired = users_schedule_unscheduled(now=now)
        while _claim_due_batch(now=now, window=window, summary=summary) == TICK_BATCH_SIZE:
            pass
    except DatabaseError as exc:
        # Batches committed so far stand (their jobs are enqueued); the failed batch rolled
        # back whole, so the next tick simply finds its users still due.
        first_line = (str(exc).strip().splitlines() or [""])[0]
        logger.error(
            "Tick at %s failed: database error (%s: %s) after %s; the next tick completes the work",
            now.isoformat(timespec="seconds"),
            type(exc).__name__,
            first_line,
            summary.line(),
        )
        failure = exc
    # The repairs run even when claiming failed: each is independent, and a stuck call must
    # not wait for the claim to work again.
    for step in (_fail_stuck_calls, _reenqueue_stranded_calls):
        try:
            step(now=now, window=window, summary=summary)
        except (DatabaseError, RedisError) as exc:
            logger.error(
                "Tick at %s: %s skipped (%s)",
                now.isoformat(timespec="seconds"),
                step.__name__,
                type(exc).__name__,
            )
    logger.info("Tick at %s: %s", now.isoformat(timespec="seconds"), summary.line())
    if failure is not None:
        raise failure
    return summary


def users_schedule_unscheduled(*, now: datetime, limit: int = 1000) -> int:
    """Give a next call to callable users who have none (enabled by a raw UPDATE, created by
    bulk_create or loaddata): without it the tick would never select them."""
    users = list(selectors.users_callable_without_next_call()[:limit])
    for user in users:
        try:
            user.next_call_at = user.compute_next_call_at(now=now)
        except (ZoneInfoNotFoundError, ValueError):
            logger.error("User %s has an unknown time zone %r: not scheduled", user.pk, user.local_tz)
    scheduled = [user for user in users if user.next_call_at is not None]
    User.objects.bulk_update(scheduled, ["next_call_at"])
    return len(scheduled)


def _reenqueue_stranded_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    summary.reenqueued, expired = calls_reenqueue_stranded(now=now, window=window)
    summary.missed += expired


def calls_reenqueue_stranded(*, now: datetime, window: timedelta, limit: int = 10_000) -> tuple[int, int]:
    """Enqueue again the queued calls whose job will never run: Redis was down during the
    claim or lost its data, or the batch job carrying the call died before reaching it.
    Returns (re-enqueued, expired).

    A call is left alone while its batch job or its own job is still live (a long backlog),
    and the enqueue itself is unique, so a race with a worker is harmless too. A call whose
    window closed meanwhile is not placed late (at night, after a long outage): it is
    marked missed, saying why.
    """
    before = now - timedelta(seconds=settings.CALL_STRANDED_AFTER_SECONDS)
    candidates = list(
        selectors.calls_queued_before(before=before).values_list("id", "job_id", "scheduled_for")[:limit]
    )
    if not candidates:
        return 0, 0
    job_ids = {queues.call_job_id(call_id) for call_id, _, _ in candidates}
    job_ids.update(job_id for _, job_id, _ in candidates if job_id)
    live = queues.live_job_ids(sorted(job_ids))
    reenqueued = expired = 0
    for call_id, job_id, scheduled_for in candidates:
        if job_id in live or queues.call_job_id(call_id) in live:
            continue
        if now >= scheduled_for + window:
            expired += Call.objects.filter(pk=call_id, status=CallStatus.QUEUED).update(
                status=CallStatus.MISSED,
                error=(
                    "Its job was lost (Redis down or flushed) and its window closed before a tick found it."
                ),
                last_status_at=now,
                completed_at=now,
            )
            continue
        if queues.enqueue_place_call(call_id):
            reenqueued += 1
            logger.warning("Call %s was queued without a live job in Redis: enqueued again", call_id)
    return reenqueued, expired


def _fail_stuck_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    """Give a final state to calls that will never get one by themselves."""
    dialing_before = now - timedelta(seconds=settings.CALL_DIALING_TIMEOUT_SECONDS)
    summary.abandoned += _fail_calls(
        selectors.calls_dialing_since(before=dialing_before),
        now=now,
        # Whether the provider dialled is unknown: at worst the user gets a traced retry.
        error="Worker stopped while dialing; the provider may or may not have placed it.",
    )
    silent_before = now - timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)
    summary.silent += _fail_calls(
        selectors.calls_without_outcome_since(before=silent_before),
        now=now,
        error=(
            "No final status from the provider within "
            f"{_humanize_delay(settings.CALL_OUTCOME_TIMEOUT_SECONDS)} (a lost webhook)."
        ),
    )


def _fail_calls(calls, *, now: datetime, error: str) -> int:
    """Fail each call (if still in the state it was selected in) and apply the retry policy,
    which drops the retry for a call the user had answered (in progress)."""
    count = 0
    for call_id, status in calls.values_list("id", "status")[:1000]:
        with transaction.atomic():
            call = Call.objects.select_for_update().filter(pk=call_id, status=status).first()
            if call is None:
                continue
            answered = call.status == CallStatus.IN_PROGRESS
            _finish(call, status=CallStatus.FAILED, error=error, now=now)
            if not answered:
                call_schedule_retry(call=call, now=now)
            count += 1
    return count


# --- Placing ------------------------------------------------------------------------------
#
# Placing a call is three steps: take it (queued -> dialing, under a row lock), dial (one HTTP
# request, no database), record the answer. A batch takes all its calls in one transaction,
# dials them on a thread pool, and records each answer as it arrives, all on the job's own
# database connection: a worker process holds one connection, however many calls it has in
# flight, and the threads do nothing but wait on the provider.


def _reason_not_to_dial(call: Call) -> str:
    user = call.user
    if not user.call_enabled:
        return "User disabled calls before this call was placed."
    if not user.phone:
        return "User has no phone number."
    if call.attempt > 1 and selectors.user_answered_on(user_id=user.pk, local_date=call.local_date):
        return "User already answered a call today."
    return ""


def _finish(call: Call, *, status: str, error: str = "", now: datetime) -> None:
    call.status = status
    call.error = error or call.error
    call.last_status_at = now
    if status in TERMINAL_STATUSES:
        call.completed_at = now
    call.save(update_fields=["status", "error", "last_status_at", "completed_at"])


def _take_calls_for_dialing(call_ids: list[int]) -> tuple[list[PlaceCallRequest], Counter]:
    """Move the dialable calls among ``call_ids`` from queued to dialing, in one transaction;
    cancel the ones whose user can no longer be called. Returns the requests to send and a
    count of what happened to the others."""
    now = timezone.now()
    requests: list[PlaceCallRequest] = []
    others: Counter = Counter()
    with transaction.atomic():
        calls = {
            call.pk: call
            for call in Call.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk__in=call_ids)
            .order_by("pk")
        }
        for call_id in call_ids:
            call = calls.get(call_id)
            if call is None:
                logger.warning("Call %s does not exist; nothing to place", call_id)
                others["missing"] += 1
                continue
            if call.status != CallStatus.QUEUED:
                # A repeated job (re-enqueued, RQ retry after a kill): someone already took it.
                logger.info("Call %s is %s, not queued; not placing it again", call.pk, call.status)
                others["skipped"] += 1
                continue
            user = call.user
            name = user.name or user.get_username()
            if call.attempt > 1:
                logger.info(
                    "Processing user call for %s (retry %s/%s)",
                    name,
                    call.attempt - 1,
                    settings.CALL_MAX_RETRIES,
                )
            else:
                logger.info("Processing user call for %s", name)
            reason = _reason_not_to_dial(call)
            if reason:
                _finish(call, status=CallStatus.CANCELED, error=reason, now=now)
                logger.info("Call %s canceled: %s", call.pk, reason)
                others["canceled"] += 1
                continue
            call.status = CallStatus.DIALING
            call.dialed_at = now
            call.to_number = user.phone
            call.provider = settings.CALL_PROVIDER
            call.save(update_fields=["status", "dialed_at", "to_number", "provider"])
            requests.append(
                PlaceCallRequest(
                    call_id=call.pk,
                    user_id=user.pk,
                    to_number=call.to_number,
                    agent_id=call.agent_id,
                    name=name,
                )
            )
    return requests, others


def _dial(request: PlaceCallRequest) -> PlacedCall | ProviderError:
    """The provider's answer, or the error it gave: no database work (runs on a pool thread)."""
    try:
        return get_provider().place_call(request)
    except ProviderError as exc:
        return exc


def _record_dial_result(
    request: PlaceCallRequest, result: PlacedCall | ProviderError, *, is_last_try: bool
) -> str:
    """Store what the provider said about one call; returns what happened, in a word."""
    masked = mask_phone(request.to_number)
    # A provider's message may quote the number ("+91… is not reachable"): not in our logs.
    said = str(result).replace(request.to_number, masked)
    if isinstance(result, ProviderPermanentError):
        # A wrong number or a bad API key is no better in 30 minutes: no retry of any kind.
        _record_dial_failure(call_id=request.call_id, error=str(result), schedule_retry=False)
        logger.error("Call %s to %s failed permanently: %s", request.call_id, masked, said)
        return "failed"
    if isinstance(result, ProviderError):
        if not is_last_try:
            Call.objects.filter(pk=request.call_id, status=CallStatus.DIALING).update(
                status=CallStatus.QUEUED, error=str(result)
            )
            logger.warning(
                "Call %s to %s: transient provider error, will try again: %s", request.call_id, masked, said
            )
            return "transient"
        _record_dial_failure(call_id=request.call_id, error=str(result), schedule_retry=True)
        logger.error("Call %s to %s failed, provider unreachable: %s", request.call_id, masked, said)
        return "failed"
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=request.call_id)
        call.provider_call_id = result.provider_call_id
        call.provider_payloads = [*call.provider_payloads, {"placed": result.raw}]
        fields = ["provider_call_id", "provider_payloads"]
        # A fast webhook may already have moved the call further on (and said why it
        # failed): never move it back, nor wipe what it recorded.
        if STATUS_RANK[call.status] < STATUS_RANK[CallStatus.RINGING]:
            call.status = CallStatus.RINGING
            call.last_status_at = timezone.now()
            call.error = ""  # an earlier transient error, now overcome
            fields += ["status", "last_status_at", "error"]
        call.save(update_fields=fields)
    logger.info(
        "Call %s initiated to %s (provider call %s)", request.call_id, masked, result.provider_call_id
    )
    return "placed"


def _record_dial_failure(*, call_id: int, error: str, schedule_retry: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id, status=CallStatus.DIALING).first()
        if call is None:
            return
        _finish(call, status=CallStatus.FAILED, error=error, now=now)
        if schedule_retry:
            call_schedule_retry(call=call, now=now)


def _salvage_placed(request: PlaceCallRequest, result: PlacedCall | ProviderError) -> str:
    """Recording an answer failed (a database blip): keep at least the provider's id, so a
    call the provider accepted is not later taken for lost and dialed again."""
    if not isinstance(result, PlacedCall):
        return "error"  # still dialing: the tick fails it after CALL_DIALING_TIMEOUT_SECONDS
    try:
        Call.objects.filter(pk=request.call_id, status=CallStatus.DIALING).update(
            provider_call_id=result.provider_call_id, status=CallStatus.RINGING, last_status_at=timezone.now()
        )
    except DatabaseError:
        logger.error(
            "Call %s was accepted by the provider (call %s) but could not be recorded",
            request.call_id,
            result.provider_call_id,
        )
    return "error"


def call_place(*, call_id: int, is_last_try: bool = True) -> str:
    """Place one queued call through the provider; returns what happened, in a word.

    Raises ProviderTransientError when the provider could not be reached and another try
    is left (the caller, an RQ job, is then retried with backoff).
    """
    requests, others = _take_calls_for_dialing([call_id])
    if not requests:
        return next(iter(others))
    result = _dial(requests[0])
    outcome = _record_dial_result(requests[0], result, is_last_try=is_last_try)
    if outcome == "transient":
        raise result
    return outcome


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _placement_pool() -> ThreadPoolExecutor:
    # One pool per process, kept across jobs so that the provider's keep-alive connections
    # are reused. Rebuilt after a fork.
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(
                max_workers=queues.placement_threads_per_process(), thread_name_prefix="place-call"
            )
            _pool_pid = os.getpid()
        return _pool


def reset_placement_pool() -> None:
    """Drop this process's pool so the next batch sizes a new one from settings (tests)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = None


def calls_place_batch(*, call_ids: list[int]) -> dict[str, int]:
    """Place a tick's batch of calls concurrently, each exactly as call_place does alone.

    Each call gets its first try here. One that meets a transient provider error moves to a
    job of its own that RQ retries with the same backoff a lone call gets (2 s, then 4 s), so
    per-call states, errors and retries are the engine's, whatever the batch size.
    """
    intervals = list(settings.CALL_PLACE_RETRY_INTERVALS)
    requests, counts = _take_calls_for_dialing(call_ids)
    futures = {_placement_pool().submit(_dial, request): request for request in requests}
    transient: list[int] = []
    try:
        # Answers are recorded as they arrive, on this thread's connection, while the pool
        # is still waiting on the others.
        for future in as_completed(futures):
            request = futures[future]
            result = future.result()
            try:
                outcome = _record_dial_result(request, result, is_last_try=not intervals)
            except Exception:  # noqa: BLE001 - one bad call must not sink the batch
                logger.exception("Call %s: unexpected error while recording its placement", request.call_id)
                outcome = _salvage_placed(request, result)
            counts[outcome] += 1
            if outcome == "transient":
                transient.append(request.call_id)
    finally:
        # The job was cut short (its timeout, a shutdown): calls not yet sent go back to the
        # queue, where the next tick re-enqueues them; only calls really sent stay dialing.
        unsent = [request.call_id for future, request in futures.items() if future.cancel()]
        if unsent:
            Call.objects.filter(pk__in=unsent, status=CallStatus.DIALING).update(status=CallStatus.QUEUED)
            logger.warning("Batch cut short: %s calls not sent, back in the queue", len(unsent))
    now = timezone.now()
    for call_id in transient:
        first_delay, later = intervals[0], intervals[1:]
        at = now + timedelta(seconds=first_delay) if first_delay else None
        queues.enqueue_place_call(call_id, at=at, retry_intervals=later)
    logger.info("Placed a batch of %s calls: %s", len(call_ids), dict(counts))
    return dict(counts)


# --- Outcomes and retries -----------------------------------------------------------------


class CallNotFound(LookupError):
    pass


@dataclass(frozen=True)
class EventResult:
    call: Call
    applied: bool
    retry_scheduled: bool


def call_apply_event(*, event: CallEvent) -> EventResult:
    """Record a provider status report. Status only moves forward; terminal is final.

    Concurrent deliveries of one event are serialised on the call row, and the retry they
    may trigger is a conditional insert, so the same outcome delivered twice schedules one
    retry.
    """
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(provider_call_id=event.provider_call_id).first()
        if call is None and event.our_call_id is not None:
            call = Call.objects.select_for_update().filter(pk=event.our_call_id).first()
            if call is not None and call.provider_call_id not in (None, "", event.provider_call_id):
                call = None  # our id, but another provider call: not this call's event
        if call is None:
            raise CallNotFound(f"no call with call_id {event.provider_call_id[:64]}")

        if call.is_terminal or STATUS_RANK[event.status] <= STATUS_RANK[call.status]:
            logger.info(
                "Call %s: ignoring %s webhook, call is already %s", call.pk, event.status, call.status
            )
            return EventResult(call=call, applied=False, retry_scheduled=False)

        call.provider_call_id = event.provider_call_id
        call.status = event.status
        call.last_status_at = now
        call.provider_payloads = [*call.provider_payloads, event.raw]
        # Only what this event changes: the webhook is the hottest write, and rewriting
        # every column (the transcript, all payloads) is most of its cost.
        fields = ["provider_call_id", "status", "last_status_at", "provider_payloads"]
        for field, value in (
            ("transcript", event.transcript),
            ("recording_url", event.recording_url),
            ("duration_seconds", event.duration_seconds),
            ("error", event.error_message),
        ):
            if value not in (None, ""):
                setattr(call, field, value)
                fields.append(field)
        if call.status in TERMINAL_STATUSES:
            call.completed_at = now
            fields.append("completed_at")
        call.save(update_fields=fields)
        logger.info("[Webhook:%s] Updated call %s: %s", call.provider or "provider", call.pk, call.status)
        retry_scheduled = False
        if call.status in RETRY_STATUSES:
            retry_scheduled = call_schedule_retry(call=call, now=now)
    return EventResult(call=call, applied=True, retry_scheduled=retry_scheduled)


def call_schedule_retry(*, call: Call, now: datetime) -> bool:
    """Schedule the next attempt of a failed/unanswered call; True if this call created it.

    Must run inside the transaction that recorded the outcome: the job is enqueued when it
    commits, and the insert is conditional, so a repeated outcome creates nothing.
    """
    max_retries = settings.CALL_MAX_RETRIES
    if call.attempt > max_retries:
        logger.info("Call %s - max retries (%s) reached", call.pk, max_retries)
        return False
    user = User.objects.only("id", "phone", "call_enabled").get(pk=call.user_id)
    if not user.is_callable:
        logger.info("Call %s: no retry, the user can no longer be called", call.pk)
        return False
    delay = settings.CALL_RETRY_DELAY_SECONDS
    retry = Call(
        user_id=call.user_id,
        to_number=user.phone,
        agent_id=call.agent_id,
        attempt=call.attempt + 1,
        local_date=call.local_date,
        retry_of_id=call.pk,
        status=CallStatus.QUEUED,
        scheduled_for=now + timedelta(seconds=delay),
        provider=settings.CALL_PROVIDER,
    )
    inserted = _insert_calls_ignoring_conflicts([retry])
    if not inserted:
        return False
    retry_id, due = inserted[0], retry.scheduled_for
    queues.on_commit(lambda: _schedule_retry_job(retry_id, due))
    logger.info(
        "Scheduled retry %s/%s for call %s in %s", call.attempt, max_retries, call.pk, _humanize_delay(delay)
    )
    return True


def _schedule_retry_job(call_id: int, due: datetime) -> None:
    try:
        queues.enqueue_place_call(call_id, at=due)
    except RedisError as exc:
        # The retry row is committed and queued; the first tick after it is due finds it
        # without a job and enqueues it.
        logger.error(
            "Redis unreachable (%s): retry call %s will be enqueued by a tick", type(exc).__name__, call_id
        )


# --- Users --------------------------------------------------------------------------------


def users_set_call_enabled(*, users: Iterable, enabled: bool) -> int:
    """Enable or disable calls for users, keeping each one's next call in step."""
    changed = 0
    for user in users:
        if user.call_enabled != enabled:
            user.call_enabled = enabled
            user.save(update_fields=["call_enabled"])
            changed += 1
    return changed
