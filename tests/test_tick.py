"""The scheduler tick: who is due, exactly once, missed slots, and what Redis lost."""

import logging
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from rq import Queue

from calls.models import Call, CallStatus
from calls.scheduling import calls_schedule_due
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

# Asia/Kolkata is UTC+5:30 with no DST: 20:30 local is 15:00 UTC.
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def at(moment):
    return time_machine.travel(moment, tick=False)


def tick(moment):
    with at(moment):
        return calls_schedule_due()


def queued_job_ids(redis_conn):
    return set(Queue("daily-calls", connection=redis_conn).job_ids)


def queued_call_ids(redis_conn):
    """The call ids that the queued jobs carry, whether batch jobs or jobs of their own."""
    ids = []
    for job in Queue("daily-calls", connection=redis_conn).jobs:
        ids.extend(job.args[0] if isinstance(job.args[0], list) else [job.args[0]])
    return sorted(ids)


def test_a_due_user_is_claimed_once_with_a_deterministic_job(make_user, redis_conn):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    assert user.next_call_at == SLOT

    first = tick(SLOT + timedelta(minutes=1))
    second = tick(SLOT + timedelta(minutes=6))

    call = Call.objects.get(user=user)
    assert (first.due, first.claimed, first.enqueued) == (1, 1, 1)
    assert (second.due, second.claimed) == (0, 0)
    assert (call.status, call.attempt, call.local_date) == (CallStatus.QUEUED, 1, date(2026, 11, 28))
    assert call.to_number == user.phone and call.agent_id == "agent-test"
    # The tick's first attempts travel in batch jobs named after their first call.
    assert queued_job_ids(redis_conn) == {f"place-calls-{call.pk}"}
    assert queued_call_ids(redis_conn) == [call.pk]
    assert call.job_id == f"place-calls-{call.pk}"
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(days=1)


def test_a_user_whose_slot_comes_after_the_next_tick_is_not_due_yet(make_user, redis_conn):
    with at(SLOT - timedelta(hours=1)):
        make_user()
    # At 14:54 the next tick is at 14:55 (SCHEDULE_CRON */5): a 15:00 slot is that tick's.
    summary = tick(SLOT - timedelta(minutes=6))
    assert summary.due == 0 and not Call.objects.exists()


def test_a_user_created_just_after_their_time_is_called_at_the_next_tick(make_user):
    with at(SLOT + timedelta(minutes=1)):
        user = make_user()
    summary = tick(SLOT + timedelta(minutes=5))
    assert summary.claimed == 1
    assert Call.objects.get(user=user).local_date == date(2026, 11, 28)


def test_a_tick_after_the_window_records_a_missed_call_and_moves_on(make_user, redis_conn):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    summary = tick(SLOT + timedelta(minutes=15))
    call = Call.objects.get(user=user)
    assert (summary.claimed, summary.missed) == (0, 1)
    assert call.status == CallStatus.MISSED and "No scheduler tick ran" in call.error
    assert queued_job_ids(redis_conn) == set()
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(days=1)


def test_moving_call_time_later_the_same_day_calls_at_the_new_time(make_user):
    with at(SLOT - timedelta(hours=2)):
        user = make_user()
        user.call_time = time(21, 0)
        user.save()
    assert tick(SLOT + timedelta(minutes=1)).claimed == 0
    assert tick(SLOT + timedelta(minutes=31)).claimed == 1
    assert Call.objects.get(user=user).scheduled_for == SLOT + timedelta(minutes=30)


def test_moving_call_time_later_after_being_called_does_not_call_twice(make_user):
    with at(SLOT - timedelta(hours=2)):
        user = make_user()
    assert tick(SLOT + timedelta(minutes=1)).claimed == 1
    with at(SLOT + timedelta(minutes=2)):
        user.refresh_from_db()
        user.call_time = time(21, 0)
        user.save()
    summary = tick(SLOT + timedelta(minutes=31))
    assert summary.claimed == 0
    assert Call.objects.filter(user=user).count() == 1
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(days=1, minutes=30)


