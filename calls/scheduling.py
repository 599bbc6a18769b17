"""The scheduler tick: who is due, claiming their slots, and the sweeps that repair what
earlier ticks or dead workers left behind.

Exactly-once comes from the database: every new call row is a conditional insert on the
(user, local_date, attempt) unique constraint, and jobs are enqueued only after the claim
commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from users.models import unknown_zone_error

from . import bulk, monitoring, queues, selectors
from .batching import BatchPacker, BatchPlan, enqueue_batches
from .dispatch import calls_mark_missed_for_capacity
from .models import Call, CallStatus
from .outcomes import call_finish, call_schedule_retry, humanize_delay, insert_calls_ignoring_conflicts
from .policy import Policy, policy_cache_clear, policy_current
from .providers import default_agent_id
from .slots import next_open_slot, slot_local_date, spread_release, zone_or_none
from .variants import Variant, variant_for, variants_active

logger = logging.getLogger("relevel.calls")
User = get_user_model()


# Users claimed per transaction: small enough to keep row locks short, large enough that
# a rush slot of 100k users is a hundred round trips, not a hundred thousand.
TICK_BATCH_SIZE = 1000


@dataclass
class TickSummary:
    due: int = 0
    claimed: int = 0
    enqueued: int = 0
    missed: int = 0
    reenqueued: int = 0
    abandoned: int = 0
    unconfirmed: int = 0
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
                    ("unconfirmed-failed", self.unconfirmed),
                    ("no-outcome", self.silent),
                    ("rescheduled", self.repaired),
                    ("enqueue-failed", self.enqueue_failed),
                )
                if value
            )
        )


# --- Claiming -----------------------------------------------------------------------------

# The columns of a due user that the tick reads: rows, not models (a rush slot is 100,000).
DUE_USER_COLUMNS = (
    "pk",
    "phone",
    "local_tz",
    "call_time",
    "call_enabled",
    "next_call_at",
    "agent_variant_id",
)


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """What the tick does with a slot: every user sharing its zone, call time and instant gets
    the same, so a rush slot of 100,000 users is worked out once, not 100,000 times."""

    local_date: date
    # Empty for a call to place; else why it is recorded missed.
    error: str
    next_call_at: datetime


def slot_outcome(
    *, local_tz: str, call_time: time, slot: datetime, now: datetime, rules: Policy
) -> SlotOutcome | None:
    """The call for a due slot (queued; or missed, saying why, if its window closed or its time
    is outside the calling hours) and the user's next slot; None if the zone is unknown."""
    tz = zone_or_none(local_tz)
    if tz is None:
        return None
    window = rules.window
    local_date = slot_local_date(slot=slot, call_time=call_time, tz=tz)
    error = ""
    if now >= slot + window:
        error = (
            f"Calls were paused until the window of this slot ({slot:%Y-%m-%d %H:%M} to "
            f"{slot + window:%H:%M} UTC) closed."
            if rules.paused
            else f"No scheduler tick ran between {slot:%Y-%m-%d %H:%M} and "
            f"{slot + window:%H:%M} UTC, the window of this slot."
        )
    elif not rules.allows_hour(slot, tz):
        error = (
            f"Its time, {slot.astimezone(tz):%H:%M %Z}, is outside the calling hours "
            f"({rules.describe_hours()})."
        )
    next_call_at = next_open_slot(call_time=call_time, tz=tz, now=now, window=window, after=local_date)
    return SlotOutcome(local_date=local_date, error=error, next_call_at=next_call_at)


@dataclass
class _Claim:
    """What a tick's claiming transactions share, read once per tick."""

    now: datetime
    rules: Policy
    summary: TickSummary
    batches: BatchPacker
    variants: list[Variant]
    agent_id: str
    spread_minutes: int
    outcomes: dict[tuple[str, time, datetime], SlotOutcome | None] = field(default_factory=dict)

    def outcome(self, local_tz: str, call_time: time, slot: datetime) -> SlotOutcome | None:
        key = (local_tz, call_time, slot)
        try:
            return self.outcomes[key]
        except KeyError:
            outcome = self.outcomes[key] = slot_outcome(
                local_tz=local_tz, call_time=call_time, slot=slot, now=self.now, rules=self.rules
            )
            return outcome

    def release(self, *, slot: datetime, user_id: int) -> datetime | None:
        """When a first attempt goes to the workers: None for at once (no spread, or its step
        of the spread has come: a late tick)."""
        if not self.spread_minutes:
            return None
        at = spread_release(slot=slot, user_id=user_id, spread_minutes=self.spread_minutes)
        return at if at > self.now else None


