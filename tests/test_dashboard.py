"""The dashboard's numbers (dashboard.selectors, dashboard.rollups) on small fixtures with
known answers: the day in each user's zone, a DST day, retries counted once per user, the
missed reasons, variants, and a deployment with no calls."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.utils import timezone

from calls.models import AgentVariant, Call, CallStatus
from calls.scheduling import calls_schedule_due
from dashboard import glance, rollups, selectors
from dashboard.charts import wilson_interval
from dashboard.models import DailyStat, RollupDay, TodaySnapshot
from users.models import User

DAY = date(2026, 11, 28)
# 20:00 UTC on the 28th: Kolkata (UTC+5:30) is already on the 29th, New York (UTC-5) on the 28th.
EVENING = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def call_on(make_call, user, day, status, *, attempt=1, dialed=True, at=None, **fields):
    scheduled = at or datetime.combine(day, time(12, 0), tzinfo=UTC)
    return make_call(
        user=user,
        local_date=day,
        status=status,
        attempt=attempt,
        scheduled_for=scheduled,
        dialed_at=scheduled + timedelta(seconds=3) if dialed else None,
        **fields,
    )


def chain(make_call, user, day, *statuses, manual=False):
    """A day's attempts for ``user``: each a retry of the one before."""
    previous = None
    for attempt, status in enumerate(statuses, start=1):
        previous = call_on(
            make_call,
            user,
            day,
            status,
            attempt=attempt,
            dialed=status not in (CallStatus.MISSED, CallStatus.QUEUED, CallStatus.CANCELED),
            retry_of=previous,
            manual=manual,
        )
    return previous


def glance_values(now):
    glance = selectors.today_at_a_glance(now=now)
    return {tile.slug: tile.value for tile in glance.tiles}


# --- Today ---------------------------------------------------------------------------------


def test_today_is_the_deployments_date_on_each_users_own_clock(make_user, make_call):
    kolkata = make_user(local_tz="Asia/Kolkata")
    new_york = make_user(local_tz="America/New_York")
    call_on(make_call, kolkata, DAY, CallStatus.COMPLETED)
    call_on(make_call, new_york, DAY, CallStatus.NO_ANSWER)
    # Kolkata's 29th has begun (it is 01:30 there) but is not today; New York's 27th is over.
    call_on(make_call, kolkata, DAY + timedelta(days=1), CallStatus.BUSY)
    call_on(make_call, new_york, DAY - timedelta(days=1), CallStatus.COMPLETED)

    values = glance_values(EVENING)

    assert selectors.dashboard_today(now=EVENING) == DAY
    assert values["due"] == 2
    assert values["called"] == 2
    assert values["answered"] == 1
    assert values["not_reached"] == 1


def test_a_slot_late_in_the_evening_in_new_york_belongs_to_that_day_not_utcs(make_user, redis_conn):
    """The tick writes local_date in the user's zone: 23:50 on the 27th in New York is 04:50
    UTC on the 28th, and the dashboard counts it on the 27th."""
    user = make_user(local_tz="America/New_York", call_time=time(23, 50))
    slot = datetime(2026, 11, 28, 4, 50, tzinfo=UTC)
    User.objects.filter(pk=user.pk).update(next_call_at=slot)

    calls_schedule_due(now=slot)

    call = Call.objects.get(user=user)
    assert call.local_date == date(2026, 11, 27)
    assert glance_values(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))["due"] == 1
    assert glance_values(datetime(2026, 11, 28, 5, 0, tzinfo=UTC))["due"] == 0


def test_on_the_spring_forward_day_the_day_ends_at_local_midnight_after_23_hours(
    settings, make_user, make_call
):
    """America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT, the day has 23 hours."""
    settings.TIME_ZONE = "America/New_York"
    user = make_user(local_tz="America/New_York")
    dst_day = date(2026, 3, 8)
    # 00:30 EST (05:30 UTC) and 23:30 EDT (03:30 UTC on the 9th): both on the 8th.
    call_on(make_call, user, dst_day, CallStatus.COMPLETED, at=datetime(2026, 3, 8, 5, 30, tzinfo=UTC))
    call_on(
        make_call, user, dst_day, CallStatus.NO_ANSWER, attempt=2, at=datetime(2026, 3, 9, 3, 30, tzinfo=UTC)
    )

    just_before_midnight = datetime(2026, 3, 9, 3, 59, tzinfo=UTC)  # 23:59 EDT on the 8th
    just_after_midnight = datetime(2026, 3, 9, 4, 1, tzinfo=UTC)  # 00:01 EDT on the 9th

    assert selectors.dashboard_today(now=just_before_midnight) == dst_day
    assert glance_values(just_before_midnight)["called"] == 2
    assert selectors.dashboard_today(now=just_after_midnight) == date(2026, 3, 9)
    assert glance_values(just_after_midnight)["called"] == 0


