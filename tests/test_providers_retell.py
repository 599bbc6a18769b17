"""Retell as its API reference and its official Python SDK (retell-sdk) document it
(tests/fixtures/retell/): create-phone-call against a fake Retell on 127.0.0.1, and its
webhooks through POST /api/webhooks/retell, signed exactly as the SDK's verify() accepts.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from retell.lib.webhook_auth import symmetric

from calls import placement
from calls.models import Call, CallStatus
from calls.providers import provider_named, reset_provider_cache
from calls.providers.base import ProviderNotSentError, WebhookAuth
from tests.provider_fakes import (
    RETELL_AGENT_ID,
    RETELL_API_KEY,
    RETELL_FROM_NUMBER,
    RETELL_URL,
    RETELL_WEBHOOK_API_KEY,
    configure_retell,
    fixture,
    fixture_text,
    our_metadata,
    post_retell,
    retell_event,
    retell_server,
    sign_retell,
)
from tests.test_webhook import accepted as applied
from tests.test_webhook import stored_state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_the_calls_day")]

# The call id of Retell's documented call object (create_phone_call_response.json, and the
# call the webhook fixtures are about).
DOC_ID = fixture("retell", "create_phone_call_response.json")["call_id"]
REJECTED = {"success": False, "error": "invalid or missing webhook credentials"}
FIVE_MINUTES_MS = 5 * 60 * 1000


@pytest.fixture
def fake_retell(settings):
    with retell_server(settings) as fake:
        yield fake


@pytest.fixture
def retell_settings(settings):
    """Retell's settings for webhook tests (nothing is placed: its URL leads nowhere)."""
    configure_retell(settings)


@pytest.fixture
def queued(make_call):
    return make_call(provider="retell", agent_id=RETELL_AGENT_ID)


@pytest.fixture
def retell_call(retell_settings, make_call):
    """A call Retell accepted with its documented call_id, ringing."""
    return make_call(
        status=CallStatus.RINGING, provider="retell", provider_call_id=DOC_ID, agent_id=RETELL_AGENT_ID
    )


def now_ms() -> int:
    return int(time.time() * 1000)


# --- Placing --------------------------------------------------------------------------------


def test_the_request_has_the_documented_fields_and_our_metadata(fake_retell, queued, make_call):
    other = make_call(provider="retell", agent_id=RETELL_AGENT_ID)
    assert placement.call_place(call_id=queued.pk) == "placed"
    fake_retell.respond_with(
        (201, {**fixture("retell", "create_phone_call_response.json"), "call_id": "other"})
    )
    assert placement.call_place(call_id=other.pk) == "placed"

    first, second = fake_retell.requests
    body = first["json"]
    assert first["path"] == "/v2/create-phone-call"
    assert first["headers"]["Authorization"] == f"Bearer {RETELL_API_KEY}"
    # docs.retellai.com/api-references/create-phone-call (create_phone_call_request.json);
    # idempotency_key is CallCreatePhoneCallParams' (retell-sdk 6.2.13).
    documented = fixture("retell", "create_phone_call_request.json")
    assert {"from_number", "to_number"} <= set(body)
    assert set(body) - {"idempotency_key"} <= set(documented)
    assert body["from_number"] == documented["from_number"] == RETELL_FROM_NUMBER
    assert body["override_agent_id"] == documented["override_agent_id"] == RETELL_AGENT_ID
    assert body["to_number"] == queued.user.phone
    assert body["metadata"] == our_metadata(queued)
    # Dynamic variables: a dict of strings (CONTRACT.md, create-phone-call).
    variables = body["retell_llm_dynamic_variables"]
    assert variables["attempt"] == "1" and all(isinstance(value, str) for value in variables.values())
    # One key per call: Retell never creates a second call for the same one within an hour.
    assert body["idempotency_key"] == f"relevel-call-{queued.pk}"
    assert second["json"]["idempotency_key"] == f"relevel-call-{other.pk}"


def test_the_documented_call_object_places_the_call_with_its_call_id(fake_retell, queued):
    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "placed"
    queued.refresh_from_db()
    assert len(fake_retell.requests) == 1
    assert (queued.status, queued.provider_call_id) == (CallStatus.RINGING, DOC_ID)
    assert queued.provider_payloads == [{"placed": fixture("retell", "create_phone_call_response.json")}]


