"""Nobody is rung hours late: a call is dialed only inside its window, a retry only on its own
local day, whatever happened to the workers, the scheduler or the webhooks meanwhile.

Asia/Kolkata is UTC+5:30 with no DST: 20:30 IST on 2026-11-28 is 15:00 UTC, and 03:00 IST
the next morning is 21:30 UTC on the 28th.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from calls import jobs, outcomes, placement, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 IST
NIGHT = datetime(2026, 11, 28, 21, 30, tzinfo=UTC)  # 03:00 IST on the 29th
NEXT_MORNING = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)  # 09:30 IST on the 29th
DAY = date(2026, 11, 28)


def at(moment, *, tick=False):
    return time_machine.travel(moment, tick=tick)


def claimed_first_attempt(make_user) -> Call:
    with at(SLOT - timedelta(hours=1)):
        make_user()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.enqueued == 1
    return Call.objects.get()


def retry_of_the_day(make_user, make_call, *, scheduled_for: datetime) -> Call:
    user = make_user()
    first = make_call(user=user, status=CallStatus.NO_ANSWER, scheduled_for=SLOT, local_date=DAY)
    return make_call(user=user, attempt=2, retry_of=first, scheduled_for=scheduled_for, local_date=DAY)


# --- First attempts -----------------------------------------------------------------------


def test_a_first_attempt_whose_job_runs_hours_late_is_missed_not_dialed(fake_callkaro, make_user):
    """Workers were down while Redis kept the batch job: it runs at 03:00 the next morning."""
    call = claimed_first_attempt(make_user)
    with at(NIGHT):
        assert jobs.place_calls([call.pk]) == {"missed": 1}
    call.refresh_from_db()
    assert fake_callkaro.requests == []
    assert call.status == CallStatus.MISSED and call.completed_at == NIGHT
    assert call.error == (
        "Its window, 2026-11-28 20:30 to 20:45 IST, had closed when a worker took it at 2026-11-29 03:00 IST."
    )


@pytest.mark.parametrize(
    ("late", "outcome"),
    [(timedelta(minutes=14, seconds=59), "placed"), (timedelta(minutes=15), "missed")],
)
def test_a_first_attempt_is_dialed_up_to_the_end_of_its_window_and_not_after(
    fake_callkaro, make_user, late, outcome
):
    call = claimed_first_attempt(make_user)
    with at(SLOT + late, tick=True):
        assert placement.calls_place_batch(call_ids=[call.pk]) == {outcome: 1}
    assert len(fake_callkaro.requests) == (1 if outcome == "placed" else 0)


# --- Retries ------------------------------------------------------------------------------


def test_a_retry_whose_job_runs_past_its_window_is_missed(fake_callkaro, make_user, make_call):
    retry = retry_of_the_day(make_user, make_call, scheduled_for=SLOT + timedelta(minutes=30))  # 21:00 IST
    with at(SLOT + timedelta(minutes=45)):
        assert placement.call_place(call_id=retry.pk) == "missed"
    retry.refresh_from_db()
    assert retry.status == CallStatus.MISSED and "had closed when a worker took it" in retry.error
    assert fake_callkaro.requests == []


def test_a_retry_inside_its_window_is_dialed(fake_callkaro, make_user, make_call):
    retry = retry_of_the_day(make_user, make_call, scheduled_for=SLOT + timedelta(minutes=30))
    with at(SLOT + timedelta(minutes=44), tick=True):
        assert placement.call_place(call_id=retry.pk) == "placed"


def test_a_retry_is_not_dialed_once_its_local_day_is_over_even_inside_its_window(
    fake_callkaro, make_user, make_call
):
    retry = retry_of_the_day(
        make_user,
        make_call,
        scheduled_for=datetime(2026, 11, 28, 18, 20, tzinfo=UTC),  # 23:50 IST
    )
    with at(datetime(2026, 11, 28, 18, 31, tzinfo=UTC)):  # 00:01 IST on the 29th
        assert placement.call_place(call_id=retry.pk) == "missed"
    retry.refresh_from_db()
    assert retry.error == "Its local day, 2026-11-28, was over when a worker took it at 2026-11-29 00:01 IST."
    assert fake_callkaro.requests == []


def test_a_call_taken_before_its_time_stays_queued_and_the_tick_sends_it_when_due(
    fake_callkaro, make_user, make_call, redis_conn
):
    retry = retry_of_the_day(make_user, make_call, scheduled_for=SLOT + timedelta(minutes=30))
    with at(SLOT + timedelta(minutes=29)):
        assert placement.call_place(call_id=retry.pk) == "early"
    retry.refresh_from_db()
    assert retry.status == CallStatus.QUEUED and fake_callkaro.requests == []
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=33)).reenqueued == 1


# --- Creating retries ---------------------------------------------------------------------


def ringing(make_call, **fields) -> Call:
    fields.setdefault("local_date", DAY)
    fields.setdefault("scheduled_for", SLOT)
    return make_call(status=CallStatus.RINGING, provider_call_id="ck-late", **fields)


def test_no_retry_is_created_whose_time_falls_after_the_calls_local_day(make_call, redis_conn, caplog):
    call = ringing(make_call)
    with (
        at(datetime(2026, 11, 28, 18, 15, tzinfo=UTC)),
        caplog.at_level(logging.INFO, logger="relevel.calls"),
    ):
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-late", status=CallStatus.NO_ANSWER)  # at 23:45 IST
        )
    assert result.applied and not result.retry_scheduled
    assert not Call.objects.filter(attempt=2).exists()
    assert f"Call {call.pk}: no retry, 2026-11-29 00:15 IST is past its local day, 2026-11-28" in caplog.text


def test_a_retry_that_still_falls_on_the_calls_local_day_is_created(make_call, redis_conn):
    ringing(make_call)
    with at(datetime(2026, 11, 28, 17, 59, tzinfo=UTC)):  # 23:29 IST: the retry is at 23:59
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-late", status=CallStatus.BUSY)
        )
    assert result.retry_scheduled
    assert Call.objects.get(attempt=2).scheduled_for == datetime(2026, 11, 28, 18, 29, tzinfo=UTC)


def test_a_stuck_call_found_the_next_morning_is_failed_without_a_retry(make_call, redis_conn, caplog):
    """The tick was down overnight: at 09:30 the sweep fails yesterday's call whose final
    webhook was lost, and must not ring the user at 10:00 for yesterday's call."""
    call = make_call(
        status=CallStatus.RINGING,
        local_date=DAY,
        scheduled_for=SLOT,
        last_status_at=SLOT + timedelta(minutes=1),
    )
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        assert scheduling.calls_schedule_due(now=NEXT_MORNING).silent == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert not Call.objects.filter(attempt=2).exists()
    # Its retry would have been due at 22:01 last night (timed from when it should have
    # been failed), long past.
    assert f"Call {call.pk}: no retry, its time, 2026-11-28 22:01 IST, passed before the call" in caplog.text


