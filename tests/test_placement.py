"""Placing a call through the CallKaro client, against a fake CallKaro on 127.0.0.1."""

import logging
from datetime import UTC, date, datetime

import pytest
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from calls import outcomes, placement
from calls.models import Call, CallStatus
from calls.providers.base import ProviderTransientError
from tests.retry_buckets import retry_release

# Workers take these calls inside their window (outside it they are missed, not dialed).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("on_the_calls_day")]


def test_it_places_a_queued_call_with_the_documented_request(fake_callkaro, make_call, caplog):
    call = make_call()
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        assert placement.call_place(call_id=call.pk) == "placed"

    [request] = fake_callkaro.requests
    assert request["path"] == "/call/outbound"
    assert request["headers"]["X-API-KEY"] == "test-api-key"
    ours = {"call_id": str(call.pk), "user_id": str(call.user_id), "name": call.user.name}
    assert request["json"] == {
        "to_number": call.user.phone,
        "agent_id": "agent-test",
        # Our ids, and the agent's variables (calls.context), in the documented metadata.
        "metadata": {**request["json"]["metadata"], **ours},
    }
    assert request["json"]["metadata"]["last_days"] == (
        "2026-11-27: no call\n2026-11-26: no call\n2026-11-25: no call"
    )
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING
    assert call.provider_call_id == "ck-1"
    assert call.dialed_at is not None and call.provider_payloads[0]["placed"]["call_sid"] == "ck-1"
    # Logs name the number by its last four digits only.
    assert call.user.phone not in caplog.text and call.user.phone[-4:] in caplog.text


def test_a_call_that_is_no_longer_queued_is_not_placed_again(fake_callkaro, make_call):
    call = make_call(status=CallStatus.RINGING)
    assert placement.call_place(call_id=call.pk) == "skipped"
    assert fake_callkaro.requests == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"call_enabled": False}, "disabled calls"), ({"phone": None}, "no phone")],
)
def test_a_call_for_a_user_who_cannot_be_called_is_canceled_with_the_reason(
    fake_callkaro, make_user, make_call, change, reason
):
    user = make_user()
    call = make_call(user=user)
    # A raw UPDATE: saving the user cancels its queued calls at once (tests/test_profile_changes.py),
    # so only a change that bypasses save() is left for the worker's own check.
    type(user).objects.filter(pk=user.pk).update(**change)
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert call.status == CallStatus.CANCELED and reason in call.error
    assert fake_callkaro.requests == []


def test_a_provider_4xx_fails_the_call_with_its_message_and_no_retry(fake_callkaro, make_call, redis_conn):
    fake_callkaro.respond_with((400, {"status": "error", "message": "Invalid phone number"}))
    call = make_call()
    assert placement.call_place(call_id=call.pk, is_last_try=False) == "failed"
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert "Invalid phone number" in call.error and "400" in call.error
    assert Call.objects.count() == 1  # no outcome retry either
    assert len(fake_callkaro.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        (429, {"status": "error", "message": "Too many requests"}),
        (503, b"<html>service unavailable</html>"),
    ],
)
def test_a_refusal_before_acting_puts_the_call_back_in_the_queue_for_another_try(
    fake_callkaro, make_call, answer
):
    fake_callkaro.respond_with(answer)
    call = make_call()
    with pytest.raises(ProviderTransientError):
        placement.call_place(call_id=call.pk, is_last_try=False)
    call.refresh_from_db()
    assert call.status == CallStatus.QUEUED and call.error


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"status": "error", "message": "Server error"}),
        (502, b"<html>bad gateway</html>"),
        (504, b"<html>gateway timeout</html>"),
        (200, b"not json at all"),
        (200, {"status": "done", "message": "Call queued successfully"}),
    ],
)
def test_an_answer_lost_after_sending_leaves_the_call_unconfirmed_and_never_resends_it(
    fake_callkaro, make_call, answer, redis_conn
):
    fake_callkaro.respond_with(answer)
    call = make_call()
    assert placement.call_place(call_id=call.pk, is_last_try=False) == "unconfirmed"
    call.refresh_from_db()
    assert call.status == CallStatus.UNCONFIRMED and call.error and call.dialed_at
    assert len(fake_callkaro.requests) == 1
    assert Call.objects.count() == 1  # no retry scheduled: the webhook decides


def test_an_unreachable_provider_on_the_last_try_fails_the_call_and_schedules_a_retry(
    settings, make_call, redis_conn
):
    settings.CALLKARO_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    call = make_call(local_date=date(2026, 11, 28))
    assert placement.call_place(call_id=call.pk, is_last_try=True) == "failed"
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED and "unreachable" in call.error
    retry = Call.objects.get(retry_of=call)
    assert (retry.attempt, retry.status, retry.local_date) == (2, CallStatus.QUEUED, call.local_date)
    job_id, released_at = retry_release(retry)
    assert job_id in ScheduledJobRegistry("daily-calls", connection=redis_conn).get_job_ids()
    assert released_at >= retry.scheduled_for


