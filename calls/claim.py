"""Claiming a tick's due slots: one first attempt per user per local day.

Exactly-once comes from the database: every new call row is a conditional insert on the
(user, local_date, attempt) unique constraint, and jobs are enqueued only after the claim
commits.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from users.calendar import day_off_reason, next_call_for, users_skips_from
from users.models import ALL_CALL_DAYS, CallSkip, unknown_zone_error
from users.suppression import numbers_suppressed

from . import bulk, days, queues, selectors
from .batching import BatchPacker, BatchPlan
from .models import Call, CallStatus
from .outcomes import insert_calls_ignoring_conflicts
from .policy import Policy
from .slots import first_attempt_release, slot_local_date, zone_or_none
from .variants import Variant, variant_for

logger = logging.getLogger("relevel.calls")
User = get_user_model()

# Users claimed per transaction: small enough to keep row locks short, large enough that
# a rush slot of 100k users is a hundred round trips, not a hundred thousand.
TICK_BATCH_SIZE = 1000
# A rush (a first batch that came back full) is claimed on this many connections at once,
# each in its own thread: while PostgreSQL writes one batch, the tick's Python works out
# the next one instead of waiting. Their rows are disjoint (each skips the rows the others
# hold locked), so each user is still claimed once, in one transaction, by one of them.
CLAIM_CONNECTIONS = 2


class ClaimCounts(Protocol):
    """The tick's counters that claiming adds to (scheduling.TickSummary)."""

    due: int
    claimed: int
    missed: int
    enqueued: int
    enqueue_failed: int


# The columns of a due user that the tick reads: rows, not models (a rush slot is 100,000).
DUE_USER_COLUMNS = (
    "pk",
    "phone",
    "local_tz",
    "call_time",
    "call_enabled",
    "next_call_at",
    "agent_variant_id",
    "call_days",
    "pause_until",
    "consented_at",
)

SUPPRESSED = "Number suppressed: it is on the do-not-call list."


# A tick claims the slots that fall due before the next tick, and releases each at its own
# time (a delayed RQ job), so a user is dialed at their call time, not up to a tick later.
# The next tick may start late (the dashboard's refresh ahead of it on the tick queue takes
# up to a minute): claiming this much further ahead covers that, and a slot claimed by two
# ticks is claimed once (the unique constraint). A slot the next tick finds already due (it
# ran later still, or the user was created in between) is placed at once, as before.
CLAIM_AHEAD_MARGIN = timedelta(seconds=60)
# With a rare SCHEDULE_CRON (hourly, daily) a tick claims no further ahead than this: the
# rest waits in the database for a tick, not as delayed jobs in Redis for hours.
CLAIM_AHEAD_AT_MOST = timedelta(minutes=30)


def next_tick_after(*, now: datetime, cron: str) -> datetime:
    """When SCHEDULE_CRON next fires after ``now``, read as RQ's cron scheduler reads it (the
    host's local time; an hour repeated in autumn at its first occurrence)."""
    cron_iter = croniter(cron, now.astimezone().replace(tzinfo=None))
    while True:
        local = cron_iter.get_next(datetime)
        at = datetime.fromtimestamp(local.replace(fold=0).timestamp(), tz=now.tzinfo)
        if at > now:
            return at


def claim_horizon(*, now: datetime, cron: str) -> datetime:
    """The latest slot a tick at ``now`` claims: the next tick's time and a margin."""
    return min(next_tick_after(now=now, cron=cron) + CLAIM_AHEAD_MARGIN, now + CLAIM_AHEAD_AT_MOST)


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """What the tick does with a slot: every user sharing its zone, call time and instant gets
    the same, so a rush slot of 100,000 users is worked out once, not 100,000 times."""

    local_date: date
    # Empty for a call to place; else why it is recorded missed.
    error: str
    # None: no open day in the next MAX_DAYS_OFF_IN_A_ROW (calls/slots.py).
    next_call_at: datetime | None
    tz: ZoneInfo
    # Why the slot's local date is off for these users (not a call day of theirs, a policy
    # skip date or holiday), or empty. Normally empty: next_call_at never points at an off
    # day; set only when the policy's days off changed and everyone's next call is still
    # being moved (users.calendar.users_calendar_reschedule). No call is made then.
    off: str = ""


