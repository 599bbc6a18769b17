"""Slot arithmetic: real 2026 DST transitions, odd offsets, midnight."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from calls.slots import next_open_slot, slot_for_date, slot_local_date

WINDOW = timedelta(minutes=15)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "day", "call_time", "expected_utc"),
    [
        # Plain days.
        ("Asia/Kolkata", date(2026, 11, 28), time(20, 30), utc(2026, 11, 28, 15, 0)),
        ("Asia/Kathmandu", date(2026, 11, 28), time(20, 30), utc(2026, 11, 28, 14, 45)),
        # St John's is UTC-3:30 in November: the slot is on the next UTC day.
        ("America/St_Johns", date(2026, 11, 28), time(20, 30), utc(2026, 11, 29, 0, 0)),
        # Chatham is UTC+13:45 in its summer.
        ("Pacific/Chatham", date(2026, 11, 28), time(20, 30), utc(2026, 11, 28, 6, 45)),
        # Lord Howe is UTC+11 in its summer (a 30-minute DST shift from +10:30).
        ("Australia/Lord_Howe", date(2026, 11, 28), time(20, 30), utc(2026, 11, 28, 9, 30)),
        # Spring-forward gaps: a wall time that does not exist moves forward by the gap.
        ("America/New_York", date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7, 30)),  # 03:30 EDT
        ("Europe/London", date(2026, 3, 29), time(1, 30), utc(2026, 3, 29, 1, 30)),  # 02:30 BST
        ("Australia/Lord_Howe", date(2026, 10, 4), time(2, 15), utc(2026, 10, 3, 15, 45)),  # 02:45 +11
        # Autumn folds: a wall time that happens twice means its first occurrence.
        ("America/New_York", date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),  # EDT
        ("Europe/London", date(2026, 10, 25), time(1, 30), utc(2026, 10, 25, 0, 30)),  # BST
        ("Australia/Lord_Howe", date(2026, 4, 5), time(1, 45), utc(2026, 4, 4, 14, 45)),  # +11
    ],
)
def test_slot_for_date_follows_the_documented_rules(zone, day, call_time, expected_utc):
    slot = slot_for_date(local_date=day, call_time=call_time, tz=ZoneInfo(zone))
    assert slot == expected_utc
    assert slot.tzinfo is UTC
    assert slot_local_date(slot=slot, call_time=call_time, tz=ZoneInfo(zone)) == day


def test_a_gap_slot_lands_on_the_local_wall_clock_just_after_the_gap():
    slot = slot_for_date(local_date=date(2026, 3, 8), call_time=time(2, 30), tz=ZoneInfo("America/New_York"))
    local = slot.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute, local.utcoffset()) == (3, 30, timedelta(hours=-4))


def test_the_slot_is_still_open_until_the_window_closes():
    tz = ZoneInfo("Asia/Kolkata")
    slot = utc(2026, 11, 28, 15, 0)
    for now in (slot - timedelta(seconds=1), slot, slot + WINDOW - timedelta(seconds=1)):
        assert next_open_slot(call_time=time(20, 30), tz=tz, now=now, window=WINDOW) == slot
    # At slot + window exactly the window has closed: tomorrow's slot is next.
    assert next_open_slot(
        call_time=time(20, 30), tz=tz, now=slot + WINDOW, window=WINDOW
    ) == slot + timedelta(days=1)


def test_a_slot_just_before_local_midnight_is_still_open_just_after_it():
    tz = ZoneInfo("Asia/Kolkata")
    now = datetime(2026, 11, 29, 0, 1, tzinfo=tz)
    slot = next_open_slot(call_time=time(23, 58), tz=tz, now=now, window=WINDOW)
    assert slot == datetime(2026, 11, 28, 23, 58, tzinfo=tz)
    assert slot_local_date(slot=slot, call_time=time(23, 58), tz=tz) == date(2026, 11, 28)


def test_after_skips_dates_that_already_have_their_call():
    tz = ZoneInfo("Asia/Kolkata")
    now = utc(2026, 11, 28, 15, 1)
    slot = next_open_slot(call_time=time(20, 30), tz=tz, now=now, window=WINDOW, after=date(2026, 11, 28))
    assert slot == utc(2026, 11, 29, 15, 0)


def test_across_a_fold_the_next_slot_after_the_first_occurrence_is_the_next_day():
    tz = ZoneInfo("America/New_York")
    # 06:35 UTC is 01:35 EST, the *second* 01:30-ish of 2026-11-01: not a new slot.
    now = utc(2026, 11, 1, 6, 35)
    slot = next_open_slot(call_time=time(1, 30), tz=tz, now=now, window=WINDOW, after=date(2026, 11, 1))
    assert slot == datetime(2026, 11, 2, 1, 30, tzinfo=tz)


def test_a_gap_that_runs_up_to_midnight_keeps_the_slot_on_its_own_day():
    """America/Nuuk skips 23:00-24:00 on 2026-03-28: 23:30 is pushed to 00:30 on the 29th,
    yet it is the 28th's call, and the 29th still gets its own."""
    tz = ZoneInfo("America/Nuuk")
    slot = slot_for_date(local_date=date(2026, 3, 28), call_time=time(23, 30), tz=tz)
    assert slot == utc(2026, 3, 29, 1, 30)
    assert slot.astimezone(tz).date() == date(2026, 3, 29)
    assert slot_local_date(slot=slot, call_time=time(23, 30), tz=tz) == date(2026, 3, 28)
    following = next_open_slot(
        call_time=time(23, 30), tz=tz, now=slot, window=WINDOW, after=date(2026, 3, 28)
    )
    assert following == utc(2026, 3, 30, 0, 30)  # 23:30 on the 29th, now UTC-1