def test_a_read_timeout_is_one_request_and_an_unconfirmed_call(fake_callkaro, settings, make_call):
    settings.CALLKARO_READ_TIMEOUT = 0.2
    from calls.providers import reset_provider_cache

    reset_provider_cache()
    fake_callkaro.delay = 0.5
    call = make_call()
    assert placement.call_place(call_id=call.pk, is_last_try=False) == "unconfirmed"
    call.refresh_from_db()
    assert call.status == CallStatus.UNCONFIRMED and "read timeout" in call.error
    assert len(fake_callkaro.requests) == 1


def test_a_retry_is_dropped_when_the_user_already_answered_that_day(fake_callkaro, make_user, make_call):
    user = make_user()
    make_call(user=user, attempt=1, status=CallStatus.COMPLETED)
    retry = make_call(user=user, attempt=2, scheduled_for=datetime(2026, 11, 28, 15, 30, tzinfo=UTC))
    assert placement.call_place(call_id=retry.pk) == "canceled"
    retry.refresh_from_db()
    assert retry.status == CallStatus.CANCELED and "already answered" in retry.error
    assert fake_callkaro.requests == []


def _taking_statements(call_ids: list[int]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        placement.take_calls_for_dialing(call_ids)
    return len(queries)


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_batch_of_retries_reads_the_answered_days_in_one_query_whatever_their_number(make_user, make_call):
    def retries(count: int, *, answered: int) -> list[int]:
        ids = []
        for n in range(count):
            user = make_user()
            first = CallStatus.COMPLETED if n < answered else CallStatus.NO_ANSWER
            make_call(user=user, attempt=1, status=first)
            ids.append(make_call(user=user, attempt=2).pk)
        return ids

    # (One canceled in each: a call canceled is written on its own; the first fills the
    # caches of event endpoints and notification channels that a cancel reads.)
    warm_up, few, many = retries(1, answered=1), retries(2, answered=1), retries(12, answered=1)
    _taking_statements(warm_up)
    assert _taking_statements(many) == _taking_statements(few)
    canceled = Call.objects.filter(pk__in=few + many, status=CallStatus.CANCELED)
    assert set(canceled.values_list("pk", flat=True)) == {few[0], many[0]}
    assert {call.error for call in canceled} == {"User already answered a call today."}


@pytest.mark.parametrize(
    ("status", "error_message"), [(CallStatus.IN_PROGRESS, ""), (CallStatus.FAILED, "carrier rejected")]
)
def test_a_webhook_that_beats_the_placement_answer_is_not_undone(
    fake_callkaro, make_call, status, error_message
):
    """The provider can call back before we store its id: its status and error stay."""
    from calls.providers.base import CallEvent

    call = make_call()
    provider = placement.provider_named("callkaro")
    original_post = provider.session.post

    def post_then_webhook(*args, **kwargs):
        response = original_post(*args, **kwargs)
        outcomes.call_apply_event(
            event=CallEvent(
                provider_call_id="ck-1", status=status, our_call_id=call.pk, error_message=error_message
            )
        )
        return response

    provider.session.post = post_then_webhook
    assert placement.call_place(call_id=call.pk) == "placed"
    call.refresh_from_db()
    assert (call.status, call.provider_call_id, call.error) == (status, "ck-1", error_message)


def test_a_batch_places_each_call_and_hands_transient_failures_to_jobs_of_their_own(
    fake_callkaro, make_call, settings, redis_conn
):
    settings.CALL_PLACE_RETRY_INTERVALS = [2, 4]
    fake_callkaro.respond_with(
        (200, {"status": "done", "message": "Call queued successfully", "call_sid": "ck-a"}),
        (503, {"status": "error", "message": "upstream down"}),
        (400, {"status": "error", "message": "Invalid phone number"}),
        (500, {"status": "error", "message": "Server error"}),
    )
    settings.PROVIDER_MAX_CONCURRENCY = settings.QUEUE_CONCURRENCY  # one thread: answers in order
    placement.reset_placement_pool()
    calls = [make_call(), make_call(), make_call(), make_call()]

    counts = placement.calls_place_batch(call_ids=[c.pk for c in calls])

    assert counts == {"placed": 1, "transient": 1, "failed": 1, "unconfirmed": 1}
    statuses = [Call.objects.get(pk=c.pk).status for c in calls]
    assert statuses == [CallStatus.RINGING, CallStatus.QUEUED, CallStatus.FAILED, CallStatus.UNCONFIRMED]
    assert len(fake_callkaro.requests) == 4  # the unconfirmed one is not sent again
    # The transient one waits 2 s in RQ's scheduled registry, with one RQ retry (4 s) left.
    registry = ScheduledJobRegistry("daily-calls", connection=redis_conn)
    assert registry.get_job_ids() == [f"call-{calls[1].pk}"]
    job = placement.queues.calls_queue().fetch_job(f"call-{calls[1].pk}")
    assert (job.retries_left, job.retry_intervals) == (1, [4])


class CutShort(BaseException):
    """What RQ raises in a job it stops (its timeout, a cold shutdown): not an Exception."""


def test_a_batch_cut_short_puts_its_unsent_calls_back_in_the_queue(
    fake_callkaro, make_call, settings, monkeypatch
):
    settings.PROVIDER_MAX_CONCURRENCY = settings.QUEUE_CONCURRENCY  # one thread: sent one by one
    placement.reset_placement_pool()
    fake_callkaro.delay = 0.2
    calls = [make_call() for _ in range(5)]

    def stopped_by_rq(*args, **kwargs):
        raise CutShort

    monkeypatch.setattr(placement, "record_dial_result", stopped_by_rq)
    with pytest.raises(CutShort):
        placement.calls_place_batch(call_ids=[c.pk for c in calls])
    placement.reset_placement_pool()  # waits for the request already in flight

    sent = {int(r["json"]["metadata"]["call_id"]) for r in fake_callkaro.requests}
    statuses = {c.pk: Call.objects.get(pk=c.pk).status for c in calls}
    assert 1 <= len(sent) <= 2  # the answered one, and the one a thread had already taken
    assert all(statuses[pk] == CallStatus.DIALING for pk in sent)  # outcome unknown: the tick decides
    assert all(status == CallStatus.QUEUED for pk, status in statuses.items() if pk not in sent)


def test_a_placed_call_whose_answer_cannot_be_recorded_keeps_the_provider_id(
    fake_callkaro, make_call, monkeypatch
):
    from django.db import OperationalError

    call = make_call()
    real_record = placement.record_dial_result

    def database_blip(request, dialed, **kwargs):
        if isinstance(dialed.result, placement.PlacedCall):
            raise OperationalError("server closed the connection unexpectedly")
        return real_record(request, dialed, **kwargs)

    monkeypatch.setattr(placement, "record_dial_result", database_blip)
    assert placement.calls_place_batch(call_ids=[call.pk]) == {"error": 1}
    call.refresh_from_db()
    assert (call.status, call.provider_call_id) == (CallStatus.RINGING, "ck-1")


def test_a_2xx_answer_with_a_call_id_is_a_placed_call(fake_callkaro, make_call):
    # An older account's answer (call_id, "success"); today's is in tests/test_providers_callkaro.py.
    fake_callkaro.respond_with((201, {"status": "success", "message": "queued", "call_id": "ck-201"}))
    call = make_call()
    assert placement.call_place(call_id=call.pk) == "placed"
    call.refresh_from_db()
    assert call.provider_call_id == "ck-201"


def test_a_provider_message_quoting_the_number_is_masked_in_the_logs(fake_callkaro, make_call, caplog):
    call = make_call()
    fake_callkaro.respond_with((400, {"status": "error", "message": f"{call.to_number} is not reachable"}))
    with caplog.at_level(logging.INFO, logger="relevel.calls"):
        placement.call_place(call_id=call.pk)
    assert call.to_number not in caplog.text and call.to_number[1:] not in caplog.text
    assert f"{call.to_number[-4:]} is not reachable" in caplog.text


def test_a_provider_that_trickles_its_answer_is_cut_off_at_the_total_timeout(settings, make_call):
    """requests' read timeout is per read: a byte every 0.1 s would never trip it. The whole
    answer is bounded by connect + read timeout, and the call is unconfirmed (it was sent)."""
    import socket
    import threading
    import time as wall

    from calls.providers import reset_provider_cache

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            body = b'{"status": "done", "message": "Call queued successfully", "call_sid": "ck-slow"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body))
            for byte in body:
                if stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                wall.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    settings.CALLKARO_BASE_URL = f"http://127.0.0.1:{server.getsockname()[1]}"
    settings.CALLKARO_CONNECT_TIMEOUT, settings.CALLKARO_READ_TIMEOUT = 0.3, 0.5
    reset_provider_cache()
    call = make_call()
    started = wall.monotonic()
    try:
        assert placement.call_place(call_id=call.pk) == "unconfirmed"
    finally:
        stop.set()
        server.close()
    assert wall.monotonic() - started < 3  # the body alone would take 8 s
    call.refresh_from_db()
    assert call.status == CallStatus.UNCONFIRMED and "too slowly" in call.error


def test_rqs_job_timeout_while_recording_ends_the_batch_instead_of_being_swallowed(
    fake_callkaro, make_call, settings, monkeypatch
):
    """Suspected: `except Exception` around recording swallowed JobTimeoutException (an
    Exception subclass), so a batch RQ had stopped went on dialing. Proved, and fixed."""
    from rq.timeouts import JobTimeoutException

    settings.PROVIDER_MAX_CONCURRENCY = settings.QUEUE_CONCURRENCY  # one thread: one by one
    placement.reset_placement_pool()
    fake_callkaro.delay = 0.2
    calls = [make_call() for _ in range(4)]

    def timed_out(*args, **kwargs):
        raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")

    monkeypatch.setattr(placement, "record_dial_result", timed_out)
    with pytest.raises(JobTimeoutException):
        placement.calls_place_batch(call_ids=[c.pk for c in calls])
    placement.reset_placement_pool()
    assert len(fake_callkaro.requests) <= 2  # not the whole batch
    statuses = [Call.objects.get(pk=c.pk).status for c in calls]
    assert statuses.count(CallStatus.QUEUED) >= 2  # the unsent ones went back


def test_a_provider_call_id_reused_for_a_second_call_leaves_it_placed_not_redialed(
    fake_callkaro, make_call, redis_conn
):
    """Suspected: a reused provider id hit the unique constraint and left the call dialing,
    to be failed and retried (a double call). Now it is placed (ringing) without the id."""
    make_call(status=CallStatus.COMPLETED, provider_call_id="ck-dup")
    fake_callkaro.respond_with(
        (200, {"status": "done", "message": "Call queued successfully", "call_sid": "ck-dup"})
    )
    call = make_call()
    assert placement.call_place(call_id=call.pk) == "placed"
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING and call.provider_call_id is None
    assert "reused call id ck-dup" in call.error
    assert {"reused_provider_call_id": "ck-dup"} in call.provider_payloads  # its webhook finds it
    assert Call.objects.count() == 2 and len(fake_callkaro.requests) == 1


def _placed_answers(calls, provider_call_ids):
    sent_at = timezone.now()
    return [
        (
            placement.PlaceCallRequest(
                call_id=call.pk,
                user_id=call.user_id,
                to_number=call.to_number,
                agent_id="a",
                name="n",
                provider="callkaro",
            ),
            placement.DialResult(
                result=placement.PlacedCall(
                    provider_call_id=provider_call_id, raw={"call_sid": provider_call_id}
                ),
                sent_at=sent_at,
            ),
        )
        for call, provider_call_id in zip(calls, provider_call_ids, strict=True)
    ]


def test_answers_that_arrive_together_are_recorded_in_a_few_statements_whatever_their_number(make_call):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_call(status=CallStatus.COMPLETED, provider_call_id="ck-old")
    calls = [make_call(status=CallStatus.DIALING) for _ in range(20)]
    ids = [f"ck-{n}" for n in range(18)] + ["ck-old", "ck-0"]  # one reused from before, one twice here
    with CaptureQueriesContext(connection) as queries:
        outcomes = placement.record_dial_results(_placed_answers(calls, ids), is_last_try=True)
    assert outcomes == ["placed"] * 20
    assert len(queries) <= 6  # savepoint/lock, reused-id lookup, one UPDATE, release
    stored = {c.pk: c for c in Call.objects.filter(pk__in=[c.pk for c in calls])}
    assert all(stored[c.pk].status == CallStatus.RINGING for c in calls)
    assert [stored[c.pk].provider_call_id for c in calls[:18]] == ids[:18]
    for reused in (calls[18], calls[19]):
        assert stored[reused.pk].provider_call_id is None
        assert "The provider reused call id" in stored[reused.pk].error


def test_answers_recorded_together_fall_back_to_one_by_one_when_that_fails(make_call, monkeypatch):
    from django.db import OperationalError

    calls = [make_call(status=CallStatus.DIALING) for _ in range(3)]

    def blip(placed):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(placement, "_record_placed", blip)
    outcomes = placement.record_dial_results(
        _placed_answers(calls, ["ck-a", "ck-b", "ck-c"]), is_last_try=True
    )
    assert outcomes == ["placed"] * 3
    assert sorted(
        Call.objects.filter(pk__in=[c.pk for c in calls]).values_list("provider_call_id", flat=True)
    ) == [
        "ck-a",
        "ck-b",
        "ck-c",
    ]
