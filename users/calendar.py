"""The person's calendar: which local dates they may be called on (docs/operating/calendar.md).

A local date is off when it is not one of the person's call days, falls in their pause
(up to and including ``pause_until``), was skipped for them (CallSkip: "skip today, they
already checked in"), or is a day off for everyone in the call policy (its skip dates, the
public holidays of its countries). Always the person's own local date, in their zone.

Where it is applied: ``next_call_at`` only ever points at a slot on a date that is not off
(User.next_call_at_after, and the tick's own next slot in calls/claim.py), so the tick never
claims an off day; the dialer asks user_day_off_reason again when it takes a call, for a
skip added after the claim; the 30-day record shows off days as skipped. A change of the
policy's days off moves everyone's next call in bounded batches
(users_calendar_reschedule, run as a job).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from calls import bulk
from calls.models import Call, CallStatus
from calls.policy import Policy, policy_cache_clear, policy_current
from calls.slots import zone_or_none

from .call_days import WEEKDAY_NAMES, call_days_text, next_call_for
from .models import PEOPLE, CallSkip, User, first_attempts, user_skips_from

logger = logging.getLogger("relevel.users")

# How far ahead a day may be skipped.
SKIP_AHEAD_DAYS = 366


# --- Is a local date off? ---------------------------------------------------------------


def day_off_reason(
    *,
    call_days: int,
    pause_until: date | None,
    skips: Iterable[date],
    local_date: date,
    rules: Policy,
) -> str | None:
    """Why ``local_date`` is off for a person with this calendar, or None if they may be
    called on it. The reasons the admin, the API and a canceled call's error show."""
    if local_date in skips:
        return f"{local_date} was skipped for this person."
    if pause_until is not None and local_date <= pause_until:
        return f"Calls are paused for this person until {pause_until} (included)."
    if not call_days & (1 << local_date.weekday()):
        return (
            f"{local_date} is a {WEEKDAY_NAMES[local_date.weekday()]}, not one of this person's "
            f"call days ({call_days_text(call_days)})."
        )
    return rules.day_off_reason(local_date)


def user_day_off_reason(
    *, user: User, local_date: date, rules: Policy | None = None, skips: Iterable[date] | None = None
) -> str | None:
    """Why the person is not called on their local date ``local_date``, or None: the one
    question the dialer and the pages ask (``skips`` read here when not given)."""
    if skips is None:
        skips = CallSkip.objects.filter(user_id=user.pk, local_date=local_date).values_list(
            "local_date", flat=True
        )
    return day_off_reason(
        call_days=user.call_days,
        pause_until=user.pause_until,
        skips=set(skips),
        local_date=local_date,
        rules=rules or policy_current(),
    )


def user_may_be_called_on(*, user: User, local_date: date, rules: Policy | None = None) -> bool:
    """Whether the person's calendar leaves ``local_date`` (theirs) open to calls."""
    return user_day_off_reason(user=user, local_date=local_date, rules=rules) is None


def users_skips_from(user_ids: Sequence[int], *, local_date: date) -> dict[int, frozenset[date]]:
    """{user id: skipped dates from ``local_date`` on} for many users in one query (on the
    (user, local_date) constraint's index); users without skips are left out."""
    found: dict[int, set[date]] = {}
    if user_ids:
        rows = CallSkip.objects.filter(user_id__in=list(user_ids), local_date__gte=local_date).values_list(
            "user_id", "local_date"
        )
        for user_id, day in rows:
            found.setdefault(user_id, set()).add(day)
    return {user_id: frozenset(days) for user_id, days in found.items()}


def users_skipped_on(pairs: Sequence[tuple[int, date]]) -> dict[int, frozenset[date]]:
    """{user id: those of the given dates skipped for them}, for (user id, local date) pairs
    (a batch of calls taken for dialing), in one query."""
    if not pairs:
        return {}
    wanted = set(pairs)
    rows = CallSkip.objects.filter(
        user_id__in={user_id for user_id, _ in wanted}, local_date__in={day for _, day in wanted}
    ).values_list("user_id", "local_date")
    found: dict[int, set[date]] = {}
    for user_id, day in rows:
        if (user_id, day) in wanted:
            found.setdefault(user_id, set()).add(day)
    return {user_id: frozenset(days) for user_id, days in found.items()}


@dataclass(frozen=True)
class OffToday:
    local_date: date
    reason: str


def user_off_today(*, user: User, now: datetime) -> OffToday | None:
    """The person's local today and why it is off, or None when it is not (the admin's and
    the API's "why no call today")."""
    today = now.astimezone(zone_or_none(user.local_tz) or UTC).date()
    reason = user_day_off_reason(user=user, local_date=today)
    return None if reason is None else OffToday(today, reason)


def user_upcoming_skips(*, user: User, now: datetime) -> list[date]:
    """The person's skipped dates from their local today on."""
    today = now.astimezone(zone_or_none(user.local_tz) or UTC).date()
    return sorted(user_skips_from(user_id=user.pk, local_date=today))