class _CallRows:
    """The first attempts of one claiming transaction, column by column."""

    def __init__(self) -> None:
        self.user_id: list[int] = []
        self.to_number: list[str] = []
        self.local_date: list[date] = []
        self.scheduled_for: list[datetime] = []
        self.agent_id: list[str] = []
        self.provider: list[str] = []
        self.variant_id: list[int | None] = []
        self.error: list[str] = []

    def add(self, *, user_id: int, phone: str, slot: datetime, outcome: SlotOutcome, variant, agent_id: str):
        self.user_id.append(user_id)
        self.to_number.append(phone)
        self.local_date.append(outcome.local_date)
        self.scheduled_for.append(slot)
        self.error.append(outcome.error)
        if variant is None:
            self.agent_id.append(agent_id)
            self.provider.append(settings.CALL_PROVIDER)
            self.variant_id.append(None)
        else:
            self.agent_id.append(variant.agent_id)
            self.provider.append(variant.provider)
            self.variant_id.append(variant.pk)

    def columns(self, **same) -> bulk.Columns:
        names = ("user_id", "to_number", "local_date", "scheduled_for", "agent_id", "provider", "variant_id")
        values = {name: getattr(self, name) for name in names}
        if same.get("status") == CallStatus.MISSED:
            values["error"] = self.error
        return bulk.Columns(Call, values, {"attempt": 1, **same})

    def __len__(self) -> int:
        return len(self.user_id)


def _claim_due_batch(*, claim: _Claim) -> int:
    """Claim one batch of due users in one transaction; returns how many users it took.

    While calls are paused nothing is claimed: only slots whose window has closed are
    taken, to be recorded missed ("paused") and moved on to the next day.
    """
    now, summary = claim.now, claim.summary
    due_by = now - claim.rules.window if claim.rules.paused else now
    with transaction.atomic():
        # skip_locked: a second tick running at the same time takes other users, never
        # waits on (or double-claims) these. no_key: the lock still lets other transactions
        # insert calls that reference these users (a webhook's retry).
        rows = list(
            selectors.users_due_for_call(now=due_by)
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values_list(*DUE_USER_COLUMNS)[:TICK_BATCH_SIZE]
        )
        if not rows:
            return 0
        bulk.check_constraints_at_once()
        queued, missed = _CallRows(), _CallRows()
        next_call_at: dict[int, datetime | None] = {}
        parked: list[tuple[int, str]] = []
        assigned: dict[int, int] = {}  # users given a (new) variant: user id -> variant id
        for pk, phone, local_tz, call_time, enabled, slot, variant_id in rows:
            if not (enabled and phone):
                # A stale next_call_at (calls disabled by a bulk UPDATE, say): stop here.
                next_call_at[pk] = None
                continue
            outcome = claim.outcome(local_tz, call_time, slot)
            if outcome is None:
                # A zone this host's tzdata does not know (a raw UPDATE, an import): one bad
                # row must not stop every tick. Parked until someone fixes the zone.
                next_call_at[pk] = None
                parked.append((pk, local_tz))
                continue
            next_call_at[pk] = outcome.next_call_at
            variant = (
                variant_for(user_id=pk, current_id=variant_id, variants=claim.variants)
                if claim.variants
                else None
            )
            if variant is not None and variant.pk != variant_id:
                assigned[pk] = variant.pk
            (missed if outcome.error else queued).add(
                user_id=pk, phone=phone, slot=slot, outcome=outcome, variant=variant, agent_id=claim.agent_id
            )
        releases = [
            claim.release(slot=slot, user_id=user_id)
            for user_id, slot in zip(queued.user_id, queued.scheduled_for, strict=True)
        ]
        plan = _claim_calls(queued, releases, batches=claim.batches)
        missed_ids = insert_calls_ignoring_conflicts(
            missed.columns(status=CallStatus.MISSED, completed_at=now, last_status_at=now)
        )
        bulk.update_column(User, "next_call_at", next_call_at)
        _park(parked)
        bulk.update_column(User, "agent_variant", assigned)
        queues.on_commit(lambda: claim.batches.commit(plan))

    summary.due += len(rows)
    summary.claimed += plan.claimed
    summary.missed += len(missed_ids)
    if missed_ids:
        for user_id, local_date, error in zip(missed.user_id, missed.local_date, missed.error, strict=True):
            logger.info("Missed call for user %s on %s: %s", user_id, local_date, error)
    return len(rows)