def test_not_reached_counts_each_user_once_whatever_their_retries(make_user, make_call):
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.COMPLETED)  # reached on 2
    chain(make_call, make_user(), DAY, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED)  # not
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.QUEUED)  # retry pending
    chain(make_call, make_user(), DAY, CallStatus.FAILED)  # not reached, no retry allowed
    chain(make_call, make_user(), DAY, CallStatus.MISSED)  # missed, never called
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, manual=True)  # manual: not a daily call

    values = glance_values(EVENING)

    assert values["due"] == 5
    assert values["not_reached"] == 2
    assert values["missed"] == 1
    assert values["retries_pending"] == 1
    assert values["answered"] == 1


def test_calls_in_flight_and_those_in_flight_too_long_are_counted_right_now(make_user, make_call):
    user = make_user()
    call_on(make_call, user, DAY, CallStatus.RINGING, at=EVENING - timedelta(minutes=2))
    call_on(make_call, user, DAY, CallStatus.UNCONFIRMED, attempt=2, at=EVENING - timedelta(minutes=40))
    call_on(make_call, user, DAY - timedelta(days=3), CallStatus.IN_PROGRESS, at=EVENING - timedelta(days=3))

    glance = selectors.today_at_a_glance(now=EVENING)
    tile = next(tile for tile in glance.tiles if tile.slug == "in_flight")

    assert tile.value == 3
    assert tile.note == "2 dialed over 15 min ago"


# --- The daily rollup -----------------------------------------------------------------------


def test_retry_recovery_counts_each_user_once_at_the_attempt_that_reached_them(make_user, make_call):
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    chain(make_call, make_user(), DAY, CallStatus.COMPLETED)
    chain(make_call, make_user(), DAY, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED)
    both = make_user()
    chain(make_call, both, DAY, CallStatus.COMPLETED)
    chain(make_call, both, DAY, CallStatus.COMPLETED, manual=True)  # not a daily call: ignored
    chain(make_call, make_user(), DAY, CallStatus.MISSED)  # never called: not among the called

    stats = rollups.day_stats_compute(DAY)

    assert stats[("users_called", "")] == 4
    assert stats[("reached_attempt", "1")] == 2
    assert stats[("reached_attempt", "2")] == 1
    assert ("reached_attempt", "3") not in stats
    assert stats[("status", CallStatus.COMPLETED)] == 4
    assert stats[("calls", "")] == 9


def test_placement_lag_percentiles_interpolate_as_percentile_cont(make_user, make_call):
    user = make_user()
    base = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    for lag in range(1, 101):
        make_call(
            user=user,
            local_date=DAY,
            attempt=lag,
            status=CallStatus.COMPLETED,
            scheduled_for=base,
            dialed_at=base + timedelta(seconds=lag),
        )
    make_call(user=user, local_date=DAY, manual=True, scheduled_for=base, dialed_at=base + timedelta(hours=1))

    stats = rollups.day_stats_compute(DAY)

    assert stats[("lag_calls", "")] == 100
    assert stats[("lag_p50", "")] == pytest.approx(50.5)
    assert stats[("lag_p95", "")] == pytest.approx(95.05)