def test_a_call_left_dialing_overnight_is_unconfirmed_then_failed_without_a_retry(
    make_call, redis_conn, caplog, settings
):
    """Its worker died mid-request (maybe placed): unconfirmed first, then failed once no
    webhook came, and no retry for yesterday's call."""
    call = make_call(
        status=CallStatus.DIALING, local_date=DAY, scheduled_for=SLOT, dialed_at=SLOT + timedelta(minutes=1)
    )
    assert scheduling.calls_schedule_due(now=NEXT_MORNING).abandoned == 1
    call.refresh_from_db()
    assert call.status == CallStatus.UNCONFIRMED
    later = NEXT_MORNING + timedelta(seconds=settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 1)
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        assert scheduling.calls_schedule_due(now=later).unconfirmed == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert not Call.objects.filter(attempt=2).exists()
    assert f"Call {call.pk}: no retry" in caplog.text and "is past its local day, 2026-11-28" in caplog.text


def test_no_retry_is_created_for_a_user_whose_zone_is_unknown(make_call, redis_conn, caplog):
    call = ringing(make_call)
    User.objects.filter(pk=call.user_id).update(local_tz="America")
    with at(SLOT + timedelta(minutes=5)), caplog.at_level(logging.INFO, logger="relevel.calls"):
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-late", status=CallStatus.BUSY)
        )
    assert not result.retry_scheduled
    assert f"Call {call.pk}: no retry, the user's time zone 'America' is unknown" in caplog.text


# --- Delayed jobs nobody releases ---------------------------------------------------------


def test_a_retry_whose_delayed_job_is_never_released_is_missed_once_its_window_closes(make_call, redis_conn):
    """No worker runs --with-scheduler: the retry's job sits in RQ's scheduled registry, live
    for ever. The tick must not wait on it past the retry's window."""
    call = ringing(make_call)
    with at(SLOT + timedelta(minutes=5)):
        assert outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-late", status=CallStatus.NO_ANSWER)
        ).retry_scheduled
    retry = Call.objects.get(retry_of=call)  # due at 21:05 IST, its job scheduled in RQ
    inside = scheduling.calls_schedule_due(now=retry.scheduled_for + timedelta(minutes=10))
    assert (inside.reenqueued, inside.missed) == (0, 0)  # its job is live: left alone
    after = scheduling.calls_schedule_due(now=retry.scheduled_for + timedelta(minutes=16))
    assert after.missed == 1
    retry.refresh_from_db()
    assert retry.status == CallStatus.MISSED
    assert retry.error.startswith("Its window closed while its job was still waiting")
