"""The capacity forecast (calls/forecast.py): who is due in each 15-minute slot, the calls
the provider can take in their windows, and how many will be missed, on fixtures whose
answers are worked out by hand in each test."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.forecast import (
    ForecastSlot,
    average_call_seconds,
    capacity_forecast,
    users_due_per_slot,
)
from calls.models import Call, CallStatus
from calls.policy import policy_cache_clear
from calls.policy_changes import policy_update
from users.models import User

# 09:50 UTC: the forecast covers the slots from 09:45 to 09:45 the next day.
NOW = datetime(2026, 6, 15, 9, 50, tzinfo=UTC)
NO_CAPS = {"callkaro": 0, "vapi": 0, "retell": 0, "simulator": 0}


def caps(**limits: int) -> dict[str, int]:
    return {**NO_CAPS, **limits}


@pytest.fixture
def users_at(make_user):
    """``users_at(n, "10:10")``: n users calling at that wall time in ``tz`` (UTC by
    default), created at ``made_at`` so that their next call is computed as of then."""

    def make(n: int, call_time: str, *, tz: str = "UTC", made_at: datetime = NOW, **fields) -> list[User]:
        hour, minute = map(int, call_time.split(":"))
        with time_machine.travel(made_at, tick=False):
            return [make_user(local_tz=tz, call_time=time(hour, minute), **fields) for _ in range(n)]

    return make


@pytest.fixture
def limits(settings):
    """Callkaro capped at 2 live calls, calls a minute long (the guess: no measured calls),
    a 15-minute window: 2 / 60 calls a second, 30 calls in one window."""
    settings.CALL_PROVIDER = "callkaro"
    settings.PROVIDER_MAX_LIVE_CALLS = caps(callkaro=2)
    settings.PROVIDER_MAX_CALLS_PER_SECOND = caps()
    settings.CALL_AVERAGE_DURATION_SECONDS = 60
    settings.CALL_TIME_WINDOW_MINUTES = 15
    return settings


def busy(slots: list[ForecastSlot]) -> dict[str, tuple[int, int | None, int]]:
    return {f"{slot.start:%H:%M}": (slot.due, slot.capacity, slot.will_miss) for slot in slots}


def due(now: datetime = NOW, **kwargs) -> dict[str, int]:
    return {f"{start:%m-%d %H:%M}": n for start, n in users_due_per_slot(now=now, **kwargs) if n}


# --- Who is due ---------------------------------------------------------------------------


def test_users_are_counted_in_the_15_minute_slot_of_their_next_call(users_at):
    users_at(3, "10:10")
    users_at(2, "10:14")
    users_at(4, "09:46")  # in the current slot, its window open
    users_at(1, "09:30")  # today's window (to 09:45) has closed: tomorrow, before the end, 09:45

    slots = users_due_per_slot(now=NOW)

    assert len(slots) == 96  # every slot of the 24 hours, empty ones included
    assert slots[0] == (datetime(2026, 6, 15, 9, 45, tzinfo=UTC), 4)
    assert slots[-1][0] == datetime(2026, 6, 16, 9, 30, tzinfo=UTC)
    assert due() == {"06-15 09:45": 4, "06-15 10:00": 5, "06-16 09:30": 1}


def test_users_the_tick_would_not_call_are_left_out(users_at, make_call):
    users_at(1, "10:10")
    users_at(1, "10:10", call_enabled=False)
    users_at(1, "10:10", phone=None)
    (parked,) = users_at(1, "10:10")
    # A zone this host does not know, put there by a raw UPDATE: the tick parks the user.
    User.objects.filter(pk=parked.pk).update(local_tz="Mars/Olympus")
    (disabled_by_update,) = users_at(1, "10:10")
    User.objects.filter(pk=disabled_by_update.pk).update(call_enabled=False)  # next_call_at stale
    (called,) = users_at(1, "10:10")
    with time_machine.travel(NOW, tick=False):
        # Called already today (a first attempt exists): next called tomorrow, past the range.
        make_call(user=called, local_date=date(2026, 6, 15), status=CallStatus.COMPLETED)
        called.save()

    assert due() == {"06-15 10:00": 1}


def test_slots_outside_the_calling_hours_are_left_out(users_at):
    users_at(2, "10:10")
    users_at(3, "22:10")
    policy_update(changes={"calling_hours": {"start": "08:00", "end": "21:00"}}, user_id=None, actor="test")

    assert due() == {"06-15 10:00": 2}


def test_with_consent_required_people_without_one_are_left_out(users_at):
    users_at(2, "10:10")
    (agreed,) = users_at(1, "10:10")
    User.objects.filter(pk=agreed.pk).update(consented_at=NOW - timedelta(days=1))
    policy_update(changes={"require_consent": True}, user_id=None, actor="test")
    policy_cache_clear()

    assert due() == {"06-15 10:00": 1}


def test_a_slot_whose_short_window_has_closed_is_not_due(users_at, settings):
    settings.CALL_TIME_WINDOW_MINUTES = 1
    users_at(2, "09:49", made_at=NOW - timedelta(minutes=5))  # window 09:49-09:50: closed at NOW
    users_at(3, "09:50", made_at=NOW - timedelta(minutes=5))  # window open

    assert due() == {"06-15 09:45": 3}


def test_a_spring_forward_gap_moves_the_slot_as_the_tick_does(users_at):
    # America/New_York springs forward at 02:00 on 2026-03-08: 02:30 is called at 03:30 EDT.
    now = datetime(2026, 3, 7, 14, 10, tzinfo=UTC)  # 09:10 EST
    users_at(2, "02:30", tz="America/New_York", made_at=now)

    assert due(now) == {"03-08 07:30": 2}  # 03:30 EDT = 07:30 UTC


def test_a_short_day_brings_two_slots_of_one_user_into_the_24_hours(users_at):
    # 09:15 in New York: 14:15 UTC on the 7th (EST), 13:15 UTC on the 8th (EDT), 23 hours
    # apart; both before the range's end (14:00 UTC on the 8th), both local days called.
    now = datetime(2026, 3, 7, 14, 10, tzinfo=UTC)
    users_at(3, "09:15", tz="America/New_York", made_at=now)

    assert due(now) == {"03-07 14:15": 3, "03-08 13:15": 3}


def test_an_autumn_fold_calls_the_first_occurrence_once(users_at):
    # 01:30 happens twice in New York on 2026-11-01: called at the first, 05:30 UTC (EDT).
    now = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    users_at(2, "01:30", tz="America/New_York", made_at=now)

    assert due(now) == {"11-01 05:30": 2}


def test_lord_howe_half_hour_shift(users_at):
    # Australia/Lord_Howe springs forward by 30 minutes at 02:00 on 2026-10-04: 02:15 is 02:45.
    now = datetime(2026, 10, 3, 12, 0, tzinfo=UTC)
    users_at(1, "02:15", tz="Australia/Lord_Howe", made_at=now)

    assert due(now) == {"10-03 15:45": 1}  # 02:45 +11:00


def test_the_users_are_read_in_one_grouped_query_whatever_their_number(users_at, limits):
    users_at(2, "10:10")
    policy_cache_clear()
    with CaptureQueriesContext(connection) as few:
        capacity_forecast(now=NOW)
    users_at(20, "10:10")
    users_at(20, "11:40", tz="Asia/Kolkata")
    policy_cache_clear()
    with CaptureQueriesContext(connection) as many:
        capacity_forecast(now=NOW)

    assert len(many) == len(few) == 4  # the policy, the average, the users, the skipped days


# --- The average call --------------------------------------------------------------------


@pytest.fixture
def ended_call(make_call, make_user):
    """A call made a day before it ended, of a user who is not called any more."""

    def make(*, ended: datetime, **fields) -> Call:
        with time_machine.travel(ended - timedelta(days=1), tick=False):
            return make_call(user=make_user(call_enabled=False), completed_at=ended, **fields)

    return make


def test_the_average_is_the_mean_of_last_weeks_completed_calls_with_a_length(ended_call, settings):
    settings.CALL_AVERAGE_DURATION_SECONDS = 180
    ended = NOW - timedelta(days=1)
    for seconds in (60, 120):
        ended_call(status=CallStatus.COMPLETED, duration_seconds=seconds, ended=ended)
    ended_call(status=CallStatus.COMPLETED, duration_seconds=None, ended=ended)
    ended_call(status=CallStatus.NO_ANSWER, duration_seconds=5, ended=ended)
    ended_call(status=CallStatus.COMPLETED, duration_seconds=900, ended=NOW - timedelta(days=8))

    assert average_call_seconds(now=NOW) == 90.0


def test_without_measured_calls_the_average_is_the_setting(ended_call, settings):
    settings.CALL_AVERAGE_DURATION_SECONDS = 240
    ended_call(status=CallStatus.COMPLETED, duration_seconds=None, ended=NOW)

    assert average_call_seconds(now=NOW) == 240.0


def test_measured_calls_set_the_capacity(users_at, ended_call, limits):
    for _ in range(2):
        ended_call(status=CallStatus.COMPLETED, duration_seconds=30, ended=NOW - timedelta(hours=1))
    users_at(100, "10:10")
    # 2 lines, 30 s a call: 4 calls a minute, 60 in the 15-minute window.
    assert busy(capacity_forecast(now=NOW)) == {"10:00": (100, 60, 40)}


# --- Capacity and misses ------------------------------------------------------------------


def test_one_isolated_slot_gets_cap_times_window_over_the_average(users_at, limits):
    users_at(20, "10:10")
    users_at(40, "12:10")

    # 2 lines x 900 s / 60 s = 30 calls: 20 fit, 40 miss 10.
    assert busy(capacity_forecast(now=NOW)) == {"10:00": (20, 30, 0), "12:00": (40, 30, 10)}


def test_overlapping_windows_share_the_lines_earliest_deadline_first(users_at, limits):
    users_at(40, "10:10")  # window 10:10-10:25
    users_at(25, "10:20")  # window 10:20-10:35

    # 10:10-10:25: the first slot's calls hold both lines (30 started, 10 missed). The second
    # slot's window is 900 s, of which the first slot holds 300 s: 600 s = 20 calls, 5 missed.
    assert busy(capacity_forecast(now=NOW)) == {"10:00": (40, 30, 10), "10:15": (25, 20, 5)}


def test_a_light_earlier_slot_leaves_the_lines_to_the_next(users_at, limits):
    users_at(6, "10:10")  # 6 calls: done by 10:13, before the next slot begins
    users_at(35, "10:20")

    assert busy(capacity_forecast(now=NOW)) == {"10:00": (6, 30, 0), "10:15": (35, 30, 5)}


def test_users_spread_over_a_slot_share_its_lines(users_at, limits):
    users_at(20, "10:00")  # window 10:00-10:15
    users_at(20, "10:05")  # window 10:05-10:20

    # One slot; its windows cover 10:00-10:20 (40 calls' worth). The 10:00 users take
    # 10:00-10:10 (20 calls), the 10:05 users 10:10-10:20 (20 calls): nobody is missed.
    assert busy(capacity_forecast(now=NOW)) == {"10:00": (40, 40, 0)}


def test_without_a_cap_capacity_is_unlimited(users_at, limits):
    limits.PROVIDER_MAX_LIVE_CALLS = caps(vapi=5)  # another provider's cap
    users_at(50, "10:10")

    assert capacity_forecast(now=NOW) == [ForecastSlot(datetime(2026, 6, 15, 10, 0, tzinfo=UTC), 50, None, 0)]


def test_a_calls_per_second_cap_binds_when_it_is_lower(users_at, limits):
    limits.PROVIDER_MAX_LIVE_CALLS = caps(callkaro=100)  # 100 lines / 60 s: 1.67 calls a second
    limits.PROVIDER_MAX_CALLS_PER_SECOND = caps(callkaro=1)
    limits.CALL_TIME_WINDOW_MINUTES = 1
    users_at(70, "10:10")

    # 1 call a second for the 60 s window: 60 started, 10 missed.
    assert busy(capacity_forecast(now=NOW)) == {"10:00": (70, 60, 10)}


def test_a_calls_per_second_cap_alone_is_a_cap(users_at, limits):
    limits.PROVIDER_MAX_LIVE_CALLS = caps()
    limits.PROVIDER_MAX_CALLS_PER_SECOND = caps(callkaro=1)
    limits.CALL_TIME_WINDOW_MINUTES = 1
    users_at(75, "10:10")

    assert busy(capacity_forecast(now=NOW)) == {"10:00": (75, 60, 15)}


def test_a_dst_day_in_the_users_zone(users_at, limits):
    # 02:30 on 2026-03-08 in New York does not exist: the tick calls it at 03:30 EDT, 07:30
    # UTC, so that is the slot that fills up, beside a 03:30 slot in the same instant.
    now = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    users_at(20, "02:30", tz="America/New_York", made_at=now)
    users_at(20, "03:30", tz="America/New_York", made_at=now)

    assert busy(capacity_forecast(now=now)) == {"07:30": (40, 30, 10)}


def test_disabled_users_and_users_without_a_phone_take_no_capacity(users_at, limits):
    users_at(30, "10:10")
    users_at(10, "10:10", call_enabled=False)
    users_at(10, "10:10", phone=None)

    assert busy(capacity_forecast(now=NOW)) == {"10:00": (30, 30, 0)}


def test_the_forecast_is_a_read(users_at, limits):
    users_at(40, "10:10")
    before = list(User.objects.order_by("pk").values_list("pk", "next_call_at"))

    capacity_forecast(now=NOW)

    assert list(User.objects.order_by("pk").values_list("pk", "next_call_at")) == before
    assert Call.objects.count() == 0