@pytest.mark.parametrize(
    ("zone", "dialed_utc", "hour"),
    [
        ("Asia/Kathmandu", datetime(2026, 11, 28, 10, 10, tzinfo=UTC), 15),  # 15:55 +05:45
        ("Asia/Kathmandu", datetime(2026, 11, 28, 10, 20, tzinfo=UTC), 16),  # 16:05
        ("America/New_York", datetime(2026, 3, 8, 6, 59, tzinfo=UTC), 1),  # 01:59 EST, before the gap
        ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC), 3),  # 03:00 EDT, after it
        ("America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), 1),  # 01:30 EDT
        ("America/New_York", datetime(2026, 11, 1, 6, 30, tzinfo=UTC), 1),  # 01:30 EST, the repeat
        ("Australia/Lord_Howe", datetime(2026, 4, 4, 14, 45, tzinfo=UTC), 1),  # 01:45 +11 (DST end)
    ],
)
def test_answer_rate_hours_are_the_users_wall_clock_across_dst(make_user, make_call, zone, dialed_utc, hour):
    user = make_user(local_tz=zone)
    day = dialed_utc.date()
    make_call(
        user=user, local_date=day, status=CallStatus.COMPLETED, scheduled_for=dialed_utc, dialed_at=dialed_utc
    )
    make_call(
        user=user,
        local_date=day,
        attempt=2,
        status=CallStatus.NO_ANSWER,
        scheduled_for=dialed_utc,
        dialed_at=dialed_utc,
    )

    stats = rollups.day_stats_compute(day)

    assert {key for metric, key in stats if metric == "hour_dialed"} == {str(hour)}
    assert stats[("hour_dialed", str(hour))] == 2
    assert stats[("hour_answered", str(hour))] == 1


def test_missed_calls_are_grouped_by_the_reason_relevel_wrote(make_user, make_call):
    texts = {
        "paused": [
            "Calls were paused until the window of this slot (2026-11-28 15:00 to 15:15 UTC) closed.",
            "Calls were paused until its window closed.",
        ],
        "behind": [
            "No scheduler tick ran between 2026-11-28 15:00 and 15:15 UTC, the window of this slot.",
            "Its window, 2026-11-28 20:30 to 20:45 IST, had closed when a worker took it at "
            "2026-11-28 20:52 IST.",
            "Its local day, 2026-11-28, was over when a worker took it at 2026-11-29 00:01 IST.",
            "Its window closed while its job was still waiting: no worker took it in time (workers down).",
        ],
        "calling_hours": ["Its time, 07:30 IST, is outside the calling hours (09:00 to 21:00)."],
        "job_lost": [
            "Its job was lost (Redis down or flushed) and its window closed before a tick found it."
        ],
        "capacity": ["Provider capacity reached: no live-call slot before the window closed."],
        "other": ["Something nobody foresaw."],
    }
    user = make_user()
    for texts_of_reason in texts.values():
        for text in texts_of_reason:
            call_on(make_call, user, DAY, CallStatus.MISSED, dialed=False, error=text, manual=True)

    stats = rollups.day_stats_compute(DAY)

    assert {key: stats[("missed_reason", key)] for key in texts} == {k: len(v) for k, v in texts.items()}


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_variant_chart_is_hidden_until_variants_exist_then_shows_rates_with_intervals(
    make_user, make_call
):
    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    charts, _ = selectors.dashboard_charts(now=now)
    assert next(c for c in charts if c.slug == "variants").hidden_note.startswith("No agent variants")

    a = AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a")
    b = AgentVariant.objects.create(name="B", provider="callkaro", agent_id="agent-b")
    user = make_user()
    for i in range(10):
        call_on(
            make_call,
            user,
            DAY,
            CallStatus.COMPLETED if i < 8 else CallStatus.NO_ANSWER,
            attempt=i + 1,
            variant=a,
        )
    call_on(make_call, user, DAY, CallStatus.NO_ANSWER, attempt=20, variant=b)
    rollups.day_stats_store(DAY, now=now)

    charts, _ = selectors.dashboard_charts(now=now)
    chart = next(c for c in charts if c.slug == "variants")

    assert chart.hidden_note == ""
    assert chart.labels == ["A", "B"]
    assert chart.rows[0][4:] == [10, 8, 80.0, 49.0, 94.3]
    assert chart.rows[1][4:] == [1, 0, 0.0, 0.0, 79.3]


def test_the_charts_read_the_stored_rollup_of_the_30_days_before_today_and_today(make_user, make_call):
    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    call_on(make_call, make_user(), DAY - timedelta(days=29), CallStatus.COMPLETED)  # the oldest day shown
    call_on(make_call, make_user(), DAY - timedelta(days=30), CallStatus.COMPLETED)  # too old

    summary = rollups.daily_stats_refresh(now=now)
    charts, rollup = selectors.dashboard_charts(now=now, glance=selectors.today_at_a_glance(now=now))
    per_day = next(c for c in charts if c.slug == "calls-per-day")
    recovery = next(c for c in charts if c.slug == "retry-recovery")

    assert len(summary.refreshed) == 31
    assert rollup.days[0] == date(2026, 10, 30) and rollup.days[-2:] == [DAY, DAY + timedelta(days=1)]
    assert per_day.labels[-1] == "today" and len(per_day.labels) == 31
    answered = next(s for s in per_day.series if s.name == "Answered")
    assert sum(answered.values) == 2  # the oldest day's call and the 28th's; not the 31-day-old one
    assert per_day.rows[-2][:3] == ["2026-11-28", 1, 1]
    assert recovery.rows[1] == ["Attempt 2", 1, 50.0, 100.0]


