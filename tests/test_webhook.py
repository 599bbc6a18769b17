"""POST /api/webhooks/call: the provider's status callback."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, connections
from django.test import Client, RequestFactory
from rq.registry import ScheduledJobRegistry

from calls import outcomes, views
from calls.models import Call, CallStatus
from calls.queues import calls_queue
from tests.retry_buckets import retry_release, scheduled_jobs

URL = "/api/webhooks/call"
SECRET = "test-webhook-secret-0123456789abcdef"  # settings_test's
NOW = datetime(2026, 11, 28, 15, 2, tzinfo=UTC)
# Deliveries arrive on the day of the calls they report, where a retry is still possible.
pytestmark = pytest.mark.usefixtures("on_the_calls_day")


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(
    client,
    payload=None,
    *,
    body: bytes | None = None,
    secret: str | None = SECRET,
    header: str = "HTTP_X_CALLKARO_SIGNATURE",
    prefix: str = "",
    **extra,
):
    """POST a webhook, signed over the exact bytes sent unless secret is None."""
    if body is None:
        body = json.dumps(payload).encode()
    if secret is not None:
        extra[header] = prefix + sign(body, secret)
    return client.post(URL, data=body, content_type="application/json", **extra)


def event(call: Call, status: str, **fields) -> dict:
    """A CallKaro status callback for ``call``, as the provider sends it."""
    return {
        "call_id": call.provider_call_id or "ck-unstored",
        "status": status,
        "metadata": {"call_id": str(call.pk), "user_id": str(call.user_id), "name": "Asha"},
        "transcript": "",
        "recording_url": "",
        "duration": 0,
        "timestamp": "2026-11-28T15:02:00Z",
        "error_message": "",
        **fields,
    }


def stored_state(redis_conn) -> tuple:
    """Everything a webhook could write: every call row and every Redis key."""
    return list(Call.objects.order_by("pk").values()), sorted(redis_conn.keys("*"))


@pytest.fixture
def dialed(make_call):
    """A call the provider accepted: its provider id is stored, status ringing."""
    return make_call(status=CallStatus.RINGING, provider_call_id="ck-1001")


def accepted(call, status: str, *, retry_scheduled: bool = False) -> dict:
    """The webhook's 200 answer for ``call`` now in ``status``."""
    return {"success": True, "call_id": str(call.pk), "status": status, "retry_scheduled": retry_scheduled}


# --- Transitions --------------------------------------------------------------------------


def test_the_web_log_has_one_info_line_per_call_its_outcome_and_debug_lines_on_the_way(
    make_call, client, caplog
):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-1001")

    with caplog.at_level(logging.DEBUG, logger="relevel.calls"):
        for status in ("ringing", "in_progress", "completed"):
            assert post(client, event(call, status)).status_code == 200

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "Updated call" in r.getMessage()]
    assert lines == [
        (logging.DEBUG, f"[Webhook:callkaro] Updated call {call.pk}: ringing"),
        (logging.DEBUG, f"[Webhook:callkaro] Updated call {call.pk}: in_progress"),
        (logging.INFO, f"[Webhook:callkaro] Updated call {call.pk}: completed"),
    ]


def test_a_call_moves_through_ringing_in_progress_and_completed(make_call, client):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-1001")

    with time_machine.travel(NOW, tick=False):
        ringing = post(client, event(call, "ringing"))
    call.refresh_from_db()
    assert ringing.status_code == 200
    assert ringing.json() == accepted(call, "ringing")
    assert call.status == CallStatus.RINGING and call.last_status_at == NOW and call.completed_at is None

    in_progress = post(client, event(call, "in_progress"))
    call.refresh_from_db()
    assert in_progress.json()["status"] == "in_progress"
    assert call.status == CallStatus.IN_PROGRESS and call.completed_at is None

    done_at = NOW + timedelta(minutes=3)
    payload = event(
        call,
        "completed",
        transcript="Agent: Hi. User: Hello!",
        recording_url="https://rec.example/ck-1001.mp3",
        duration=42,
    )
    with time_machine.travel(done_at, tick=False):
        completed = post(client, payload)
    call.refresh_from_db()
    assert completed.json() == accepted(call, "completed")
    assert call.status == CallStatus.COMPLETED
    assert call.transcript == "Agent: Hi. User: Hello!"
    assert call.recording_url == "https://rec.example/ck-1001.mp3"
    assert call.duration_seconds == 42
    assert call.last_status_at == done_at and call.completed_at == done_at
    assert call.provider_payloads[-1] == payload
    assert [p["status"] for p in call.provider_payloads] == ["ringing", "in_progress", "completed"]
    assert not Call.objects.filter(retry_of=call).exists()


