"""Vapi as its API reference documents it (tests/fixtures/vapi/, from VapiAI/docs and its
OpenAPI, fern/apis/api/openapi.json): the create-call request and answers against a fake
Vapi on 127.0.0.1, and its server messages through POST /api/webhooks/vapi.
"""

from __future__ import annotations

import pytest

from calls import placement, policy_changes
from calls.models import Call, CallStatus
from calls.providers import reset_provider_cache
from calls.providers.base import ProviderCapacityError
from tests.provider_fakes import (
    VAPI_API_KEY,
    VAPI_ASSISTANT_ID,
    VAPI_URL,
    VAPI_WEBHOOK_SECRET,
    configure_vapi,
    fixture,
    our_metadata,
    post_vapi,
    vapi_message,
    vapi_server,
)
from tests.test_webhook import accepted as applied
from tests.test_webhook import stored_state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_the_calls_day")]

# The call id of Vapi's documented 201 (create_call_response.json, create_call_response_doc_snippet.json).
DOC_ID = fixture("vapi", "create_call_response.json")["id"]
REJECTED = {"success": False, "error": "invalid or missing webhook credentials"}


@pytest.fixture
def fake_vapi(settings):
    with vapi_server(settings) as fake:
        yield fake


@pytest.fixture
def vapi_settings(settings):
    """Vapi's settings for webhook tests (nothing is placed: its URL leads nowhere)."""
    configure_vapi(settings)


@pytest.fixture
def queued(make_call):
    return make_call(provider="vapi", agent_id=VAPI_ASSISTANT_ID)


@pytest.fixture
def vapi_call(vapi_settings, make_call):
    """A call Vapi accepted with its documented id, ringing."""
    return make_call(
        status=CallStatus.RINGING, provider="vapi", provider_call_id=DOC_ID, agent_id=VAPI_ASSISTANT_ID
    )


# --- Placing --------------------------------------------------------------------------------


def test_the_request_has_the_documented_shape_with_our_ids_where_vapi_echoes_them(fake_vapi, queued):
    assert placement.call_place(call_id=queued.pk) == "placed"

    [request] = fake_vapi.requests
    body = request["json"]
    assert request["path"] == "/call"
    assert request["headers"]["Authorization"] == f"Bearer {VAPI_API_KEY}"
    # https://docs.vapi.ai/calls/call-concurrency ("Example request"), verbatim.
    documented = fixture("vapi", "create_call_request.json")
    assert set(documented) <= set(body)
    assert body["assistantId"] == documented["assistantId"] == VAPI_ASSISTANT_ID
    assert body["phoneNumberId"] == documented["phoneNumberId"]
    assert body["customer"]["number"] == queued.user.phone
    # Every other field is one CreateCallDTO has (create_call_request_with_refs.json); Vapi
    # refuses unknown properties, a top-level metadata among them.
    schema = fixture("vapi", "create_call_request_with_refs.json")
    assert set(body) <= set(schema) and "metadata" not in body
    assert set(body["customer"]) <= set(schema["customer"])
    assert set(body["assistantOverrides"]) <= set(schema["assistantOverrides"])
    # Our ids, where the Call object (and so every server message) carries them back.
    assert body["assistantOverrides"]["metadata"] == our_metadata(queued)
    # The agent's variables, as create_call_request_with_refs.json ([OAS] AssistantOverrides).
    assert set(fixture("vapi", "create_call_request_with_refs.json")["assistantOverrides"]) >= set(
        body["assistantOverrides"]
    )
    assert body["assistantOverrides"]["variableValues"]["name"] == queued.user.name
    assert "voicemailMessage" not in body["assistantOverrides"]  # none set in the policy
    assert body["name"] == f"relevel call {queued.pk}"
    assert len(body["name"]) <= 40 and len(body["customer"]["name"]) <= 40  # CreateCallDTO's maxLength