def slot_outcome(
    *,
    local_tz: str,
    call_time: time,
    slot: datetime,
    now: datetime,
    rules: Policy,
    call_days: int = ALL_CALL_DAYS,
) -> SlotOutcome | None:
    """The call for a due slot (queued; or missed, saying why, if its window closed or its time
    is outside the calling hours) and the user's next slot on a day open to ``call_days``
    and the policy's days off; None if the zone is unknown. A person's own pause and skips
    are not in it (claim_due_batch applies those, for the few who have them)."""
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
    off = day_off_reason(call_days=call_days, pause_until=None, skips=(), local_date=local_date, rules=rules)
    next_call_at = next_call_for(
        local_tz=local_tz,
        call_time=call_time,
        call_days=call_days,
        pause_until=None,
        last_called=local_date,
        skips=frozenset(),
        now=now,
        rules=rules,
    )
    return SlotOutcome(local_date=local_date, error=error, next_call_at=next_call_at, tz=tz, off=off or "")


@dataclass
class Claim:
    """What a tick's claiming transactions share, read once per tick."""

    now: datetime
    rules: Policy
    summary: ClaimCounts
    # Slots up to this instant are claimed (claim_horizon): due now, or before the next tick.
    until: datetime
    batches: BatchPacker
    variants: list[Variant]
    agent_id: str
    spread_minutes: int
    # Keyed by call days too: a handful of distinct sets (every day, weekdays) in practice, so
    # a rush slot is still worked out a few times, not once per user.
    outcomes: dict[tuple[str, time, datetime, int], SlotOutcome | None] = field(default_factory=dict)

    def outcome(self, local_tz: str, call_time: time, slot: datetime, call_days: int) -> SlotOutcome | None:
        key = (local_tz, call_time, slot, call_days)
        try:
            return self.outcomes[key]
        except KeyError:
            outcome = self.outcomes[key] = slot_outcome(
                local_tz=local_tz,
                call_time=call_time,
                slot=slot,
                now=self.now,
                rules=self.rules,
                call_days=call_days,
            )
            return outcome

    def personal_outcome(
        self,
        outcome: SlotOutcome,
        *,
        local_tz: str,
        call_time: time,
        call_days: int,
        pause_until: date | None,
        skips: frozenset[date],
    ) -> SlotOutcome:
        """The shared outcome with the person's own pause and skips applied: computed for
        each of the few users who have one ahead, never cached."""
        off = day_off_reason(
            call_days=call_days,
            pause_until=pause_until,
            skips=skips,
            local_date=outcome.local_date,
            rules=self.rules,
        )
        next_call_at = next_call_for(
            local_tz=local_tz,
            call_time=call_time,
            call_days=call_days,
            pause_until=pause_until,
            last_called=outcome.local_date,
            skips=skips,
            now=self.now,
            rules=self.rules,
        )
        return SlotOutcome(
            local_date=outcome.local_date,
            error=outcome.error,
            next_call_at=next_call_at,
            tz=outcome.tz,
            off=off or "",
        )

    def release(self, *, slot: datetime, user_id: int, tz: ZoneInfo) -> datetime | None:
        """When a first attempt goes to the workers: at its time (or its step of the spread),
        or None for at once when that has come (the slot was due when the tick ran, or a late
        tick reached it)."""
        at = first_attempt_release(
            slot=slot,
            user_id=user_id,
            tz=tz,
            spread_minutes=self.spread_minutes,
            window=self.rules.window,
            calling_hours=self.rules.calling_hours,
        )
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
        if same.get("status") in (CallStatus.MISSED, CallStatus.CANCELED):
            values["error"] = self.error
        return bulk.Columns(Call, values, {"attempt": 1, **same})

    def __len__(self) -> int:
        return len(self.user_id)