def test_a_documented_429_is_not_sent_and_the_call_goes_back_to_the_queue(fake_retell, queued, redis_conn):
    fake_retell.respond_with((429, fixture("retell", "error_429.json")))
    with pytest.raises(ProviderNotSentError, match="Account rate limited"):
        placement.call_place(call_id=queued.pk, is_last_try=False)
    queued.refresh_from_db()
    assert len(fake_retell.requests) == 1
    assert queued.status == CallStatus.QUEUED and "HTTP 429" in queued.error
    assert Call.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "error_400.json"),
        (401, "error_401.json"),
        (402, "error_402.json"),
        (422, "error_422.json"),
        (400, "error_400_legacy_shape.json"),
    ],
)
def test_a_documented_refusal_fails_the_call_for_good(status, name, fake_retell, queued, redis_conn):
    fake_retell.respond_with((status, fixture("retell", name)))
    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "failed"
    queued.refresh_from_db()
    assert len(fake_retell.requests) == 1
    assert queued.status == CallStatus.FAILED and f"Retell HTTP {status}" in queued.error
    body = fixture("retell", name)
    assert (body.get("message") or body["error_message"]) in queued.error  # either shape is read
    assert Call.objects.count() == 1  # no retry of any kind


def test_a_documented_500_leaves_the_call_unconfirmed_after_one_request(fake_retell, queued, redis_conn):
    fake_retell.respond_with((500, fixture("retell", "error_500.json")))
    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "unconfirmed"
    queued.refresh_from_db()
    assert len(fake_retell.requests) == 1
    assert queued.status == CallStatus.UNCONFIRMED and "An unexpected server error occurred." in queued.error
    assert Call.objects.count() == 1


# --- Webhooks -------------------------------------------------------------------------------


def test_call_started_finds_an_unconfirmed_call_by_our_metadata(retell_settings, make_call, client):
    call = make_call(status=CallStatus.UNCONFIRMED, provider="retell", provider_call_id=None)
    response = post_retell(client, retell_event("webhook_call_started.json", call, retell_id=DOC_ID))
    call.refresh_from_db()
    assert response.json() == applied(call, "in_progress")
    assert (call.status, call.provider_call_id) == (CallStatus.IN_PROGRESS, DOC_ID)


def test_the_documented_call_ended_completes_the_call_with_its_transcript_and_recording(retell_call, client):
    payload = fixture("retell", "webhook_call_ended.json")  # as documented: found by call_id
    assert (
        post_retell(client, fixture("retell", "webhook_call_started.json")).json()["status"] == "in_progress"
    )

    response = post_retell(client, payload)

    retell_call.refresh_from_db()
    assert response.json() == applied(retell_call, "completed")
    assert retell_call.end_reason == "user_hangup" and retell_call.error == ""
    assert retell_call.transcript == payload["call"]["transcript"]
    assert retell_call.recording_url == payload["call"]["recording_url"]
    assert retell_call.duration_seconds == 15  # duration_ms 15791
    assert not Call.objects.filter(retry_of=retell_call).exists()


