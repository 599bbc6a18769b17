"""Quiet hours (issue 19): no message outside the calling hours on the user's wall clock,
on either side of UTC; a message due then waits for the hours to open; one that would be
more than NOTIFY_MAX_DELAY_HOURS late is dropped with the reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from calls.models import CallPolicy
from calls.policy import policy_cache_clear, policy_current
from notifications import services
from notifications.models import Notification, NotificationStatus
from notifications.quiet_hours import hours_open_at
from tests.notifications_support import queued_job_ids, scheduled_jobs

pytestmark = pytest.mark.django_db

AUCKLAND = "Pacific/Auckland"  # UTC+13 in November (NZDT)
LOS_ANGELES = "America/Los_Angeles"  # UTC-8 in November (PST)


def set_calling_hours(start: time, end: time) -> None:
    CallPolicy.objects.update_or_create(
        pk=1, defaults={"calling_hours_start": start, "calling_hours_end": end}
    )
    policy_cache_clear()


@pytest.fixture(autouse=True)
def nine_to_nine():
    set_calling_hours(time(9), time(21))


def missed(user, *, at: datetime, local_date: date, capture) -> Notification:
    with time_machine.travel(at, tick=False), capture(execute=True):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=local_date)
    return Notification.objects.get(pk=notification_id)


def test_one_instant_is_inside_the_hours_in_auckland_and_outside_in_los_angeles(
    make_user, twilio, django_capture_on_commit_callbacks
):
    # 06:00 UTC on 28 November: 19:00 in Auckland, 22:00 (27 November) in Los Angeles.
    instant = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    kiwi = make_user(local_tz=AUCKLAND, notify_sms=True)
    angeleno = make_user(local_tz=LOS_ANGELES, notify_sms=True)

    to_kiwi = missed(
        kiwi, at=instant, local_date=date(2026, 11, 28), capture=django_capture_on_commit_callbacks
    )
    to_angeleno = missed(
        angeleno, at=instant, local_date=date(2026, 11, 27), capture=django_capture_on_commit_callbacks
    )

    assert to_kiwi.due_at == instant and queued_job_ids() == [f"notify-{to_kiwi.pk}"]
    # Los Angeles opens at 09:00 PST on the 28th: 17:00 UTC, 11 hours later.
    opens = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
    assert to_angeleno.status == NotificationStatus.PENDING and to_angeleno.due_at == opens
    assert scheduled_jobs() == {f"notify-{to_angeleno.pk}": opens}

    with time_machine.travel(instant, tick=False):
        assert services.notification_send(notification_id=to_kiwi.pk) == "sent"
        # Its job run early (a replay, the sweep) sends nothing before the hours open.
        assert services.notification_send(notification_id=to_angeleno.pk) == "not due yet"
    assert len(twilio.requests) == 1
    with time_machine.travel(opens, tick=False):
        assert services.notification_send(notification_id=to_angeleno.pk) == "sent"
    assert len(twilio.requests) == 2
    assert Notification.objects.get(pk=to_angeleno.pk).sent_at == opens


def test_late_evening_in_auckland_waits_for_the_next_morning_there(
    make_user, twilio, django_capture_on_commit_callbacks
):
    # 10:00 UTC on 28 November is 23:00 in Auckland: the hours open at 09:00 on the 29th.
    user = make_user(local_tz=AUCKLAND, notify_sms=True)
    notification = missed(
        user,
        at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        local_date=date(2026, 11, 28),
        capture=django_capture_on_commit_callbacks,
    )
    opens = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)  # 09:00 NZDT on the 29th
    assert notification.due_at == opens and opens.astimezone(ZoneInfo(AUCKLAND)).hour == 9
    assert queued_job_ids() == []
    with time_machine.travel(opens - timedelta(seconds=1), tick=False):
        assert services.notification_send(notification_id=notification.pk) == "not due yet"
    with time_machine.travel(opens, tick=False):
        assert services.notification_send(notification_id=notification.pk) == "sent"


def test_a_message_that_would_wait_more_than_twelve_hours_is_dropped_with_the_reason(
    make_user, twilio, django_capture_on_commit_callbacks
):
    set_calling_hours(time(9), time(10))
    # 10:30 PST on 28 November: the hours opened and closed; the next opening is 22.5 h away.
    user = make_user(local_tz=LOS_ANGELES, notify_sms=True, notify_email=True, email="bo@example.com")
    with time_machine.travel(datetime(2026, 11, 28, 18, 30, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            ids = services.notify_missed_day(user_id=user.pk, local_date=date(2026, 11, 28))
    notifications = list(Notification.objects.filter(pk__in=ids))
    assert len(notifications) == 2
    for notification in notifications:
        assert notification.status == NotificationStatus.DROPPED
        assert notification.error == (
            "Not sent: the calling hours open at 2026-11-29 17:00 UTC, "
            "more than 12 h after the day was missed."
        )
    assert queued_job_ids() == [] and scheduled_jobs() == {} and not twilio.requests


def test_a_message_whose_job_runs_outside_the_hours_waits_or_is_dropped_once_too_late(
    make_user, twilio, django_capture_on_commit_callbacks
):
    user = make_user(local_tz=LOS_ANGELES, notify_sms=True)
    due = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # 09:00 PST: inside the hours
    notification = missed(
        user, at=due, local_date=date(2026, 11, 28), capture=django_capture_on_commit_callbacks
    )
    # The worker was down; it runs the job at 22:00 PST, outside the hours: the next opening
    # (09:00 PST on the 29th) is 24 h after the day was missed.
    with time_machine.travel(datetime(2026, 11, 29, 6, 0, tzinfo=UTC), tick=False):
        assert services.notification_send(notification_id=notification.pk) == "dropped"
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DROPPED and "more than 12 h" in notification.error
    assert not twilio.requests


def test_the_hours_changed_meanwhile_the_message_waits_for_them_again(
    make_user, twilio, django_capture_on_commit_callbacks
):
    user = make_user(local_tz=AUCKLAND, notify_sms=True)
    instant = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)  # 09:00 NZDT on the 28th
    notification = missed(
        user, at=instant, local_date=date(2026, 11, 27), capture=django_capture_on_commit_callbacks
    )
    set_calling_hours(time(10), time(21))  # the operator moved the start before the job ran
    with time_machine.travel(instant, tick=False):
        assert services.notification_send(notification_id=notification.pk) == "waits for the calling hours"
    opens = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)  # 10:00 NZDT
    assert Notification.objects.get(pk=notification.pk).due_at == opens
    assert scheduled_jobs() == {f"notify-{notification.pk}": opens}
    assert not twilio.requests


def test_without_calling_hours_a_message_goes_at_once(make_user, django_capture_on_commit_callbacks):
    CallPolicy.objects.filter(pk=1).update(calling_hours_start=None, calling_hours_end=None)
    policy_cache_clear()
    user = make_user(local_tz=AUCKLAND, notify_email=True, email="kiri@example.com")
    at = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)  # 03:00 in Auckland
    notification = missed(
        user, at=at, local_date=date(2026, 11, 28), capture=django_capture_on_commit_callbacks
    )
    assert notification.due_at == at and queued_job_ids() == [f"notify-{notification.pk}"]


@pytest.mark.parametrize(
    "now, expected",
    [
        # Overnight hours (20:00-08:00) in Auckland: 12:00 NZDT is outside, they open at 20:00.
        (datetime(2026, 11, 27, 23, 0, tzinfo=UTC), datetime(2026, 11, 28, 7, 0, tzinfo=UTC)),
        # 02:00 NZDT is inside overnight hours.
        (datetime(2026, 11, 27, 13, 0, tzinfo=UTC), datetime(2026, 11, 27, 13, 0, tzinfo=UTC)),
    ],
)
def test_overnight_hours_open_at_their_start(now, expected):
    set_calling_hours(time(20), time(8))
    assert hours_open_at(now=now, tz=ZoneInfo(AUCKLAND), policy=policy_current()) == expected


def test_a_start_in_the_spring_forward_gap_opens_at_the_first_minute_that_exists():
    # Los Angeles on 14 March 2027: 02:00 PST jumps to 03:00 PDT, so 02:30 never happens.
    set_calling_hours(time(2, 30), time(21))
    now = datetime(2027, 3, 14, 9, 0, tzinfo=UTC)  # 01:00 PST
    opens = hours_open_at(now=now, tz=ZoneInfo(LOS_ANGELES), policy=policy_current())
    assert opens == datetime(2027, 3, 14, 10, 30, tzinfo=UTC)  # 03:30 PDT
    assert opens.astimezone(ZoneInfo(LOS_ANGELES)).strftime("%H:%M %Z") == "03:30 PDT"
