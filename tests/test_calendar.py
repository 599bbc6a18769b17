"""The person's calendar (issue 20): call days, a pause, skipped days, the policy's skip dates
and holidays, in each person's own local date, in zones on both sides of UTC and across DST."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from rq import Queue

from calls import forecast, outcomes, placement, policy_changes
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from calls.scheduling import calls_schedule_due
from users import calendar, call_days
from users.models import CallSkip, User
from users.selectors import DayOutcome, user_call_record

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40
    settings.CALL_TIME_WINDOW_MINUTES = 30


def at(moment):
    return time_machine.travel(moment, tick=False)


def person(make_user, *, tz: str, call_time: time, now: datetime, **fields) -> User:
    with at(now):
        return make_user(local_tz=tz, call_time=call_time, **fields)


def days_off(**changes):
    policy_changes.policy_update(changes=changes, user_id=None, actor="test")


# --- Call days and the pause: next_call_at is the next day the person may be called ------


def test_weekdays_only_in_auckland_skip_the_local_weekend_not_utcs(make_user):
    # Saturday 10:00 in Auckland (UTC+13) is Friday 21:00 UTC.
    now = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    user = person(
        make_user,
        tz="Pacific/Auckland",
        call_time=time(9, 0),
        now=now,
        call_days=call_days.call_days_mask(WEEKDAYS),
    )
    # Monday 09:00 NZDT, which is still Sunday in UTC.
    assert user.next_call_at == datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


def test_saturday_only_in_los_angeles_is_the_local_saturday_evening(make_user):
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # Friday 04:00 PST
    user = person(
        make_user,
        tz="America/Los_Angeles",
        call_time=time(20, 0),
        now=now,
        call_days=call_days.call_days_mask(["sat"]),
    )
    # Saturday 20:00 PST is Sunday 04:00 UTC; Friday 20:00 PST (Saturday in UTC) is not it.
    assert user.next_call_at == datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def test_a_pause_ending_on_the_spring_forward_day_calls_the_day_after_in_the_gap_rule(make_user):
    now = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    user = person(
        make_user, tz="America/New_York", call_time=time(2, 30), now=now, pause_until=date(2026, 3, 8)
    )
    # 02:30 on the 9th is EDT (UTC-4): the first call after the pause.
    assert user.next_call_at == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    with at(now):
        user.pause_until = date(2026, 3, 7)
        user.save()
    # 02:30 on the 8th does not exist: pushed forward to 03:30 EDT (calls/slots.py).
    assert user.next_call_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_a_pause_ending_before_the_autumn_fold_calls_the_first_one_thirty(make_user):
    now = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    user = person(
        make_user, tz="America/New_York", call_time=time(1, 30), now=now, pause_until=date(2026, 10, 31)
    )
    assert user.next_call_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first


def test_the_tick_never_claims_a_day_off_and_moves_past_the_pause(make_user, redis_conn):
    # Friday 2026-12-04 in Auckland; calls Monday to Friday at 09:00.
    now = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)  # Friday 08:00 NZDT
    user = person(
        make_user,
        tz="Pacific/Auckland",
        call_time=time(9, 0),
        now=now,
        call_days=call_days.call_days_mask(WEEKDAYS),
    )
    friday_slot = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    assert user.next_call_at == friday_slot
    with at(friday_slot + timedelta(minutes=1)):
        calls_schedule_due()
    user.refresh_from_db()
    assert list(Call.objects.values_list("local_date", flat=True)) == [date(2026, 12, 4)]
    assert user.next_call_at == datetime(2026, 12, 6, 20, 0, tzinfo=UTC)  # Monday, not Saturday


def test_a_slot_that_became_a_day_off_before_the_move_is_not_called(make_user, redis_conn):
    now = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    user = person(make_user, tz="America/Los_Angeles", call_time=time(20, 0), now=now)
    slot = datetime(2026, 12, 25, 4, 0, tzinfo=UTC)  # Thursday 24th, 20:00 PST
    assert user.next_call_at == slot
    # The policy names the 24th; the job that moves everyone has not run yet.
    with at(now):
        days_off(skip_dates=["2026-12-24"])
    User.objects.filter(pk=user.pk).update(next_call_at=slot)
    with at(slot + timedelta(minutes=1)):
        summary = calls_schedule_due()
    user.refresh_from_db()
    assert summary.claimed == 0 and not Call.objects.exists()
    assert user.next_call_at == datetime(2026, 12, 26, 4, 0, tzinfo=UTC)


# --- The policy's skip dates and holidays, in each person's local date ------------------------


def test_a_policy_skip_date_is_each_persons_own_local_date(make_user, redis_conn):
    now = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)  # Auckland: 25th 07:00; Los Angeles: 24th 10:00
    auckland = person(make_user, tz="Pacific/Auckland", call_time=time(9, 0), now=now)
    los_angeles = person(make_user, tz="America/Los_Angeles", call_time=time(20, 0), now=now)
    assert auckland.next_call_at == datetime(2026, 12, 24, 20, 0, tzinfo=UTC)  # the 25th, 09:00
    with at(now), pytest.MonkeyPatch.context() as patched:
        enqueued = []
        patched.setattr("calls.queues.enqueue_calendar_reschedule", lambda: enqueued.append(1))
        days_off(skip_dates=["2026-12-25"])
        assert enqueued == [1]  # everyone's next call is moved by a job
        moved = calendar.users_calendar_reschedule(batch_size=1)  # what the job does
    assert moved == 1
    auckland.refresh_from_db()
    los_angeles.refresh_from_db()
    assert auckland.next_call_at == datetime(2026, 12, 25, 20, 0, tzinfo=UTC)  # the 26th
    # Los Angeles' 24th, 20:00 PST, falls on the 25th in UTC: still called.
    assert los_angeles.next_call_at == datetime(2026, 12, 25, 4, 0, tzinfo=UTC)
    # Removing the date moves Auckland back.
    with at(now):
        days_off(skip_dates=[])
        calendar.users_calendar_reschedule()
    auckland.refresh_from_db()
    assert auckland.next_call_at == datetime(2026, 12, 24, 20, 0, tzinfo=UTC)


def test_the_days_off_job_is_enqueued_when_the_policy_changes_and_only_then(redis_conn, db):
    queue = Queue("daily-calls-tick", connection=redis_conn)
    days_off(window_minutes=20)
    assert queue.jobs == []
    days_off(holiday_countries=["US"])
    assert [job.func_name for job in queue.jobs] == ["calls.jobs.reschedule_calendars"]


def test_a_named_countrys_holiday_is_skipped_in_the_persons_local_date(make_user):
    with at(datetime(2026, 11, 20, 12, 0, tzinfo=UTC)):
        days_off(holiday_countries=["US"])
    now = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)  # Wednesday 13:00 EST
    new_york = person(make_user, tz="America/New_York", call_time=time(10, 0), now=now)
    # Thanksgiving (Thursday the 26th) is skipped: Friday 10:00 EST.
    assert new_york.next_call_at == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    reason = calendar.user_day_off_reason(user=new_york, local_date=date(2026, 11, 26))
    assert reason == "2026-11-26 is a public holiday in US (Thanksgiving Day)."
    # In Kolkata, the 26th is the person's own 26th (from 18:30 UTC on the 25th).
    kolkata = person(make_user, tz="Asia/Kolkata", call_time=time(9, 0), now=now)
    assert kolkata.next_call_at == datetime(2026, 11, 27, 3, 30, tzinfo=UTC)  # the 27th, 09:00 IST


# --- Skipping a day ----------------------------------------------------------------------------


def post_skip(client, external_id, body=None):
    data = "" if body is None else json.dumps(body)
    return client.post(f"/api/users/{external_id}/skip", data=data, content_type="application/json", **TOKEN)


NOW = datetime(2026, 11, 28, 15, 5, tzinfo=UTC)  # 20:35 IST on Saturday the 28th


def test_skipping_today_from_the_api_cancels_a_retry_already_queued(client, make_user, make_call, redis_conn):
    user = person(
        make_user, tz="Asia/Kolkata", call_time=time(20, 30), now=NOW - timedelta(hours=2), external_id="p-1"
    )
    call = make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-1")
    with at(NOW):
        outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-1", status=CallStatus.NO_ANSWER, raw={"status": "no-answer"})
        )
        retry = Call.objects.get(retry_of=call)
        assert retry.status == CallStatus.QUEUED
        response = post_skip(client, "p-1")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["result"], body["date"], body["canceled_calls"]) == ("skipped", "2026-11-28", 1)
    retry.refresh_from_db()
    assert retry.status == CallStatus.CANCELED
    assert retry.error == "Day skipped: 2026-11-28 was skipped for this person by token."
    # Its job, when it comes due, takes nothing.
    with at(retry.scheduled_for):
        assert placement.call_place(call_id=retry.pk) == "skipped"
    assert body["user"]["off_today"] == {
        "local_date": "2026-11-28",
        "reason": "2026-11-28 was skipped for this person.",
    }
    assert body["user"]["next_call"]["local"] == "2026-11-29T20:30:00+05:30"
    # Again: nothing changes.
    with at(NOW):
        again = post_skip(client, "p-1", {"date": "2026-11-28"}).json()
    assert (again["result"], again["canceled_calls"]) == ("already_skipped", 0)
    # The record shows the day skipped, not missed nor not reached.
    with at(NOW + timedelta(days=1, hours=5)):
        record = user_call_record(user=User.objects.get(pk=user.pk), now=NOW + timedelta(days=1, hours=5))
    by_date = {day.local_date: day.outcome for day in record.days}
    assert by_date[date(2026, 11, 28)] == DayOutcome.NOT_REACHED  # the first attempt was dialed
    assert CallSkip.objects.filter(user=user).count() == 1


def test_a_future_skip_moves_the_next_call_and_shows_in_the_record(client, make_user):
    user = person(make_user, tz="America/Los_Angeles", call_time=time(9, 0), now=NOW, external_id="p-2")
    # 07:05 PST on the 28th: today's 09:00 is next.
    assert user.next_call_at == datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
    with at(NOW):
        assert post_skip(client, "p-2", {"date": "2026-11-28"}).status_code == 200
        assert post_skip(client, "p-2", {"date": "2026-11-29"}).status_code == 200
    user.refresh_from_db()
    assert user.next_call_at == datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    later = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    record = user_call_record(user=user, now=later)
    by_date = {day.local_date: day.outcome for day in record.days}
    assert by_date[date(2026, 11, 28)] == by_date[date(2026, 11, 29)] == DayOutcome.SKIPPED
    assert by_date[date(2026, 11, 30)] == DayOutcome.NOT_SCHEDULED


def test_a_skip_added_after_the_claim_cancels_the_call_when_a_worker_takes_it(
    make_user, make_call, on_the_calls_day
):
    user = make_user()
    call = make_call(user=user)
    CallSkip.objects.create(user=user, local_date=call.local_date)  # after the claim, say by a raw insert
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert call.status == CallStatus.CANCELED
    assert call.error == "Day off: 2026-11-28 was skipped for this person."


def test_a_pause_set_after_the_claim_cancels_the_call_at_dial_time(make_user, make_call, on_the_calls_day):
    user = make_user()
    call = make_call(user=user)
    User.objects.filter(pk=user.pk).update(pause_until=date(2026, 12, 1))
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert call.error == "Day off: Calls are paused for this person until 2026-12-01 (included)."


def test_a_weekday_off_shows_in_the_record_and_does_not_break_the_streak(make_user, make_call):
    user = person(
        make_user,
        tz="Asia/Kolkata",
        call_time=time(20, 30),
        now=NOW,
        call_days=call_days.call_days_mask(WEEKDAYS),
    )
    for day in (date(2026, 11, 26), date(2026, 11, 27)):  # Thursday, Friday: answered
        make_call(user=user, local_date=day, status=CallStatus.COMPLETED)
    record = user_call_record(user=user, now=datetime(2026, 11, 29, 18, 0, tzinfo=UTC))  # Sunday night
    by_date = {day.local_date: day.outcome for day in record.days}
    assert by_date[date(2026, 11, 28)] == by_date[date(2026, 11, 29)] == DayOutcome.SKIPPED
    assert record.streak == 2


# --- The forecast and the dashboard count skipped days apart -----------------------------------


def test_the_forecast_counts_skipped_users_apart_from_due_and_missed(make_user, settings):
    settings.PROVIDER_MAX_LIVE_CALLS = {}
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)  # Friday
    for _ in range(3):
        person(make_user, tz="UTC", call_time=time(12, 0), now=now)
    person(make_user, tz="UTC", call_time=time(12, 0), now=now, call_days=call_days.call_days_mask(["sat"]))
    skipper = person(make_user, tz="UTC", call_time=time(12, 0), now=now)
    CallSkip.objects.create(user=skipper, local_date=date(2026, 12, 4))
    with at(now):
        skipper.save()  # next_call_at moves past the skip
        slots = {slot.start: slot for slot in forecast.capacity_forecast(now=now)}
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert (slots[noon].due, slots[noon].skipped, slots[noon].will_miss) == (3, 2, 0)


def test_the_dashboard_counts_people_off_today_apart_from_missed(admin_client, make_user):
    from dashboard import glance, selectors

    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # Saturday
    person(make_user, tz="UTC", call_time=time(12, 0), now=now)
    weekdays = person(
        make_user, tz="UTC", call_time=time(12, 0), now=now, call_days=call_days.call_days_mask(WEEKDAYS)
    )
    paused = person(make_user, tz="UTC", call_time=time(12, 0), now=now, pause_until=date(2026, 11, 30))
    with at(now):
        day = selectors.dashboard_today(now=now)
        glance.today_snapshot_store(day, now=now)
        tiles = {tile.slug: tile for tile in selectors.today_at_a_glance(now=now).tiles}
        listed = admin_client.get(tiles["skipped"].url)
    assert (tiles["skipped"].value, tiles["missed"].value) == (2, 0)
    assert {user.pk for user in listed.context["cl"].result_list} == {weekdays.pk, paused.pk}


# --- The API's and the import's shapes, and their 400s -----------------------------------------


def put(client, external_id, body):
    return client.put(
        f"/api/users/{external_id}", data=json.dumps(body), content_type="application/json", **TOKEN
    )


def test_call_days_and_a_pause_through_the_users_api(client, db):
    with at(NOW):
        response = put(
            client,
            "p-9",
            {
                "phone": "+14155550100",
                "local_tz": "America/Los_Angeles",
                "call_days": ["mon", "fri"],
                "pause_until": "2026-12-10",
            },
        )
    assert response.status_code == 201, response.json()
    user = response.json()["user"]
    assert (user["call_days"], user["pause_until"]) == (["mon", "fri"], "2026-12-10")
    assert user["next_call"]["local"].startswith("2026-12-11T")  # Friday, after the pause


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"call_days": "mon tue"}, "call_days"),
        ({"call_days": ["funday"]}, "call_days"),
        ({"call_days": []}, "call_days"),
        ({"call_days": ["mon", "mon"]}, "call_days"),
        ({"call_days": None}, "call_days"),
        ({"pause_until": "2026-13-01"}, "pause_until"),
        ({"pause_until": "next week"}, "pause_until"),
        ({"pause_until": 20261201}, "pause_until"),
        ({"skip_days": ["mon"]}, "skip_days"),
    ],
)
def test_bad_calendar_fields_are_a_400_naming_the_field(client, db, body, field):
    response = put(client, "p-9", body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {field}
    assert not User.objects.filter(external_id="p-9").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"date": "2026-11-27"}, "date"),  # yesterday, for the person
        ({"date": "28/11/2026"}, "date"),
        ({"date": None}, "date"),
        ({"date": "2028-01-01"}, "date"),  # over a year ahead
        ({"when": "2026-11-28"}, "when"),
    ],
)
def test_bad_skips_are_a_400_naming_the_field(client, make_user, body, field):
    person(make_user, tz="Asia/Kolkata", call_time=time(20, 30), now=NOW, external_id="p-3")
    with at(NOW):
        response = post_skip(client, "p-3", body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {field}
    assert not CallSkip.objects.exists()


def test_an_unknown_person_cannot_be_skipped(client, db):
    assert post_skip(client, "nobody").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"skip_dates": ["2026-02-30"]}, "skip_dates"),
        ({"skip_dates": "2026-12-25"}, "skip_dates"),
        ({"holiday_countries": ["XX"]}, "holiday_countries"),
        ({"holiday_countries": "US"}, "holiday_countries"),
    ],
)
def test_bad_days_off_in_the_policy_are_a_400_naming_the_field(client, db, changes, field):
    response = client.patch("/api/policy", data=json.dumps(changes), content_type="application/json", **TOKEN)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_the_policy_takes_skip_dates_and_holiday_countries(client, db):
    response = client.patch(
        "/api/policy",
        data=json.dumps({"skip_dates": ["2026-12-31", "2026-12-25"], "holiday_countries": ["us", "IN"]}),
        content_type="application/json",
        **TOKEN,
    )
    assert response.status_code == 200, response.json()
    policy = client.get("/api/policy", **TOKEN).json()["policy"]
    assert (policy["skip_dates"], policy["holiday_countries"]) == (["2026-12-25", "2026-12-31"], ["US", "IN"])


def test_the_csv_import_reads_call_days_as_words_and_refuses_a_bad_cell(admin_client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    text = (
        "external_id,phone,local_tz,call_days,pause_until\n"
        "c-1,+14155550101,America/New_York,mon tue wed,2026-12-01\n"
        "c-2,+14155550102,America/New_York,,\n"
        "c-3,+14155550103,America/New_York,mon funday,\n"
    )
    with at(NOW):
        response = admin_client.post(
            reverse("admin:users_user_import"),
            {
                "import_file": SimpleUploadedFile("u.csv", text.encode(), content_type="text/csv"),
                "format": "0",
            },
        )
    result = response.context["result"]
    invalid = {row.number: row.error.message_dict for row in result.invalid_rows}
    assert list(invalid) == [4] and set(invalid[4]) == {"call_days"}
    valid = [row.instance for row in result.valid_rows()]
    assert [call_days.call_days_names(user.call_days) for user in valid] == [
        ["mon", "tue", "wed"],
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],  # an empty cell: every day
    ]
    assert valid[0].pause_until == date(2026, 12, 1)


def test_the_persons_page_sets_call_days_with_check_boxes_and_says_why_today_is_off(
    admin_client, make_user, caplog
):
    from django.urls import reverse

    user = person(make_user, tz="Asia/Kolkata", call_time=time(20, 30), now=NOW, external_id="p-4")
    url = reverse("admin:users_user_change", args=[user.pk])
    with at(NOW):
        form = admin_client.get(url).context["adminform"].form
        data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
        data.update(call_time="20:30", call_days=["sat", "sun"], pause_until="")
        with caplog.at_level(logging.INFO):
            response = admin_client.post(url, data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        user.refresh_from_db()
        assert call_days.call_days_names(user.call_days) == ["sat", "sun"]
        user.call_days = call_days.call_days_mask(["mon"])
        user.save()
        page = admin_client.get(url).content.decode()
    assert (
        "Off (2026-11-28): 2026-11-28 is a Saturday, not one of this person&#x27;s call days (mon)." in page
    )


def test_the_reschedule_command_moves_next_calls_and_says_how_many(make_user, capsys):
    from django.core.management import call_command

    now = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    auckland = person(make_user, tz="Pacific/Auckland", call_time=time(9, 0), now=now)
    with at(now):
        days_off(skip_dates=["2026-12-25"])
        call_command("reschedule_calendars")
    assert capsys.readouterr().out == "reschedule_calendars: 1 next call(s) moved\n"
    auckland.refresh_from_db()
    assert auckland.next_call_at == datetime(2026, 12, 25, 20, 0, tzinfo=UTC)


def test_a_rush_slot_is_worked_out_once_per_set_of_call_days_not_per_person(db, redis_conn):
    """The claim's cost with calendars: the shared rules (the policy's days off, the call days)
    once per (zone, call time, slot, call days); only the people with a skip or a pause ahead
    one by one; the skips read once per batch."""
    from unittest import mock

    from calls import claim

    slot = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # Friday 20:30 IST
    weekdays = call_days.call_days_mask(WEEKDAYS)
    User.objects.bulk_create(
        User(
            username=f"rush{i}",
            phone=f"+9198{i:08d}",
            local_tz="Asia/Kolkata",
            call_time=time(20, 30),
            call_days=weekdays if i % 2 else call_days.ALL_CALL_DAYS,
            pause_until=date(2026, 12, 6) if i == 7 else None,
            next_call_at=slot,
        )
        for i in range(300)
    )
    skipper = User.objects.get(username="rush8")
    CallSkip.objects.create(user=skipper, local_date=date(2026, 12, 5))
    with (
        at(slot + timedelta(seconds=5)),
        mock.patch.object(claim, "slot_outcome", wraps=claim.slot_outcome) as shared,
        mock.patch.object(
            claim.Claim, "personal_outcome", autospec=True, side_effect=claim.Claim.personal_outcome
        ) as personal,
    ):
        summary = calls_schedule_due()
    assert summary.claimed == 299  # rush7's pause covers today: no call
    assert not Call.objects.filter(user__username="rush7").exists()
    assert shared.call_count == 2  # every day, weekdays
    assert personal.call_count == 2  # the pause, the skip
    by_name = dict(User.objects.values_list("username", "next_call_at"))
    assert by_name["rush2"] == datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # every day: Saturday
    assert by_name["rush1"] == datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # weekdays: Monday
    assert by_name["rush7"] == datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # paused to Sunday
    assert by_name["rush8"] == datetime(2026, 12, 6, 15, 0, tzinfo=UTC)  # Saturday skipped
