"""Reads on users."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet

from calls.models import TERMINAL_STATUSES, Call, CallStatus
from calls.policy import policy_current
from calls.selectors import ANY_KIND
from calls.slots import zone_or_none

from .calendar import day_off_reason
from .models import OPERATORS, PEOPLE, CallSkip, User
from .validators import iana_time_zones


def users_calling_outside_hours(*, start: time, end: time) -> QuerySet:
    """Callable users whose daily call time lies outside the calling hours [start, end)
    (an end before the start runs past midnight): their slots are recorded missed. Every
    other user is dialed inside the hours: CALL_SPREAD_MINUTES folds into what is left of
    them after the call time (calls/slots.py spread_span_seconds)."""
    outside = (
        Q(call_time__lt=start) | Q(call_time__gte=end)
        if start < end
        else Q(call_time__lt=start, call_time__gte=end)
    )
    return User.objects.filter(outside, PEOPLE, call_enabled=True, phone__isnull=False)


def people() -> QuerySet:
    """The people relevel calls (or may): every user who is not an operator."""
    return User.objects.filter(PEOPLE)


def operators() -> QuerySet:
    """The admin's logins (staff or superusers): never called, never in the people list."""
    return User.objects.filter(OPERATORS)


def user_by_external_id(*, external_id: str) -> User | None:
    """The person with this external id (the users API's key); never an operator."""
    return people().filter(external_id=external_id).first()


def user_local_date(*, user: User, now: datetime) -> date:
    """The user's local calendar date at ``now`` (UTC's for a zone this host does not know)."""
    return now.astimezone(zone_or_none(user.local_tz) or UTC).date()


def user_calls_on(*, user: User, local_date: date) -> QuerySet:
    """The user's calls of one local day, first attempt first (the user's indexes: ANY_KIND)."""
    return Call.objects.filter(ANY_KIND, user=user, local_date=local_date).order_by("attempt", "pk")


# --- A user's call record: one outcome per local day -----------------------------------------

RECORD_DAYS = 30


class DayOutcome(StrEnum):
    ANSWERED = "answered"
    # Dialed (or due to be) and nobody answered: failed, no answer (voicemail too), busy;
    # the calls admin's "Not reached" filter says the same.
    NOT_REACHED = "not_reached"
    # No call was dialed: every one of the day's calls was missed (its window had closed).
    MISSED = "missed"
    # Still going: a call queued, dialing or ringing, a retry waiting.
    IN_PROGRESS = "in_progress"
    # Today, before the call time.
    DUE = "due"
    # No call that day (calls off, no phone, not yet a user), or only canceled ones.
    NOT_SCHEDULED = "not_scheduled"
    # A day off in the person's calendar (not a call day, paused, skipped, a policy skip date
    # or holiday: users/calendar.py) on which nobody was reached: not missed, and it neither
    # counts for nor breaks the streak.
    SKIPPED = "skipped"

    @property
    def label(self) -> str:
        return DAY_OUTCOME_LABELS[self]


DAY_OUTCOME_LABELS = {
    DayOutcome.ANSWERED: "Answered",
    DayOutcome.NOT_REACHED: "Not reached",
    DayOutcome.MISSED: "Missed",
    DayOutcome.IN_PROGRESS: "In progress",
    DayOutcome.DUE: "Due",
    DayOutcome.NOT_SCHEDULED: "Not scheduled",
    DayOutcome.SKIPPED: "Skipped",
}
_NOT_REACHED = frozenset({CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.VOICEMAIL})


@dataclass(frozen=True)
class CallDay:
    local_date: date
    outcome: DayOutcome
    calls: tuple[Call, ...]  # the day's attempts (and manual calls), first first


@dataclass(frozen=True)
class CallRecord:
    days: tuple[CallDay, ...]  # RECORD_DAYS local days, oldest first, ending with today
    # Answered days in a row up to today (today counts once answered; a today still due or
    # in progress does not break it); at most RECORD_DAYS, the days read.
    streak: int

    @property
    def today(self) -> CallDay:
        return self.days[-1]


def day_outcome(calls: Iterable[Call], *, due_today: bool = False, off: bool = False) -> DayOutcome:
    """One local day's outcome from its calls: answered if any call was; otherwise in
    progress while one is not final; not reached if one was dialed; skipped on a day off
    (``off``); missed if all were."""
    statuses = {call.status for call in calls}
    if CallStatus.COMPLETED in statuses:
        return DayOutcome.ANSWERED
    if statuses - TERMINAL_STATUSES:
        return DayOutcome.IN_PROGRESS
    if statuses & _NOT_REACHED:
        return DayOutcome.NOT_REACHED
    if off:
        return DayOutcome.SKIPPED
    if CallStatus.MISSED in statuses:
        return DayOutcome.MISSED
    return DayOutcome.DUE if due_today else DayOutcome.NOT_SCHEDULED


