"""CallKaro as it documents itself (tests/fixtures/callkaro/, from docs.callkaro.ai): its
documented request, answers and call_ended webhook, through the real adapter and parser.

Placement goes to the fake CallKaro on 127.0.0.1 (tests/fakes.py), answering with the
documented bodies; webhooks go through the Django test client to the real view.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from rq.registry import ScheduledJobRegistry

from calls import placement
from calls.models import Call, CallStatus
from calls.queues import calls_queue
from tests.provider_fakes import (
    CALLKARO_TOKEN,
    CALLKARO_URL,
    FIXTURES,
    callkaro_call_ended,
    configure_callkaro_token,
    fixture,
    our_metadata,
    post_callkaro,
)
from tests.retry_buckets import retry_release
from tests.test_webhook import stored_state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_the_calls_day")]

# https://docs.callkaro.ai/webhook/call-ended ("Payload Structure"): the documented callSid.
DOC_CALL_SID = fixture("callkaro", "webhook_call_ended.json")["data"]["callSid"]
REJECTED = {"success": False, "error": "invalid or missing webhook credentials"}


@pytest.fixture(autouse=True)
def webhook_token(settings):
    configure_callkaro_token(settings)


@pytest.fixture
def dialed(make_call):
    """A call CallKaro accepted (its call_sid stored), ringing."""
    return make_call(status=CallStatus.RINGING, provider_call_id=DOC_CALL_SID)


def applied(call: Call, status: str, *, retry_scheduled: bool = False) -> dict:
    return {"success": True, "call_id": str(call.pk), "status": status, "retry_scheduled": retry_scheduled}


def retry_job_ids(redis_conn) -> list[str]:
    return ScheduledJobRegistry(queue=calls_queue()).get_job_ids(cleanup=False)


# --- Placing: the documented request ------------------------------------------------------

# Fields relevel never sends: CallKaro's own scheduling and retries (relevel owns both).
DO_NOT_SEND = sorted(path.name for path in (FIXTURES / "callkaro").glob("DO_NOT_SEND_*.json"))
OURS = {"to_number", "agent_id", "metadata"}


def test_the_request_is_to_number_agent_id_and_metadata_as_documented(fake_callkaro, make_call):
    call = make_call()
    assert placement.call_place(call_id=call.pk) == "placed"

    [request] = fake_callkaro.requests
    body = request["json"]
    assert request["path"] == "/call/outbound"
    assert request["headers"]["X-API-KEY"] == "test-api-key"
    assert request["headers"]["Content-Type"] == "application/json"
    assert set(body) == OURS
    # https://docs.callkaro.ai/api-reference/outbound-call: the "Quick Example" (the required
    # fields) and "Basic call with metadata" (the documented field names).
    assert set(fixture("callkaro", "outbound_request.json")) <= set(body)
    assert set(body) <= set(fixture("callkaro", "outbound_request_with_metadata.json"))
    assert re.fullmatch(r"\+[1-9]\d{1,14}", body["to_number"])  # the documented E.164 pattern
    assert body["agent_id"] == "agent-test"
    # Our ids, and the agent's variables, which CallKaro's prompts read as {{metadata.<name>}}.
    assert body["metadata"] == {**body["metadata"], **our_metadata(call)}
    assert (body["metadata"]["attempt"], body["metadata"]["streak"]) == ("1", "0")


def test_the_users_context_and_the_voicemail_message_ride_in_the_metadata(
    fake_callkaro, make_call, make_user
):
    from calls.policy_changes import policy_update

    policy_update(
        changes={"voicemail_message": "Hi {{metadata.name}}, we'll try later."}, user_id=None, actor="t"
    )
    call = make_call(user=make_user(context={"goal": "walk 20 minutes", "level": 2}))

    placement.call_place(call_id=call.pk)

    [request] = fake_callkaro.requests
    metadata = request["json"]["metadata"]
    assert metadata["context"] == '{"goal":"walk 20 minutes","level":2}'
    assert (metadata["context_goal"], metadata["context_level"]) == ("walk 20 minutes", "2")
    assert metadata["voicemail_message"] == "Hi {{metadata.name}}, we'll try later."


@pytest.mark.parametrize("name", DO_NOT_SEND)
def test_no_scheduling_or_retry_field_of_the_documented_examples_is_ever_sent(name, fake_callkaro, make_call):
    # https://docs.callkaro.ai/api-reference/outbound-call ("Call with 3 retries", "Schedule
    # call for later", "Call only during business hours"), .../api-reference/campaign.
    forbidden = set(fixture("callkaro", name)) - OURS
    assert forbidden  # each example shows at least one such field
    call = make_call()
    placement.call_place(call_id=call.pk)
    [request] = fake_callkaro.requests
    assert not forbidden & set(request["json"])


def test_the_documented_success_answer_places_the_call_with_its_call_sid(
    fake_callkaro, make_call, redis_conn
):
    # https://docs.callkaro.ai/api-reference/outbound-call (API-playground response example)
    answer = fixture("callkaro", "outbound_response_success.json")
    fake_callkaro.respond_with((200, answer))
    call = make_call()

    assert placement.call_place(call_id=call.pk, is_last_try=False) == "placed"

    call.refresh_from_db()
    assert len(fake_callkaro.requests) == 1
    assert call.status == CallStatus.RINGING
    assert call.provider_call_id == answer["call_sid"] == "a1b2c3d4e5"
    assert call.error == "" and call.dialed_at is not None
    assert call.provider_payloads == [{"placed": answer}]
    assert Call.objects.count() == 1


def test_the_legacy_success_answer_with_call_id_is_placed_too(fake_callkaro, make_call):
    # Older CallKaro docs (abhishekslab/relevel.me docs/callkaro/docs.md, see SOURCES.md)
    answer = fixture("callkaro", "LEGACY_outbound_response_success.json")
    fake_callkaro.respond_with((200, answer))
    call = make_call()

    assert placement.call_place(call_id=call.pk, is_last_try=False) == "placed"

    call.refresh_from_db()
    assert len(fake_callkaro.requests) == 1
    assert (call.status, call.provider_call_id) == (CallStatus.RINGING, answer["call_id"])


@pytest.mark.parametrize(
    ("status", "name"),
    [
        # Older CallKaro docs, "Error Responses" (abhishekslab/relevel.me docs/callkaro/docs.md)
        (400, "LEGACY_outbound_response_error_400_missing_agent_id.json"),
        (403, "LEGACY_outbound_response_error_403_missing_api_key.json"),
        (404, "LEGACY_outbound_response_error_404_agent_does_not_exist.json"),
    ],
)
def test_a_documented_4xx_fails_the_call_for_good_after_one_request(
    status, name, fake_callkaro, make_call, redis_conn
):
    answer = fixture("callkaro", name)
    fake_callkaro.respond_with((status, answer))
    call = make_call()

    assert placement.call_place(call_id=call.pk, is_last_try=False) == "failed"

    call.refresh_from_db()
    assert len(fake_callkaro.requests) == 1
    assert call.status == CallStatus.FAILED and call.completed_at is not None
    assert f"HTTP {status}" in call.error and answer["message"] in call.error
    assert Call.objects.count() == 1  # no retry of any kind


def test_a_documented_500_leaves_the_call_unconfirmed_after_one_request(fake_callkaro, make_call, redis_conn):
    # Older CallKaro docs: 500 {"status": "error", "message": "Server error"}
    fake_callkaro.respond_with(
        (500, fixture("callkaro", "LEGACY_outbound_response_error_500_server_error.json"))
    )
    call = make_call()

    assert placement.call_place(call_id=call.pk, is_last_try=False) == "unconfirmed"

    call.refresh_from_db()
    assert len(fake_callkaro.requests) == 1
    assert call.status == CallStatus.UNCONFIRMED and "HTTP 500" in call.error
    assert Call.objects.count() == 1  # waits for the webhook; nothing retried yet
    assert retry_job_ids(redis_conn) == []


# --- The call_ended webhook -----------------------------------------------------------------


def test_the_documented_call_ended_settles_the_call_through_the_real_parser(dialed, client):
    # https://docs.callkaro.ai/webhook/call-ended, with our ids added to its call_metadata
    payload = callkaro_call_ended(dialed)

    response = post_callkaro(client, payload)

    dialed.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == applied(dialed, "completed")
    assert dialed.status == CallStatus.COMPLETED and dialed.completed_at is not None
    assert dialed.end_reason == "CLIENT_INITIATED"
    assert dialed.transcript == "Full call transcript..."
    assert dialed.recording_url == "https://example.com/recording.mp3"
    assert dialed.duration_seconds == 120
    assert dialed.error == ""
    assert dialed.provider_payloads == [payload]
    stored = dialed.provider_payloads[0]["data"]
    assert stored["post_call"] == {"lead_status": "interested"}
    assert stored["disposition_reason"] == "Customer requested callback"
    assert stored["conversion_status"] is True
    assert not Call.objects.filter(retry_of=dialed).exists()


def test_the_conversation_report_is_shown_on_the_calls_admin_page(dialed, client, admin_client):
    post_callkaro(client, callkaro_call_ended(dialed))
    page = admin_client.get(reverse("admin:calls_call_change", args=[dialed.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for shown in ("disposition_reason", "Customer requested callback", "conversion_status", "lead_status"):
        assert shown in html
    assert "CLIENT_INITIATED" in html


# issue 8's table: hangup_reason -> (status, whether a retry follows).
UNLISTED = "A_REASON_CALLKARO_ADDS_LATER"
HANGUP_TABLE = {
    "CLIENT_INITIATED": (CallStatus.COMPLETED, False),
    "PARTICIPANT_REMOVED": (CallStatus.COMPLETED, False),
    "SESSION_TIMEOUT": (CallStatus.COMPLETED, False),
    "USER_UNAVAILABLE": (CallStatus.NO_ANSWER, True),
    "VOICEMAIL_DETECTED": (CallStatus.VOICEMAIL, True),
    "USER_REJECTED": (CallStatus.BUSY, True),
    "USER_UNRESPONSIVE": (CallStatus.FAILED, True),
    "PRE_CALL_FN_FAILED": (CallStatus.FAILED, True),
    "UNKNOWN": (CallStatus.FAILED, True),
    UNLISTED: (CallStatus.FAILED, True),
    "INVALID_PHONE_NUMBER": (CallStatus.FAILED, False),
    "OUTSIDE_TRIGGER_WINDOW": (CallStatus.CANCELED, False),
    "DELETED_SCH_CALL_ALL": (CallStatus.CANCELED, False),
    "DELETED_SCH_CALL_ONE": (CallStatus.CANCELED, False),
}
# https://docs.callkaro.ai/calls/hangup-reasons ("Hangup Reason Values")
DOCUMENTED_REASONS = list(fixture("callkaro", "hangup_reasons.json"))


def test_the_table_names_every_documented_hangup_reason():
    assert len(DOCUMENTED_REASONS) == 13
    assert set(DOCUMENTED_REASONS) == set(HANGUP_TABLE) - {UNLISTED}


@pytest.mark.parametrize("reason", [*DOCUMENTED_REASONS, UNLISTED])
def test_each_hangup_reason_gives_its_status_keeps_the_raw_value_and_retries_as_the_table_says(
    reason, dialed, client, redis_conn, django_capture_on_commit_callbacks
):
    status, retries = HANGUP_TABLE[reason]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_callkaro(client, callkaro_call_ended(dialed, hangup_reason=reason))

    dialed.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == applied(dialed, status, retry_scheduled=retries)
    assert dialed.status == status and dialed.completed_at is not None
    assert dialed.end_reason == reason
    assert dialed.error == ("" if status == CallStatus.COMPLETED else f"CallKaro hangup_reason {reason}")
    retry = Call.objects.filter(retry_of=dialed).first()
    if retries:
        assert retry is not None and (retry.attempt, retry.status) == (2, CallStatus.QUEUED)
        assert retry_job_ids(redis_conn) == [retry_release(retry)[0]]
    else:
        assert retry is None and retry_job_ids(redis_conn) == []


def test_a_call_ended_without_a_hangup_reason_is_a_failure_worth_a_retry(dialed, client):
    payload = callkaro_call_ended(dialed)
    del payload["data"]["hangup_reason"]
    response = post_callkaro(client, payload)
    dialed.refresh_from_db()
    assert response.json() == applied(dialed, "failed", retry_scheduled=True)
    assert dialed.end_reason == "(none)"


# --- Duplicates: CallKaro sends the same event to the account- and agent-level URLs ------


@pytest.mark.parametrize("second_url", [CALLKARO_URL, "/api/webhooks/call"])
def test_the_same_call_ended_delivered_twice_is_applied_once_with_one_retry(
    second_url, dialed, client, redis_conn, django_capture_on_commit_callbacks
):
    payload = callkaro_call_ended(dialed, hangup_reason="USER_UNAVAILABLE")
    with django_capture_on_commit_callbacks(execute=True):
        first = post_callkaro(client, payload)
    after_first = stored_state(redis_conn)
    with django_capture_on_commit_callbacks(execute=True):
        second = post_callkaro(client, payload, url=second_url)

    assert first.json() == applied(dialed, "no_answer", retry_scheduled=True)
    assert second.status_code == 200
    assert second.json() == applied(dialed, "no_answer", retry_scheduled=False)
    assert stored_state(redis_conn) == after_first
    assert Call.objects.filter(retry_of=dialed).count() == 1


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks; CI runs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_from_both_webhook_levels_schedule_one_retry(
    make_call, redis_conn, monkeypatch
):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-dup-race")
    original_save = Call.save

    def slow_save(self, *args, **kwargs):
        # Widen the race between reading the call and writing it.
        time.sleep(0.02)
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Call, "save", slow_save)
    body = json.dumps(callkaro_call_ended(call, hangup_reason="USER_REJECTED")).encode()
    count = 10
    barrier = threading.Barrier(count)
    results: list[tuple[int, dict]] = []

    def deliver(url: str) -> None:
        try:
            client = Client()
            barrier.wait()
            response = post_callkaro(client, body, url=url)
            results.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    urls = [CALLKARO_URL, "/api/webhooks/call"] * (count // 2)  # account level, agent level
    threads = [threading.Thread(target=deliver, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == count
    assert {status for status, _ in results} == {200}
    assert sum(result["retry_scheduled"] for _, result in results) == 1
    call.refresh_from_db()
    assert call.status == CallStatus.BUSY and len(call.provider_payloads) == 1
    [retry] = Call.objects.filter(user=call.user).exclude(pk=call.pk)
    assert (retry.attempt, retry.retry_of_id) == (2, call.pk)
    assert retry_job_ids(redis_conn) == [retry_release(retry)[0]]


# --- Authentication: the URL token, or relevel's own HMAC signature ----------------------


@pytest.mark.parametrize(
    "token",
    [None, "", "not-the-token", CALLKARO_TOKEN[:-1], CALLKARO_TOKEN + "x", CALLKARO_TOKEN.upper(), "é"],
    ids=["missing", "empty", "wrong", "a-prefix", "longer", "other-case", "non-ascii"],
)
def test_a_missing_or_wrong_token_is_401_and_nothing_is_written(token, dialed, client, redis_conn):
    before = stored_state(redis_conn)
    response = post_callkaro(
        client, callkaro_call_ended(dialed, hangup_reason="USER_UNAVAILABLE"), token=token
    )
    assert response.status_code == 401
    assert response.json() == REJECTED
    assert stored_state(redis_conn) == before


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_request_signed_with_the_hmac_secret_is_accepted_without_a_token(dialed, client, settings):
    body = json.dumps(callkaro_call_ended(dialed)).encode()
    response = post_callkaro(
        client, body, token=None, HTTP_X_CALLKARO_SIGNATURE=sign(body, settings.CALLKARO_WEBHOOK_SECRET)
    )
    dialed.refresh_from_db()
    assert response.status_code == 200 and dialed.status == CallStatus.COMPLETED


def test_a_bad_signature_without_a_token_is_401(dialed, client, settings, redis_conn):
    before = stored_state(redis_conn)
    body = json.dumps(callkaro_call_ended(dialed)).encode()
    other = json.dumps(callkaro_call_ended(dialed, hangup_reason="USER_REJECTED")).encode()
    response = post_callkaro(
        client, body, token=None, HTTP_X_CALLKARO_SIGNATURE=sign(other, settings.CALLKARO_WEBHOOK_SECRET)
    )
    assert response.status_code == 401
    assert stored_state(redis_conn) == before


def test_with_only_a_token_configured_a_signature_alone_is_not_enough(dialed, client, settings, redis_conn):
    """The signature is checked against the HMAC secret only: with none set, the token is
    the one credential, and a request without it is refused whatever it carries."""
    signed_with = settings.CALLKARO_WEBHOOK_SECRET
    settings.CALLKARO_WEBHOOK_SECRET = ""
    configure_callkaro_token(settings)
    body = json.dumps(callkaro_call_ended(dialed)).encode()
    before = stored_state(redis_conn)

    refused = post_callkaro(client, body, token=None, HTTP_X_CALLKARO_SIGNATURE=sign(body, signed_with))
    assert refused.status_code == 401
    assert stored_state(redis_conn) == before
    accepted = post_callkaro(client, body)
    assert accepted.status_code == 200 and accepted.json()["status"] == "completed"


def test_the_token_never_appears_in_a_log_line(dialed, client, caplog):
    wrong = CALLKARO_TOKEN[:-1] + "X"  # a near miss is as secret as the token itself
    caplog.set_level(logging.DEBUG)
    assert post_callkaro(client, callkaro_call_ended(dialed), token=wrong).status_code == 401
    assert post_callkaro(client, {"event": "message_received", "data": {}}).status_code == 200
    assert post_callkaro(client, b'{"event": "call_ended", "data": ').status_code == 400
    assert post_callkaro(client, callkaro_call_ended(dialed)).status_code == 200

    names = {record.name for record in caplog.records}
    assert {"django.request", "relevel.api", "relevel.webhooks", "relevel.calls"} <= names
    for record in caplog.records:
        line = record.getMessage()
        assert CALLKARO_TOKEN not in line and wrong not in line
    assert CALLKARO_TOKEN not in caplog.text and wrong not in caplog.text


# --- Events that are not about a call relevel placed: 200, ignored, nothing written -------


def assert_ignored(response, why: str) -> None:
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "ignored"} and body["success"] is True
    assert body["ignored"].startswith(why), body["ignored"]


def test_an_event_other_than_call_ended_is_ignored(dialed, client, redis_conn, caplog):
    before = stored_state(redis_conn)
    with caplog.at_level(logging.INFO, logger="relevel.webhooks"):
        response = post_callkaro(
            client, {"event": "message_received", "data": {"callSid": dialed.provider_call_id}}
        )
    assert_ignored(response, "event 'message_received' is not call_ended")
    assert stored_state(redis_conn) == before
    [line] = [r.getMessage() for r in caplog.records if r.name == "relevel.webhooks"]
    assert line.startswith("Webhook from callkaro ignored: event 'message_received'")


def test_the_documented_example_itself_is_not_a_call_relevel_placed(dialed, make_call, client, redis_conn):
    """Verbatim, the docs' call_ended has a callSid we never stored and a call_metadata
    without our call_id: what the account-level URL receives for inbound or test calls."""
    dialed.provider_call_id = "ck-ours"
    dialed.save()
    before = stored_state(redis_conn)
    response = post_callkaro(client, fixture("callkaro", "webhook_call_ended.json"))
    assert_ignored(response, f"not a call relevel placed (no call with call_id {DOC_CALL_SID})")
    assert stored_state(redis_conn) == before


def test_a_call_ended_naming_no_call_at_all_is_ignored(dialed, client, redis_conn):
    payload = callkaro_call_ended(dialed, call_sid="")
    payload["data"]["call_metadata"] = {"name": "Jatin", "age": 25}
    before = stored_state(redis_conn)
    response = post_callkaro(client, payload)
    assert_ignored(response, "neither data.callSid nor data.call_metadata.call_id")
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize("whose", ["nobody's", "a vapi call's"])
def test_a_call_ended_with_an_unknown_call_sid_and_a_foreign_call_id_is_ignored(
    whose, dialed, make_call, client, redis_conn
):
    foreign = make_call(status=CallStatus.RINGING, provider="vapi", provider_call_id="vapi-1")
    foreign_id = foreign.pk if whose == "a vapi call's" else foreign.pk + 1000
    payload = callkaro_call_ended(dialed, call_sid="ck-never-stored")
    payload["data"]["call_metadata"]["call_id"] = str(foreign_id)
    before = stored_state(redis_conn)
    response = post_callkaro(client, payload)
    assert_ignored(response, "not a call relevel placed")
    assert stored_state(redis_conn) == before


def test_a_call_sid_and_a_call_id_naming_different_calls_is_not_this_calls_event(
    dialed, make_call, client, redis_conn
):
    other = make_call(status=CallStatus.UNCONFIRMED, provider_call_id=None)
    payload = callkaro_call_ended(dialed, hangup_reason="USER_REJECTED")
    payload["data"]["call_metadata"]["call_id"] = str(other.pk)
    before = stored_state(redis_conn)
    response = post_callkaro(client, payload)
    assert_ignored(response, "not a call relevel placed (the provider call id and our call id point at")
    assert stored_state(redis_conn) == before


def test_a_long_signed_recording_url_is_stored_whole(client, settings, make_call):
    """Defect 11 of issue 9: recording_url was cut to 1,000 characters without a word."""
    configure_callkaro_token(settings)
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-long-rec")
    signed = "https://recordings.example/ck-long-rec.mp3?X-Amz-Signature=" + "a" * 3000
    payload = callkaro_call_ended(call, hangup_reason="CLIENT_INITIATED", recordingUrl=signed)
    assert post_callkaro(client, payload).status_code == 200
    call.refresh_from_db()
    assert call.recording_url == signed
