"""Where a user's daily call falls in absolute time.

A user's *slot* for a local date is the instant their wall clock in ``local_tz`` shows
``call_time`` on that date. The rules for the two daylight-saving edge cases are chosen on
purpose (docs/scheduling.md, "Daylight saving"):

* Spring-forward gap: a wall time that does not exist that day is pushed forward by the
  length of the gap (02:30 on 2026-03-08 in America/New_York becomes 03:30 EDT). This is
  what ``zoneinfo`` gives with ``fold=0``: the offset from before the transition.
* Autumn fold: a wall time that happens twice is the first occurrence (``fold=0``), and the
  (user, local date, attempt) constraint makes sure the second occurrence calls nobody.

Everything returned here is an aware UTC datetime; local wall-clock values never take part
in ``timedelta`` arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from users.validators import iana_time_zones


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """The zone a stored ``local_tz`` names, or None if it names none.

    The one way to turn a stored value into a zone. ``ZoneInfo`` itself reads whatever path
    it is given below the tzdata folders, so a raw UPDATE or an import can make it raise
    almost anything: IsADirectoryError for a folder ("America"), ValueError for a path
    trick, OSError for a long name. Asking the validator's set first rules all of that out,
    and only the names validation accepts are ever opened.
    """
    if name not in iana_time_zones():
        return None
    return ZoneInfo(name)


def slot_for_date(*, local_date: date, call_time: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of the slot on ``local_date`` (see the module doc for DST rules)."""
    wall = datetime.combine(local_date, call_time.replace(tzinfo=None), tzinfo=tz).replace(fold=0)
    return wall.astimezone(UTC)


def slot_local_date(*, slot: datetime, call_time: time, tz: ZoneInfo) -> date:
    """The local calendar date a slot belongs to.

    Usually the date its instant shows locally, except where a spring-forward gap runs up
    to midnight (America/Nuuk on 2026-03-28): a 23:30 pushed forward by the gap lands on the
    next day, yet it is the slot of the day before.
    """
    shown = slot.astimezone(tz).date()
    previous = shown - timedelta(days=1)
    if slot_for_date(local_date=previous, call_time=call_time, tz=tz) == slot:
        return previous
    return shown


# How many days off in a row next_open_slot looks past before it gives up: no calendar that
# validation allows (at least one weekday, a bounded list of skip dates, a few holidays a
# year) comes near it, and a pause is jumped over through ``after``, not walked day by day.
MAX_DAYS_OFF_IN_A_ROW = 400


def next_open_slot(
    *,
    call_time: time,
    tz: ZoneInfo,
    now: datetime,
    window: timedelta,
    after: date | None = None,
    day_off: Callable[[date], bool] | None = None,
) -> datetime | None:
    """The earliest slot whose calling window has not closed at ``now``, on a local date
    that is not off.

    A slot is callable while ``slot <= now < slot + window``, so a slot that began a few
    minutes ago is still returned: that is how a user created (or re-enabled, or moved to a
    later time) just after their time still gets today's call. Starting one day back catches
    a 23:58 slot that a tick at 00:01 must still pick up. ``after`` skips local dates up to
    and including it (a date that already has its first attempt, or the last day of a
    pause); ``day_off`` says which other local dates are off (users.calendar: the person's
    call days and skips, the policy's skip dates and holidays). None when every one of the
    next MAX_DAYS_OFF_IN_A_ROW dates is off.
    """
    local_today = now.astimezone(tz).date()
    day = local_today - timedelta(days=1)
    if after is not None and after >= day:
        day = after + timedelta(days=1)
    days_off = 0
    while True:
        if day_off is not None and day_off(day):
            days_off += 1
            if days_off > MAX_DAYS_OFF_IN_A_ROW:
                return None
            day += timedelta(days=1)
            continue
        slot = slot_for_date(local_date=day, call_time=call_time, tz=tz)
        if slot + window > now:
            return slot
        day += timedelta(days=1)


# A spread slot's users are released in steps of this many seconds: a 100,000-user slot
# spread over 10 minutes is 60 releases of ~1,700 calls (full batch jobs, about as many jobs
# as without a spread), while a 300-user slot is 60 small jobs, not 300 one-call ones. RQ's
# scheduler moves due jobs once a second, so a finer step would not be kept anyway.
SPREAD_STEP_SECONDS = 10

# Knuth's multiplicative hash: 2**64 divided by the golden ratio. Consecutive ids land far
# apart, so a slot's users fill the spread evenly however their ids were handed out.
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def spread_offset_seconds(*, user_id: int, spread_minutes: int, span_seconds: int | None = None) -> int:
    """How far into the first ``spread_minutes`` of their window a user is dialed, in whole
    seconds in [0, spread_minutes * 60) (or [0, span_seconds) when the slot has less room, see
    spread_span_seconds): a function of the id alone, so the same every day, in every tick and
    every process (not Python's ``hash()``, which is salted per process). A narrower span
    scales the offset rather than cutting it off, so the slot's users stay evenly spread."""
    span = spread_minutes * 60 if span_seconds is None else span_seconds
    return (((user_id * _GOLDEN) & _MASK64) * span) >> 64


