"""On time to the second: the tick claims the calls due before the next tick and releases
each at its own time, so a user is dialed at their call time, not at the tick after it."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry

from calls import capacity, dispatch, monitoring, queues
from calls.claim import claim_horizon, next_tick_after
from calls.health_checks import check_first_attempts
from calls.models import Call, CallStatus
from calls.policy_changes import policy_update
from calls.scheduling import calls_schedule_due
from users.models import User
from users.services import user_save

pytestmark = pytest.mark.django_db(transaction=True)

# Asia/Kolkata (make_user's zone) is UTC+5:30: 20:30 local is 15:00 UTC.
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
TICK_BEFORE = SLOT - timedelta(minutes=5)  # the */5 tick whose next tick is the slot's


def tick(moment):
    with time_machine.travel(moment, tick=False):
        return calls_schedule_due()


def calls_queue(redis_conn) -> Queue:
    return Queue("daily-calls", connection=redis_conn)


def scheduled_jobs(redis_conn) -> dict[str, datetime]:
    registry = ScheduledJobRegistry(queue=calls_queue(redis_conn))
    return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()}


def work_at(moment, redis_conn) -> None:
    """A worker (with RQ's scheduler, as deployed) at ``moment``: it releases the delayed jobs
    whose time has come and runs whatever is queued."""
    with time_machine.travel(moment, tick=False):
        queue = calls_queue(redis_conn)
        SimpleWorker([queue], connection=redis_conn).work(burst=True, with_scheduler=True)


def user_due_at(make_user, slot_local: time, **fields) -> User:
    with time_machine.travel(SLOT - timedelta(hours=2), tick=False):
        return make_user(call_time=slot_local, **fields)


# --- The horizon ------------------------------------------------------------------------------


def test_the_horizon_is_the_next_tick_and_a_minute():
    now = datetime(2026, 11, 28, 14, 55, 0, 300_000, tzinfo=UTC)
    assert next_tick_after(now=now, cron="*/5 * * * *") == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    assert claim_horizon(now=now, cron="*/5 * * * *") == datetime(2026, 11, 28, 15, 1, tzinfo=UTC)
    # A rare cron does not claim hours ahead.
    assert claim_horizon(now=now, cron="0 3 * * *") == now + timedelta(minutes=30)


# --- Claimed before, released at the call's time ----------------------------------------------


def test_a_tick_claims_the_calls_due_before_the_next_tick_each_released_at_its_time(
    make_user, redis_conn, settings
):
    settings.CALL_BATCH_SIZE = 50
    on_the_slot = [user_due_at(make_user, time(20, 30)) for _ in range(3)]
    between = user_due_at(make_user, time(20, 28))
    after_next_tick = user_due_at(make_user, time(20, 32))  # 15:02: the 15:00 tick's

    summary = tick(TICK_BEFORE)
    assert (summary.due, summary.claimed, summary.enqueued) == (4, 4, 4)
    assert not Call.objects.filter(user=after_next_tick).exists()
    assert calls_queue(redis_conn).job_ids == []  # nothing due yet: nothing queued now
    scheduled = scheduled_jobs(redis_conn)
    calls = {call.user_id: call for call in Call.objects.all()}
    for user in on_the_slot:
        assert calls[user.pk].scheduled_for == SLOT and scheduled[calls[user.pk].job_id] == SLOT
    assert len({calls[user.pk].job_id for user in on_the_slot}) == 1  # one job for the slot
    assert scheduled[calls[between.pk].job_id] == SLOT - timedelta(minutes=2)
    assert all(call.status == CallStatus.QUEUED for call in calls.values())


def test_a_call_claimed_early_is_dialed_at_its_time_not_at_the_next_tick(
    make_user, redis_conn, fake_callkaro
):
    user = user_due_at(make_user, time(20, 28))  # 14:58 UTC, between the ticks
    tick(TICK_BEFORE)
    work_at(SLOT - timedelta(minutes=2, seconds=1), redis_conn)
    assert fake_callkaro.requests == []  # a second early: still waiting for its time
    work_at(SLOT - timedelta(minutes=2), redis_conn)
    call = Call.objects.get(user=user)
    assert call.status == CallStatus.RINGING
    assert call.dialed_at == SLOT - timedelta(minutes=2)
    assert len(fake_callkaro.requests) == 1


def test_a_call_time_two_minutes_before_the_end_of_the_calling_hours_is_dialed(
    make_user, redis_conn, fake_callkaro
):
    policy_update(changes={"calling_hours": {"start": "09:00", "end": "20:30"}}, user_id=None, actor="test")
    user = user_due_at(make_user, time(20, 28))  # hours end at 20:30, the 15:00 UTC tick
    tick(TICK_BEFORE)
    work_at(SLOT - timedelta(minutes=2), redis_conn)
    summary = tick(SLOT)
    call = Call.objects.get(user=user)
    assert call.status == CallStatus.RINGING and summary.missed == 0
    assert len(fake_callkaro.requests) == 1


def test_a_late_tick_places_what_is_overdue_at_once_and_the_rest_at_its_time(make_user, redis_conn):
    overdue = user_due_at(make_user, time(20, 29))
    ahead = user_due_at(make_user, time(20, 33))
    tick(SLOT + timedelta(minutes=2))  # the 15:00 tick, two minutes late
    calls = {call.user_id: call for call in Call.objects.all()}
    assert calls_queue(redis_conn).job_ids == [calls[overdue.pk].job_id]
    assert scheduled_jobs(redis_conn) == {calls[ahead.pk].job_id: SLOT + timedelta(minutes=3)}


# --- What changes between the claim and the release --------------------------------------------


def test_a_user_who_disables_calls_after_the_claim_is_not_dialed(make_user, redis_conn, fake_callkaro):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    user.call_enabled = False
    with time_machine.travel(SLOT - timedelta(minutes=3), tick=False):
        user_save(user=user)
    work_at(SLOT, redis_conn)
    call = Call.objects.get(user=user)
    assert call.status == CallStatus.CANCELED and "disabled" in call.error
    assert fake_callkaro.requests == []


def test_a_user_disabled_behind_the_models_back_after_the_claim_is_refused_at_dial_time(
    make_user, redis_conn, fake_callkaro
):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    User.objects.filter(pk=user.pk).update(call_enabled=False)  # no save(): the call stays queued
    work_at(SLOT, redis_conn)
    call = Call.objects.get(user=user)
    assert call.status == CallStatus.CANCELED
    assert call.error == "User disabled calls before this call was placed."
    assert fake_callkaro.requests == []


def test_a_user_who_moves_their_call_time_after_the_claim_is_called_at_the_new_time_that_day(
    make_user, redis_conn, fake_callkaro
):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    user.call_time = time(21, 0)
    with time_machine.travel(SLOT - timedelta(minutes=1), tick=False):
        user_save(user=user)
    # The call claimed ahead is released, not canceled: the day is free for the new time.
    assert not Call.objects.filter(user=user).exists()
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(minutes=30)
    work_at(SLOT, redis_conn)  # its batch job finds nothing to dial
    assert fake_callkaro.requests == []
    assert tick(SLOT + timedelta(minutes=25)).claimed == 1
    call = Call.objects.get(user=user)
    assert (call.scheduled_for, str(call.local_date)) == (SLOT + timedelta(minutes=30), "2026-11-28")


def test_a_user_who_turns_calls_off_after_the_claim_keeps_a_canceled_call_saying_why(
    make_user, redis_conn, fake_callkaro
):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    user.call_enabled = False
    with time_machine.travel(SLOT - timedelta(minutes=1), tick=False):
        user_save(user=user)
    work_at(SLOT, redis_conn)
    assert Call.objects.get(user=user).status == CallStatus.CANCELED
    assert fake_callkaro.requests == []


def test_a_pause_after_the_claim_holds_the_call_at_its_release(make_user, redis_conn, fake_callkaro):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    policy_update(changes={"paused": True}, user_id=None, actor="test")
    work_at(SLOT, redis_conn)
    assert Call.objects.get(user=user).status == CallStatus.QUEUED
    assert fake_callkaro.requests == []


# --- The sweeps, the checks and the dispatcher leave an early claim alone ----------------------


def test_the_stranded_sweep_leaves_a_call_waiting_for_its_release_alone(make_user, redis_conn):
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    before = scheduled_jobs(redis_conn)
    summary = tick(SLOT - timedelta(seconds=1))
    assert (summary.reenqueued, summary.missed, summary.claimed) == (0, 0, 0)
    assert scheduled_jobs(redis_conn) == before
    # Had Redis lost its job, it is enqueued again once it is due (and stranded), not before.
    redis_conn.flushdb()
    assert tick(SLOT - timedelta(seconds=1)).reenqueued == 0
    assert tick(SLOT + timedelta(minutes=3)).reenqueued == 1
    assert Call.objects.get(user=user).status == CallStatus.QUEUED


def test_check_calls_does_not_count_a_call_claimed_early_as_waiting(make_user, redis_conn):
    user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    now = SLOT - timedelta(seconds=1)
    undialed = monitoring.first_attempts_undialed(now=now, late_before=now)
    assert (undialed.due, undialed.late) == (0, 0)
    assert check_first_attempts(now=now, late_minutes=1).ok


def test_a_capped_provider_admits_a_call_to_wait_only_once_it_is_due(make_user, redis_conn, settings):
    settings.CALL_PROVIDER = "callkaro"
    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, "callkaro": 5}
    user = user_due_at(make_user, time(20, 30))
    tick(TICK_BEFORE)
    call = Call.objects.get(user=user)
    # A job that carries it early (a clock behind the scheduler's): not admitted to wait.
    with time_machine.travel(SLOT - timedelta(seconds=30), tick=False):
        counts = dispatch.calls_dispatch_batch(call_ids=[call.pk])
    assert counts == {"early": 1}
    assert capacity.calls_waiting_for_capacity("callkaro", [call.pk]) == set()
    own = ScheduledJobRegistry(queue=calls_queue(redis_conn))
    assert own.get_scheduled_time(queues.call_job_id(call.pk)) == SLOT
    with time_machine.travel(SLOT, tick=False):
        assert dispatch.calls_dispatch_batch(call_ids=[call.pk]) == {"waiting_for_capacity": 1}
    assert capacity.calls_waiting_for_capacity("callkaro", [call.pk]) == {call.pk}


def test_a_call_time_seconds_before_the_hours_end_is_released_inside_them():
    from zoneinfo import ZoneInfo

    from calls.slots import first_attempt_release

    kolkata = ZoneInfo("Asia/Kolkata")
    slot = datetime(2026, 11, 28, 15, 29, 55, tzinfo=UTC)  # 20:59:55, hours end at 21:00
    release = first_attempt_release(
        slot=slot,
        user_id=1,
        tz=kolkata,
        spread_minutes=0,
        window=timedelta(minutes=15),
        calling_hours=(time(9, 0), time(21, 0)),
    )
    assert release == slot  # not 21:00:00, the next 10 s step, after the hours
    # Otherwise the step of the clock at or after it: releases grouped, never early.
    release = first_attempt_release(
        slot=slot - timedelta(minutes=1),
        user_id=1,
        tz=kolkata,
        spread_minutes=0,
        window=timedelta(minutes=15),
        calling_hours=(time(9, 0), time(21, 0)),
    )
    assert release == datetime(2026, 11, 28, 15, 29, tzinfo=UTC)


def test_a_call_time_moved_through_the_users_api_releases_the_call_claimed_ahead(
    client, settings, make_user, redis_conn
):
    settings.QUEUE_API_TOKEN = "t" * 40
    user = user_due_at(make_user, time(20, 30), external_id="crm-5")
    tick(TICK_BEFORE)
    with time_machine.travel(SLOT - timedelta(minutes=2), tick=False):
        answer = client.put(
            "/api/users/crm-5",
            data='{"call_time": "20:45"}',
            content_type="application/json",
            HTTP_AUTHORIZATION="Bearer " + "t" * 40,
        )
    assert answer.status_code == 200
    assert not Call.objects.filter(user=user).exists()
    assert tick(SLOT + timedelta(minutes=10)).claimed == 1
    assert Call.objects.get(user=user).scheduled_for == SLOT + timedelta(minutes=15)