def test_a_queued_call_can_jump_straight_to_a_terminal_status(make_call, client):
    call = make_call(status=CallStatus.QUEUED, provider_call_id="ck-1001")
    response = post(client, event(call, "completed"))
    call.refresh_from_db()
    assert response.status_code == 200 and call.status == CallStatus.COMPLETED


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("failed", "failed"), ("no_answer", "no_answer"), ("no-answer", "no_answer"), ("busy", "busy")],
)
def test_an_unanswered_outcome_schedules_a_real_rq_retry_job(
    sent, stored, dialed, client, redis_conn, django_capture_on_commit_callbacks, settings
):
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = post(client, event(dialed, sent, error_message="carrier said no"))

    dialed.refresh_from_db()
    retry = Call.objects.get(retry_of=dialed)
    assert response.status_code == 200
    assert response.json() == accepted(dialed, stored, retry_scheduled=True)
    assert dialed.status == stored and dialed.completed_at == NOW and dialed.error == "carrier said no"
    assert (retry.attempt, retry.status, retry.local_date) == (2, CallStatus.QUEUED, dialed.local_date)
    assert retry.scheduled_for == NOW + timedelta(seconds=settings.CALL_RETRY_DELAY_SECONDS)
    # Its instant's batch job, scheduled for its time (a whole multiple of
    # RETRY_GATHER_SECONDS already, here).
    assert retry_release(retry)[1] == retry.scheduled_for


def test_completed_schedules_no_retry(dialed, client, redis_conn, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, event(dialed, "completed"))
    assert response.json()["retry_scheduled"] is False
    assert Call.objects.count() == 1
    assert ScheduledJobRegistry(queue=calls_queue()).get_job_count(cleanup=False) == 0


def test_the_last_allowed_attempt_gets_no_further_retry(make_call, client, settings):
    settings.CALL_MAX_RETRIES = 2
    last = make_call(status=CallStatus.RINGING, provider_call_id="ck-3", attempt=3)
    response = post(client, event(last, "no_answer"))
    assert response.status_code == 200 and response.json()["retry_scheduled"] is False
    assert Call.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_retry_job_is_enqueued_when_the_transaction_commits(make_call, redis_conn):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-tx")
    response = post(Client(), event(call, "busy"))
    retry = Call.objects.get(retry_of=call)
    assert response.json()["retry_scheduled"] is True
    job_id, released_at = retry_release(retry)
    assert job_id in scheduled_jobs() and released_at >= retry.scheduled_for


# --- Finding the call ---------------------------------------------------------------------


def test_a_call_is_found_by_our_metadata_id_before_its_provider_id_is_stored(make_call, client):
    call = make_call(status=CallStatus.DIALING, provider_call_id=None)
    payload = event(call, "ringing", call_id="ck-early")
    response = post(client, payload)
    call.refresh_from_db()
    assert response.status_code == 200 and response.json()["call_id"] == str(call.pk)
    assert call.provider_call_id == "ck-early" and call.status == CallStatus.RINGING


def test_a_numeric_provider_call_id_is_matched_as_text(make_call, client):
    call = make_call(status=CallStatus.RINGING, provider_call_id="98765")
    response = post(client, event(call, "in_progress", call_id=98765))
    call.refresh_from_db()
    assert response.status_code == 200 and call.status == CallStatus.IN_PROGRESS


@pytest.mark.parametrize("metadata", ["junk", ["a", "list"], None, 7])
def test_metadata_that_is_not_an_object_is_ignored(metadata, dialed, client):
    response = post(client, event(dialed, "in_progress", metadata=metadata))
    dialed.refresh_from_db()
    assert response.status_code == 200 and dialed.status == CallStatus.IN_PROGRESS


