"""Call days and the next slot of a person's calendar, with nothing of the database in them:
what the model's derived next call, the tick's claim and the forms share
(users/calendar.py has the rest of the calendar, which reads and writes the tables)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from typing import TYPE_CHECKING

from calls.slots import next_open_slot, zone_or_none

if TYPE_CHECKING:
    from calls.policy import Policy

# The person's call days as a bit mask, bit 0 Monday (date.weekday()) to bit 6 Sunday: one
# small column that the tick reads with the due users and groups by (users/calendar.py).
ALL_CALL_DAYS = 0b1111111

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CALL_DAYS_MESSAGE = (
    'a list of weekdays among mon tue wed thu fri sat sun (at least one), such as ["mon", "tue"]'
)


# --- Call days: a bit mask, bit 0 Monday ------------------------------------------------


def call_days_mask(names: Iterable[str]) -> int:
    """The mask of weekday names ("mon" ... "sun"); ValueError for any other name."""
    mask = 0
    for name in names:
        mask |= 1 << WEEKDAYS.index(name)
    return mask


def call_days_names(mask: int) -> list[str]:
    """The weekday names of a mask, Monday first (the API's and the CSV's shape)."""
    return [name for bit, name in enumerate(WEEKDAYS) if mask & (1 << bit)]


def call_days_text(mask: int) -> str:
    """ "every day", or the days as the CSV writes them ("mon tue wed thu fri")."""
    return "every day" if mask == ALL_CALL_DAYS else " ".join(call_days_names(mask))


# --- Is a local date off? ---------------------------------------------------------------


def day_off_test(*, call_days: int, skips: frozenset[date], rules: Policy) -> Callable[[date], bool]:
    """next_open_slot's ``day_off`` for a person (their pause goes in its ``after``)."""

    def is_off(local_date: date) -> bool:
        return (
            not call_days & (1 << local_date.weekday())
            or local_date in skips
            or rules.day_off_reason(local_date) is not None
        )

    return is_off


def next_call_for(
    *,
    local_tz: str,
    call_time: time,
    call_days: int,
    pause_until: date | None,
    last_called: date | None,
    skips: frozenset[date],
    now: datetime,
    rules: Policy,
) -> datetime | None:
    """The next slot of a person with this calendar: the first whose window is open at
    ``now`` on a local date after ``last_called`` that is not off. None for an unknown zone."""
    tz = zone_or_none(local_tz)
    if tz is None:
        return None
    after = last_called
    if pause_until is not None and (after is None or pause_until > after):
        after = pause_until  # a pause is jumped over, not walked day by day
    return next_open_slot(
        call_time=call_time,
        tz=tz,
        now=now,
        window=rules.window,
        after=after,
        day_off=day_off_test(call_days=call_days, skips=skips, rules=rules),
    )