def test_a_user_re_enabled_within_the_window_is_called(make_user):
    with at(SLOT - timedelta(hours=2)):
        user = make_user(call_enabled=False)
    assert user.next_call_at is None
    assert tick(SLOT + timedelta(minutes=1)).due == 0
    with at(SLOT + timedelta(minutes=8)):
        user.call_enabled = True
        user.save()
    assert tick(SLOT + timedelta(minutes=10)).claimed == 1


def test_a_user_re_enabled_after_the_window_waits_for_tomorrow_without_a_missed_row(make_user):
    with at(SLOT - timedelta(hours=2)):
        user = make_user(call_enabled=False)
    with at(SLOT + timedelta(minutes=30)):
        user.call_enabled = True
        user.save()
    assert user.next_call_at == SLOT + timedelta(days=1)
    assert tick(SLOT + timedelta(minutes=31)).due == 0
    assert not Call.objects.exists()


def test_users_without_phone_or_disabled_are_never_due(make_user):
    with at(SLOT - timedelta(hours=1)):
        no_phone = make_user(phone=None)
        disabled = make_user(call_enabled=False)
    assert no_phone.next_call_at is None and disabled.next_call_at is None
    assert tick(SLOT + timedelta(minutes=1)).due == 0


def test_a_user_disabled_behind_the_models_back_is_not_called(make_user):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    User.objects.filter(pk=user.pk).update(call_enabled=False)  # a raw UPDATE: next_call_at is stale
    summary = tick(SLOT + timedelta(minutes=1))
    assert summary.claimed == 0 and not Call.objects.exists()
    user.refresh_from_db()
    assert user.next_call_at is None


def test_a_slot_before_local_midnight_is_picked_up_just_after_it(make_user):
    with at(datetime(2026, 11, 28, 12, 0, tzinfo=UTC)):
        user = make_user(local_tz="Asia/Kolkata", call_time=time(23, 58))
    # 00:01 IST on the 29th is 18:31 UTC on the 28th.
    summary = tick(datetime(2026, 11, 28, 18, 31, tzinfo=UTC))
    assert summary.claimed == 1
    assert Call.objects.get(user=user).local_date == date(2026, 11, 28)


def test_a_call_time_in_the_autumn_fold_is_called_once(make_user):
    """01:30 happens twice in New York on 2026-11-01; ticks every 5 minutes through both."""
    with at(datetime(2026, 10, 31, 12, 0, tzinfo=UTC)):
        user = make_user(local_tz="America/New_York", call_time=time(1, 30))
    moment = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 01:00 EDT
    claimed = 0
    while moment <= datetime(2026, 11, 1, 7, 0, tzinfo=UTC):  # 02:00 EST
        claimed += tick(moment).claimed
        moment += timedelta(minutes=5)
    assert claimed == 1
    call = Call.objects.get(user=user)
    assert call.scheduled_for == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert call.local_date == date(2026, 11, 1)


def test_a_call_time_in_the_spring_gap_is_called_once_just_after_it(make_user):
    with at(datetime(2026, 3, 7, 12, 0, tzinfo=UTC)):
        user = make_user(local_tz="America/New_York", call_time=time(2, 30))
    moment = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    claimed = 0
    while moment <= datetime(2026, 3, 8, 9, 0, tzinfo=UTC):  # 05:00 EDT
        claimed += tick(moment).claimed
        moment += timedelta(minutes=5)
    assert claimed == 1
    assert Call.objects.get(user=user).scheduled_for == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