def test_an_unknown_call_is_404_and_nothing_is_written(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    response = post(
        client, {"call_id": "ck-nobody", "status": "no_answer", "metadata": {"call_id": "999999"}}
    )
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "no call with call_id ck-nobody"}
    assert stored_state(redis_conn) == before


def test_our_id_with_another_provider_id_is_not_this_call(dialed, client, redis_conn):
    """metadata.call_id names a call the provider already knows under a different id."""
    before = stored_state(redis_conn)
    response = post(client, event(dialed, "no_answer", call_id="ck-someone-else"))
    assert response.status_code == 404
    assert stored_state(redis_conn) == before


# --- Repeats and late arrivals ------------------------------------------------------------


def test_a_repeated_terminal_delivery_is_a_no_op(
    dialed, client, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, event(dialed, "no_answer"))
    after_first = stored_state(redis_conn)
    with django_capture_on_commit_callbacks(execute=True):
        second = post(client, event(dialed, "no_answer"))

    assert first.json()["retry_scheduled"] is True
    assert second.status_code == 200
    assert second.json() == accepted(dialed, "no_answer")
    assert stored_state(redis_conn) == after_first
    assert Call.objects.filter(retry_of=dialed).count() == 1


def test_a_repeated_progress_delivery_is_a_no_op(dialed, client, redis_conn):
    post(client, event(dialed, "in_progress"))
    before = stored_state(redis_conn)
    again = post(client, event(dialed, "in_progress"))
    assert again.status_code == 200 and again.json()["status"] == "in_progress"
    assert stored_state(redis_conn) == before


def test_an_older_status_arriving_late_is_ignored(dialed, client, redis_conn):
    post(client, event(dialed, "in_progress"))
    before = stored_state(redis_conn)
    late = post(client, event(dialed, "ringing"))
    dialed.refresh_from_db()
    assert late.status_code == 200
    assert late.json() == accepted(dialed, "in_progress")
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize("late", ["ringing", "in_progress", "failed", "no_answer", "busy"])
def test_a_terminal_status_is_final(late, dialed, client, redis_conn):
    post(client, event(dialed, "completed", transcript="all good"))
    before = stored_state(redis_conn)
    response = post(client, event(dialed, late))
    dialed.refresh_from_db()
    assert response.status_code == 200 and response.json()["retry_scheduled"] is False
    assert dialed.status == CallStatus.COMPLETED and dialed.transcript == "all good"
    assert stored_state(redis_conn) == before


def deliver_at_once(body: bytes, count: int) -> list[tuple[int, dict]]:
    """The same signed delivery ``count`` times at once, from as many threads (a provider's
    retries racing each other); (status, JSON) of each."""
    signature = sign(body)
    barrier = threading.Barrier(count)
    results: list[tuple[int, dict]] = []

    def deliver() -> None:
        try:
            client = Client()
            barrier.wait()
            response = client.post(
                URL, data=body, content_type="application/json", HTTP_X_CALLKARO_SIGNATURE=signature
            )
            results.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks; CI runs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_no_answer_deliveries_schedule_exactly_one_retry(
    make_call, redis_conn, monkeypatch, caplog
):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-race")
    # Widen the race: the delivery that moved the call holds its transaction (and the row
    # lock) a little longer, so that the others queue behind it and must find the status
    # already moved; without the condition on it they would all apply, one after another.
    original_schedule_retry = outcomes.call_schedule_retry

    def slow_schedule_retry(**kwargs):
        time.sleep(0.05)
        return original_schedule_retry(**kwargs)

    monkeypatch.setattr(outcomes, "call_schedule_retry", slow_schedule_retry)
    threads_count = 20
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        results = deliver_at_once(json.dumps(event(call, "no_answer")).encode(), threads_count)

    assert len(results) == threads_count
    assert {status for status, _ in results} == {200}
    assert sum(body["retry_scheduled"] for _, body in results) == 1
    retries = list(Call.objects.filter(user=call.user).exclude(pk=call.pk))
    assert len(retries) == 1 and retries[0].attempt == 2 and retries[0].retry_of_id == call.pk
    call.refresh_from_db()
    assert call.status == CallStatus.NO_ANSWER and len(call.provider_payloads) == 1
    assert scheduled_jobs() == [retry_release(retries[0])[0]]
    # Applied once: without the condition on the status every delivery would apply in turn,
    # and the retry's conditional insert alone would hide it.
    applied = [r for r in caplog.records if r.getMessage().startswith("[Webhook:callkaro] Updated call")]
    assert len(applied) == 1


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks; CI runs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_completed_deliveries_apply_once(make_call, redis_conn, caplog):
    """A final status with no retry is one UPDATE outside any transaction: still once."""
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-race-done")
    threads_count = 20
    body = json.dumps(event(call, "completed", transcript="Agent: Hi.", duration=30)).encode()
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        results = [answer for _, answer in deliver_at_once(body, threads_count)]

    assert results == [accepted(call, "completed")] * threads_count
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED and len(call.provider_payloads) == 1
    assert call.transcript == "Agent: Hi." and call.duration_seconds == 30
    applied = [r for r in caplog.records if r.getMessage().startswith("[Webhook:callkaro] Updated call")]
    assert len(applied) == 1
    assert Call.objects.count() == 1


