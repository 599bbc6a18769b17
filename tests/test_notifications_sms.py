"""SMS through Twilio (issue 19): the request relevel sends, as Twilio documents it, to a
fake Twilio on 127.0.0.1; Twilio's refusals; a missed day sent end to end."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.conf import settings

from notifications import services, sms_twilio
from notifications.errors import ChannelNotConfigured, SendFailed
from notifications.models import Channel, Notification, NotificationStatus, SmsOptOut
from tests.notification_fakes import free_port, twilio_fixture
from tests.notifications_support import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, queued_job_ids

pytestmark = pytest.mark.django_db

# 14:00 in Asia/Kolkata (make_user's zone): inside any sensible calling hours.
AFTERNOON = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
DAY = date(2026, 11, 28)


@pytest.fixture(autouse=True)
def afternoon():
    with time_machine.travel(AFTERNOON, tick=False):
        yield


def test_sms_send_posts_the_documented_request_to_twilio(twilio):
    sid = sms_twilio.sms_send(to="+919876543210", body="Hello there")

    [request] = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request["headers"]["Authorization"] == f"Basic {expected_auth}"
    assert request["form"] == {"To": "+919876543210", "From": FROM_NUMBER, "Body": "Hello there"}
    assert sid == f"SM{1:032x}"


def test_a_messaging_service_is_the_sender_when_one_is_set(twilio, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "b" * 32
    sms_twilio.sms_send(to="+919876543210", body="Hi")
    assert twilio.requests[0]["form"] == {
        "To": "+919876543210",
        "MessagingServiceSid": "MG" + "b" * 32,
        "Body": "Hi",
    }


def test_without_an_account_sms_is_not_configured(settings):
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    with pytest.raises(ChannelNotConfigured, match="TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN"):
        sms_twilio.sms_send(to="+919876543210", body="Hi")


def test_a_429_is_worth_another_try_and_a_refused_connection_too(twilio, settings):
    twilio.respond_with((429, twilio_fixture("error_429_too_many_requests.json")))
    with pytest.raises(SendFailed) as busy:
        sms_twilio.sms_send(to="+919876543210", body="Hi")
    assert busy.value.transient and busy.value.code == 20429

    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(SendFailed) as refused:
        sms_twilio.sms_send(to="+919876543210", body="Hi")
    assert refused.value.transient


def test_a_server_error_is_not_tried_again_as_the_message_may_have_gone(twilio):
    twilio.respond_with((500, {"code": 20500, "message": "Internal Server Error", "status": 500}))
    with pytest.raises(SendFailed) as failed:
        sms_twilio.sms_send(to="+919876543210", body="Hi")
    assert not failed.value.transient


def test_a_missed_day_is_texted_with_the_template_and_logged_masked(
    twilio, make_user, django_capture_on_commit_callbacks, caplog
):
    user = make_user(name="Asha Rao", phone="+919876543210", notify_sms=True)
    caplog.set_level(logging.INFO)
    with django_capture_on_commit_callbacks(execute=True):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    assert queued_job_ids() == [f"notify-{notification_id}"]

    assert services.notification_send(notification_id=notification_id) == "sent"

    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.SENT and notification.channel == Channel.SMS
    assert notification.recipient == "*********3210" and notification.attempts == 1
    assert notification.provider_message_id == f"SM{1:032x}" and notification.sent_at == AFTERNOON
    [request] = twilio.requests
    assert request["form"]["To"] == "+919876543210"
    assert request["form"]["Body"].startswith("Hi Asha, we tried to call you on Saturday 28 November")
    assert "+919876543210" not in caplog.text and "*********3210" in caplog.text


def test_twilio_refusing_a_number_that_replied_stop_records_the_opt_out(twilio, make_user):
    user = make_user(notify_sms=True)
    twilio.respond_with((400, twilio_fixture("error_21610_opted_out.json")))
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)

    assert services.notification_send(notification_id=notification_id) == "failed"

    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.FAILED and "21610" in notification.error
    opt_out = SmsOptOut.objects.get(user=user)
    assert opt_out.active and opt_out.source == "twilio"
    assert services.why_not_sendable(user=user, channel=Channel.SMS) == "The user replied STOP to our SMS."


def test_a_refused_connection_waits_and_tries_again_then_fails_after_the_last_try(
    make_user, settings, twilio
):
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    settings.NOTIFY_SEND_MAX_ATTEMPTS = 2
    sms_twilio._clients.clear()
    user = make_user(notify_sms=True)
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)

    assert services.notification_send(notification_id=notification_id) == "will retry"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.PENDING and notification.attempts == 1
    assert (notification.due_at - AFTERNOON).total_seconds() == settings.NOTIFY_RETRY_DELAY_SECONDS

    with time_machine.travel(notification.due_at, tick=False):
        assert services.notification_send(notification_id=notification_id) == "failed"
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED and notification.attempts == 2
    assert "unreachable" in notification.error


def test_sms_is_skipped_with_the_reason_when_twilio_is_not_configured(make_user, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    user = make_user(notify_sms=True)
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.SKIPPED
    assert notification.error.startswith("Twilio is not configured: set TWILIO_ACCOUNT_SID")


def test_nothing_is_recorded_for_channels_the_user_did_not_turn_on(make_user, twilio):
    user = make_user()  # both preferences off: the default
    assert services.notify_missed_day(user_id=user.pk, local_date=DAY) == []
    assert not Notification.objects.exists() and not twilio.requests


def test_one_channel_failing_does_not_block_the_other(make_user, twilio, mailoutbox):
    user = make_user(notify_sms=True, notify_email=True, email="asha@example.com")
    twilio.respond_with((500, {"code": 20500, "message": "Internal Server Error", "status": 500}))
    ids = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    outcomes = {
        Notification.objects.get(pk=pk).channel: services.notification_send(notification_id=pk) for pk in ids
    }
    assert outcomes == {Channel.SMS: "failed", Channel.EMAIL: "sent"}
    assert [message.to for message in mailoutbox] == [["asha@example.com"]]


@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_the_send_job_from_the_notifications_queue(make_user, twilio):
    from rq import SimpleWorker

    from tests.notifications_support import notifications_queue

    user = make_user(notify_sms=True)
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    queue = notifications_queue()
    assert settings.NOTIFICATIONS_QUEUE in settings.WORKER_QUEUES
    job = queue.fetch_job(f"notify-{notification_id}")
    assert job.func_name == "notifications.jobs.send_notification" and job.args == (notification_id,)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert len(twilio.requests) == 1
    assert Notification.objects.get(pk=notification_id).status == NotificationStatus.SENT