def _due_later_today(user: User, *, today: date, now: datetime) -> bool:
    tz = zone_or_none(user.local_tz)
    return bool(
        user.next_call_at
        and tz
        and user.next_call_at > now
        and user.next_call_at.astimezone(tz).date() == today
    )


def user_call_record(*, user: User, now: datetime, days: int = RECORD_DAYS) -> CallRecord:
    """The user's last ``days`` local days (in their own zone, today included), each with its
    outcome and its calls, and the current streak of answered days: one query, on the
    user's indexes (ANY_KIND)."""
    today = user_local_date(user=user, now=now)
    first = today - timedelta(days=days - 1)  # calendar dates: no wall-clock arithmetic
    by_date: dict[date, list[Call]] = defaultdict(list)
    calls = Call.objects.filter(ANY_KIND, user=user, local_date__gte=first, local_date__lte=today).order_by(
        "local_date", "manual", "attempt", "pk"
    )
    for call in calls:
        by_date[call.local_date].append(call)
    # Days off as the calendar stands now (the person's days, pause and skips, the policy's).
    rules = policy_current()
    skips = set(
        CallSkip.objects.filter(user=user, local_date__gte=first, local_date__lte=today).values_list(
            "local_date", flat=True
        )
    )
    record = []
    for offset in range(days):
        local_date = first + timedelta(days=offset)
        day_calls = tuple(by_date.get(local_date, ()))
        due = local_date == today and _due_later_today(user, today=today, now=now)
        off = _is_off(user, local_date, skips=skips, rules=rules)
        record.append(CallDay(local_date, day_outcome(day_calls, due_today=due, off=off), day_calls))
    return CallRecord(days=tuple(record), streak=answered_streak(record))


def _is_off(user: User, local_date: date, *, skips: set[date], rules) -> bool:
    return (
        day_off_reason(
            call_days=user.call_days,
            pause_until=user.pause_until,
            skips=skips,
            local_date=local_date,
            rules=rules,
        )
        is not None
    )


def answered_streak(days: list[CallDay]) -> int:
    # A day off neither counts for the streak nor breaks it.
    days = [day for day in days if day.outcome != DayOutcome.SKIPPED]
    ordered = list(reversed(days))
    if ordered and ordered[0].outcome in (DayOutcome.DUE, DayOutcome.IN_PROGRESS, DayOutcome.NOT_SCHEDULED):
        ordered = ordered[1:]  # today is not over: it neither counts nor breaks the streak yet
    streak = 0
    for day in ordered:
        if day.outcome != DayOutcome.ANSWERED:
            break
        streak += 1
    return streak


def users_today(*, users: Sequence[User], now: datetime) -> dict[int, CallDay]:
    """Each user's local today (in their own zone) with its outcome and calls, for a page of
    users: one query, whatever their number and zones."""
    today_of = {user.pk: user_local_date(user=user, now=now) for user in users}
    by_user: dict[int, list[Call]] = defaultdict(list)
    if today_of:
        calls = Call.objects.filter(
            user_id__in=list(today_of), local_date__in=set(today_of.values())
        ).order_by("user_id", "manual", "attempt", "pk")
        for call in calls:
            if call.local_date == today_of[call.user_id]:
                by_user[call.user_id].append(call)
    skipped: set[tuple[int, date]] = set()
    if today_of:
        skipped = set(
            CallSkip.objects.filter(
                user_id__in=list(today_of), local_date__in=set(today_of.values())
            ).values_list("user_id", "local_date")
        )
    rules = policy_current()
    result = {}
    for user in users:
        today = today_of[user.pk]
        day_calls = tuple(by_user.get(user.pk, ()))
        due = _due_later_today(user, today=today, now=now)
        off = _is_off(user, today, skips={today} if (user.pk, today) in skipped else set(), rules=rules)
        result[user.pk] = CallDay(today, day_outcome(day_calls, due_today=due, off=off), day_calls)
    return result


def calls_of_local_today(*, now: datetime) -> Q:
    """Calls of their user's local today, whatever each user's zone: a condition on the
    call's local_date for each group of zones sharing a date (at most three at any instant).
    Users whose zone this host does not know are left out."""
    zones_by_date: dict[date, list[str]] = defaultdict(list)
    for name in iana_time_zones():
        zones_by_date[now.astimezone(ZoneInfo(name)).date()].append(name)
    condition = Q(pk__in=[])
    for local_date, zones in zones_by_date.items():
        condition |= Q(local_date=local_date, user__local_tz__in=sorted(zones))
    return condition