@dataclass
class _Counts:
    """A helper thread's own counters (ClaimCounts), added to the tick's once it is done."""

    due: int = 0
    claimed: int = 0
    missed: int = 0
    enqueued: int = 0
    enqueue_failed: int = 0


def claim_all_due(*, claim: Claim) -> None:
    """Claim batches until one comes back short of full: a rush on CLAIM_CONNECTIONS
    connections at once (PostgreSQL only, and never inside a caller's transaction, whose
    rows other connections could not see). Each helper packs its own batch jobs and flushes
    them when it is done; the caller flushes ``claim.batches``. A batch that fails rolls back
    whole, as ever; the first error is raised once every helper has stopped."""
    if claim_due_batch(claim=claim) < TICK_BATCH_SIZE:
        return
    if CLAIM_CONNECTIONS < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        while claim_due_batch(claim=claim) == TICK_BATCH_SIZE:
            pass
        return
    helpers = []
    for _ in range(CLAIM_CONNECTIONS - 1):
        counts = _Counts()
        helpers.append(replace(claim, summary=counts, batches=BatchPacker(summary=counts)))
    with ThreadPoolExecutor(max_workers=len(helpers), thread_name_prefix="claim") as pool:
        futures = [pool.submit(_claim_on_own_connection, helper) for helper in helpers]
        try:
            while claim_due_batch(claim=claim) == TICK_BATCH_SIZE:
                pass
        finally:
            wait(futures)
            for helper in helpers:
                for name in ("due", "claimed", "missed", "enqueued", "enqueue_failed"):
                    setattr(claim.summary, name, getattr(claim.summary, name) + getattr(helper.summary, name))
    for future in futures:
        if future.exception() is not None:
            raise future.exception()


def _claim_on_own_connection(claim: Claim) -> None:
    """A helper thread's share of a rush, on the thread's own connection (closed at the end)."""
    try:
        while claim_due_batch(claim=claim) == TICK_BATCH_SIZE:
            pass
    finally:
        try:
            claim.batches.flush()  # its committed batches, full or not
        finally:
            connection.close()