def people_off_on(*, local_date: date) -> QuerySet:
    """The callable people who have ``local_date`` (their own) off: the dashboard's
    "Skipped", apart from missed, and the people list's filter behind it. Everyone when the
    policy makes the date off, else those whose call days leave its weekday out, whose pause
    covers it or who skipped it: one query."""
    callable_people = User.objects.filter(PEOPLE, call_enabled=True, phone__isnull=False)
    if policy_current().day_off_reason(local_date) is not None:
        return callable_people
    return callable_people.alias(on_weekday=F("call_days").bitand(1 << local_date.weekday())).filter(
        Q(on_weekday=0)
        | Q(pause_until__gte=local_date)
        | Exists(CallSkip.objects.filter(user_id=OuterRef("pk"), local_date=local_date))
    )


# --- Skipping a day -----------------------------------------------------------------------


class SkipRefused(ValueError):
    """A date that cannot be skipped (in the past, too far ahead)."""


@dataclass(frozen=True)
class SkipResult:
    local_date: date
    created: bool  # False: the day was already skipped
    canceled_calls: int


def user_skip_day(
    *, user_id: int, local_date: date | None = None, requested_by: str = "", now: datetime | None = None
) -> SkipResult:
    """No call for the person on ``local_date`` (theirs; default their today): the skip is
    stored (a future date holds too), that day's calls still waiting (a first attempt, a
    retry already queued) are canceled saying why, and next_call_at moves past the day, all
    in one transaction under the person's row lock. A call already dialing is not taken
    back. Raises SkipRefused for a date before their today or over a year ahead."""
    now = now or timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        today = now.astimezone(zone_or_none(user.local_tz) or UTC).date()
        local_date = local_date or today
        if local_date < today:
            raise SkipRefused(f"{local_date} is before the person's today, {today}")
        if local_date > today + timedelta(days=SKIP_AHEAD_DAYS):
            raise SkipRefused(f"at most {SKIP_AHEAD_DAYS} days after the person's today, {today}")
        _, created = CallSkip.objects.get_or_create(
            user_id=user.pk, local_date=local_date, defaults={"requested_by": requested_by[:150]}
        )
        reason = f"Day skipped: {local_date} was skipped for this person" + (
            f" by {requested_by}." if requested_by else "."
        )
        canceled = Call.objects.filter(
            user_id=user.pk, local_date=local_date, status=CallStatus.QUEUED, manual=False
        ).update(status=CallStatus.CANCELED, error=reason, last_status_at=now, completed_at=now)
        user.refresh_schedule(last_called=user._last_first_attempt_date(), now=now)
        user.save(update_fields=["next_call_at", "schedule_error"])
    logger.info(
        "User %s: %s skipped%s; %s queued call(s) canceled",
        user_id,
        local_date,
        "" if created else " (already)",
        canceled,
    )
    return SkipResult(local_date=local_date, created=created, canceled_calls=canceled)


# --- Everyone's next call after the policy's days off change -------------------------------

RESCHEDULE_BATCH = 2_000


def users_calendar_reschedule(*, now: datetime | None = None, batch_size: int = RESCHEDULE_BATCH) -> int:
    """Recompute every scheduled person's next_call_at against the policy's days off as they
    are now (a skip date or a holiday country added or removed), in batches of
    ``batch_size`` users by id, each its own short transaction with a few set-based
    statements; only the values that change are written. Returns how many moved.

    Each batch reads its users' last first attempts of the last two days only (an older one
    does not bear on the next slot: next_open_slot starts at the local yesterday) and their
    skips, and works the slot out once per distinct calendar. A tick that claims some of
    these users meanwhile is harmless: a slot written back under it is refused by the
    (user, local_date, attempt) constraint, and the dialer checks the date again."""
    now = now or timezone.now()
    # Read afresh: this runs in a worker whose cached copy may predate the change.
    policy_cache_clear()
    rules = policy_current()
    # The local yesterday of any zone (UTC-12 to UTC+14) is no earlier than this.
    floor = (now - timedelta(days=2)).astimezone(UTC).date()
    last_pk, moved = 0, 0
    columns = ("pk", "local_tz", "call_time", "call_days", "pause_until", "next_call_at")
    while True:
        with transaction.atomic():
            rows = list(
                User.objects.filter(PEOPLE, call_enabled=True, phone__isnull=False)
                .filter(next_call_at__isnull=False, pk__gt=last_pk)
                .order_by("pk")
                .select_for_update(no_key=True, of=("self",))
                .values_list(*columns)[:batch_size]
            )
            if not rows:
                break
            last_pk = rows[-1][0]
            ids = [row[0] for row in rows]
            last = dict(
                first_attempts(now=now)
                .filter(user_id__in=ids, local_date__gte=floor)
                .values("user_id")
                .annotate(last=Max("local_date"))
                .values_list("user_id", "last")
            )
            skips = users_skips_from(ids, local_date=floor)
            memo: dict[tuple, datetime | None] = {}
            changed: dict[int, datetime | None] = {}
            for pk, local_tz, call_time, call_days, pause_until, current in rows:
                user_skips = skips.get(pk, frozenset())
                key = (local_tz, call_time, call_days, pause_until, last.get(pk), user_skips)
                if key not in memo:
                    memo[key] = next_call_for(
                        local_tz=local_tz,
                        call_time=call_time,
                        call_days=call_days,
                        pause_until=pause_until,
                        last_called=last.get(pk),
                        skips=user_skips,
                        now=now,
                        rules=rules,
                    )
                if memo[key] is not None and memo[key] != current:
                    changed[pk] = memo[key]
            bulk.update_column(User, "next_call_at", changed)
        moved += len(changed)
    logger.info("Days off changed: %s people's next call moved", moved)
    return moved
