"""CALL_SPREAD_MINUTES: a slot's users dialed across the first minutes of their window, each at
a stable offset, in batch jobs that RQ's scheduler releases step by step."""

import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import time_machine
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry

from calls.models import Call, CallStatus
from calls.scheduling import calls_schedule_due
from calls.slots import SPREAD_STEP_SECONDS, spread_offset_seconds, spread_release

# Asia/Kolkata (make_user's zone) 20:30 is 15:00 UTC.
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
SPREAD = 10  # minutes; the window is 15


def tick(moment):
    with time_machine.travel(moment, tick=False):
        return calls_schedule_due()


def queue(redis_conn) -> Queue:
    return Queue("daily-calls", connection=redis_conn)


def scheduled_jobs(redis_conn) -> dict[str, datetime]:
    """{job id: when RQ's scheduler releases it}."""
    registry = ScheduledJobRegistry(queue=queue(redis_conn))
    return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()}


def calls_by_job(redis_conn, job_ids) -> dict[str, list[int]]:
    jobs = queue(redis_conn).job_class.fetch_many(list(job_ids), connection=redis_conn)
    return {job.id: job.args[0] for job in jobs}


# --- The offset -------------------------------------------------------------------------------


def test_offsets_lie_within_the_spread_and_use_all_of_it():
    for minutes in (1, 5, 14):
        offsets = {spread_offset_seconds(user_id=u, spread_minutes=minutes) for u in range(1, 5001)}
        assert min(offsets) >= 0 and max(offsets) < minutes * 60
        assert len(offsets) == minutes * 60  # 5,000 users reach every second of it