@pytest.mark.parametrize(
    ("zone", "slot_utc"),
    [
        ("Asia/Kathmandu", datetime(2026, 11, 28, 14, 45, tzinfo=UTC)),
        ("Australia/Lord_Howe", datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
        ("America/St_Johns", datetime(2026, 11, 29, 0, 0, tzinfo=UTC)),
        ("Pacific/Chatham", datetime(2026, 11, 28, 6, 45, tzinfo=UTC)),
    ],
)
def test_odd_offset_zones_are_called_at_their_local_time(make_user, zone, slot_utc):
    with at(slot_utc - timedelta(hours=3)):
        user = make_user(local_tz=zone, call_time=time(20, 30))
    # Claimed by the tick before their time (the one whose next tick is after it), for it.
    assert tick(slot_utc - timedelta(minutes=7)).claimed == 0
    assert tick(slot_utc - timedelta(minutes=2)).claimed == 1
    call = Call.objects.get(user=user)
    assert (call.local_date, call.scheduled_for) == (date(2026, 11, 28), slot_utc)


def test_a_claimed_call_whose_job_redis_lost_is_enqueued_again(make_user, redis_conn):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    tick(SLOT + timedelta(minutes=1))
    redis_conn.flushdb()  # Redis restarted empty between claim and work
    summary = tick(SLOT + timedelta(minutes=6))
    call = Call.objects.get(user=user)
    assert summary.reenqueued == 1
    # Back in a batch job of a name of its own, which the call's row now names.
    assert call.job_id == f"place-calls-{call.pk}-requeued-20261128T150600"
    assert queued_job_ids(redis_conn) == {call.job_id}
    assert queued_call_ids(redis_conn) == [call.pk]
    # The job is there now: the next tick leaves it alone.
    assert tick(SLOT + timedelta(minutes=11)).reenqueued == 0
    assert Queue("daily-calls", connection=redis_conn).count == 1


def test_claims_survive_redis_being_down_and_a_later_tick_enqueues_them(
    make_user, redis_conn, monkeypatch, caplog
):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from calls import queues

    with at(SLOT - timedelta(hours=1)):
        users = [make_user() for _ in range(3)]

    def redis_down(*args, **kwargs):
        raise RedisConnectionError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(queues, "enqueue_call_batches", redis_down)
        patch.setattr(queues, "live_job_ids", redis_down)
        with caplog.at_level(logging.ERROR, logger="relevel.calls"):
            down = tick(SLOT + timedelta(minutes=1))
    assert (down.claimed, down.enqueued, down.enqueue_failed) == (3, 0, 3)
    assert "will be enqueued by a later tick" in caplog.text
    assert Call.objects.filter(status=CallStatus.QUEUED).count() == 3

    up = tick(SLOT + timedelta(minutes=6))
    assert (up.claimed, up.reenqueued) == (0, 3)
    calls = Call.objects.filter(user__in=users)
    assert queued_job_ids(redis_conn) == {c.job_id for c in calls}
    assert queued_call_ids(redis_conn) == sorted(c.pk for c in calls)


def test_a_call_in_a_batch_job_that_died_is_enqueued_again(make_user, redis_conn):
    from rq.job import JobStatus

    with at(SLOT - timedelta(hours=1)):
        users = [make_user() for _ in range(2)]
    tick(SLOT + timedelta(minutes=1))
    [batch] = Queue("daily-calls", connection=redis_conn).jobs
    assert tick(SLOT + timedelta(minutes=6)).reenqueued == 0  # still waiting in line: left alone
    batch.set_status(JobStatus.FAILED)  # its worker died before reaching the calls
    summary = tick(SLOT + timedelta(minutes=11))
    assert summary.reenqueued == 2
    calls = Call.objects.filter(user__in=users)
    [again] = {c.job_id for c in calls}
    assert again != batch.id and again in queued_job_ids(redis_conn)
    assert Queue("daily-calls", connection=redis_conn).fetch_job(again).args == (sorted(c.pk for c in calls),)


def test_stranded_calls_behind_live_ones_of_the_same_slot_are_reached_in_one_sweep(
    make_user, redis_conn, settings
):
    """Pages of 2 over one slot: the live calls first in line must not hide the rest."""
    from calls.sweeps import calls_reenqueue_stranded

    settings.CALL_BATCH_SIZE = 1  # one job per call, so some can die and some live on
    with at(SLOT - timedelta(hours=1)):
        for _ in range(7):
            make_user()
    tick(SLOT + timedelta(minutes=1))
    calls = list(Call.objects.order_by("pk"))
    for call in calls[3:]:  # the jobs of the last four were lost; the first three wait in line
        Queue("daily-calls", connection=redis_conn).fetch_job(call.job_id).delete()
    moment = SLOT + timedelta(minutes=6)
    assert calls_reenqueue_stranded(now=moment, window=timedelta(minutes=15), page_size=2) == (4, 0)
    assert calls_reenqueue_stranded(now=moment, window=timedelta(minutes=15), page_size=2) == (0, 0)
    assert queued_call_ids(redis_conn) == [c.pk for c in calls]


def test_first_attempts_are_split_into_batches_of_the_configured_size(make_user, redis_conn, settings):
    settings.CALL_BATCH_SIZE = 2
    with at(SLOT - timedelta(hours=1)):
        for _ in range(5):
            make_user()
    tick(SLOT + timedelta(minutes=1))
    jobs = Queue("daily-calls", connection=redis_conn).jobs
    assert sorted(len(job.args[0]) for job in jobs) == [1, 2, 2]
    assert queued_call_ids(redis_conn) == sorted(Call.objects.values_list("id", flat=True))


def test_the_tick_logs_a_summary_line(make_user, caplog):
    with at(SLOT - timedelta(hours=1)):
        make_user()
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        tick(SLOT + timedelta(minutes=1))
    assert "due=1 claimed=1 enqueued=1 missed=0" in caplog.text


def test_a_user_rewound_after_being_claimed_does_not_take_over_an_earlier_batch(make_user, redis_conn):
    """A rewound next_call_at sorts first in the next tick; its claim conflicts. The new batch
    must not reuse the earlier batch's job id (which would overwrite its queued job)."""
    with at(SLOT - timedelta(hours=1)):
        early = [make_user() for _ in range(2)]
    tick(SLOT + timedelta(minutes=1))
    with at(SLOT + timedelta(minutes=2)):
        early[0].phone = "+919811111111"  # a schedule field: next_call_at is recomputed...
        early[0].save()
        late = make_user(call_time=time(20, 35))
    assert early[0].next_call_at == SLOT + timedelta(days=1)  # ...past the day already called
    User.objects.filter(pk=early[0].pk).update(next_call_at=SLOT)  # and even if it were rewound
    tick(SLOT + timedelta(minutes=6))
    assert len(queued_job_ids(redis_conn)) == 2
    assert queued_call_ids(redis_conn) == sorted(Call.objects.values_list("id", flat=True))
    assert Call.objects.filter(user__in=[*early, late]).count() == 3


def test_a_user_with_an_unknown_time_zone_does_not_stop_the_tick(make_user, caplog):
    with at(SLOT - timedelta(hours=1)):
        broken = make_user()
        others = [make_user() for _ in range(2)]
    User.objects.filter(pk=broken.pk).update(
        local_tz="Mars/Olympus", next_call_at=SLOT - timedelta(minutes=1)
    )
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        summary = tick(SLOT + timedelta(minutes=1))
    assert summary.claimed == 2
    assert sorted(Call.objects.values_list("user_id", flat=True)) == sorted(u.pk for u in others)
    assert f"User {broken.pk} has an unknown time zone 'Mars/Olympus'" in caplog.text
    broken.refresh_from_db()
    assert broken.next_call_at is None  # parked, not retried every tick


def test_a_user_enabled_behind_the_models_back_is_scheduled_and_called(make_user):
    with at(SLOT - timedelta(hours=1)):
        user = make_user(call_enabled=False)
    User.objects.filter(pk=user.pk).update(call_enabled=True)  # next_call_at stays NULL
    summary = tick(SLOT + timedelta(minutes=1))
    assert (summary.repaired, summary.claimed) == (1, 1)
    assert Call.objects.get().user_id == user.pk


def test_a_stranded_call_whose_window_closed_is_marked_missed_not_placed_late(make_user, redis_conn):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    tick(SLOT + timedelta(minutes=1))
    redis_conn.flushdb()  # Redis lost the job, and stayed down past the window
    summary = tick(SLOT + timedelta(minutes=20))
    call = Call.objects.get(user=user)
    assert (summary.reenqueued, summary.missed) == (0, 1)
    assert call.status == CallStatus.MISSED and "window closed" in call.error
    assert queued_job_ids(redis_conn) == set()