def _claim_calls(queued: _CallRows, releases: list[datetime | None], *, batches: BatchPacker) -> BatchPlan:
    """Insert the first attempts (the conditional insert that claims), each named with its
    batch job on its row, in the claiming transaction."""
    reserved = bulk.reserve_ids(Call, len(queued))
    rows = queued.columns(status=CallStatus.QUEUED)
    if reserved is not None:
        # Ids taken ahead name the batch jobs in the insert itself: a batch is named after its
        # first id, unique for ever (a sequence never hands an id out twice), even if that
        # row's insert then conflicts and the batch goes out without it.
        plan = batches.plan(list(zip(reserved, releases, strict=True)))
        rows.values.update(id=reserved, job_id=plan.job_ids)
        claimed_ids = insert_calls_ignoring_conflicts(rows)
        if len(claimed_ids) < len(reserved):
            plan.drop(set(reserved).difference(claimed_ids))
        return plan
    # No ids can be reserved (SQLite): name the batches after the inserted calls' ids.
    claimed_ids = insert_calls_ignoring_conflicts(rows)
    release_of = dict(zip(queued.user_id, releases, strict=True))
    user_of = {}
    if any(releases):
        user_of = dict(Call.objects.filter(pk__in=claimed_ids).values_list("pk", "user_id"))
    plan = batches.plan([(pk, release_of[user_of[pk]] if user_of else None) for pk in claimed_ids])
    bulk.update_column(Call, "job_id", dict(zip(claimed_ids, plan.job_ids, strict=True)))
    return plan


def calls_schedule_due(*, now: datetime | None = None) -> TickSummary:
    """One scheduler tick: repair what earlier ticks lost, claim and enqueue every due slot.

    Safe to run any number of times concurrently (two schedulers, a manual trigger during
    a tick): each (user, local date) gets at most one first attempt.
    """
    now = now or timezone.now()
    # Read fresh: the tick that resuming enqueues must not see the pause a worker cached.
    policy_cache_clear()
    rules = policy_current()
    window = rules.window
    summary = TickSummary()
    # The repairs run first, and whether or not claiming works: each is independent, a
    # stuck call must not wait for the claim to work again, and the stranded sweep then
    # never reads the calls this tick claims (a late tick's rush is due before the
    # stranded threshold, yet was enqueued a moment ago).
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
    claim = _Claim(
        now=now,
        rules=rules,
        summary=summary,
        batches=BatchPacker(summary=summary),
        variants=[],
        agent_id=default_agent_id(settings.CALL_PROVIDER),
        spread_minutes=settings.CALL_SPREAD_MINUTES,
    )
    failure: DatabaseError | None = None
    try:
        summary.repaired = users_schedule_unscheduled(now=now)
        claim.variants = variants_active()
        while _claim_due_batch(claim=claim) == TICK_BATCH_SIZE:
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
    finally:
        # After the last claim's commit (at once here, outside a transaction).
        queues.on_commit(claim.batches.flush)
    logger.info("Tick at %s: %s", now.isoformat(timespec="seconds"), summary.line())
    monitoring.tick_record(started_at=now, summary=summary, failed=failure is not None)
    if failure is not None:
        raise failure
    return summary


def users_schedule_unscheduled(*, now: datetime, limit: int = 1000) -> int:
    """Give a next call to callable users who have none (enabled by a raw UPDATE, created by
    bulk_create or loaddata): without it the tick would never select them."""
    users = list(selectors.users_callable_without_next_call()[:limit])
    parked = []
    for user in users:
        if zone_or_none(user.local_tz) is None:
            parked.append(user)
            continue
        user.next_call_at = user.compute_next_call_at(now=now)
    # Parked users leave the selection, so the next page reaches the users after them.
    _park([(user.pk, user.local_tz) for user in parked])
    scheduled = [user for user in users if user.next_call_at is not None]
    User.objects.bulk_update(scheduled, ["next_call_at"])
    return len(scheduled)


