"""Across providers: never a blind re-dial (a lost placement answer settled by the webhook or
by the unconfirmed timeout), switching CALL_PROVIDER with calls in flight, and the original
design's /api/webhooks/call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rq.registry import ScheduledJobRegistry

from calls import placement, retry_buckets, scheduling
from calls.models import Call, CallStatus
from calls.queues import calls_queue
from tests.provider_fakes import (
    VAPI_ASSISTANT_ID,
    callkaro_call_ended,
    configure_callkaro_token,
    configure_retell,
    configure_vapi,
    fixture,
    our_metadata,
    post_callkaro,
    post_retell,
    post_vapi,
    retell_event,
    vapi_message,
    vapi_server,
)
from tests.test_webhook import stored_state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_the_calls_day")]
User = get_user_model()

VAPI_DOC_ID = fixture("vapi", "create_call_response.json")["id"]


@pytest.fixture(autouse=True)
def webhook_token(settings):
    configure_callkaro_token(settings)


def retry_job_ids() -> list[str]:
    return ScheduledJobRegistry(queue=calls_queue()).get_job_ids(cleanup=False)


# --- Never a blind re-dial ------------------------------------------------------------------


@pytest.fixture
def parked_user(make_user):
    """A user whose next daily slot is years away: the ticks below only sweep."""
    user = make_user()
    User.objects.filter(pk=user.pk).update(next_call_at=datetime(2099, 1, 1, tzinfo=UTC))
    return user


@pytest.fixture
def timed_out(fake_callkaro, settings, make_call, parked_user):
    """A call whose placement answer was lost to a read timeout: sent once, unconfirmed."""
    settings.CALLKARO_READ_TIMEOUT = 0.2
    configure_callkaro_token(settings)  # and a fresh provider, with that timeout
    fake_callkaro.delay = 0.5
    call = make_call(user=parked_user)
    assert placement.call_place(call_id=call.pk, is_last_try=False) == "unconfirmed"
    call.refresh_from_db()
    assert (call.status, call.provider_call_id) == (CallStatus.UNCONFIRMED, None)
    assert "read timeout" in call.error
    return call


def tick_after(call: Call, seconds: float, django_capture_on_commit_callbacks) -> scheduling.TickSummary:
    with django_capture_on_commit_callbacks(execute=True):
        return scheduling.calls_schedule_due(now=call.last_status_at + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("reason", "status", "retries"),
    [("CLIENT_INITIATED", CallStatus.COMPLETED, 0), ("USER_UNAVAILABLE", CallStatus.NO_ANSWER, 1)],
)
def test_a_read_timeout_is_one_request_then_the_webhook_found_by_our_call_id_settles_it(
    reason, status, retries, timed_out, fake_callkaro, client, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_callkaro(
            client, callkaro_call_ended(timed_out, call_sid="ck-sid-from-webhook", hangup_reason=reason)
        )

    timed_out.refresh_from_db()
    assert response.status_code == 200 and response.json()["status"] == status
    assert timed_out.status == status and timed_out.end_reason == reason
    assert timed_out.provider_call_id == "ck-sid-from-webhook"  # adopted
    assert not timed_out.outcome_inferred
    # The unconfirmed timeout passing changes nothing now, and nothing was ever sent again.
    tick_after(timed_out, settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 60, django_capture_on_commit_callbacks)
    timed_out.refresh_from_db()
    assert timed_out.status == status
    assert Call.objects.filter(retry_of=timed_out).count() == retries
    assert len(fake_callkaro.requests) == 1


def test_without_a_webhook_the_call_is_failed_after_the_timeout_with_exactly_one_retry(
    timed_out, fake_callkaro, settings, django_capture_on_commit_callbacks
):
    timeout = settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS
    assert timeout == 900  # the documented default

    early = tick_after(timed_out, timeout - 1, django_capture_on_commit_callbacks)
    timed_out.refresh_from_db()
    assert early.unconfirmed == 0 and timed_out.status == CallStatus.UNCONFIRMED
    unconfirmed_at = timed_out.last_status_at

    due = tick_after(timed_out, timeout + 1, django_capture_on_commit_callbacks)
    timed_out.refresh_from_db()
    assert due.unconfirmed == 1
    assert timed_out.status == CallStatus.FAILED and timed_out.outcome_inferred
    assert timed_out.error == (
        "Sent, but neither the provider's answer nor its webhook arrived within 15 minutes."
    )
    [retry] = Call.objects.filter(retry_of=timed_out)
    assert (retry.attempt, retry.status) == (2, CallStatus.QUEUED)
    # Timed from when it should have been failed, not from the tick that found it.
    assert retry.scheduled_for == unconfirmed_at + timedelta(
        seconds=timeout + settings.CALL_RETRY_DELAY_SECONDS
    )

    again = tick_after(timed_out, timeout + 120, django_capture_on_commit_callbacks)
    assert again.unconfirmed == 0
    assert Call.objects.filter(user=timed_out.user).count() == 2
    # The sweep's retries join their instant's bucket, as a webhook's do; its job is named on the row.
    bucket_job = retry_buckets.retry_bucket_job_id(retry_buckets.retry_bucket(retry.scheduled_for))
    assert retry_job_ids() == [bucket_job] == [retry.job_id]
    assert len(fake_callkaro.requests) == 1


@pytest.mark.parametrize(
    ("reason", "status", "retry_kept"),
    [
        ("CLIENT_INITIATED", CallStatus.COMPLETED, False),
        ("INVALID_PHONE_NUMBER", CallStatus.FAILED, False),
        ("USER_UNAVAILABLE", CallStatus.NO_ANSWER, True),
    ],
)
def test_a_real_outcome_after_relevel_gave_up_replaces_the_inference(
    reason,
    status,
    retry_kept,
    timed_out,
    fake_callkaro,
    client,
    settings,
    redis_conn,
    django_capture_on_commit_callbacks,
):
    tick_after(timed_out, settings.CALL_UNCONFIRMED_TIMEOUT_SECONDS + 1, django_capture_on_commit_callbacks)
    [retry] = Call.objects.filter(retry_of=timed_out)

    payload = callkaro_call_ended(timed_out, call_sid="ck-late-sid", hangup_reason=reason)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_callkaro(client, payload)

    timed_out.refresh_from_db()
    retry.refresh_from_db()
    assert response.status_code == 200
    assert response.json()["status"] == status and response.json()["retry_scheduled"] is False
    assert (timed_out.status, timed_out.end_reason, timed_out.provider_call_id) == (
        status,
        reason,
        "ck-late-sid",
    )
    assert not timed_out.outcome_inferred
    if retry_kept:
        assert retry.status == CallStatus.QUEUED
    else:
        # The retry relevel scheduled was never dialed: the real outcome needs none.
        assert retry.status == CallStatus.CANCELED
        assert retry.error == f"The provider reported attempt 1 as {status} after relevel had given up on it."
    assert Call.objects.filter(user=timed_out.user).count() == 2
    # The same outcome once more (the other webhook level) changes nothing.
    before = stored_state(redis_conn)
    post_callkaro(client, payload)
    assert stored_state(redis_conn) == before
    assert len(fake_callkaro.requests) == 1


# --- Switching CALL_PROVIDER with calls in flight -----------------------------------------


@pytest.fixture
def callkaro_call(make_call):
    return make_call(status=CallStatus.RINGING, provider="callkaro", provider_call_id="ck-before-the-switch")


def test_a_callkaro_call_is_settled_by_its_webhook_after_the_switch_to_vapi(callkaro_call, client, settings):
    configure_vapi(settings)
    assert settings.CALL_PROVIDER == "vapi"

    response = post_callkaro(client, callkaro_call_ended(callkaro_call))

    callkaro_call.refresh_from_db()
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert (callkaro_call.status, callkaro_call.provider) == (CallStatus.COMPLETED, "callkaro")


@pytest.mark.parametrize("vapi_id", ["vapi-id-of-its-own", "ck-before-the-switch"])
def test_a_vapi_webhook_naming_a_callkaro_call_is_not_applied_to_it(
    vapi_id, callkaro_call, client, settings, redis_conn
):
    configure_vapi(settings)
    before = stored_state(redis_conn)
    response = post_vapi(
        client, vapi_message("webhook_end_of_call_report.json", callkaro_call, vapi_id=vapi_id)
    )
    assert response.status_code == 200
    assert response.json()["ignored"].startswith("not a call relevel placed")
    assert stored_state(redis_conn) == before


def test_a_retell_webhook_naming_a_callkaro_call_is_not_applied_to_it(
    callkaro_call, client, settings, redis_conn
):
    configure_retell(settings)
    before = stored_state(redis_conn)
    response = post_retell(
        client, retell_event("webhook_call_ended.json", callkaro_call, retell_id="retell-own-id")
    )
    assert response.status_code == 200
    assert response.json()["ignored"].startswith("not a call relevel placed")
    assert stored_state(redis_conn) == before


def test_a_queued_callkaro_call_taken_after_the_switch_is_placed_through_vapi_with_its_assistant(
    fake_callkaro, make_call, settings
):
    call = make_call()  # queued while CallKaro placed calls, with CallKaro's agent
    assert (call.provider, call.agent_id) == ("callkaro", "agent-test")

    with vapi_server(settings) as fake_vapi:
        assert placement.call_place(call_id=call.pk) == "placed"

    call.refresh_from_db()
    assert fake_callkaro.requests == []
    [request] = fake_vapi.requests
    assert request["json"]["assistantId"] == VAPI_ASSISTANT_ID
    assert request["json"]["assistantOverrides"]["metadata"] == our_metadata(call)
    assert (call.provider, call.agent_id, call.provider_call_id) == ("vapi", VAPI_ASSISTANT_ID, VAPI_DOC_ID)


def test_the_retry_of_a_callkaro_call_that_failed_after_the_switch_is_placed_with_vapis_assistant(
    fake_callkaro, callkaro_call, client, settings
):
    """The retry is scheduled after the switch (for the new provider) from a CallKaro call:
    it must not carry CallKaro's agent id to Vapi as the assistant."""
    with vapi_server(settings) as fake_vapi:
        configure_callkaro_token(settings)
        response = post_callkaro(client, callkaro_call_ended(callkaro_call, hangup_reason="USER_UNAVAILABLE"))
        assert response.json()["retry_scheduled"] is True
        [retry] = Call.objects.filter(retry_of=callkaro_call)

        with time_machine.travel(retry.scheduled_for + timedelta(minutes=1), tick=True):
            placement.call_place(call_id=retry.pk)

    retry.refresh_from_db()
    assert fake_callkaro.requests == []
    [request] = fake_vapi.requests
    assert request["json"]["assistantId"] == VAPI_ASSISTANT_ID
    assert (retry.provider, retry.agent_id) == ("vapi", VAPI_ASSISTANT_ID)


