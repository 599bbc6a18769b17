"""At most one day-missed message per user, local day and channel, whatever happens (issue
19): two callers at once, a second tick, a replay, a send job run twice, Redis losing the
jobs. Against PostgreSQL, with threads, as the webhook race tests do."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections
from rq import SimpleWorker

from calls.models import Call, CallStatus
from notifications import services
from notifications.models import Channel, Notification, NotificationStatus
from tests.notifications_support import notifications_queue, queued_job_ids

NOW = datetime(2026, 11, 28, 15, 40, tzinfo=UTC)  # 21:10 in Asia/Kolkata, after a 20:30 call
DAY = date(2026, 11, 28)


def at_once(count: int, func) -> list:
    """``func()`` from ``count`` threads released together; each one's result."""
    barrier = threading.Barrier(count)
    results: list = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(func())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def run_worker() -> None:
    queue = notifications_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite has no concurrent writers; CI runs PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_callers_make_one_message_per_channel_and_one_send_each(make_user, twilio, mailoutbox):
    user = make_user(notify_sms=True, notify_email=True, email="asha@example.com")
    with time_machine.travel(NOW, tick=False):
        results = at_once(2, lambda: services.notify_missed_day(user_id=user.pk, local_date=DAY))
        created = sorted(pk for ids in results for pk in ids)

        assert len(results) == 2 and sorted(len(ids) for ids in results) in ([0, 2], [1, 1])
        rows = Notification.objects.filter(user=user, local_date=DAY)
        assert sorted(rows.values_list("channel", flat=True)) == [Channel.EMAIL, Channel.SMS]
        assert created == sorted(rows.values_list("pk", flat=True))
        assert sorted(queued_job_ids()) == sorted(f"notify-{pk}" for pk in created)

        run_worker()
        # A second tick, a replay of the day, and every job again: nothing more is sent.
        assert services.notify_missed_day(user_id=user.pk, local_date=DAY) == []
        for pk in created:
            assert services.notification_send(notification_id=pk) == "already sent"
    assert len(twilio.requests) == 1 and len(mailoutbox) == 1
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.SENT}


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks; CI runs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_same_send_job_run_by_two_workers_at_once_sends_once(make_user, twilio):
    user = make_user(notify_sms=True)
    with time_machine.travel(NOW, tick=False):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
        outcomes = at_once(4, lambda: services.notification_send(notification_id=notification_id))
    assert outcomes.count("sent") == 1 and len(outcomes) == 4
    assert set(outcomes) - {"sent"} <= {"taken by another worker", "already sending", "already sent"}
    assert len(twilio.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_jobs_lost_with_redis_are_sent_by_the_sweep_and_only_once(make_user, twilio, redis_conn):
    user = make_user(notify_sms=True)
    with time_machine.travel(NOW, tick=False):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    redis_conn.flushdb()  # Redis restarted empty: the send job is gone
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        assert services.notifications_sweep() == {"enqueued": 0, "failed_mid_send": 0}  # a minute's grace
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert services.notifications_sweep() == {"enqueued": 1, "failed_mid_send": 0}
        services.notifications_sweep()  # two sweeps, one message: the claim decides
        run_worker()
        assert services.notifications_sweep() == {"enqueued": 0, "failed_mid_send": 0}
    assert len(twilio.requests) == 1
    assert Notification.objects.get(pk=notification_id).status == NotificationStatus.SENT


@pytest.mark.django_db
def test_a_send_a_dead_worker_left_unfinished_is_failed_not_sent_again(make_user, twilio):
    user = make_user(notify_sms=True)
    with time_machine.travel(NOW, tick=False):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
        # The worker claimed it, then was killed before it recorded Twilio's answer.
        Notification.objects.filter(pk=notification_id).update(status=NotificationStatus.SENDING, attempts=1)
    with time_machine.travel(NOW + timedelta(minutes=11), tick=False):
        assert services.notifications_sweep() == {"enqueued": 0, "failed_mid_send": 1}
        assert services.notification_send(notification_id=notification_id) == "already failed"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.FAILED and "may have gone" in notification.error
    assert not twilio.requests


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_simulated_missed_day_reaches_the_user_once_on_each_channel(
    make_user, make_call, twilio, mailoutbox, django_capture_on_commit_callbacks
):
    """The engine's day-missed point, simulated: the day's calls all ended unanswered and
    the engine calls notify_missed_day (the lead wires it in calls at merge); replays of that
    point change nothing."""
    user = make_user(
        name="Asha Rao", notify_sms=True, notify_email=True, email="asha@example.com", max_retries=1
    )
    first = make_call(user=user, status=CallStatus.NO_ANSWER)
    make_call(user=user, status=CallStatus.NO_ANSWER, attempt=2, retry_of=first)
    assert not Call.objects.filter(
        user=user, local_date=first.local_date, status=CallStatus.COMPLETED
    ).exists()
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            services.notify_missed_day(user_id=user.pk, local_date=first.local_date)
    ids = list(Notification.objects.filter(user=user).values_list("pk", flat=True))
    assert len(ids) == 2 and len(queued_job_ids()) == 2
    for pk in ids:
        assert services.notification_send(notification_id=pk) == "sent"
    assert [request["form"]["To"] for request in twilio.requests] == [user.phone]
    [mail] = mailoutbox
    assert mail.to == ["asha@example.com"] and mail.subject == "We missed you on Saturday 28 November"
    assert mail.body.startswith("Hi Asha,\n\nWe tried to call you on Saturday 28 November")


def test_the_cron_runs_the_sweep_on_the_tick_queue_and_an_empty_setting_turns_it_off(settings, redis_conn):
    from calls.cron import NOTIFY_SWEEP_CRON_NAME, build_cron_scheduler

    crons = {cron.name: cron for cron in build_cron_scheduler().get_jobs()}
    sweep = crons[NOTIFY_SWEEP_CRON_NAME]
    assert (sweep.cron, sweep.queue_name, sweep.func_name) == (
        "*/5 * * * *",
        settings.TICK_QUEUE,
        "notifications.jobs.sweep_notifications",
    )
    settings.NOTIFY_SWEEP_CRON = ""
    assert NOTIFY_SWEEP_CRON_NAME not in {cron.name for cron in build_cron_scheduler().get_jobs()}
