"""The call policy at work in the engine (issue 10): the pause switch, calling hours in the
user's local time, retry settings per policy and per user, and the calling window.

Asia/Kolkata is UTC+5:30 (no DST); America/New_York is UTC-5 in winter, UTC-4 in summer
(2026-03-08 is its spring-forward day).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine

from calls import outcomes, placement, policy_changes, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 IST
DAY = date(2026, 11, 28)


def burst_worker():
    from rq import SimpleWorker

    from calls.queues import calls_queue

    queue = calls_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def set_policy(**changes):
    policy_changes.policy_update(changes=changes, user_id=None, actor="test")


def at(moment, *, tick=False):
    return time_machine.travel(moment, tick=tick)


def due_user(make_user, **fields):
    with at(SLOT - timedelta(hours=1)):
        return make_user(**fields)


# --- Pause ----------------------------------------------------------------------------------


def test_while_paused_the_tick_claims_nothing_and_a_slot_whose_window_closes_is_missed_paused(
    make_user, redis_conn
):
    user = due_user(make_user)
    set_policy(paused=True)
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1)).claimed == 0
    assert not Call.objects.exists()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=16))  # window closed
    call = Call.objects.get(user=user)
    assert summary.missed == 1 and call.status == CallStatus.MISSED
    assert call.error.startswith("Calls were paused until the window of this slot")
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(days=1)  # tomorrow is called as usual


def test_a_worker_dials_nothing_while_paused_and_the_call_is_placed_on_resume_inside_its_window(
    fake_callkaro, make_user, redis_conn
):
    due_user(make_user)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    call = Call.objects.get()
    set_policy(paused=True)
    with at(SLOT + timedelta(minutes=2), tick=True):
        burst_worker()  # the tick's batch job runs, and holds the call
    call.refresh_from_db()
    assert call.status == CallStatus.QUEUED and fake_callkaro.requests == []
    # A tick during the pause does not send it again (workers would only hold it).
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=5)).reenqueued == 0
    set_policy(paused=False)
    # Resumed inside the window: the next tick (one is enqueued at once) sends it again.
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=6)).reenqueued == 1
    with at(SLOT + timedelta(minutes=7)):
        assert placement.call_place(call_id=call.pk) == "placed"
    assert len(fake_callkaro.requests) == 1


def test_after_a_long_pause_nothing_older_than_its_window_is_placed(fake_callkaro, make_user, redis_conn):
    """No burst of stale calls on resume."""
    due_user(make_user)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    call = Call.objects.get()
    set_policy(paused=True)
    with at(SLOT + timedelta(minutes=2), tick=True):
        burst_worker()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=40))  # still paused
    call.refresh_from_db()
    assert summary.missed == 1 and call.status == CallStatus.MISSED
    assert call.error == "Calls were paused until its window closed."
    set_policy(paused=False)
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=41)).reenqueued == 0
    assert fake_callkaro.requests == []


def test_resuming_enqueues_a_tick_at_once(redis_conn, django_capture_on_commit_callbacks):
    from calls.queues import tick_queue

    set_policy(paused=True)
    with django_capture_on_commit_callbacks(execute=True):
        set_policy(paused=False)
    assert tick_queue().count == 1


# --- Calling hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "call_time", "slot_utc", "inside"),
    [
        # East of UTC: 20:30 IST is inside 09:00-21:00; 21:30 IST is not.
        ("Asia/Kolkata", time(20, 30), datetime(2026, 11, 28, 15, 0, tzinfo=UTC), True),
        ("Asia/Kolkata", time(21, 30), datetime(2026, 11, 28, 16, 0, tzinfo=UTC), False),
        # West of UTC: 08:30 EST is outside, 09:30 EST inside.
        ("America/New_York", time(8, 30), datetime(2026, 11, 28, 13, 30, tzinfo=UTC), False),
        ("America/New_York", time(9, 30), datetime(2026, 11, 28, 14, 30, tzinfo=UTC), True),
        # Across DST: 09:30 on New York's spring-forward day is 13:30 UTC (EDT), inside.
        ("America/New_York", time(9, 30), datetime(2026, 3, 8, 13, 30, tzinfo=UTC), True),
        ("America/New_York", time(8, 30), datetime(2026, 3, 8, 12, 30, tzinfo=UTC), False),
    ],
)
def test_a_slot_outside_the_calling_hours_is_recorded_missed_saying_so(
    make_user, redis_conn, zone, call_time, slot_utc, inside
):
    set_policy(calling_hours={"start": "09:00", "end": "21:00"})
    with at(slot_utc - timedelta(hours=1)):
        make_user(local_tz=zone, call_time=call_time)
    scheduling.calls_schedule_due(now=slot_utc + timedelta(minutes=1))
    call = Call.objects.get()
    assert call.scheduled_for == slot_utc
    if inside:
        assert call.status == CallStatus.QUEUED
    else:
        assert call.status == CallStatus.MISSED
        assert "is outside the calling hours (09:00-21:00 local time)" in call.error


def test_a_call_taken_outside_the_calling_hours_is_not_dialed(
    fake_callkaro, make_user, make_call, redis_conn
):
    """The hours changed after the call was queued: the worker checks them again."""
    user = make_user()
    first = make_call(user=user)  # 20:30 IST
    retry = make_call(
        user=user, attempt=2, retry_of=first, scheduled_for=SLOT + timedelta(minutes=30), local_date=DAY
    )  # 21:00 IST
    set_policy(calling_hours={"start": "09:00", "end": "20:45"})
    with at(SLOT + timedelta(minutes=1)):
        assert placement.call_place(call_id=first.pk) == "placed"
    with at(SLOT + timedelta(minutes=31)):
        assert placement.call_place(call_id=retry.pk) == "canceled"
    retry.refresh_from_db()
    assert retry.error == "Retry not placed: 21:01 IST is outside the calling hours (09:00-20:45 local time)."
    assert len(fake_callkaro.requests) == 1


def test_a_retry_that_would_fall_outside_the_calling_hours_is_canceled_saying_so(make_call, redis_conn):
    set_policy(calling_hours={"start": "09:00", "end": "21:00"})
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-late")
    with at(SLOT + timedelta(minutes=5)):  # 20:35 IST; the retry would be at 21:05
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-late", status=CallStatus.NO_ANSWER)
        )
    assert not result.retry_scheduled
    retry = Call.objects.get(retry_of=call)
    assert retry.status == CallStatus.CANCELED
    assert (
        retry.error
        == "Not placed: its time, 21:05 IST, is outside the calling hours (09:00-21:00 local time)."
    )


# --- Retries ------------------------------------------------------------------------------------


def no_answer(call: Call, when: datetime) -> outcomes.EventResult:
    with at(when):
        return outcomes.call_apply_event(
            event=CallEvent(provider_call_id=call.provider_call_id, status=CallStatus.NO_ANSWER)
        )


def test_the_policy_sets_each_retrys_delay_and_how_many(make_user, make_call, redis_conn):
    set_policy(retry_delays_minutes=[10, 20], max_retries=2)
    user = make_user()
    first = make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-p1")
    no_answer(first, SLOT)
    second = Call.objects.get(retry_of=first)
    assert second.scheduled_for == SLOT + timedelta(minutes=10)
    second.status, second.provider_call_id = CallStatus.RINGING, "ck-p2"
    second.save()
    no_answer(second, SLOT + timedelta(minutes=11))
    third = Call.objects.get(retry_of=second)
    assert third.scheduled_for == SLOT + timedelta(minutes=31)
    third.status, third.provider_call_id = CallStatus.RINGING, "ck-p3"
    third.save()
    assert not no_answer(third, SLOT + timedelta(minutes=40)).retry_scheduled  # 2 retries used


def test_a_users_own_retry_settings_override_the_policy(make_user, make_call, redis_conn):
    set_policy(retry_delays_minutes=[30], max_retries=2)
    user = make_user(max_retries=0)
    call = make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-u1")
    assert not no_answer(call, SLOT).retry_scheduled
    other = make_user(retry_delay_minutes=5)
    call = make_call(user=other, status=CallStatus.RINGING, provider_call_id="ck-u2")
    assert no_answer(call, SLOT).retry_scheduled
    assert Call.objects.get(retry_of=call).scheduled_for == SLOT + timedelta(minutes=5)


def test_only_the_outcomes_the_policy_names_are_retried(make_call, redis_conn):
    set_policy(retry_statuses=["no_answer"])
    busy = make_call(status=CallStatus.RINGING, provider_call_id="ck-busy")
    with at(SLOT):
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-busy", status=CallStatus.BUSY)
        )
    assert not result.retry_scheduled and not Call.objects.filter(retry_of=busy).exists()
    unanswered = make_call(status=CallStatus.RINGING, provider_call_id="ck-na")
    assert no_answer(unanswered, SLOT).retry_scheduled


def test_the_policys_window_decides_how_late_a_call_may_be_dialed(fake_callkaro, make_call, redis_conn):
    set_policy(window_minutes=5)
    call = make_call()
    with at(SLOT + timedelta(minutes=6)):
        assert placement.call_place(call_id=call.pk) == "missed"
    assert fake_callkaro.requests == []


def test_retry_statuses_also_govern_unreachable_and_inferred_failures(settings, make_call, redis_conn):
    """Not only webhook outcomes: a failure relevel recorded itself is retried only if the
    policy retries `failed`."""
    set_policy(retry_statuses=["no_answer"])
    settings.CALLKARO_BASE_URL = "http://127.0.0.1:9"  # nothing listens: unreachable
    from calls.providers import reset_provider_cache

    reset_provider_cache()
    call = make_call()
    with at(SLOT + timedelta(minutes=1), tick=True):
        assert placement.call_place(call_id=call.pk, is_last_try=True) == "failed"
    assert not Call.objects.filter(retry_of=call).exists()
    silent = make_call(status=CallStatus.RINGING, last_status_at=SLOT, local_date=DAY)
    scheduling.calls_schedule_due(now=SLOT + timedelta(seconds=settings.CALL_OUTCOME_TIMEOUT_SECONDS + 1))
    silent.refresh_from_db()
    assert silent.status == CallStatus.FAILED and not Call.objects.filter(retry_of=silent).exists()