# --- The original design's URL, /api/webhooks/call ------------------------------------------


def test_the_original_flat_format_is_accepted_as_before(make_call, client, settings):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-flat")
    payload = {
        "call_id": "ck-flat",
        "status": "completed",
        "metadata": {"call_id": str(call.pk)},
        "transcript": "Agent: Hi. User: Hello!",
        "recording_url": "https://rec.example/ck-flat.mp3",
        "duration": 42,
        "timestamp": "2026-11-28T15:02:00Z",
    }
    body = json.dumps(payload).encode()
    signature = hmac.new(settings.CALLKARO_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()

    response = client.post(
        "/api/webhooks/call", data=body, content_type="application/json", HTTP_X_CALLKARO_SIGNATURE=signature
    )

    call.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "call_id": str(call.pk),
        "status": "completed",
        "retry_scheduled": False,
    }
    assert (call.status, call.transcript, call.duration_seconds) == (
        CallStatus.COMPLETED,
        payload["transcript"],
        42,
    )
    assert call.provider_payloads == [payload]


@pytest.mark.parametrize("provider", ["callkaro", "simulator"])
def test_the_original_url_also_takes_callkaros_envelope(provider, make_call, client):
    call = make_call(status=CallStatus.RINGING, provider=provider, provider_call_id=f"{provider}-sid")
    response = post_callkaro(
        client, callkaro_call_ended(call, hangup_reason="USER_REJECTED"), url="/api/webhooks/call"
    )
    call.refresh_from_db()
    assert response.status_code == 200 and response.json()["retry_scheduled"] is True
    assert (call.status, call.end_reason) == (CallStatus.BUSY, "USER_REJECTED")


