"""Each user's record: one outcome per local day for the last 30 days, the attempts behind
each, the streak of answered days, and today's outcome in the users list, all in the user's
own zone (a day boundary, a DST day)."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from calls.models import Call, CallStatus
from users.models import User
from users.selectors import DayOutcome, calls_of_local_today, user_call_record, users_today

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")
# 23:30 IST on 2026-11-28, and an hour later, 00:30 IST on the 29th.
LATE_ON_THE_28TH = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
JUST_AFTER_MIDNIGHT = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)


def local(day: date, hour: int, minute: int = 30, tz=IST, *, fold: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz, fold=fold).astimezone(UTC)


def call(user, day: date, attempt: int, status: str, *, at: datetime | None = None, **fields) -> Call:
    at = at or local(day, 20) + timedelta(minutes=30 * (attempt - 1))
    return Call.objects.create(
        user=user,
        to_number=user.phone,
        local_date=day,
        attempt=attempt,
        status=status,
        scheduled_for=at,
        dialed_at=at + timedelta(seconds=attempt * 7) if status != CallStatus.MISSED else None,
        provider="callkaro",
        **fields,
    )


@pytest.fixture
def asha(make_user):
    with time_machine.travel(LATE_ON_THE_28TH - timedelta(days=40), tick=False):
        user = make_user(name="Asha Rao", local_tz="Asia/Kolkata")
    d = date(2026, 11, 28)
    call(user, d, 1, CallStatus.NO_ANSWER)
    call(user, d, 2, CallStatus.COMPLETED)
    call(user, d - timedelta(days=1), 1, CallStatus.COMPLETED)
    call(user, d - timedelta(days=2), 1, CallStatus.COMPLETED)
    for attempt, status in enumerate((CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.FAILED), start=1):
        call(user, d - timedelta(days=3), attempt, status)
    call(user, d - timedelta(days=4), 1, CallStatus.MISSED)
    call(user, d - timedelta(days=5), 1, CallStatus.CANCELED)
    call(user, d - timedelta(days=30), 1, CallStatus.COMPLETED)  # 31 days back: not in the record
    # Tomorrow's slot, as the tick leaves it after today's call.
    User.objects.filter(pk=user.pk).update(next_call_at=local(date(2026, 11, 29), 20, 30))
    user.refresh_from_db()
    return user


def outcomes(record) -> dict[date, DayOutcome]:
    return {day.local_date: day.outcome for day in record.days}


def test_the_record_has_one_outcome_per_local_day_and_the_streak(asha, django_assert_num_queries):
    with django_assert_num_queries(2):  # the calls, and the days skipped for the person
        record = user_call_record(user=asha, now=LATE_ON_THE_28TH)

    assert len(record.days) == 30
    assert (record.days[0].local_date, record.today.local_date) == (date(2026, 10, 30), date(2026, 11, 28))
    d = date(2026, 11, 28)
    got = outcomes(record)
    assert got[d] == got[d - timedelta(days=1)] == got[d - timedelta(days=2)] == DayOutcome.ANSWERED
    assert got[d - timedelta(days=3)] == DayOutcome.NOT_REACHED
    assert got[d - timedelta(days=4)] == DayOutcome.MISSED
    assert got[d - timedelta(days=5)] == DayOutcome.NOT_SCHEDULED  # only a canceled call
    assert got[d - timedelta(days=6)] == DayOutcome.NOT_SCHEDULED  # no call at all
    # The attempts behind a day, first first.
    assert [(c.attempt, c.status) for c in record.days[-4].calls] == [
        (1, CallStatus.NO_ANSWER),
        (2, CallStatus.BUSY),
        (3, CallStatus.FAILED),
    ]
    assert record.streak == 3


def test_the_record_follows_the_users_midnight_not_utcs(asha):
    # 00:30 IST on the 29th (19:00 UTC on the 28th): the 29th is today, due tonight.
    record = user_call_record(user=asha, now=JUST_AFTER_MIDNIGHT)
    assert (record.days[0].local_date, record.today.local_date) == (date(2026, 10, 31), date(2026, 11, 29))
    assert record.today.outcome == DayOutcome.DUE and record.today.calls == ()
    assert outcomes(record)[date(2026, 11, 28)] == DayOutcome.ANSWERED
    # A day not over yet neither counts nor breaks the streak.
    assert record.streak == 3


def test_a_day_that_is_not_reached_breaks_the_streak_and_one_in_progress_does_not(asha, make_user):
    today = date(2026, 11, 29)
    retry = call(asha, today, 1, CallStatus.NO_ANSWER)
    call(asha, today, 2, CallStatus.QUEUED, retry_of=retry)
    evening = local(today, 21)
    assert user_call_record(user=asha, now=evening).today.outcome == DayOutcome.IN_PROGRESS
    assert user_call_record(user=asha, now=evening).streak == 3
    Call.objects.filter(user=asha, local_date=today, attempt=2).update(status=CallStatus.BUSY)
    record = user_call_record(user=asha, now=evening)
    assert (record.today.outcome, record.streak) == (DayOutcome.NOT_REACHED, 0)


def test_a_dst_day_is_one_local_day_with_both_of_its_one_thirties(make_user):
    new_york = ZoneInfo("America/New_York")
    with time_machine.travel(datetime(2026, 10, 1, tzinfo=UTC), tick=False):
        maria = make_user(name="Maria", local_tz="America/New_York")
    fall_back = date(2026, 11, 1)  # 25 hours long: 01:30 comes twice, EDT then EST
    first = local(fall_back, 1, tz=new_york, fold=0)
    second = local(fall_back, 1, tz=new_york, fold=1)
    assert second - first == timedelta(hours=1)
    call(maria, fall_back, 1, CallStatus.NO_ANSWER, at=first)
    call(maria, fall_back, 2, CallStatus.COMPLETED, at=second)
    call(maria, date(2026, 10, 31), 1, CallStatus.COMPLETED, at=local(date(2026, 10, 31), 20, tz=new_york))

    now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # 07:00 EST on the 2nd
    record = user_call_record(user=maria, now=now)
    dates = [day.local_date for day in record.days]
    assert dates == [date(2026, 10, 4) + timedelta(days=n) for n in range(30)]  # none twice, none skipped
    assert outcomes(record)[fall_back] == DayOutcome.ANSWERED
    assert record.streak == 2  # today (the 2nd) has no call yet: the 1st and the 31st

    response_html = record_html(maria, now=now)
    assert "attempt 1: No answer, 2026-11-01 01:30:07 EDT" in response_html
    assert "attempt 2: Answered, 2026-11-01 01:30:14 EST" in response_html


def record_html(user, *, now) -> str:
    from django.test import Client

    admin = User.objects.filter(is_superuser=True).first() or User.objects.create_superuser("boss", "", "pw")
    client = Client()
    client.force_login(admin)
    with time_machine.travel(now, tick=False):
        response = client.get(reverse("admin:users_user_change", args=[user.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_users_page_shows_the_record_as_thirty_cells_with_their_attempts(asha):
    html = record_html(asha, now=LATE_ON_THE_28TH)
    assert 'id="call-record"' in html
    assert html.count('<li class="call-day call-day-') == 30
    assert '<strong id="call-record-streak">3</strong> answered days in a row' in html
    assert 'data-date="2026-11-25" data-outcome="not_reached"' in html
    assert (
        "2026-11-25: Not reached\nattempt 1: No answer, 2026-11-25 20:30:07 IST\n"
        "attempt 2: Busy, 2026-11-25 21:00:14 IST\nattempt 3: Failed, 2026-11-25 21:30:21 IST"
    ) in html
    assert "in the user's time zone (Asia/Kolkata)" in html


def test_the_users_list_shows_the_outcome_of_each_users_own_today(admin_client, asha, make_user):
    with time_machine.travel(LATE_ON_THE_28TH - timedelta(days=1), tick=False):
        bilal = make_user(name="Bilal", local_tz="America/New_York")
    # New York's 28th: its first attempt was not answered, a retry is coming.
    call(bilal, date(2026, 11, 28), 1, CallStatus.BUSY, at=datetime(2026, 11, 28, 17, 0, tzinfo=UTC))
    # Asha's latest call is the 28th's answer; at 00:30 IST her today is the 29th.
    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        response = admin_client.get(reverse("admin:users_user_changelist"))
    rows = {user.pk: user.today for user in response.context["cl"].result_list}
    assert (rows[asha.pk].local_date, rows[asha.pk].outcome) == (date(2026, 11, 29), DayOutcome.DUE)
    assert (rows[bilal.pk].local_date, rows[bilal.pk].outcome) == (date(2026, 11, 28), DayOutcome.NOT_REACHED)
    html = response.content.decode()
    assert "call-day-badge call-day-due" in html and ">Not reached</span>" in html

    with time_machine.travel(LATE_ON_THE_28TH, tick=False):
        response = admin_client.get(reverse("admin:users_user_changelist"))
    rows = {user.pk: user.today for user in response.context["cl"].result_list}
    assert rows[asha.pk].outcome == DayOutcome.ANSWERED and len(rows[asha.pk].calls) == 2


def test_todays_outcomes_for_a_page_of_users_take_two_queries(asha, make_user, django_assert_num_queries):
    users = [asha] + [make_user(local_tz=zone) for zone in ("America/New_York", "Pacific/Kiritimati", "UTC")]
    with django_assert_num_queries(2):  # the calls, and the days skipped for them
        today = users_today(users=users, now=JUST_AFTER_MIDNIGHT)
    assert set(today) == {user.pk for user in users}
    assert today[users[2].pk].local_date == date(2026, 11, 29)  # UTC+14


def test_calls_of_their_users_local_today_whatever_the_zone(asha, make_user):
    with time_machine.travel(LATE_ON_THE_28TH - timedelta(days=1), tick=False):
        bilal = make_user(name="Bilal", local_tz="America/New_York")
    kolkata_today = call(asha, date(2026, 11, 29), 1, CallStatus.NO_ANSWER)
    new_york_today = call(bilal, date(2026, 11, 28), 1, CallStatus.BUSY)
    call(bilal, date(2026, 11, 27), 1, CallStatus.BUSY)
    todays = Call.objects.filter(calls_of_local_today(now=JUST_AFTER_MIDNIGHT))
    assert set(todays.values_list("pk", flat=True)) == {kolkata_today.pk, new_york_today.pk}