def claim_due_batch(*, claim: Claim) -> int:
    """Claim one batch of due users in one transaction; returns how many users it took.

    While calls are paused nothing is claimed: only slots whose window has closed are
    taken, to be recorded missed ("paused") and moved on to the next day.
    """
    now, summary = claim.now, claim.summary
    due_by = now - claim.rules.window if claim.rules.paused else claim.until
    with transaction.atomic():
        # skip_locked: a second tick running at the same time takes other users, never
        # waits on (or double-claims) these. no_key: the lock still lets other transactions
        # insert calls that reference these users (a webhook's retry).
        # Whether each has a skipped day ahead comes with the row (a probe of the (user,
        # local_date) index): normally none, and only the users who have one are read and
        # worked out one by one, without a second query of the whole batch.
        skips_from = (now - timedelta(days=2)).date()
        rows = bulk.values_rows(
            selectors.users_due_for_call(until=due_by)
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .annotate(
                has_skips=Exists(CallSkip.objects.filter(user_id=OuterRef("pk"), local_date__gte=skips_from))
            )
            .values_list(*DUE_USER_COLUMNS, "has_skips")[:TICK_BATCH_SIZE]
        )
        if not rows:
            return 0
        bulk.check_constraints_at_once()
        with_skips = [row[0] for row in rows if row[-1]]
        skips = users_skips_from(with_skips, local_date=skips_from) if with_skips else {}
        queued, missed, suppressed = _CallRows(), _CallRows(), _CallRows()
        next_call_at: dict[int, datetime | None] = {}
        parked: list[tuple[int, str]] = []
        assigned: dict[int, int] = {}  # users given a (new) variant: user id -> variant id
        releases: list[datetime | None] = []  # each queued call's release, in order
        off_days: dict[str, int] = {}  # why a slot's day is off: users not called
        # One query on the list's unique indexes for the whole batch. Such a user's day is
        # recorded canceled, saying why (rare: a number on the list is normally nobody's).
        on_the_list = numbers_suppressed(numbers=[row[1] for row in rows])
        without_consent = 0
        for (
            pk,
            phone,
            local_tz,
            call_time,
            enabled,
            slot,
            variant_id,
            call_days,
            pause_until,
            consented_at,
            _,
        ) in rows:
            if not (enabled and phone):
                # A stale next_call_at (calls disabled by a bulk UPDATE, say): stop here.
                next_call_at[pk] = None
                continue
            outcome = claim.outcome(local_tz, call_time, slot, call_days)
            if outcome is None:
                # A zone this host's tzdata does not know (a raw UPDATE, an import): one bad
                # row must not stop every tick. Parked until someone fixes the zone.
                next_call_at[pk] = None
                parked.append((pk, local_tz))
                continue
            if pk in skips or (pause_until is not None and pause_until >= outcome.local_date):
                outcome = claim.personal_outcome(
                    outcome,
                    local_tz=local_tz,
                    call_time=call_time,
                    call_days=call_days,
                    pause_until=pause_until,
                    skips=skips.get(pk, frozenset()),
                )
            next_call_at[pk] = outcome.next_call_at
            if outcome.off:
                # An off day reached before its user was moved on (the policy's days off just
                # changed): no call, the next open day. One log line per reason, not per user.
                off_days[outcome.off] = off_days.get(outcome.off, 0) + 1
                continue
            if claim.rules.require_consent and consented_at is None:
                # Not claimed, and no row written: with consent required, everyone without
                # one would otherwise add a canceled call a day. Moved on to the next slot,
                # not filtered out of the due users, so they never pile up at the front of
                # the next_call_at index for every tick to read again (docs: consent).
                without_consent += 1
                continue
            variant = (
                variant_for(user_id=pk, current_id=variant_id, variants=claim.variants)
                if claim.variants
                else None
            )
            if variant is not None and variant.pk != variant_id:
                assigned[pk] = variant.pk
            if phone in on_the_list:
                outcome = replace(outcome, error=SUPPRESSED)
                rows_for = suppressed
            else:
                rows_for = missed if outcome.error else queued
            rows_for.add(
                user_id=pk, phone=phone, slot=slot, outcome=outcome, variant=variant, agent_id=claim.agent_id
            )
            if not outcome.error:
                releases.append(claim.release(slot=slot, user_id=pk, tz=outcome.tz))
        plan = _claim_calls(queued, releases, batches=claim.batches)
        missed_ids = insert_calls_ignoring_conflicts(
            missed.columns(status=CallStatus.MISSED, completed_at=now, last_status_at=now)
        )
        suppressed_ids = insert_calls_ignoring_conflicts(
            suppressed.columns(status=CallStatus.CANCELED, completed_at=now, last_status_at=now)
        )
        days.calls_ended(call_ids=[*missed_ids, *suppressed_ids])
        bulk.update_column(User, "next_call_at", next_call_at)
        _park(parked)
        bulk.update_column(User, "agent_variant", assigned)
        queues.on_commit(lambda: claim.batches.commit(plan))

    summary.due += len(rows)
    summary.claimed += plan.claimed
    summary.missed += len(missed_ids)
    for reason, users in off_days.items():
        logger.info("No call for %s user(s) on a day off: %s", users, reason)
    if missed_ids:
        for user_id, local_date, error in zip(missed.user_id, missed.local_date, missed.error, strict=True):
            logger.info("Missed call for user %s on %s: %s", user_id, local_date, error)
    for user_id, local_date in zip(suppressed.user_id, suppressed.local_date, strict=True):
        logger.info("Call for user %s on %s canceled: %s", user_id, local_date, SUPPRESSED)
    if without_consent:
        logger.info(
            "%s due users not called: no consent recorded (the call policy requires it)", without_consent
        )
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