def test_the_original_url_does_not_touch_another_providers_call(make_call, client, redis_conn):
    vapi_call = make_call(status=CallStatus.RINGING, provider="vapi", provider_call_id="vapi-sid")
    before = stored_state(redis_conn)
    response = post_callkaro(client, callkaro_call_ended(vapi_call), url="/api/webhooks/call")
    assert response.status_code == 200 and response.json()["ignored"].startswith("not a call relevel placed")
    assert stored_state(redis_conn) == before


def test_a_webhook_for_an_unknown_provider_is_a_json_404(client):
    response = client.post("/api/webhooks/twilio", data={}, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": "unknown provider 'twilio'; expected one of callkaro, vapi, retell, simulator",
    }


def test_the_webhook_of_a_call_placed_under_a_reused_provider_id_finds_it_by_our_id(
    make_call, client, settings
):
    """The provider answered call B with an id call A already had: B is placed without it,
    and B's webhook (carrying that id and B's own) settles B, not A, and not nobody."""
    configure_callkaro_token(settings)
    older = make_call(status=CallStatus.COMPLETED, provider_call_id="ck-dup")
    # As placement records it (tests/test_placement.py: ...reused_for_a_second_call...).
    call = make_call(
        status=CallStatus.RINGING,
        provider_call_id=None,
        provider_payloads=[{"reused_provider_call_id": "ck-dup"}],
    )
    response = post_callkaro(
        client, callkaro_call_ended(call, call_sid="ck-dup", hangup_reason="CLIENT_INITIATED")
    )
    assert response.status_code == 200 and response.json()["call_id"] == str(call.pk)
    call.refresh_from_db()
    older.refresh_from_db()
    assert call.status == CallStatus.COMPLETED and older.provider_payloads == []