@pytest.mark.parametrize("name", ["create_call_response.json", "create_call_response_doc_snippet.json"])
def test_the_documented_201_places_the_call_with_vapis_id(name, fake_vapi, queued):
    answer = fixture("vapi", name)
    fake_vapi.respond_with((201, answer))

    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "placed"

    queued.refresh_from_db()
    assert len(fake_vapi.requests) == 1
    assert (queued.status, queued.provider_call_id) == (CallStatus.RINGING, DOC_ID)
    assert queued.provider_payloads == [{"placed": answer}]


def test_a_concurrency_refusal_is_not_sent_and_the_call_goes_back_to_the_queue(fake_vapi, queued, redis_conn):
    # VapiAI/docs#110 (legacy, unmerged): 400 {"error": "Over Concurrency Limit"}.
    fake_vapi.respond_with((400, fixture("vapi", "error_400_concurrency_legacy.json")))

    with pytest.raises(ProviderCapacityError):
        placement.call_place(call_id=queued.pk, is_last_try=False)

    queued.refresh_from_db()
    assert len(fake_vapi.requests) == 1
    assert queued.status == CallStatus.QUEUED and "concurren" in queued.error.lower()
    assert Call.objects.count() == 1


def test_a_blocked_call_that_vapi_gave_an_id_is_never_sent_again(fake_vapi, queued, redis_conn):
    """https://docs.vapi.ai/calls/call-concurrency: a blocked call may wait for a free slot
    and ring later; sending it again could ring the user twice. Its messages settle it."""
    answer = fixture("vapi", "create_call_response_concurrency_blocked.json")
    fake_vapi.respond_with((201, answer))

    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "placed"

    queued.refresh_from_db()
    assert len(fake_vapi.requests) == 1
    assert (queued.status, queued.provider_call_id) == (CallStatus.RINGING, answer["id"])


def test_a_blocked_answer_without_an_id_is_a_capacity_refusal(fake_vapi, queued, redis_conn):
    answer = {**fixture("vapi", "create_call_response_concurrency_blocked.json")}
    del answer["id"]
    fake_vapi.respond_with((201, answer))

    with pytest.raises(ProviderCapacityError):
        placement.call_place(call_id=queued.pk, is_last_try=False)
    queued.refresh_from_db()
    assert queued.status == CallStatus.QUEUED


@pytest.mark.parametrize(
    ("status", "name", "said"),
    [
        (401, "error_401_invalid_key.json", "Invalid Key"),
        (400, "error_400_validation.json", "property customer should not exist"),
    ],
)
def test_a_refusal_for_good_fails_the_call_without_a_retry(status, name, said, fake_vapi, queued, redis_conn):
    fake_vapi.respond_with((status, fixture("vapi", name)))

    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "failed"

    queued.refresh_from_db()
    assert len(fake_vapi.requests) == 1
    assert queued.status == CallStatus.FAILED
    assert f"Vapi HTTP {status}" in queued.error and said in queued.error
    assert Call.objects.count() == 1


def test_an_answer_lost_after_sending_is_settled_by_the_webhook_echoing_our_ids(
    fake_vapi, queued, settings, client
):
    settings.PROVIDER_READ_TIMEOUT = 0.2
    reset_provider_cache()
    fake_vapi.delay = 0.5
    assert placement.call_place(call_id=queued.pk, is_last_try=False) == "unconfirmed"
    [request] = fake_vapi.requests
    sent = request["json"]

    # Vapi's report names the call by its own id (never stored) and echoes what we sent.
    report = fixture("vapi", "webhook_end_of_call_report.json")
    report["message"]["call"].update(
        id="vapi-id-never-stored",
        name=sent["name"],
        customer=sent["customer"],
        assistantOverrides=sent["assistantOverrides"],
    )
    response = post_vapi(client, report)

    queued.refresh_from_db()
    assert response.json() == applied(queued, "completed")
    assert (queued.status, queued.provider_call_id) == (CallStatus.COMPLETED, "vapi-id-never-stored")
    assert len(fake_vapi.requests) == 1


# --- Server messages --------------------------------------------------------------------------


