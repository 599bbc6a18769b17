"""Forgetting a person (users/erasure.py): nothing that identifies them is left in any
table or in Redis, their calls still count the same on the dashboard, the erasure is
recorded, and a number that had opted out is never called again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.apps import apps
from django.db import connection, models
from django.db.models import TextField
from django.db.models.functions import Cast
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import queues
from calls.models import Call, CallResult, CallStatus
from calls.placement import take_calls_for_dialing
from dashboard.rollups import day_stats_compute
from events.models import Delivery, DeliveryAttempt, Endpoint, Event
from notifications.models import Notification, SmsOptOut
from tests.conftest import CALL_SLOT
from users import consent
from users.erasure import forget_person
from users.models import Consent, ConsentSource, Erasure, Suppression
from users.suppression import number_hash, numbers_suppressed, suppression_add

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
PHONE = "+919812345678"
NAME = "Zephyrine Quintavalle"
EMAIL = "zephyrine.q@example.org"
WORDS = "my left knee hurts when I climb the stairs"
PAST_DAY = date(2026, 11, 20)
# Everything that would identify the person, wherever it might have been copied.
TRACES = (PHONE, PHONE[1:], NAME, "Zephyrine", "Quintavalle", EMAIL, WORDS, "zq-4471")


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


@pytest.fixture
def person(make_user, make_call):
    """A person with a history: answered calls with transcripts and payloads, an error that
    quotes them, a queued retry with its job in Redis, messages and an SMS opt-out."""
    user = make_user(
        name=NAME,
        phone=PHONE,
        email=EMAIL,
        external_id="zq-4471",
        username="zq-4471",
        context={"nickname": "Zephyrine", "doctor": "Dr Quintavalle"},
    )
    answered = make_call(
        user=user,
        local_date=PAST_DAY,
        status=CallStatus.COMPLETED,
        transcript=f"Agent: Hello {NAME}. User: {WORDS}.",
        recording_url=f"https://rec.example/{PHONE}.mp3",
        provider_payloads=[{"to": PHONE, "customer": {"name": NAME}, "transcript": WORDS}],
        provider_call_id="prov-1",
        dialed_at=CALL_SLOT - timedelta(days=8),
    )
    CallResult.objects.create(
        call=answered,
        summary=f"{NAME} said: {WORDS}",
        turns=[{"role": "user", "text": WORDS}],
        transcript=f"User: {WORDS}",
        data={"caller": NAME},
        callback_note=f"call {PHONE} back at 6",
        sentiment="negative",
        sentiment_score=-1,
    )
    failed = make_call(
        user=user,
        local_date=PAST_DAY,
        attempt=2,
        retry_of=answered,
        status=CallStatus.FAILED,
        error=f"Provider refused {PHONE} ({NAME}): invalid number",
        dialed_at=CALL_SLOT - timedelta(days=8),
    )
    queued = make_call(user=user, status=CallStatus.QUEUED)
    queues.enqueue_place_call(queued.pk)
    queues.enqueue_place_call(failed.pk)
    Notification.objects.create(
        user=user,
        channel="email",
        local_date=PAST_DAY,
        status="failed",
        due_at=CALL_SLOT,
        recipient="z…@example.org",
        provider_message_id="SM123",
        error=f"550 mailbox {EMAIL} unavailable",
    )
    SmsOptOut.objects.create(
        user=user, opted_out_at=CALL_SLOT, source="sms", keyword="STOP", message_sid="SM9"
    )
    # An event to the product's app, and its receiver's answer that echoed it.
    event = Event.objects.create(
        webhook_id="msg_zq99",
        type="user.schedule_changed",
        user=user,
        external_id="zq-4471",
        sequence=99,
        occurred_at=CALL_SLOT,
        data={"phone": PHONE, "name": NAME},
    )
    endpoint = Endpoint.objects.create(name="crm", url="https://crm.example/hooks")
    delivered = Delivery.objects.create(event=event, endpoint=endpoint, status="delivered", attempts=1)
    DeliveryAttempt.objects.create(
        delivery=delivered,
        attempted_at=CALL_SLOT,
        status_code=200,
        latency_ms=5,
        response_excerpt=f"ok {NAME}",
    )
    pending = Endpoint.objects.create(name="bi", url="https://bi.example/hooks")
    Delivery.objects.create(event=event, endpoint=pending, status="pending", next_attempt_at=CALL_SLOT)
    return user


def text_columns(model: type[models.Model]) -> list[str]:
    return [
        f.name
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
    ]


# The record of the erasure keeps the product's id it was asked for (its proof), and only that.
RECORD_OF_WHICH_ID = ("users.Erasure", "external_id")


def traces_in_database() -> list[str]:
    found = []
    for model in apps.get_models():
        for column in text_columns(model):
            if (model._meta.label, column) == RECORD_OF_WHICH_ID:
                continue
            for trace in TRACES:
                rows = model._base_manager.annotate(_text=Cast(column, TextField())).filter(
                    _text__contains=trace
                )
                if rows.exists():
                    found.append(f"{model._meta.label}.{column} holds {trace!r}")
    return found


def traces_in_redis(redis_conn) -> list[str]:
    found = []
    last_four = "…" + PHONE[-4:]
    for key in redis_conn.scan_iter("*"):
        kind = redis_conn.type(key).decode()
        if kind == "hash":
            values = [b"".join([k, b"=", v]) for k, v in redis_conn.hgetall(key).items()]
        elif kind == "string":
            values = [redis_conn.get(key)]
        elif kind == "list":
            values = redis_conn.lrange(key, 0, -1)
        elif kind == "set":
            values = list(redis_conn.smembers(key))
        elif kind == "zset":
            values = redis_conn.zrange(key, 0, -1)
        else:
            values = []
        blob = key + b" " + b" ".join(values)
        for trace in (*TRACES, last_four):
            if trace.encode() in blob:
                found.append(f"Redis {key.decode()} holds {trace!r}")
    return found


def test_erasure_leaves_no_trace_in_any_table_or_in_redis(person, make_user, redis_conn):
    other = make_user()
    assert traces_in_database() and traces_in_redis(redis_conn)  # the scans find what is there

    forget_person(user_id=person.pk, actor="test")

    assert traces_in_database() == []
    assert traces_in_redis(redis_conn) == []
    other.refresh_from_db()
    assert other.phone and other.name  # nobody else is touched


def test_the_do_not_call_list_and_the_consents_keep_no_copy_either(person, make_user):
    """A number already on the do-not-call list (without an opt-out) stays on it as its hash
    alone, and the consents, whose wording is the person's, go."""
    consent.user_consent_record(
        user_id=person.pk,
        given_at=CALL_SLOT - timedelta(days=30),
        source=ConsentSource.VERBAL,
        text=f"{NAME} agreed on the phone to a daily call",
        recorded_by="ops",
    )
    suppression_add(number=PHONE, reason="asked on a call")
    other = make_user(phone="+14155550199")
    consent.user_consent_record(
        user_id=other.pk,
        given_at=CALL_SLOT,
        source=ConsentSource.WEB,
        text="v3 of the form",
        recorded_by="ops",
    )
    found = traces_in_database()
    assert any(t.startswith("users.Consent.text") for t in found)
    assert any(t.startswith("users.Suppression.number ") for t in found)

    record = forget_person(user_id=person.pk, actor="test")

    assert traces_in_database() == []
    assert record.suppressed and record.counts["consents"] == 1
    assert list(Suppression.objects.values_list("number", "number_hash", "reason")) == [
        (None, number_hash(PHONE), "asked on a call")
    ]
    assert numbers_suppressed(numbers=[PHONE]) == {PHONE}
    assert list(Consent.objects.values_list("user_id", "text")) == [(other.pk, "v3 of the form")]


