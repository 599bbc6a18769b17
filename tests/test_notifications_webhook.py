"""Inbound SMS at /api/webhooks/twilio/sms (issue 19): Twilio's signature checked with the
library's RequestValidator; STOP, START and STOP CALLS recorded; TwiML answered."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest
import time_machine
from twilio.request_validator import RequestValidator

from calls.models import Call, CallStatus
from notifications import services
from notifications.models import Channel, Notification, NotificationStatus, SmsOptOut
from notifications.replies import OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, reply_keyword
from notifications.sms_twilio import twilio_signature_valid
from tests.notification_fakes import twilio_fixture
from tests.notifications_support import AUTH_TOKEN

pytestmark = pytest.mark.django_db

URL = "/api/webhooks/twilio/sms"
# Django's test client asks for http://testserver/...: the URL Twilio would have called.
FULL_URL = "http://testserver" + URL
NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@pytest.fixture(autouse=True)
def twilio_account(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_SMS_WEBHOOK_URL = ""


@pytest.fixture(autouse=True)
def at_noon():
    with time_machine.travel(NOW, tick=False):
        yield


def inbound(**fields) -> dict:
    params = twilio_fixture("inbound_sms_webhook.json")
    params.update(fields)
    return params


def sign(params: dict, url: str = FULL_URL, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post(client, params: dict, signature: str | None = None, **extra):
    headers = {"HTTP_X_TWILIO_SIGNATURE": sign(params) if signature is None else signature, **extra}
    return client.post(URL, params, **headers)


def test_the_validator_is_twilios_own_and_matches_its_documented_vector(settings):
    vector = twilio_fixture("request_validator_vector.json")
    settings.TWILIO_AUTH_TOKEN = vector["token"]
    assert twilio_signature_valid(url=vector["uri"], params=vector["params"], signature=vector["signature"])
    assert not twilio_signature_valid(
        url=vector["uri"], params=vector["params"], signature="x" + vector["signature"]
    )


def test_stop_with_a_valid_signature_stops_sms_for_that_user(client, make_user):
    user = make_user(phone="+919876543210", notify_sms=True)
    response = post(client, inbound(Body="STOP"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == EMPTY_TWIML  # Twilio itself confirms a STOP
    opt_out = SmsOptOut.objects.get(user=user)
    assert opt_out.active and opt_out.source == "sms" and opt_out.keyword == "STOP"
    assert opt_out.opted_out_at == NOW and opt_out.message_sid == "SM" + "a" * 31 + "b"
    assert not opt_out.also_calls
    user.refresh_from_db()
    assert user.call_enabled  # STOP alone is about texts


@pytest.mark.parametrize(
    "field, value",
    [("Body", "START"), ("From", "+919876543211"), ("MessageSid", "SMforged")],
)
def test_a_forged_signature_is_refused_and_changes_nothing(client, make_user, field, value, caplog):
    make_user(phone="+919876543210")
    signed = inbound(Body="STOP")
    forged = {**signed, field: value}  # the signature was made over other fields
    with caplog.at_level(logging.WARNING):
        response = post(client, forged, signature=sign(signed))
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "invalid X-Twilio-Signature"}
    assert not SmsOptOut.objects.exists()
    assert "+919876543210" not in caplog.text


def test_a_signature_made_with_another_token_or_none_at_all_is_refused(client, make_user):
    make_user(phone="+919876543210")
    params = inbound(Body="STOP")
    assert post(client, params, signature=sign(params, token="not-our-token")).status_code == 403
    assert client.post(URL, params).status_code == 403
    assert not SmsOptOut.objects.exists()


def test_behind_a_proxy_the_signature_is_checked_against_the_url_twilio_called(client, make_user, settings):
    user = make_user(phone="+919876543210")
    public = "https://relevel.example.com/api/webhooks/twilio/sms"
    params = inbound(Body="STOP")
    # The proxy forwards to http://testserver/...: without the setting, Twilio's signature
    # over the public URL does not match the URL the request arrived at.
    assert post(client, params, signature=sign(params, url=public)).status_code == 403
    settings.TWILIO_SMS_WEBHOOK_URL = public
    assert post(client, params, signature=sign(params, url=public)).status_code == 200
    assert SmsOptOut.objects.get(user=user).active


def test_without_an_auth_token_the_webhook_says_it_is_not_configured(client, settings):
    settings.TWILIO_AUTH_TOKEN = ""
    response = post(client, inbound(), signature="anything")
    assert response.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in response.json()["error"]


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("body", sorted(OPT_OUT_KEYWORDS) + ["stop", " Stop. ", "sToP"])
def test_every_opt_out_keyword_in_any_case_stops_sms(client, make_user, body):
    user = make_user(phone="+919876543210")
    assert post(client, inbound(Body=body)).status_code == 200
    assert SmsOptOut.objects.get(user=user).active


@pytest.mark.parametrize("body", ["STOP PLEASE", "please cancel", "Thanks!", ""])
def test_a_reply_that_is_not_a_keyword_changes_nothing(client, make_user, body):
    make_user(phone="+919876543210")
    response = post(client, inbound(Body=body))
    assert response.status_code == 200 and response.content.decode() == EMPTY_TWIML
    assert not SmsOptOut.objects.exists()


@pytest.mark.parametrize("keyword", sorted(OPT_IN_KEYWORDS))
def test_start_resumes_sms_and_keeps_the_record(client, make_user, keyword):
    user = make_user(phone="+919876543210", notify_sms=True)
    post(client, inbound(Body="STOP"))
    with time_machine.travel(datetime(2026, 11, 29, 9, 0, tzinfo=UTC), tick=False):
        assert post(client, inbound(Body=keyword.lower())).status_code == 200
    opt_out = SmsOptOut.objects.get(user=user)
    assert not opt_out.active
    assert (
        opt_out.resumed_at == datetime(2026, 11, 29, 9, 0, tzinfo=UTC) and opt_out.resumed_keyword == keyword
    )
    assert opt_out.opted_out_at == NOW  # when they stopped stays on record


def test_advanced_opt_out_types_win_over_the_keyword_list(client, make_user):
    user = make_user(phone="+919876543210")
    post(client, inbound(Body="BASTA", OptOutType="STOP"))  # a custom Spanish keyword
    assert SmsOptOut.objects.get(user=user).active
    post(client, inbound(Body="VOLVER", OptOutType="START"))
    assert not SmsOptOut.objects.get(user=user).active


@pytest.mark.usefixtures("on_the_calls_day")
def test_stop_calls_stops_sms_and_calls_and_says_so(client, make_user, make_call):
    user = make_user(phone="+919876543210", notify_sms=True)
    queued = make_call(user=user, status=CallStatus.QUEUED)
    params = inbound(Body="Stop calls!")
    response = client.post(URL, params, HTTP_X_TWILIO_SIGNATURE=sign(params))

    assert response.status_code == 200
    body = response.content.decode()
    assert "<Message>You will get no more calls or texts from us." in body
    opt_out = SmsOptOut.objects.get(user=user)
    assert opt_out.active and opt_out.also_calls and opt_out.keyword == "STOP CALLS"
    user.refresh_from_db()
    # The person's consent record (users.consent.user_opt_out), with the reply's source.
    assert user.opted_out_at is not None and user.opt_out_source == "sms"
    assert not user.call_enabled and user.next_call_at is None
    canceled = Call.objects.get(pk=queued.pk)
    assert canceled.status == CallStatus.CANCELED and canceled.error == "The user opted out (SMS)."


def test_a_reply_from_a_number_that_is_no_users_is_answered_and_ignored(client, caplog):
    with caplog.at_level(logging.INFO):
        response = post(client, inbound(Body="STOP", From="+15005550006"))
    assert response.status_code == 200 and not SmsOptOut.objects.exists()
    assert "+15005550006" not in caplog.text and "*******0006" in caplog.text


def test_after_stop_no_sms_is_queued_or_sent_for_a_missed_day(client, make_user, twilio, mailoutbox):
    user = make_user(phone="+919876543210", notify_sms=True, notify_email=True, email="asha@example.com")
    post(client, inbound(Body="STOP"))
    ids = services.notify_missed_day(user_id=user.pk, local_date=date(2026, 11, 28))
    by_channel = {n.channel: n for n in Notification.objects.filter(pk__in=ids)}
    assert by_channel[Channel.SMS].status == NotificationStatus.SKIPPED
    assert by_channel[Channel.SMS].error == "The user replied STOP to our SMS."
    assert by_channel[Channel.EMAIL].status == NotificationStatus.PENDING  # e-mail is another matter
    assert services.notification_send(notification_id=by_channel[Channel.EMAIL].pk) == "sent"
    assert not twilio.requests


def test_stop_while_a_message_waits_skips_it_when_its_time_comes(client, make_user, twilio):
    user = make_user(phone="+919876543210", notify_sms=True)
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=date(2026, 11, 28))
    post(client, inbound(Body="UNSUBSCRIBE"))
    assert services.notification_send(notification_id=notification_id) == "skipped"
    assert Notification.objects.get(pk=notification_id).status == NotificationStatus.SKIPPED
    assert not twilio.requests


def test_reply_keyword_normalises_case_spaces_and_end_punctuation():
    assert reply_keyword("  stop  ") == "STOP"
    assert reply_keyword("Stop   Calls!!") == "STOP CALLS"
    assert reply_keyword("stop, please") == "STOP, PLEASE"
