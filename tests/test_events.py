"""Events to the product's app: each type emitted by the engine, written in the change's own
transaction, delivered signed (verified with standardwebhooks' own Webhook.verify), retried,
disabled on a 410 or after a day of failures."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from calls import outcomes, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from events import delivery
from events.endpoints import endpoints_cache_clear, endpoints_want
from events.models import Delivery, DeliveryStatus, Endpoint, Event, EventType
from events.outbox import events_emit
from events.queues import events_queue
from events.transport import signed_headers
from notifications.wanted import notifications_wanted
from tests.conftest import EVENTS_SECRET
from users.consent import user_opt_out
from users.services import user_save

FIXTURES = Path(__file__).parent / "fixtures" / "standardwebhooks"
pytestmark = pytest.mark.django_db


def run_events_worker() -> None:
    """Run the jobs queued on the events queue, in this process and this test's transaction
    (a worker would close the connection that holds it, as the job wrapper does)."""
    queue = events_queue()
    while job_ids := queue.job_ids:
        for job_id in job_ids:
            job = queue.fetch_job(job_id)
            queue.remove(job_id)
            func = job.func
            getattr(func, "__wrapped__", func)(*job.args, **job.kwargs)


def verified(receiver, secret: str = EVENTS_SECRET) -> list[dict]:
    """Every request the receiver got, checked with the reference library (it raises on a
    bad signature), as parsed payloads."""
    return [Webhook(secret).verify(r["body"], r["headers"]) for r in receiver.requests]


def finish(call: Call, status: str, **fields) -> outcomes.EventResult:
    return outcomes.call_apply_event(
        event=CallEvent(
            provider_call_id=call.provider_call_id, status=status, raw={"status": status}, **fields
        )
    )


@pytest.fixture
def ringing_call(make_call):
    def make(**fields) -> Call:
        fields.setdefault("status", CallStatus.RINGING)
        fields.setdefault("provider_call_id", f"ck-{Call.objects.count() + 1}")
        return make_call(**fields)

    return make


# --- Signing: the spec's and the library's documented examples ---------------------------


def test_signing_matches_the_reference_librarys_documented_vector():
    vector = json.loads((FIXTURES / "signing_vector.json").read_text())
    at = datetime.fromtimestamp(vector["timestamp"], tz=UTC)
    headers = signed_headers(secret=vector["key"], webhook_id=vector["msg_id"], body=vector["payload"], at=at)
    assert headers["webhook-signature"] == vector["expected"]
    assert headers["webhook-id"] == vector["msg_id"]
    assert headers["webhook-timestamp"] == str(vector["timestamp"])


def test_the_payload_has_the_specs_shape_and_the_headers_its_names(make_user):
    example = json.loads((FIXTURES / "example_payload.json").read_text())
    documented_headers = {
        line.split(":", 1)[0] for line in (FIXTURES / "example_headers.txt").read_text().splitlines() if line
    }
    user = make_user(external_id="app-42")
    event = Event.objects.create(
        webhook_id="msg_x",
        type=EventType.USER_OPTED_OUT,
        user=user,
        external_id="app-42",
        sequence=1,
        local_date=date(2026, 12, 7),
        occurred_at=datetime(2026, 12, 7, 9, 0, 0, 123456, tzinfo=UTC),
        data={"source": "api"},
    )
    body = json.loads(delivery.payload_body(event))
    assert set(body) == set(example)
    assert body["timestamp"] == "2026-12-07T09:00:00.123456Z"  # ISO 8601 in UTC, as the example
    headers = signed_headers(secret=EVENTS_SECRET, webhook_id="msg_x", body="{}", at=timezone.now())
    assert documented_headers <= set(headers)


# --- Every event type ------------------------------------------------------------------


@pytest.mark.usefixtures("on_the_calls_day")
def test_an_answered_call_sends_call_ended_and_day_reached_once_signed(
    event_receiver, ringing_call, django_capture_on_commit_callbacks
):
    call = ringing_call()
    with django_capture_on_commit_callbacks(execute=True):
        finish(call, CallStatus.IN_PROGRESS)
        finish(call, CallStatus.COMPLETED, duration_seconds=42)
    run_events_worker()
    payloads = verified(event_receiver)
    assert [p["type"] for p in payloads] == ["day.reached", "call.ended"]
    reached, ended = payloads
    assert reached["data"]["call_id"] == call.pk and reached["data"]["local_date"] == "2026-11-28"
    assert ended["data"]["call"] == {
        "id": call.pk,
        "attempt": 1,
        "status": "completed",
        "provider": "callkaro",
        "end_reason": None,
        "duration_seconds": 42,
        "manual": False,
        "inferred": False,
    }
    assert ended["data"]["result"] is None  # the place for the normalised result
    user = call.user
    for payload in payloads:
        assert payload["data"]["user"] == {"id": user.pk, "external_id": user.external_id}
    assert [p["data"]["sequence"] for p in payloads] == [1, 2]
    assert event_receiver.webhook_ids() == [p["data"]["event_id"] for p in payloads]


@pytest.mark.usefixtures("on_the_calls_day")
def test_the_last_unanswered_attempt_sends_call_ended_then_day_missed(
    event_receiver, ringing_call, django_capture_on_commit_callbacks
):
    first = ringing_call()
    with django_capture_on_commit_callbacks(execute=True):
        result = finish(first, CallStatus.NO_ANSWER)
    assert result.retry_scheduled
    assert list(Event.objects.values_list("type", flat=True)) == ["call.ended"]  # the day goes on
    retries = Call.objects.filter(retry_of=first)
    retries.update(status=CallStatus.RINGING, provider_call_id="ck-retry-1")
    second = retries.get()
    with django_capture_on_commit_callbacks(execute=True):
        finish(second, CallStatus.BUSY)
    third = Call.objects.get(retry_of=second)
    Call.objects.filter(pk=third.pk).update(status=CallStatus.RINGING, provider_call_id="ck-retry-2")
    third.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert not finish(third, CallStatus.NO_ANSWER).retry_scheduled  # retries spent
    run_events_worker()
    types = [p["type"] for p in verified(event_receiver)]
    assert types == ["call.ended", "call.ended", "call.ended", "day.missed"]
    missed = verified(event_receiver)[-1]["data"]
    assert (
        missed["reason"] == "retries_spent" and missed["attempts"] == 3 and missed["last_call_id"] == third.pk
    )


def test_a_slot_missed_by_the_tick_sends_day_missed(
    event_receiver, make_user, django_capture_on_commit_callbacks
):
    user = make_user(call_time=time(9, 0), local_tz="UTC")
    # The scheduler was down: the tick finds the slot's window long closed.
    slot = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    type(user).objects.filter(pk=user.pk).update(next_call_at=slot)
    with django_capture_on_commit_callbacks(execute=True):
        scheduling.calls_schedule_due(now=slot + timedelta(hours=2))
    assert Call.objects.get(user=user).status == CallStatus.MISSED
    run_events_worker()
    payloads = verified(event_receiver)
    assert [p["type"] for p in payloads] == ["call.ended", "day.missed"]
    assert payloads[1]["data"]["reason"] == "missed"


def test_a_schedule_change_sends_user_schedule_changed(
    event_receiver, make_user, django_capture_on_commit_callbacks
):
    user = make_user(external_id="app-7")
    Event.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        user.call_time = time(8, 15)
        user_save(user=user)
    run_events_worker()
    [payload] = verified(event_receiver)
    assert payload["type"] == "user.schedule_changed"
    assert payload["data"]["user"]["external_id"] == "app-7"
    assert "20:30 to 08:15" in payload["data"]["reason"]
    assert payload["data"]["schedule"]["call_time"] == "08:15"


def test_an_opt_out_sends_user_opted_out_and_calls_turned_off_once(
    event_receiver, make_user, django_capture_on_commit_callbacks
):
    user = make_user(external_id="app-9")
    with django_capture_on_commit_callbacks(execute=True):
        assert user_opt_out(user_id=user.pk, source="sms")
        assert not user_opt_out(user_id=user.pk, source="api")  # the first one stands: no event
    run_events_worker()
    payloads = verified(event_receiver)
    assert [p["type"] for p in payloads] == ["user.schedule_changed", "user.opted_out"]
    changed, opted_out = payloads
    assert changed["data"]["reason"] == "User disabled calls."
    assert opted_out["data"]["source"] == "sms" and opted_out["data"]["user"]["external_id"] == "app-9"
    assert opted_out["data"]["local_date"] is not None


# --- The outbox ------------------------------------------------------------------------


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_change_that_rolls_back_emits_nothing(
    event_receiver, ringing_call, django_capture_on_commit_callbacks
):
    call = ringing_call()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            finish(call, CallStatus.COMPLETED)
            raise RuntimeError("the caller's transaction fails after the outcome")
    assert callbacks == []
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING
    assert not Event.objects.exists()
    run_events_worker()
    assert event_receiver.requests == []


@pytest.mark.usefixtures("on_the_calls_day")
def test_with_no_endpoint_the_webhook_is_still_one_statement_and_writes_no_event(ringing_call):
    call = ringing_call()
    assert not endpoints_want(EventType.CALL_ENDED)  # fills the process's list: none
    assert not notifications_wanted()  # and nobody wants a message: read once per process
    with CaptureQueriesContext(connection) as queries:
        finish(call, CallStatus.COMPLETED)
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert not Event.objects.exists()


@pytest.mark.usefixtures("on_the_calls_day")
def test_with_events_on_the_webhook_adds_the_event_insert_in_one_short_transaction(
    event_receiver, ringing_call
):
    call = ringing_call(status=CallStatus.IN_PROGRESS)
    finish(ringing_call(), CallStatus.NO_ANSWER)  # fills the endpoints list
    with CaptureQueriesContext(connection) as queries:
        finish(call, CallStatus.COMPLETED)
    statements = [" ".join(q["sql"].split()[:3]) for q in queries]
    # One transaction: the outcome's UPDATE, then one statement for the day's mark (this
    # call's "in progress" was made without events, so the day is first found reached now)
    # and both events (call.ended and day.reached).
    assert [
        s.split()[0] for s in statements if not s.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    ] == [
        "UPDATE",
        "WITH",
    ]
    assert Event.objects.filter(type="call.ended", data__call__id=call.pk).count() == 1
    assert Event.objects.filter(type="day.reached", data__call_id=call.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_per_user_sequence_numbers_have_no_gaps_under_concurrency_and_rollbacks(event_receiver, make_user):
    user = make_user()
    errors = []

    def emit(n: int) -> None:
        try:
            for i in range(10):
                try:
                    with transaction.atomic():
                        events_emit(
                            type=EventType.USER_OPTED_OUT, user_id=user.pk, local_date=None, data={"n": n}
                        )
                        if i % 3 == 0:
                            raise RuntimeError("rolled back")
                except RuntimeError:
                    pass
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    sequences = list(Event.objects.filter(user=user).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, 6 * 6 + 1))  # 6 of each thread's 10 committed


# --- Delivery: retries, 410, a day of failures ------------------------------------------


def _emit_for(user, n: int = 1) -> list[int]:
    with transaction.atomic():
        return [
            events_emit(type=EventType.USER_OPTED_OUT, user_id=user.pk, local_date=None, data={"n": i})
            for i in range(n)
        ]


def test_a_receiver_answering_500_for_an_hour_gets_every_event_afterwards(event_receiver, make_user):
    user = make_user()
    start = timezone.now()
    clock = {"now": start}
    # 500 during the first hour of the (travelled) clock, 200 after.
    event_receiver.status = lambda n: 500 if clock["now"] < start + timedelta(hours=1) else 200
    ids = _emit_for(user, 3)
    deliveries = delivery.events_fan_out(event_ids=ids, now=start)
    for pk in deliveries:
        assert delivery.delivery_attempt(delivery_id=pk, now=start) == "retry"
    first_retry = Delivery.objects.get(pk=deliveries[0]).next_attempt_at
    assert first_retry - start <= timedelta(minutes=1)  # the first retry within a minute
    while Delivery.objects.filter(status=DeliveryStatus.PENDING).exists():
        clock["now"] = (
            Delivery.objects.filter(status="pending").order_by("next_attempt_at")[0].next_attempt_at
        )
        assert clock["now"] < start + timedelta(hours=4), "never delivered"
        for pk in Delivery.objects.filter(status="pending", next_attempt_at__lte=clock["now"]).values_list(
            "id", flat=True
        ):
            delivery.delivery_attempt(delivery_id=pk, now=clock["now"])
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    delivered_ids = [r["headers"]["webhook-id"] for r in event_receiver.requests if clock["now"] >= start]
    assert set(delivered_ids) == set(Event.objects.values_list("webhook_id", flat=True))
    attempts = list(Delivery.objects.get(pk=deliveries[0]).attempt_log.all())
    assert [a.status_code for a in attempts][-1] == 200 and all(a.status_code == 500 for a in attempts[:-1])
    assert Endpoint.objects.get().failing_since is None


def test_the_retry_schedule_spans_more_than_24_hours_then_gives_up(settings):
    total = sum(settings.EVENTS_RETRY_SCHEDULE_SECONDS)
    assert settings.EVENTS_RETRY_SCHEDULE_SECONDS[0] <= 60
    assert total >= 24 * 3600
    assert delivery.retry_delay(len(settings.EVENTS_RETRY_SCHEDULE_SECONDS) + 1) is None
    delays = [
        delivery.retry_delay(n).total_seconds()
        for n in range(1, len(settings.EVENTS_RETRY_SCHEDULE_SECONDS) + 1)
    ]
    assert delays == sorted(delays)  # backing off


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent(event_receiver, make_user):
    user = make_user()
    event_receiver.status = 410
    ids = _emit_for(user, 2)
    first, second = delivery.events_fan_out(event_ids=ids)
    assert delivery.delivery_attempt(delivery_id=first) == "disabled"
    endpoint = Endpoint.objects.get()
    assert not endpoint.active and "410" in endpoint.disabled_reason
    assert delivery.delivery_attempt(delivery_id=second) == "skipped"
    assert len(event_receiver.requests) == 1
    assert delivery.endpoints_disabled_automatically() == 1


def test_metrics_show_what_waits_and_the_endpoints_relevel_disabled(event_receiver, make_user, client):
    from tests.test_metrics import scrape, value

    user = make_user()
    event_receiver.status = 500
    [pk] = delivery.events_fan_out(event_ids=_emit_for(user))
    delivery.delivery_attempt(delivery_id=pk)
    families = scrape(client)
    assert value(families, "relevel_events_undelivered") == 1
    assert value(families, "relevel_events_undelivered_oldest_seconds") >= 0
    assert value(families, "relevel_event_endpoints_disabled") == 0
    event_receiver.status = 410
    Delivery.objects.filter(pk=pk).update(next_attempt_at=timezone.now())
    delivery.delivery_attempt(delivery_id=pk)
    families = scrape(client)
    assert value(families, "relevel_event_endpoints_disabled") == 1  # RelevelEventEndpointDisabled
    assert value(families, "relevel_events_undelivered") == 0  # its deliveries wait, not counted


def test_an_endpoint_failing_for_24_hours_is_disabled(event_receiver, make_user, settings):
    user = make_user()
    event_receiver.status = 503
    start = timezone.now()
    [pk] = delivery.events_fan_out(event_ids=_emit_for(user), now=start)
    assert delivery.delivery_attempt(delivery_id=pk, now=start) == "retry"
    [later] = delivery.events_fan_out(event_ids=_emit_for(user), now=start + timedelta(hours=25))
    assert delivery.delivery_attempt(delivery_id=later, now=start + timedelta(hours=25)) == "disabled"
    assert "24 h" in Endpoint.objects.get().disabled_reason


def test_an_endpoint_only_gets_the_types_it_asked_for(event_receiver, make_user, settings):
    settings.EVENTS_WEBHOOK_URL = ""
    endpoints_cache_clear()
    Endpoint.objects.create(name="app", url=event_receiver.url, event_types=["day.missed"])
    assert endpoints_want("day.missed") and not endpoints_want("call.ended")
    user = make_user()
    assert _emit_for(user) == [None]  # user.opted_out: nobody wants it, nothing written
    assert not Event.objects.exists()


# --- Lost jobs: Redis flushed ------------------------------------------------------------


def test_redis_flushed_before_delivery_loses_no_event_and_the_sweep_sends_it(
    event_receiver, make_user, redis_conn, django_capture_on_commit_callbacks
):
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        [pk] = _emit_for(user)
    redis_conn.flushdb()  # the job the commit enqueued is gone
    run_events_worker()
    assert event_receiver.requests == []
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        delivery.events_sweep()
        run_events_worker()
    assert event_receiver.webhook_ids() == [Event.objects.get(pk=pk).webhook_id]
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED


# --- Replay ------------------------------------------------------------------------------


def test_replay_sends_a_delivered_event_again_with_the_same_webhook_id(event_receiver, make_user):
    user = make_user()
    ids = _emit_for(user, 2)
    for pk in delivery.events_fan_out(event_ids=ids):
        delivery.delivery_attempt(delivery_id=pk)
    endpoint = Endpoint.objects.get()
    assert delivery.events_replay(endpoint_id=endpoint.pk, event_ids=[ids[0]]) == 1
    for pk in Delivery.objects.filter(status="pending").values_list("id", flat=True):
        delivery.delivery_attempt(delivery_id=pk)
    sent = event_receiver.webhook_ids()
    assert len(sent) == 3 and sent[2] == sent[0] == Event.objects.get(pk=ids[0]).webhook_id


def test_replay_of_a_time_range_reaches_an_endpoint_added_later(event_receiver, make_user):
    user = make_user()
    start = timezone.now()
    ids = _emit_for(user, 3)
    Event.objects.filter(pk=ids[2]).update(occurred_at=start + timedelta(days=2))
    second = Endpoint.objects.create(name="later", url=event_receiver.url, secret=EVENTS_SECRET)
    count = delivery.events_replay(
        endpoint_id=second.pk, since=start - timedelta(minutes=1), until=start + timedelta(days=1)
    )
    assert count == 2
    assert set(Delivery.objects.filter(endpoint=second).values_list("event_id", flat=True)) == set(ids[:2])


def test_rqscheduler_sweeps_the_events_every_minute_on_the_events_queue(settings, redis_conn):
    from calls.cron import EVENTS_SWEEP_CRON_NAME, build_cron_scheduler

    [sweep] = [job for job in build_cron_scheduler().get_jobs() if job.name == EVENTS_SWEEP_CRON_NAME]
    assert (sweep.cron, sweep.queue_name, sweep.func_name) == (
        "* * * * *",
        settings.EVENTS_QUEUE,
        "events.jobs.sweep_events",
    )