def test_the_calls_stay_anonymous_and_the_queued_one_is_canceled(person):
    forget_person(user_id=person.pk, actor="test")

    calls = {c.attempt if c.local_date == PAST_DAY else "queued": c for c in Call.objects.filter(user=person)}
    assert len(calls) == 3
    for call in calls.values():
        assert (call.to_number, call.provider_payloads, call.transcript, call.recording_url) == (
            "",
            [],
            "",
            "",
        )
        assert call.provider_call_id is None
    assert calls[2].error == "Provider refused [erased] ([erased]): invalid number"
    assert (calls["queued"].status, calls["queued"].error) == (
        CallStatus.CANCELED,
        "The person was forgotten (erasure).",
    )
    person.refresh_from_db()
    assert (person.username, person.phone, person.name, person.email, person.external_id) == (
        f"forgotten-{person.pk}",
        None,
        "",
        "",
        None,
    )
    assert not person.call_enabled and not person.is_active and not person.has_usable_password()
    assert person.next_call_at is None
    message = Notification.objects.get(user=person)
    assert (message.recipient, message.provider_message_id, message.error) == (
        "",
        "",
        "550 mailbox [erased] unavailable",
    )
    assert SmsOptOut.objects.get(user=person).message_sid == ""
    events = Event.objects.filter(user=person).values_list("external_id", "data")
    assert list(events.distinct()) == [(None, {})]
    # Nothing about a forgotten person goes out after the erasure.
    assert sorted(Delivery.objects.values_list("endpoint__name", "status")) == [
        ("bi", "failed"),
        ("crm", "delivered"),
    ]


def test_the_dashboards_numbers_do_not_change(person, make_call, make_user):
    make_call(user=make_user(), local_date=PAST_DAY, status=CallStatus.NO_ANSWER, dialed_at=CALL_SLOT)
    before = day_stats_compute(PAST_DAY)
    assert before[("calls", "")] == 3

    forget_person(user_id=person.pk, actor="test")

    assert day_stats_compute(PAST_DAY) == before