# --- Live-call slots ----------------------------------------------------------------------


def live_calls_key(provider: str) -> str:
    return f"relevel:capacity:{provider}:live"


@pytest.fixture
def live_slot(dialed, settings):
    """The capacity system's record of ``dialed`` as a live CallKaro call."""
    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, "callkaro": 5}
    connection = calls_queue().connection
    connection.zadd(live_calls_key("callkaro"), {str(dialed.pk): time.time() + 900, "other-call": 1e12})
    return connection


@pytest.mark.parametrize("final", ["completed", "no_answer", "failed", "busy"])
def test_a_final_status_frees_the_calls_live_slot_once_committed(
    final, dialed, live_slot, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, event(dialed, final))
        assert response.status_code == 200 and response.json()["status"] == final.replace("-", "_")
        # Not before the outcome is committed: the slot is still taken inside the transaction.
        assert live_slot.zscore(live_calls_key("callkaro"), str(dialed.pk)) is not None
    assert live_slot.zscore(live_calls_key("callkaro"), str(dialed.pk)) is None
    assert live_slot.zscore(live_calls_key("callkaro"), "other-call") is not None


@pytest.mark.parametrize("progress", ["in_progress", "ringing"])
def test_a_progress_event_keeps_the_live_slot(
    progress, dialed, live_slot, client, django_capture_on_commit_callbacks
):
    Call.objects.filter(pk=dialed.pk).update(status=CallStatus.DIALING)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, event(dialed, progress))
    assert response.status_code == 200 and response.json()["status"] == progress
    assert callbacks == []
    assert live_slot.zscore(live_calls_key("callkaro"), str(dialed.pk)) is not None


# --- Bad input: a 4xx JSON error, nothing written ------------------------------------------


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"n": value}
    return value