def test_the_documented_unanswered_call_ended_is_a_no_answer_with_a_retry(
    retell_settings, make_call, client, django_capture_on_commit_callbacks
):
    payload = fixture("retell", "webhook_call_ended_no_answer.json")
    call = make_call(
        status=CallStatus.RINGING, provider="retell", provider_call_id=payload["call"]["call_id"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_retell(client, payload)
    call.refresh_from_db()
    assert response.json() == applied(call, "no_answer", retry_scheduled=True)
    assert (call.end_reason, call.transcript, call.duration_seconds) == ("dial_no_answer", "", None)
    assert Call.objects.filter(retry_of=call).count() == 1


def test_call_analyzed_after_call_ended_keeps_its_analysis_once(retell_call, client, redis_conn):
    post_retell(client, fixture("retell", "webhook_call_ended.json"))

    response = post_retell(client, fixture("retell", "webhook_call_analyzed.json"))
    after_analysis = stored_state(redis_conn)
    again = post_retell(client, fixture("retell", "webhook_call_analyzed.json"))

    assert response.json() == applied(retell_call, "completed")
    assert again.json() == applied(retell_call, "completed")
    retell_call.refresh_from_db()
    assert [payload["event"] for payload in retell_call.provider_payloads] == ["call_ended", "call_analyzed"]
    assert stored_state(redis_conn) == after_analysis


def test_call_analyzed_alone_settles_a_call_whose_call_ended_was_lost(retell_call, client):
    payload = fixture("retell", "webhook_call_analyzed.json")
    response = post_retell(client, payload)
    retell_call.refresh_from_db()
    assert response.json() == applied(retell_call, "completed")
    assert retell_call.transcript == payload["call"]["transcript"] and retell_call.duration_seconds == 15


def test_an_event_without_a_call_status_is_ignored(retell_call, client, redis_conn):
    before = stored_state(redis_conn)
    payload = {**fixture("retell", "webhook_call_ended.json"), "event": "transcript_updated"}
    response = post_retell(client, payload)
    assert response.json() == {
        "success": True,
        "ignored": "event 'transcript_updated' carries no call status",
    }
    assert stored_state(redis_conn) == before


# --- X-Retell-Signature -----------------------------------------------------------------------

VECTOR = fixture("retell", "webhook_signature_vector.json")  # retell-python-sdk's own test vector


def test_the_sdks_test_vector_verifies_and_our_signer_reproduces_it():
    body, key, ts = VECTOR["raw_body"], VECTOR["api_key"], VECTOR["timestamp_ms"]
    signature = VECTOR["x_retell_signature"]
    assert symmetric["verify"](body, key, signature, {"timestamp": ts}) is True
    assert symmetric["verify"](body, key, signature, {"timestamp": ts + VECTOR["tolerance_ms"]}) is True
    assert symmetric["verify"](body, key, signature, {"timestamp": ts + VECTOR["tolerance_ms"] + 1}) is False
    assert symmetric["verify"](body + " ", key, signature, {"timestamp": ts}) is False
    assert sign_retell(body, key, ts) == signature


def test_the_adapter_accepts_the_vector_at_its_own_time_and_not_five_minutes_later(settings):
    configure_retell(settings)
    settings.RETELL_WEBHOOK_API_KEY = VECTOR["api_key"]
    reset_provider_cache()
    retell = provider_named("retell")
    signed_at = datetime.fromtimestamp(VECTOR["timestamp_ms"] / 1000, tz=UTC)

    def verdict(at: datetime) -> WebhookAuth:
        with time_machine.travel(at, tick=False):
            return retell.authenticate_webhook(
                body=VECTOR["raw_body"].encode(),
                headers={"X-Retell-Signature": VECTOR["x_retell_signature"]},
                query={},
            )

    assert verdict(signed_at) is WebhookAuth.OK
    assert verdict(signed_at + timedelta(minutes=5)) is WebhookAuth.OK
    assert verdict(signed_at + timedelta(minutes=5, milliseconds=1)) is WebhookAuth.DENIED


def test_the_vector_passes_the_webhooks_authentication_at_its_time(settings, client):
    configure_retell(settings)
    settings.RETELL_WEBHOOK_API_KEY = VECTOR["api_key"]
    reset_provider_cache()
    with time_machine.travel(datetime.fromtimestamp(VECTOR["timestamp_ms"] / 1000, tz=UTC), tick=False):
        response = post_retell(client, VECTOR["raw_body"], signature=VECTOR["x_retell_signature"])
    # Authenticated; then refused as a payload (the vector's body has no call object).
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "call must be a JSON object"}
    assert post_retell(client, VECTOR["raw_body"], signature=VECTOR["x_retell_signature"]).status_code == 401


def _tampered(payload_text: str) -> dict:
    return {
        "signature": sign_retell(
            payload_text.replace("user_hangup", "dial_no_answer"), RETELL_WEBHOOK_API_KEY
        )
    }


def _upper_case_digest(text: str) -> str:
    version, digest = sign_retell(text, RETELL_WEBHOOK_API_KEY).split(",d=")
    return f"{version},d={digest.upper()}"


BAD_SIGNATURES = {
    "missing header": lambda text: {"signed": False},
    "tampered body": _tampered,
    "re-serialised body": lambda text: {
        "signature": sign_retell(json.dumps(json.loads(text), indent=1), RETELL_WEBHOOK_API_KEY)
    },
    "five minutes and a second old": lambda text: {"timestamp_ms": now_ms() - FIVE_MINUTES_MS - 1000},
    "five minutes and a second ahead": lambda text: {"timestamp_ms": now_ms() + FIVE_MINUTES_MS + 1000},
    "signed with the api key, not the webhook key": lambda text: {"key": RETELL_API_KEY},
    "upper-case digest": lambda text: {"signature": _upper_case_digest(text)},
    "not the v=,d= format": lambda text: {"signature": "sha256=" + "0" * 64},
}


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_a_bad_or_stale_signature_is_401_and_nothing_is_written(case, retell_call, client, redis_conn):
    text = json.dumps(fixture("retell", "webhook_call_ended.json"))
    before = stored_state(redis_conn)
    response = post_retell(client, text, **BAD_SIGNATURES[case](text))
    assert response.status_code == 401
    assert response.json() == REJECTED
    assert stored_state(redis_conn) == before


def test_a_signature_a_few_minutes_old_is_still_accepted(retell_call, client):
    response = post_retell(
        client, fixture("retell", "webhook_call_ended.json"), timestamp_ms=now_ms() - FIVE_MINUTES_MS + 10_000
    )
    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_a_body_that_is_not_utf8_is_401_not_500(retell_call, client):
    response = client.post(
        RETELL_URL,
        data=b'{"event": "\xff"}',
        content_type="application/json",
        HTTP_X_RETELL_SIGNATURE="v=1,d=" + "0" * 64,
    )
    assert response.status_code == 401


# --- disconnection_reason -> status -----------------------------------------------------------


def _documented_disconnection_reasons() -> list[str]:
    """The 39 values of CONTRACT.md §2.3 (retell-sdk 6.2.13's Literal, verbatim)."""
    section = fixture_text("retell", "CONTRACT.md").split("### 2.3", 1)[1].split("\n", 1)[1]
    return re.findall(r"`([a-z_]+)`", section.split("(39 values)", 1)[0])


DOCUMENTED_REASONS = _documented_disconnection_reasons()
UNLISTED = "a_reason_retell_adds_later"
# Each group of CONTRACT.md §2.3, as calls/providers/retell.py reads it: a declined call is
# "busy" (CallKaro's USER_REJECTED likewise); a stop from Retell's dashboard is canceled.
NO_ANSWER, BUSY, COMPLETED = (
    (CallStatus.NO_ANSWER, True),
    (CallStatus.BUSY, True),
    (CallStatus.COMPLETED, False),
)
FAILED = (CallStatus.FAILED, True)
RETELL_OUTCOME = {
    # no answer, voicemail / IVR
    "dial_no_answer": NO_ANSWER,
    "voicemail_reached": (CallStatus.VOICEMAIL, True),
    "ivr_reached": NO_ANSWER,
    # busy, declined
    "dial_busy": BUSY,
    "user_declined": BUSY,
    # ended by the user, by the agent or the platform's flow, by inactivity, at the maximum duration
    **dict.fromkeys(
        (
            "user_hangup",
            "user_requested_dnc",
            "user_requested_callback",
            "agent_hangup",
            "call_transfer",
            "transfer_bridged",
            "transfer_cancelled",
            "call_take_over",
            "inactivity",
            "max_duration_reached",
        ),
        COMPLETED,
    ),
    "manual_stopped": (CallStatus.CANCELED, False),
    # the number itself is wrong: no retry
    "invalid_destination": (CallStatus.FAILED, False),
    # dial and telephony failures, platform errors, billing, concurrency, and the undescribed
    **dict.fromkeys(
        (
            "dial_failed",
            "telephony_provider_permission_denied",
            "telephony_provider_unavailable",
            "sip_routing_error",
            "marked_as_spam",
            "network_blocked",
            "error_llm_websocket_open",
            "error_llm_websocket_lost_connection",
            "error_llm_websocket_runtime",
            "error_llm_websocket_corrupt_payload",
            "error_no_audio_received",
            "error_asr",
            "error_retell",
            "error_unknown",
            "error_user_not_joined",
            "scam_detected",
            "no_valid_payment",
            "credit_exhausted",
            "budget_reached",
            "concurrency_limit_reached",
            "no_concurrency_fallback",
            "registered_call_timeout",
        ),
        FAILED,
    ),
    UNLISTED: FAILED,
}


def test_the_table_names_every_documented_disconnection_reason():
    assert len(DOCUMENTED_REASONS) == 39
    assert set(DOCUMENTED_REASONS) == set(RETELL_OUTCOME) - {UNLISTED}


@pytest.mark.parametrize("reason", [*DOCUMENTED_REASONS, UNLISTED])
def test_each_disconnection_reason_lands_in_the_status_its_group_implies(
    reason, retell_call, client, django_capture_on_commit_callbacks
):
    status, retries = RETELL_OUTCOME[reason]
    payload = retell_event("webhook_call_ended.json", disconnection_reason=reason)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_retell(client, payload)

    retell_call.refresh_from_db()
    assert response.json() == applied(retell_call, status, retry_scheduled=retries)
    assert (retell_call.status, retell_call.end_reason) == (status, reason)
    assert Call.objects.filter(retry_of=retell_call).exists() is retries