@pytest.mark.parametrize("echo", ["assistantOverrides.metadata", "name"])
def test_a_ringing_status_update_finds_an_unconfirmed_call_by_our_ids(echo, vapi_settings, make_call, client):
    call = make_call(status=CallStatus.UNCONFIRMED, provider="vapi", provider_call_id=None)
    payload = vapi_message("webhook_status_update.json", call, vapi_id=DOC_ID)
    if echo == "name":
        del payload["message"]["call"]["assistantOverrides"]
    else:
        payload["message"]["call"]["name"] = "someone else's name"

    response = post_vapi(client, payload)

    call.refresh_from_db()
    assert response.json() == applied(call, "ringing")
    assert (call.status, call.provider_call_id) == (CallStatus.RINGING, DOC_ID)


def test_the_documented_ended_status_update_is_a_no_answer_with_a_retry(
    vapi_call, client, redis_conn, django_capture_on_commit_callbacks
):
    payload = fixture("vapi", "webhook_status_update_ended.json")  # as documented: found by Vapi's id
    with django_capture_on_commit_callbacks(execute=True):
        response = post_vapi(client, payload)

    vapi_call.refresh_from_db()
    assert response.json() == applied(vapi_call, "no_answer", retry_scheduled=True)
    assert vapi_call.end_reason == "customer-did-not-answer"
    assert vapi_call.error == "Vapi endedReason customer-did-not-answer"
    assert vapi_call.provider_payloads == [payload]
    assert Call.objects.filter(retry_of=vapi_call).count() == 1


def test_the_documented_end_of_call_report_completes_the_call_with_its_artifacts(vapi_call, client):
    payload = fixture("vapi", "webhook_end_of_call_report.json")
    artifact = payload["message"]["artifact"]

    response = post_vapi(client, payload, bearer=True)

    vapi_call.refresh_from_db()
    assert response.json() == applied(vapi_call, "completed")
    assert vapi_call.end_reason == "customer-ended-call" and vapi_call.error == ""
    assert vapi_call.transcript == artifact["transcript"]
    assert vapi_call.recording_url == artifact["recordingUrl"]
    assert vapi_call.duration_seconds == 213  # endedAt 15:46:58 - startedAt 15:43:25
    assert not Call.objects.filter(retry_of=vapi_call).exists()


def test_the_recording_falls_back_to_the_mono_combined_url(vapi_call, client):
    payload = fixture("vapi", "webhook_end_of_call_report.json")
    del payload["message"]["artifact"]["recordingUrl"]
    post_vapi(client, payload)
    vapi_call.refresh_from_db()
    assert vapi_call.recording_url == payload["message"]["artifact"]["recording"]["mono"]["combinedUrl"]


@pytest.mark.parametrize("name", ["webhook_status_update_doc.json", "webhook_end_of_call_report_doc.json"])
def test_the_docs_own_examples_name_no_call_and_are_ignored(name, vapi_call, client, redis_conn):
    """The events page's examples carry an empty call object (``/* Call Object */``)."""
    before = stored_state(redis_conn)
    response = post_vapi(client, fixture("vapi", name))
    assert response.status_code == 200
    assert response.json() == {"success": True, "ignored": "no call id in message.call"}
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize(
    ("name", "end_reason", "transcript"),
    [
        ("webhook_status_update_doc.json", "(none)", ""),
        # Its endedReason "hangup" is not in Vapi's enum: an unknown reason.
        (
            "webhook_end_of_call_report_doc.json",
            "hangup",
            "AI: How can I help? User: What's the weather? ...",
        ),
    ],
)
def test_the_docs_own_examples_about_our_call_fail_it_with_a_retry(
    name, end_reason, transcript, vapi_call, client
):
    payload = vapi_message(name, vapi_call)
    response = post_vapi(client, payload)
    vapi_call.refresh_from_db()
    assert response.json() == applied(vapi_call, "failed", retry_scheduled=True)
    assert (vapi_call.end_reason, vapi_call.transcript) == (end_reason, transcript)


def test_a_message_type_without_a_call_status_is_ignored(vapi_call, client, redis_conn):
    before = stored_state(redis_conn)
    response = post_vapi(client, vapi_message("webhook_status_update.json", vapi_call, type="speech-update"))
    assert response.json() == {
        "success": True,
        "ignored": "message type 'speech-update' carries no call status",
    }
    assert stored_state(redis_conn) == before