def test_a_slots_users_are_spread_evenly_over_the_steps():
    steps = [
        spread_offset_seconds(user_id=user_id, spread_minutes=SPREAD) // SPREAD_STEP_SECONDS
        for user_id in range(1000, 7000)
    ]
    counts = [steps.count(step) for step in range(SPREAD * 60 // SPREAD_STEP_SECONDS)]
    assert min(counts) >= 80 and max(counts) <= 120  # 100 a step on average


def test_offsets_are_the_same_in_every_process():
    """Not Python's hash(), which is salted per process (PYTHONHASHSEED)."""
    user_ids = [1, 7, 42, 99_999, 12_345_678_901]
    here = [spread_offset_seconds(user_id=user_id, spread_minutes=SPREAD) for user_id in user_ids]
    code = (
        "from calls.slots import spread_offset_seconds as f; "
        f"print([f(user_id=u, spread_minutes={SPREAD}) for u in {user_ids}])"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert out.stdout.strip() == str(here)


def test_release_is_the_start_of_the_offsets_step_and_the_slot_without_a_spread():
    offset = spread_offset_seconds(user_id=42, spread_minutes=SPREAD)
    release = spread_release(slot=SLOT, user_id=42, spread_minutes=SPREAD)
    assert release == SLOT + timedelta(seconds=offset - offset % SPREAD_STEP_SECONDS)
    assert spread_release(slot=SLOT, user_id=42, spread_minutes=0) == SLOT


# --- The tick ---------------------------------------------------------------------------------

on_the_database = pytest.mark.django_db(transaction=True)


def due_users(make_user, count):
    with time_machine.travel(SLOT - timedelta(hours=1), tick=False):
        return [make_user() for _ in range(count)]


@on_the_database
def test_a_slots_calls_are_scheduled_across_the_spread_not_queued_at_once(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    users = due_users(make_user, 60)
    summary = tick(SLOT + timedelta(seconds=5))
    assert (summary.claimed, summary.enqueued) == (60, 60)

    calls = {call.user_id: call for call in Call.objects.all()}
    scheduled = scheduled_jobs(redis_conn)
    carried = calls_by_job(redis_conn, scheduled)
    released_now = calls_by_job(redis_conn, queue(redis_conn).job_ids)
    for user in users:
        call = calls[user.pk]
        # The call's time and window stay the slot's; only its release moves.
        assert call.scheduled_for == SLOT and call.status == CallStatus.QUEUED
        release = spread_release(slot=SLOT, user_id=user.pk, spread_minutes=SPREAD)
        if release <= SLOT + timedelta(seconds=5):  # its step had come: at once
            assert call.pk in released_now[call.job_id]
        else:
            assert scheduled[call.job_id] == release
            assert call.pk in carried[call.job_id]
    times = set(scheduled.values())
    assert len(times) >= 30  # 60 users over 60 steps: spread, not bunched
    assert all(SLOT < when < SLOT + timedelta(minutes=SPREAD) for when in times)
    assert all(when.second % SPREAD_STEP_SECONDS == 0 for when in times)
    # Each call in exactly one job.
    every = [pk for ids in [*carried.values(), *released_now.values()] for pk in ids]
    assert sorted(every) == sorted(call.pk for call in calls.values())


@on_the_database
def test_without_a_spread_every_call_is_queued_at_once(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = 0
    settings.CALL_BATCH_SIZE = 2
    due_users(make_user, 5)
    tick(SLOT + timedelta(minutes=1))
    assert scheduled_jobs(redis_conn) == {}
    jobs = queue(redis_conn).jobs
    assert sorted(len(job.args[0]) for job in jobs) == [1, 2, 2]
    assert {job.id for job in jobs} == set(Call.objects.values_list("job_id", flat=True))


@on_the_database
def test_a_late_tick_sends_the_calls_whose_step_has_passed_at_once(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    users = due_users(make_user, 40)
    late = SLOT + timedelta(minutes=6)  # the scheduler missed a tick
    tick(late)
    scheduled = scheduled_jobs(redis_conn)
    released_now = {pk for ids in calls_by_job(redis_conn, queue(redis_conn).job_ids).values() for pk in ids}
    for call in Call.objects.filter(user__in=users):
        if spread_release(slot=SLOT, user_id=call.user_id, spread_minutes=SPREAD) <= late:
            assert call.pk in released_now and call.job_id not in scheduled
        else:
            assert call.job_id in scheduled and call.pk not in released_now
    assert released_now and scheduled


@on_the_database
def test_a_tick_past_the_whole_spread_sends_everything_at_once(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    due_users(make_user, 20)
    tick(SLOT + timedelta(minutes=SPREAD, seconds=30))
    assert scheduled_jobs(redis_conn) == {}
    carried = [pk for job in queue(redis_conn).jobs for pk in job.args[0]]
    assert sorted(carried) == sorted(Call.objects.values_list("id", flat=True))


@on_the_database
def test_a_user_keeps_their_offset_from_one_day_to_the_next(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    users = due_users(make_user, 10)
    offsets = []
    for day in (0, 1):
        slot = SLOT + timedelta(days=day)
        redis_conn.flushdb()
        tick(slot)
        scheduled = scheduled_jobs(redis_conn)
        calls = Call.objects.filter(scheduled_for=slot)
        offsets.append({c.user_id: scheduled.get(c.job_id, slot) - slot for c in calls})
    assert offsets[0] == offsets[1]
    assert len(offsets[0]) == len(users) and len(set(offsets[0].values())) > 1


@on_the_database
def test_a_scheduled_batch_counts_as_live_for_the_stranded_sweep(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    due_users(make_user, 30)
    tick(SLOT)
    before = scheduled_jobs(redis_conn)
    assert before
    # Five minutes on, the calls of the later steps are still queued and past the stranded
    # threshold, but their jobs are waiting for their time: left alone.
    summary = tick(SLOT + timedelta(minutes=5))
    assert (summary.reenqueued, summary.missed) == (0, 0)
    assert scheduled_jobs(redis_conn) == before


@on_the_database
def test_calls_whose_jobs_redis_lost_go_back_at_their_step_of_the_spread(make_user, redis_conn, settings):
    settings.CALL_SPREAD_MINUTES = SPREAD
    users = due_users(make_user, 40)
    tick(SLOT)
    redis_conn.flushdb()  # Redis restarted empty
    now = SLOT + timedelta(minutes=5)
    summary = tick(now)
    assert summary.reenqueued == 40
    scheduled = scheduled_jobs(redis_conn)
    released_now = {pk for ids in calls_by_job(redis_conn, queue(redis_conn).job_ids).values() for pk in ids}
    for call in Call.objects.filter(user__in=users):
        release = spread_release(slot=SLOT, user_id=call.user_id, spread_minutes=SPREAD)
        assert call.job_id.endswith("-requeued-20261128T150500")
        if release <= now:
            assert call.pk in released_now
        else:
            assert scheduled[call.job_id] == release


# --- The spread stays inside the calling hours and the window ----------------------------------

# Asia/Kolkata 20:55 is 15:25 UTC; calling hours end at 21:00 local, 15:30 UTC.
LATE_SLOT = datetime(2026, 11, 28, 15, 25, tzinfo=UTC)
HOURS_END = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


def test_a_spread_slot_near_the_end_of_the_hours_is_folded_into_what_is_left_of_them():
    from zoneinfo import ZoneInfo

    from calls.slots import SPREAD_END_MARGIN_SECONDS, spread_span_seconds

    kolkata = ZoneInfo("Asia/Kolkata")
    hours = (time(9, 0), time(21, 0))
    window = timedelta(minutes=15)
    span = spread_span_seconds(
        slot=LATE_SLOT, tz=kolkata, spread_minutes=SPREAD, window=window, calling_hours=hours
    )
    assert span == 5 * 60 - SPREAD_END_MARGIN_SECONDS
    # Earlier in the day the whole spread fits; the window bounds it too; in the hours' last
    # minute there is no spread at all; hours past midnight end the next day.
    assert (
        spread_span_seconds(slot=SLOT, tz=kolkata, spread_minutes=SPREAD, window=window, calling_hours=hours)
        == SPREAD * 60
    )
    assert (
        spread_span_seconds(
            slot=SLOT, tz=kolkata, spread_minutes=SPREAD, window=timedelta(minutes=10), calling_hours=hours
        )
        == 9 * 60
    )
    last_minute = HOURS_END - timedelta(seconds=30)
    assert (
        spread_span_seconds(
            slot=last_minute, tz=kolkata, spread_minutes=SPREAD, window=window, calling_hours=hours
        )
        == 0
    )
    overnight = (time(20, 0), time(2, 0))
    assert (
        spread_span_seconds(
            slot=LATE_SLOT, tz=kolkata, spread_minutes=SPREAD, window=window, calling_hours=overnight
        )
        == SPREAD * 60
    )


@on_the_database
def test_no_user_of_a_spread_slot_inside_the_hours_is_released_after_they_end(
    make_user, redis_conn, settings, fake_callkaro
):
    """20:55 call time, hours ending at 21:00, a 10-minute spread: every user is dialed (it was
    5 of 12 missed, every day, the same users, with the tick saying missed=0)."""
    from calls.policy_changes import policy_update
    from users.selectors import users_calling_outside_hours

    settings.CALL_SPREAD_MINUTES = SPREAD
    policy_update(changes={"calling_hours": {"start": "09:00", "end": "21:00"}}, user_id=None, actor="test")
    with time_machine.travel(LATE_SLOT - timedelta(hours=1), tick=False):
        users = [make_user(call_time=time(20, 55)) for _ in range(12)]
    # Unfolded, some of these users' steps lie past 21:00.
    assert any(
        spread_release(slot=LATE_SLOT, user_id=u.pk, spread_minutes=SPREAD) >= HOURS_END for u in users
    )
    assert not users_calling_outside_hours(start=time(9, 0), end=time(21, 0)).filter(
        pk__in=[u.pk for u in users]
    )
    # The forecast counts them as called in their 15-minute slot, as the worker will.
    from calls.forecast import users_due_per_slot

    due = dict(users_due_per_slot(now=LATE_SLOT - timedelta(minutes=6), hours=1))
    assert due[datetime(2026, 11, 28, 15, 15, tzinfo=UTC)] == 12
    summary = tick(LATE_SLOT - timedelta(minutes=5))
    assert (summary.claimed, summary.missed) == (12, 0)
    releases = sorted(set(scheduled_jobs(redis_conn).values()))
    assert releases and all(LATE_SLOT <= when < HOURS_END - timedelta(seconds=50) for when in releases)
    for when in releases:
        with time_machine.travel(when, tick=False):
            SimpleWorker([queue(redis_conn)], connection=redis_conn).work(burst=True, with_scheduler=True)
    statuses = sorted(Call.objects.filter(user__in=users).values_list("status", flat=True))
    assert statuses == [CallStatus.RINGING] * 12
    assert len(fake_callkaro.requests) == 12
