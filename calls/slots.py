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


def next_open_slot(
    *, call_time: time, tz: ZoneInfo, now: datetime, window: timedelta, after: date | None = None
) -> datetime:
    """The earliest slot whose calling window has not closed at ``now``.

    A slot is callable while ``slot <= now < slot + window``, so a slot that began a few
    minutes ago is still returned: that is how a user created (or re-enabled, or moved to a
    later time) just after their time still gets today's call. Starting one day back catches
    a 23:58 slot that a tick at 00:01 must still pick up. ``after`` skips local dates up to
    and including it (a date that already has its first attempt).
    """
    local_today = now.astimezone(tz).date()
    day = local_today - timedelta(days=1)
    if after is not None and after >= day:
        day = after + timedelta(days=1)
    while True:
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


def spread_offset_seconds(*, user_id: int, spread_minutes: int) -> int:
    """How far into the first ``spread_minutes`` of their window a user is dialed, in whole
    seconds in [0, spread_minutes * 60): a function of the id alone, so the same every day, in
    every tick and every process (not Python's ``hash()``, which is salted per process)."""
    span = spread_minutes * 60
    return (((user_id * _GOLDEN) & _MASK64) * span) >> 64


def spread_release(*, slot: datetime, user_id: int, spread_minutes: int) -> datetime:
    """When the user's first attempt of ``slot`` is released to the workers: the slot itself
    without a spread, else the start of the SPREAD_STEP_SECONDS step their offset falls in."""
    if not spread_minutes:
        return slot
    offset = spread_offset_seconds(user_id=user_id, spread_minutes=spread_minutes)
    return slot + timedelta(seconds=offset - offset % SPREAD_STEP_SECONDS)