def test_an_open_day_is_recomputed_when_stale_and_a_final_day_never(make_user, make_call):
    now = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)  # the 28th is still open in the Americas
    rollups.daily_stats_refresh(now=now)
    assert not rollups.RollupDay.objects.get(day=DAY).final
    assert rollups.days_to_refresh(now=now + timedelta(minutes=5)) == []

    call_on(make_call, make_user(), DAY, CallStatus.COMPLETED)
    later = now + rollups.REFRESH_AFTER
    assert rollups.days_to_refresh(now=later) == [DAY + timedelta(days=1), DAY]  # today, then the 28th
    rollups.daily_stats_refresh(now=later)
    assert DailyStat.objects.get(day=DAY, metric="status", key="completed").value == 1

    final_at = rollups.day_final_at(DAY, margin=rollups.window_and_margin())
    assert final_at == datetime(2026, 11, 29, 13, 15, tzinfo=UTC)  # UTC-12's midnight + 15 min + 1 h
    assert rollups.days_to_refresh(now=final_at) == [DAY + timedelta(days=1), DAY]  # today is open too
    rollups.daily_stats_refresh(now=final_at)
    row = RollupDay.objects.get(day=DAY)
    assert row.final and row.calls == 1
    assert DAY not in rollups.days_to_refresh(now=final_at + timedelta(days=1, hours=5))


def test_one_refresh_job_is_enqueued_while_a_day_is_stale_however_often_asked(db, redis_conn):
    from calls import queues

    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    assert rollups.daily_stats_refresh_if_stale(now=now) is True
    assert rollups.daily_stats_refresh_if_stale(now=now) is False  # the job is still queued
    queue = queues.calls_queue()
    assert queue.get_job_ids() == [rollups.REFRESH_JOB_ID]
    assert queue.fetch_job(rollups.REFRESH_JOB_ID).func_name == rollups.REFRESH_JOB

    rollups.daily_stats_refresh(now=now)
    queue.fetch_job(rollups.REFRESH_JOB_ID).delete()
    assert rollups.daily_stats_refresh_if_stale(now=now) is False  # nothing stale: no job


def test_without_redis_no_refresh_is_enqueued_and_nothing_raises(db, settings):
    from calls.queues import _redis_connection

    settings.RQ_QUEUES = {
        name: {**queue, "URL": "redis://127.0.0.1:9/0"} for name, queue in settings.RQ_QUEUES.items()
    }
    _redis_connection.cache_clear()
    try:
        assert rollups.daily_stats_refresh_if_stale(now=EVENING) is False
    finally:
        _redis_connection.cache_clear()


def test_the_refresh_job_computes_the_days(make_user, make_call):
    from dashboard.jobs import refresh_daily_stats

    call_on(make_call, make_user(), timezone.localdate() - timedelta(days=2), CallStatus.COMPLETED)

    # The job without its connection handling, which would close the test's transaction.
    assert refresh_daily_stats.__wrapped__() == "refreshed=31 remaining=0"  # and today
    assert RollupDay.objects.count() == 31


def test_a_deployment_without_calls_has_every_chart_empty_not_an_error(db):
    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    glance = selectors.today_at_a_glance(now=now)
    charts, rollup = selectors.dashboard_charts(now=now, glance=glance)

    assert all(tile.value == 0 for tile in glance.tiles)
    assert [c.slug for c in charts] == list(selectors.CHART_SLUGS)
    assert all(chart.empty for chart in charts)
    assert rollup.computed == {}


# --- Today's snapshot ----------------------------------------------------------------------