def _park(users: list[tuple[int, str]]) -> None:
    """Record why these users (id, local_tz) cannot be scheduled (their time zone), saying so
    once: a parked user is skipped by the repair until saved with a valid zone.

    Conditional on the zone still being the bad one: an operator who fixed the user a
    moment ago (which schedules them) is not parked again by a stale read."""
    for pk, local_tz in users:
        error = unknown_zone_error(local_tz)
        if User.objects.filter(pk=pk, local_tz=local_tz, next_call_at__isnull=True).update(
            schedule_error=error
        ):
            logger.error("User %s has an unknown time zone %r: not scheduled", pk, local_tz)


def _reenqueue_stranded_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    paused = policy_current().paused
    summary.reenqueued, expired = calls_reenqueue_stranded(now=now, window=window, paused=paused)
    summary.missed += expired
    # Calls waiting for a free line with nobody dispatching them (its worker was killed,
    # and no webhook or batch came since to start another): one starts now.
    for provider in queues.capped_providers():
        waiting = queues.capacity_counts(provider, now=now.timestamp()).waiting
        if waiting and queues.dispatcher_ensure(provider):
            logger.warning("Calls wait for a free %s line and no dispatcher ran: one is started", provider)


# Queued calls the stranded sweep reads per page: one query and one or two Redis round trips.
STRANDED_PAGE_SIZE = 5000
STRANDED_COLUMNS = ("id", "job_id", "scheduled_for", "attempt", "user_id")


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
        last_id, _, last_due, _, _ = page[-1]
        after = (last_due, last_id)
    if reenqueued:
        logger.warning("%s queued calls had no live job in Redis: enqueued again", reenqueued)
    return reenqueued, expired


def _repair_stranded_page(
    page: list[tuple[int, str, datetime, int, int]], *, now: datetime, window: timedelta, paused: bool
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
    for call_id, _, scheduled_for, attempt, user_id in page:
        is_live = call_id in live
        if call_id in waiting:
            if now < scheduled_for + window:
                continue
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
        elif attempt == 1:
            first_attempts.append((call_id, user_id, scheduled_for))
        else:
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
    reenqueued = _reenqueue_in_batches(first_attempts, now=now)
    # Retries travel alone (call-<pk>), as when they were scheduled.
    reenqueued += sum(queues.enqueue_place_call(call_id) for call_id in retries)
    return reenqueued, expired


def _waiting_for_capacity(call_ids: list[int]) -> dict[int, str]:
    """Which of these calls wait in a capped provider's waiting set: {call id: provider}."""
    waiting: dict[int, str] = {}
    for provider in queues.capped_providers():
        waiting.update(dict.fromkeys(queues.calls_waiting_for_capacity(provider, call_ids), provider))
    return waiting


def _live_calls(page: list[tuple[int, str, datetime, int, int]]) -> set[int]:
    """The calls of the page that a live job will still place. Their batch jobs are asked
    first, a few dozen for a page of thousands; only the calls whose batch job is over (or
    that have none) are asked about a job of their own (call-<pk>: a retry, or a call its
    batch handed on after a transient error)."""
    batch_ids = sorted({job_id for _, job_id, _, _, _ in page if job_id})
    live_batches = queues.live_job_ids(batch_ids)
    live = {call_id for call_id, job_id, _, _, _ in page if job_id in live_batches}
    own = [queues.call_job_id(call_id) for call_id, *_ in page if call_id not in live]
    live_own = queues.live_job_ids(own)
    live.update(call_id for call_id, *_ in page if queues.call_job_id(call_id) in live_own)
    return live


def _mark_missed(call_ids: list[int], *, now: datetime, error: str) -> int:
    """Conditional on the call still being queued: a worker that took it meanwhile wins."""
    return Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED).update(
        status=CallStatus.MISSED, error=error, last_status_at=now, completed_at=now
    )


def _reenqueue_in_batches(calls: list[tuple[int, int, datetime]], *, now: datetime) -> int:
    """First attempts (call id, user id, slot) go back in batch jobs, as the tick sent them: a
    rush of them is a few hundred jobs in one Redis round trip, not one job each, and in a
    spread slot each waits for its step of the spread if that is still to come. The rows
    name their new job first, so the next tick sees these calls as live (or, if the enqueue
    fails, as still stranded)."""
    size = settings.CALL_BATCH_SIZE
    spread = settings.CALL_SPREAD_MINUTES
    by_release: dict[datetime | None, list[int]] = {}
    for call_id, user_id, slot in calls:
        release = spread_release(slot=slot, user_id=user_id, spread_minutes=spread) if spread else None
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