def test_the_erasure_is_recorded_without_personal_data(person):
    record = forget_person(user_id=person.pk, actor="admin (ops)")

    assert (record.user_id, record.external_id, record.actor, record.suppressed) == (
        person.pk,
        "zq-4471",
        "admin (ops)",
        False,
    )
    assert record.counts == {
        "calls": 3,
        "notifications": 1,
        "events": Event.objects.count(),
        "consents": 0,
        "users": 1,
    }
    assert record.counts["events"] >= 1
    assert not Event.objects.filter(occurred_at__gte=record.erased_at).exists()  # none about the erasure
    # A call in flight at the erasure whose outcome came in since: forgetting again strips
    # it, and the erasure is recorded once.
    late = Call.objects.filter(user=person).first()
    Call.objects.filter(pk=late.pk).update(provider_payloads=[{"to": PHONE}])
    assert forget_person(user_id=person.pk, actor="again") == record
    late.refresh_from_db()
    assert late.provider_payloads == []
    assert Erasure.objects.count() == 1
    assert not Suppression.objects.exists()  # they had not opted out


def test_a_number_that_opted_out_stays_suppressed_as_a_hash_and_is_never_called_again(
    person, make_user, make_call, client
):
    assert consent.user_opt_out(user_id=person.pk, source="app")
    record = forget_person(user_id=person.pk, actor="test")

    assert record.suppressed
    row = Suppression.objects.get()
    assert (row.number, row.number_hash) == (None, number_hash(PHONE))
    assert PHONE[1:] not in row.number_hash
    assert numbers_suppressed(numbers=[PHONE]) == {PHONE}
    # Whoever carries it later is not dialed.
    carrier = make_user(phone=PHONE)
    call = make_call(user=carrier, scheduled_for=CALL_SLOT)
    import time_machine

    with time_machine.travel(CALL_SLOT + timedelta(minutes=1), tick=False):
        requests, others, _ = take_calls_for_dialing([call.pk])
    call.refresh_from_db()
    assert requests == [] and others[CallStatus.CANCELED] == 1
    assert (call.status, call.error) == (
        CallStatus.CANCELED,
        "Number suppressed: it is on the do-not-call list.",
    )


def test_the_api_forgets_with_204_and_answers_404_for_an_unknown_or_forgotten_id(person, client):
    url = reverse("user-detail", args=["zq-4471"])

    assert client.delete(url).status_code == 401
    response = client.delete(url, **TOKEN)
    assert response.status_code == 204 and response.content == b""
    assert Erasure.objects.get().actor == "api (token)"
    assert client.delete(url, **TOKEN).status_code == 404
    assert client.get(url, **TOKEN).status_code == 404
    missing = client.delete(reverse("user-detail", args=["nobody"]), **TOKEN)
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]


def test_the_admin_asks_first_then_forgets(person, admin_client):
    url = reverse("admin:users_user_changelist")
    form = {"action": "forget_people", "_selected_action": [person.pk]}

    confirm = admin_client.post(url, form)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Forget this person?" in page and "cannot be undone" in page and NAME in page
    person.refresh_from_db()
    assert person.phone == PHONE and not Erasure.objects.exists()  # nothing yet

    done = admin_client.post(url, {**form, "post": "yes"}, follow=True)
    assert "Forgotten: 1 person." in done.content.decode()
    person.refresh_from_db()
    assert person.phone is None and person.name == ""
    assert Erasure.objects.get().actor == "admin (admin)"
    records = admin_client.get(reverse("admin:users_erasure_changelist")).content.decode()
    assert "admin (admin)" in records and "zq-4471" in records and NAME not in records


def calls_table_plans(statements: list[str]) -> list[str]:
    """The plan of each captured statement that reads the calls table, with a table scan
    made dear (a handful of rows: the planner would scan, as it never does on a big table)."""
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for sql in statements:
                if '"calls_call"' in sql and not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")):
                    cursor.execute("EXPLAIN " + sql)
                    plans.append("\n".join(row[0] for row in cursor.fetchall()))
        finally:
            cursor.execute("RESET enable_seqscan")
    return plans


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's choice is PostgreSQL's")
def test_forgetting_a_person_reads_their_calls_from_the_users_indexes_not_every_call(person, make_call):
    """Calls have no index on the user alone (its writes would cost every tick): by user_id
    alone, each of the eraser's statements was a scan of the whole table, seconds each on a
    year of a million people's calls. Their calls, manual or not, come from the user's two
    partial indexes (calls.selectors.ANY_KIND)."""

    make_call(user=person, local_date=PAST_DAY, manual=True, status=CallStatus.COMPLETED)
    with CaptureQueriesContext(connection) as captured:
        forget_person(user_id=person.pk, actor="test")
    plans = calls_table_plans([query["sql"] for query in captured.captured_queries])
    assert len(plans) >= 4  # the cancel, the scrubs, the strip, the results, the job ids
    for plan in plans:
        assert "Seq Scan on calls_call" not in plan, plan
    assert Call.objects.filter(user=person, manual=True, to_number="").count() == 1