def test_todays_counts_come_from_their_snapshot_until_it_is_15_minutes_old(make_user, make_call):
    user = make_user()
    call_on(make_call, user, DAY, CallStatus.COMPLETED)
    first = selectors.today_at_a_glance(now=EVENING)  # no snapshot yet: computed and stored
    call_on(make_call, make_user(), DAY, CallStatus.NO_ANSWER)
    call_on(make_call, user, DAY, CallStatus.RINGING, attempt=2, at=EVENING)

    later = selectors.today_at_a_glance(now=EVENING + timedelta(minutes=14))
    much_later = selectors.today_at_a_glance(now=EVENING + glance.TODAY_STALE_AFTER + timedelta(seconds=1))

    assert first.value("due") == 1 and first.computed_at == EVENING
    # The snapshot's counts, but calls in flight read now.
    assert (later.value("due"), later.value("answered"), later.value("in_flight")) == (1, 1, 1)
    assert later.computed_at == EVENING
    assert (much_later.value("due"), much_later.value("not_reached"), much_later.value("called")) == (2, 1, 3)
    assert much_later.computed_at == EVENING + glance.TODAY_STALE_AFTER + timedelta(seconds=1)


def test_the_page_asks_a_job_to_refresh_a_costly_snapshot_once_it_is_a_minute_old(db, redis_conn):
    from calls import queues

    rollups.daily_stats_refresh(now=EVENING)
    # As at a million users: the last computation took longer than the page may spend.
    TodaySnapshot.objects.filter(day=DAY).update(seconds=2.5)
    assert TodaySnapshot.objects.get(day=DAY).computed_at == EVENING

    assert rollups.daily_stats_refresh_if_stale(now=EVENING + timedelta(seconds=59)) is False
    assert rollups.daily_stats_refresh_if_stale(now=EVENING + glance.TODAY_REFRESH_AFTER) is True
    assert queues.calls_queue().get_job_ids() == [rollups.REFRESH_JOB_ID]
    assert TodaySnapshot.objects.get(day=DAY).computed_at == EVENING  # left to the job


def test_the_page_recomputes_a_cheap_snapshot_and_todays_charts_itself_once_a_minute_old(
    make_user, make_call, redis_conn
):
    from calls import queues

    user = make_user()
    call_on(make_call, user, DAY, CallStatus.NO_ANSWER)
    rollups.daily_stats_refresh(now=EVENING)  # a small deployment: milliseconds
    call_on(make_call, user, DAY, CallStatus.COMPLETED, attempt=2)  # answered since

    assert selectors.today_at_a_glance(now=EVENING + timedelta(seconds=59)).value("answered") == 0
    a_minute_later = EVENING + glance.TODAY_REFRESH_AFTER
    assert rollups.daily_stats_refresh_if_stale(now=a_minute_later) is False  # nothing left for a job
    assert queues.calls_queue().get_job_ids() == []

    assert selectors.today_at_a_glance(now=a_minute_later).value("answered") == 1
    charts, _ = selectors.dashboard_charts(now=a_minute_later)
    recovery = next(c for c in charts if c.slug == "retry-recovery")
    assert recovery.rows[1] == ["Attempt 2", 1, 100.0, 100.0]  # today's retry, on the chart
    assert RollupDay.objects.get(day=DAY).computed_at == a_minute_later


def test_the_refresh_computes_todays_snapshot_and_keeps_a_week_of_them(make_user, make_call):
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    TodaySnapshot.objects.create(day=DAY - timedelta(days=8), computed_at=EVENING, counts={})
    TodaySnapshot.objects.create(day=DAY - timedelta(days=7), computed_at=EVENING, counts={})

    rollups.daily_stats_refresh(now=EVENING, budget_seconds=0)

    counts = TodaySnapshot.objects.get(day=DAY).counts
    assert (counts["due"], counts["called"], counts["not_reached"]) == (1, 2, 0)
    assert (counts["status_no_answer"], counts["status_completed"]) == (1, 1)
    assert sorted(TodaySnapshot.objects.values_list("day", flat=True)) == [DAY - timedelta(days=7), DAY]


def test_not_reached_matches_the_retry_on_its_own_day_only(make_user, make_call):
    """A retry always has its call's local date (the glance joins only that day's rows); a
    call whose only 'retry' lies on another day has none to come that day."""
    user = make_user()
    first = call_on(make_call, user, DAY, CallStatus.NO_ANSWER)
    call_on(make_call, user, DAY + timedelta(days=1), CallStatus.COMPLETED, attempt=2, retry_of=first)

    assert glance_values(EVENING)["not_reached"] == 1