def _fail_stuck_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    """Give a final state to calls that will never get one by themselves."""
    summary.abandoned += calls_unconfirm_abandoned(now=now)
    unconfirmed_before = now - timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS)
    summary.unconfirmed += _fail_calls(
        selectors.calls_unconfirmed_since(before=unconfirmed_before),
        now=now,
        error=(
            "Sent, but neither the provider's answer nor its webhook arrived within "
            f"{humanize_delay(settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS)}."
        ),
    )
    silent_before = now - timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS)
    summary.silent += _fail_calls(
        selectors.calls_without_outcome_since(before=silent_before),
        now=now,
        error=(
            "No final status from the provider within "
            f"{humanize_delay(settings.CALL_OUTCOME_TIMEOUT_SECONDS)} (a lost webhook)."
        ),
    )


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
            call_finish(call, status=CallStatus.FAILED, error=error, now=now, inferred=True)
            if not answered:
                call_schedule_retry(call=call, now=now)
            count += 1
    return count


# --- Call now -------------------------------------------------------------------------------

# One manual call per user per this many seconds.
CALL_NOW_INTERVAL_SECONDS = 600


class CallNowRefused(Exception):
    """Why a manual call cannot be placed now; ``retry_after`` in seconds when it is only
    too soon."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def user_call_now(*, user_id: int, requested_by: str, now: datetime | None = None) -> Call:
    """Place one call to the user now, outside the daily schedule ("call now").

    It is a call of its own (``manual``): it never counts as, nor blocks, the day's first
    attempt or its retries, and is never retried. It obeys the pause and the calling hours
    (checked here, and again when a worker takes it), and a user gets at most one every
    CALL_NOW_INTERVAL_SECONDS: the user's row is locked, so two requests at once make one.
    """
    now = now or timezone.now()
    rules = policy_current()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if not user.is_callable:
            raise CallNowRefused("the user cannot be called: calls disabled or no phone number")
        tz = zone_or_none(user.local_tz)
        if tz is None:
            raise CallNowRefused(f"the user's time zone {user.local_tz!r} is not one this host knows")
        if rules.paused:
            raise CallNowRefused("calls are paused (call policy)")
        if not rules.allows_hour(now, tz):
            raise CallNowRefused(
                f"{now.astimezone(tz):%H:%M %Z} is outside the calling hours ({rules.describe_hours()})"
            )
        last = (
            Call.objects.filter(user_id=user.pk, manual=True)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is not None and now - last < timedelta(seconds=CALL_NOW_INTERVAL_SECONDS):
            wait = int(CALL_NOW_INTERVAL_SECONDS - (now - last).total_seconds()) + 1
            every = CALL_NOW_INTERVAL_SECONDS // 60
            raise CallNowRefused(
                f"one call now per user every {every} minutes; try again in {wait} s", retry_after=wait
            )
        variant = variant_for(user_id=user.pk, current_id=user.agent_variant_id, variants=variants_active())
        if variant is not None and variant.pk != user.agent_variant_id:
            User.objects.filter(pk=user.pk).update(agent_variant=variant.pk)
        call = Call.objects.create(
            user_id=user.pk,
            to_number=user.phone,
            variant_id=variant.pk if variant else None,
            agent_id=variant.agent_id if variant else default_agent_id(settings.CALL_PROVIDER),
            attempt=1,
            local_date=now.astimezone(tz).date(),
            status=CallStatus.QUEUED,
            scheduled_for=now,
            provider=variant.provider if variant else settings.CALL_PROVIDER,
            manual=True,
        )
        call_id = call.pk
        queues.on_commit(lambda: _enqueue_manual(call_id))
    logger.info("Call %s: manual call for user %s requested by %s", call.pk, user.pk, requested_by)
    return call


def _enqueue_manual(call_id: int) -> None:
    try:
        queues.enqueue_place_call(call_id)
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): manual call %s will be enqueued by a tick", type(exc).__name__, call_id
        )