# The last step of a spread starts at least this long before the calling hours end or the
# slot's window closes: the time a released batch takes to reach a worker and be dialed (RQ's
# scheduler moves it within a second; a busy queue takes longer). The same minute is what a
# spread must leave of the window (settings and the policy refuse a window it does not fit).
SPREAD_END_MARGIN_SECONDS = 60


def calling_hours_end_after(*, instant: datetime, tz: ZoneInfo, end: time) -> datetime:
    """The first instant after ``instant`` at which the user's wall clock shows ``end`` (the
    end of the calling hours): the same local day, or the next for hours that run past
    midnight or an instant after today's end."""
    local_date = instant.astimezone(tz).date()
    for day in (local_date, local_date + timedelta(days=1)):
        at = slot_for_date(local_date=day, call_time=end, tz=tz)
        if at > instant:
            return at
    return slot_for_date(local_date=local_date + timedelta(days=2), call_time=end, tz=tz)


def spread_span_seconds(
    *,
    slot: datetime,
    tz: ZoneInfo,
    spread_minutes: int,
    window: timedelta,
    calling_hours: tuple[time, time] | None,
) -> int:
    """How many seconds after ``slot`` its users may be spread over: CALL_SPREAD_MINUTES, folded
    into what is left of the window and of the calling hours after the slot, less
    SPREAD_END_MARGIN_SECONDS, so that every release is dialed inside both. A 20:55 slot with
    hours ending at 21:00 spreads over its first 4 minutes, not 10 (when 5 of 12 users were
    released after 21:00 and recorded missed, every day); a slot in the hours' last minute is
    not spread at all."""
    room = slot_room_seconds(slot=slot, tz=tz, window=window, calling_hours=calling_hours)
    return max(0, min(spread_minutes * 60, int(room) - SPREAD_END_MARGIN_SECONDS))


def slot_room_seconds(
    *, slot: datetime, tz: ZoneInfo, window: timedelta, calling_hours: tuple[time, time] | None
) -> float:
    """How long after ``slot`` its call may still be dialed: until its window closes or the
    calling hours end, whichever comes first."""
    room = window.total_seconds()
    if calling_hours is not None:
        end = calling_hours_end_after(instant=slot, tz=tz, end=calling_hours[1])
        room = min(room, (end - slot).total_seconds())
    return room


def spread_release(
    *, slot: datetime, user_id: int, spread_minutes: int, span_seconds: int | None = None
) -> datetime:
    """When the user's first attempt of ``slot`` is released to the workers: the slot itself
    without a spread, else the start of the SPREAD_STEP_SECONDS step their offset falls in
    (``span_seconds``: the slot's room, from spread_span_seconds)."""
    if not spread_minutes:
        return slot
    offset = spread_offset_seconds(user_id=user_id, spread_minutes=spread_minutes, span_seconds=span_seconds)
    return slot + timedelta(seconds=offset - offset % SPREAD_STEP_SECONDS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STEP = timedelta(seconds=SPREAD_STEP_SECONDS)


def release_step_at_or_after(at: datetime) -> datetime:
    """The first SPREAD_STEP_SECONDS boundary of the clock (:00, :10, ... :50) at or after
    ``at``. A tick's first attempts are released on these steps: never before the call's
    time (a worker leaves a call taken early queued), at most a step after it, and a whole
    second (RQ truncates a scheduled job's time to the second)."""
    steps = -((_EPOCH - at) // _STEP)  # ceiling division
    return _EPOCH + steps * _STEP


def first_attempt_release(
    *,
    slot: datetime,
    user_id: int,
    tz: ZoneInfo,
    spread_minutes: int,
    window: timedelta,
    calling_hours: tuple[time, time] | None,
) -> datetime:
    """When a claimed first attempt goes to the workers: its slot, or its step of the spread
    (folded into the slot's hours and window), on a step of the clock at or after it; on
    the next whole second instead when the step would pass the hours' end or the window (a
    call time of 20:59:55 with hours ending at 21:00)."""
    room = slot_room_seconds(slot=slot, tz=tz, window=window, calling_hours=calling_hours)
    at = slot
    if spread_minutes:
        span = max(0, min(spread_minutes * 60, int(room) - SPREAD_END_MARGIN_SECONDS))
        at = spread_release(slot=slot, user_id=user_id, spread_minutes=spread_minutes, span_seconds=span)
    step = release_step_at_or_after(at)
    if (step - slot).total_seconds() < room:
        return step
    return at if at.microsecond == 0 else at.replace(microsecond=0) + timedelta(seconds=1)