BAD_BODIES = {
    "malformed JSON": (b'{"call_id": "ck-1001", "status": ', 400, "body is not valid JSON"),
    "empty body": (b"", 400, "body is not valid JSON"),
    "not UTF-8": (b'{"call_id": "\xff\xfe\xfa", "status": "busy"}', 400, "body is not valid JSON"),
    "a JSON array": (b"[]", 400, "body must be a JSON object"),
    "a JSON string": (b'"ck-1001"', 400, "body must be a JSON object"),
    "JSON null": (b"null", 400, "body must be a JSON object"),
    "a JSON number": (b"42", 400, "body must be a JSON object"),
    "missing call_id": (b'{"status": "busy"}', 400, "call_id is required"),
    "empty call_id": (b'{"call_id": "", "status": "busy"}', 400, "call_id is required"),
    "call_id an object": (b'{"call_id": {"id": 1}, "status": "busy"}', 400, "call_id is required"),
    "missing status": (b'{"call_id": "ck-1001"}', 400, "status is required"),
    "status not text": (b'{"call_id": "ck-1001", "status": ["busy"]}', 400, "status is required"),
    "unknown status": (b'{"call_id": "ck-1001", "status": "exploded"}', 400, "unknown status 'exploded'"),
    "an integer of 5000 digits": (
        b'{"call_id": ' + b"9" * 5000 + b', "status": "busy"}',
        400,
        "body is not valid JSON",
    ),
    "a call_id too long to store": (
        json.dumps({"call_id": 10**200, "status": "busy"}).encode(),
        400,
        "call_id is longer than 128 characters",
    ),
    "a duration too large to store": (
        b'{"call_id": "ck-1001", "status": "completed", "duration": 99999999999}',
        400,
        "duration is out of range",
    ),
    "NaN": (b'{"call_id": "ck-1001", "status": "completed", "duration": NaN}', 400, "body is not valid JSON"),
    "a float overflowing to infinity": (
        b'{"call_id": "ck-1001", "status": "completed", "duration": 1e999}',
        400,
        "body is not valid JSON",
    ),
    "a NUL character": (
        b'{"call_id": "ck-1001", "status": "completed", "transcript": "a\\u0000b"}',
        400,
        "JSON strings must not contain NUL characters",
    ),
    "an unpaired surrogate": (
        b'{"call_id": "ck-1001", "status": "completed", "transcript": "\\ud800"}',
        400,
        "JSON strings must not contain unpaired surrogates",
    ),
    "a NUL in a key": (
        b'{"call_id": "ck-1001", "status": "completed", "x\\u0000": 1}',
        400,
        "JSON strings must not contain NUL characters",
    ),
    "nested junk": (
        json.dumps({"call_id": "ck-1001", "status": "completed", "metadata": _nested(40)}).encode(),
        400,
        "JSON is nested too deeply",
    ),
    "nesting deeper than the parser's stack": (b"[" * 200_000, 400, "JSON is nested too deeply"),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_input_is_a_json_client_error_and_writes_nothing(name, dialed, client, redis_conn):
    body, status, error = BAD_BODIES[name]
    before = stored_state(redis_conn)
    response = post(client, body=body)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["success"] is False
    assert response.json()["error"].startswith(error)
    assert "\n" not in response.json()["error"]
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_any_method_but_post_is_a_json_405(method, client):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {"success": False, "error": "method not allowed; use POST"}


def test_a_body_over_256_kb_is_413_and_writes_nothing(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    body = json.dumps(event(dialed, "completed", transcript="x" * (256 * 1024))).encode()
    response = post(client, body=body)
    assert response.status_code == 413
    assert response.json() == {"success": False, "error": "body larger than 256 KB"}
    assert stored_state(redis_conn) == before


def test_a_body_over_djangos_upload_limit_is_413_not_400(client, settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < 3 * 1024 * 1024
    response = post(client, body=b"x" * (3 * 1024 * 1024))
    assert response.status_code == 413


def test_a_body_of_exactly_256_kb_is_accepted(dialed, client):
    body = json.dumps(event(dialed, "completed")).encode()
    body += b" " * (256 * 1024 - len(body))
    response = post(client, body=body)
    assert response.status_code == 200


def test_a_body_longer_than_its_content_length_says_is_413(dialed, redis_conn):
    """Under ASGI or chunked encoding, Content-Length can understate the body."""
    before = stored_state(redis_conn)
    body = json.dumps(event(dialed, "completed", transcript="x" * (300 * 1024))).encode()
    request = RequestFactory().post(
        URL, data=b"{}", content_type="application/json", HTTP_X_CALLKARO_SIGNATURE=sign(body)
    )
    request._stream = io.BytesIO(body)  # what a spooled ASGI body looks like to Django
    response = views.call_webhook(request)
    assert response.status_code == 413
    assert stored_state(redis_conn) == before


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_an_invalid_content_length_is_400(length, client):
    response = client.post(URL, data=b"{}", content_type="application/json", CONTENT_LENGTH=length)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "invalid Content-Length header"}


# --- Signature ------------------------------------------------------------------------------


def test_a_missing_signature_is_401_and_writes_nothing(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    response = post(client, event(dialed, "no_answer"), secret=None)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "invalid or missing webhook credentials"}
    assert stored_state(redis_conn) == before


def test_a_signature_made_with_another_secret_is_401(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    response = post(client, event(dialed, "no_answer"), secret="not-the-secret")
    assert response.status_code == 401
    assert stored_state(redis_conn) == before


def test_a_signature_of_another_body_is_401(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    signed = json.dumps(event(dialed, "completed")).encode()
    response = client.post(
        URL,
        data=json.dumps(event(dialed, "no_answer")).encode(),
        content_type="application/json",
        HTTP_X_CALLKARO_SIGNATURE=sign(signed),
    )
    assert response.status_code == 401
    assert stored_state(redis_conn) == before


def test_an_empty_body_unsigned_is_401_and_signed_is_400(client):
    assert post(client, body=b"", secret=None).status_code == 401
    assert post(client, body=b"", secret=SECRET).status_code == 400


@pytest.mark.parametrize("prefix", ["sha256=", "SHA256="])
def test_a_signature_may_carry_a_sha256_prefix(prefix, dialed, client):
    response = post(client, event(dialed, "in_progress"), prefix=prefix)
    assert response.status_code == 200


def test_the_x_webhook_signature_header_is_accepted_too(dialed, client):
    response = post(client, event(dialed, "in_progress"), header="HTTP_X_WEBHOOK_SIGNATURE")
    assert response.status_code == 200


def test_a_non_ascii_signature_is_401_not_500(dialed, client):
    body = json.dumps(event(dialed, "in_progress")).encode()
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_CALLKARO_SIGNATURE="sha256=é"
    )
    assert response.status_code == 401


def test_without_a_secret_unsigned_webhooks_are_accepted_in_debug_with_a_warning(
    dialed, client, settings, caplog
):
    settings.CALLKARO_WEBHOOK_SECRET = ""
    settings.DEBUG = True
    with caplog.at_level(logging.WARNING, logger="relevel.api"):
        response = post(client, event(dialed, "in_progress"), secret=None)
    dialed.refresh_from_db()
    assert response.status_code == 200 and dialed.status == CallStatus.IN_PROGRESS
    assert "Accepting an unauthenticated callkaro webhook" in caplog.text


def test_without_a_secret_webhooks_are_refused_when_debug_is_off(dialed, client, settings, redis_conn):
    settings.CALLKARO_WEBHOOK_SECRET = ""
    settings.DEBUG = False
    before = stored_state(redis_conn)
    response = post(client, event(dialed, "no_answer"), secret=None)
    assert response.status_code == 503
    assert response.json() == {"success": False, "error": "webhook authentication not configured"}
    assert stored_state(redis_conn) == before


def test_the_deploy_check_reports_a_missing_webhook_secret(settings):
    settings.CALLKARO_WEBHOOK_SECRET = ""
    deploy_ids = {message.id for message in run_checks(include_deployment_checks=True)}
    plain_ids = {message.id for message in run_checks()}
    assert "relevel.E001" in deploy_ids and "relevel.E001" not in plain_ids
    with pytest.raises(SystemCheckError, match="CALLKARO_WEBHOOK_SECRET"):
        call_command("check", "--deploy", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_deploy_check_is_quiet_when_the_secret_is_set(settings):
    settings.CALLKARO_WEBHOOK_SECRET = "a-real-secret"
    assert "relevel.E001" not in {message.id for message in run_checks(include_deployment_checks=True)}


def test_with_redis_down_the_outcome_and_its_retry_row_are_still_recorded(
    dialed, client, settings, django_capture_on_commit_callbacks
):
    """The retry's job cannot be scheduled; the next tick after it is due enqueues it."""
    settings.RQ_QUEUES = {
        name: {**config, "URL": "redis://127.0.0.1:1/0"} for name, config in settings.RQ_QUEUES.items()
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, event(dialed, "busy"))
    dialed.refresh_from_db()
    assert response.status_code == 200 and response.json()["retry_scheduled"] is True
    assert dialed.status == CallStatus.BUSY
    assert Call.objects.get(retry_of=dialed).status == CallStatus.QUEUED