# --- Authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_X_VAPI_SECRET": "not-the-secret"},
        {"HTTP_X_VAPI_SECRET": VAPI_WEBHOOK_SECRET[:-1]},
        {"HTTP_AUTHORIZATION": "Bearer not-the-secret"},
        {"HTTP_AUTHORIZATION": f"Basic {VAPI_WEBHOOK_SECRET}"},
        {"HTTP_AUTHORIZATION": VAPI_WEBHOOK_SECRET},
        {"HTTP_X_VAPI_SECRET": "é"},
    ],
    ids=["missing", "wrong-secret", "a-prefix", "wrong-bearer", "basic-scheme", "no-scheme", "non-ascii"],
)
def test_a_missing_or_wrong_secret_is_401_and_nothing_is_written(headers, vapi_call, client, redis_conn):
    before = stored_state(redis_conn)
    response = client.post(
        VAPI_URL,
        data=fixture("vapi", "webhook_status_update_ended.json"),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401
    assert response.json() == REJECTED
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize("bearer", [False, True], ids=["x-vapi-secret", "authorization-bearer"])
def test_the_secret_is_accepted_in_either_documented_header(bearer, vapi_call, client):
    response = post_vapi(client, fixture("vapi", "webhook_status_update_ended.json"), bearer=bearer)
    assert response.status_code == 200 and response.json()["status"] == "no_answer"


# --- endedReason -> status ------------------------------------------------------------------

# tests/fixtures/vapi/endedReason_groups.json: every documented endedReason in one group
# (https://docs.vapi.ai/calls/call-ended-reason).
GROUPS = fixture("vapi", "endedReason_groups.json")
GROUP_OUTCOME = {
    "NO_ANSWER": (CallStatus.NO_ANSWER, True),
    "BUSY": (CallStatus.BUSY, True),
    "VOICEMAIL": (CallStatus.VOICEMAIL, True),
    "ENDED_BY_CUSTOMER": (CallStatus.COMPLETED, False),
    "ENDED_BY_ASSISTANT": (CallStatus.COMPLETED, False),
    "SILENCE_TIMEOUT": (CallStatus.COMPLETED, False),
    "MAX_DURATION": (CallStatus.COMPLETED, False),
    "PROVIDER_REPORTED_COMPLETED": (CallStatus.COMPLETED, False),
    "CANCELED_OR_DELETED": (CallStatus.CANCELED, False),
    **dict.fromkeys(
        (
            "ERROR_CONCURRENCY",
            "ERROR_ACCOUNT_BILLING",
            "ERROR_CALL_START_CONFIG",
            "ERROR_TRANSFER",
            "ERROR_TELEPHONY_TRANSPORT",
            "ERROR_PIPELINE_LLM_VOICE_STT",
        ),
        (CallStatus.FAILED, True),
    ),
}


def _samples() -> list[tuple[str, str, tuple[str, bool]]]:
    picked = []
    for group, reasons in GROUPS.items():
        if group == "ENDED_BY_CUSTOMER":
            reasons = reasons[:4]  # the last two are inbound-SIP / web-call only (CONTRACT.md)
        elif group == "ENDED_BY_ASSISTANT":
            reasons = reasons[:5]  # the rest are call hooks, not an outbound call's ending
        elif len(reasons) > 3:
            reasons = [reasons[0], reasons[-1]]
        picked += [(group, reason, GROUP_OUTCOME[group]) for reason in reasons]
    # A number the carrier calls misdialed is no better in 30 minutes.
    picked.append(
        ("ERROR_TELEPHONY_TRANSPORT", "twilio-reported-customer-misdialed", (CallStatus.FAILED, False))
    )
    picked.append(("(not documented)", "a-reason-vapi-adds-later", (CallStatus.FAILED, True)))
    return picked


def test_the_outcome_table_covers_every_documented_group():
    assert set(GROUPS) == set(GROUP_OUTCOME)


@pytest.mark.parametrize(
    ("group", "reason", "outcome"), _samples(), ids=[f"{g}:{r}" for g, r, _ in _samples()]
)
def test_an_ended_reason_lands_in_the_status_its_group_implies(
    group, reason, outcome, vapi_call, client, django_capture_on_commit_callbacks
):
    status, retries = outcome
    payload = fixture("vapi", "webhook_status_update_ended.json")
    payload["message"]["endedReason"] = reason
    with django_capture_on_commit_callbacks(execute=True):
        response = post_vapi(client, payload)

    vapi_call.refresh_from_db()
    assert response.json() == applied(vapi_call, status, retry_scheduled=retries)
    assert vapi_call.status == status
    assert vapi_call.end_reason and reason.startswith(vapi_call.end_reason)
    assert Call.objects.filter(retry_of=vapi_call).exists() is retries


def test_a_documented_ended_reason_longer_than_64_characters_is_kept_whole(vapi_call, client):
    """123 of the 595 documented endedReason values are longer than 64 characters (the
    longest has 121); end_reason is the provider's own word, "kept raw"."""
    reason = "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable"
    payload = fixture("vapi", "webhook_status_update_ended.json")
    payload["message"]["endedReason"] = reason
    post_vapi(client, payload)
    vapi_call.refresh_from_db()
    assert vapi_call.end_reason == reason


# --- One outcome from two reports -------------------------------------------------------------


def test_an_ended_status_update_then_the_end_of_call_report_keep_one_outcome_and_add_the_artifacts(
    vapi_call, client, redis_conn
):
    ended = fixture("vapi", "webhook_status_update_ended.json")
    ended["message"]["endedReason"] = "customer-ended-call"
    first = post_vapi(client, ended)
    vapi_call.refresh_from_db()
    completed_at = vapi_call.completed_at
    assert first.json() == applied(vapi_call, "completed")
    assert (vapi_call.transcript, vapi_call.recording_url, vapi_call.duration_seconds) == ("", "", None)

    report = fixture("vapi", "webhook_end_of_call_report.json")
    second = post_vapi(client, report)

    vapi_call.refresh_from_db()
    assert second.json() == applied(vapi_call, "completed")
    assert vapi_call.status == CallStatus.COMPLETED and vapi_call.completed_at == completed_at
    assert vapi_call.transcript == report["message"]["artifact"]["transcript"]
    assert vapi_call.recording_url == report["message"]["artifact"]["recordingUrl"]
    assert vapi_call.duration_seconds == 213
    assert vapi_call.provider_payloads == [ended, report]

    before = stored_state(redis_conn)
    again = post_vapi(client, report)  # the same report once more adds nothing
    assert again.json() == applied(vapi_call, "completed")
    assert stored_state(redis_conn) == before


def test_an_unanswered_call_reported_twice_gets_one_retry(
    vapi_call, client, redis_conn, django_capture_on_commit_callbacks
):
    report = fixture("vapi", "webhook_end_of_call_report.json")
    report["message"]["endedReason"] = "customer-did-not-answer"
    with django_capture_on_commit_callbacks(execute=True):
        first = post_vapi(client, fixture("vapi", "webhook_status_update_ended.json"))
        second = post_vapi(client, report)

    vapi_call.refresh_from_db()
    assert first.json()["retry_scheduled"] is True
    assert second.json() == applied(vapi_call, "no_answer", retry_scheduled=False)
    assert vapi_call.recording_url == report["message"]["artifact"]["recordingUrl"]
    assert Call.objects.filter(retry_of=vapi_call).count() == 1


def test_the_policys_disclosure_line_reaches_the_agent_as_a_variable(fake_vapi, queued):
    policy_changes.policy_update(
        changes={"disclosure_text": "This is an automated call from Example Coaching."},
        user_id=None,
        actor="test",
    )
    assert placement.call_place(call_id=queued.pk) == "placed"
    [request] = fake_vapi.requests
    variables = request["json"]["assistantOverrides"]["variableValues"]
    assert variables["disclosure"] == "This is an automated call from Example Coaching."
    assert variables["name"] == queued.user.name  # beside the context and memory
