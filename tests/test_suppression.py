"""The do-not-call list (users/suppression.py): a number on it is dialed for no one,
whoever carries it now or later; checked when a call is claimed and again when it is
dialed, and by call now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from calls import manual, placement, scheduling
from calls.models import Call, CallStatus
from users import suppression
from users.models import Suppression, User

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
NUMBER = "+14155550123"
SUPPRESSED = "Number suppressed: it is on the do-not-call list."


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


def test_the_tick_cancels_the_day_of_whoever_carries_a_suppressed_number(make_user):
    suppression.suppression_add(number=NUMBER, reason="asked on a call")
    with time_machine.travel(MORNING, tick=False):
        carrier = make_user(phone=NUMBER)
        other = make_user()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.claimed == 1
    canceled = Call.objects.get(user=carrier)
    assert (canceled.status, canceled.error) == (CallStatus.CANCELED, SUPPRESSED)
    assert Call.objects.get(user=other).status == CallStatus.QUEUED


def test_a_second_person_given_the_number_later_is_not_called_either(make_user):
    with time_machine.travel(MORNING, tick=False):
        first = make_user(phone=NUMBER)
        suppression.suppression_add(number=NUMBER, reason="first owner asked")
        first.phone = None
        first.save()
        later = make_user(phone=NUMBER)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert list(Call.objects.values_list("user_id", "status")) == [(later.pk, CallStatus.CANCELED)]


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_number_changed_to_a_suppressed_one_while_a_call_is_queued_is_not_dialed(make_call, fake_callkaro):
    suppression.suppression_add(number=NUMBER)
    call = make_call()
    # Behind the schedule's back (a raw UPDATE, an import): the dialer still checks.
    User.objects.filter(pk=call.user_id).update(phone=NUMBER)
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert (call.status, call.error) == (CallStatus.CANCELED, SUPPRESSED)
    assert fake_callkaro.requests == []


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_forgotten_number_kept_only_as_its_hash_still_stops_the_dial(make_call, fake_callkaro):
    call = make_call()
    suppression.suppression_add(number=call.user.phone)
    suppression.suppression_forget_number(number=call.user.phone)
    row = Suppression.objects.get()
    assert row.number is None and row.number_hash == suppression.number_hash(call.user.phone)
    assert placement.call_place(call_id=call.pk) == "canceled"
    assert fake_callkaro.requests == []


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_number_taken_off_the_list_is_dialed_again(make_call, fake_callkaro):
    call = make_call()
    suppression.suppression_add(number=call.user.phone)
    assert suppression.suppression_remove(number=call.user.phone)
    assert placement.call_place(call_id=call.pk) == "placed"


def test_the_hash_is_keyed_by_the_servers_secret(settings):
    first = suppression.number_hash(NUMBER)
    settings.SECRET_KEY = "another-secret-" + "y" * 50
    assert suppression.number_hash(NUMBER) != first
    assert len(first) == 64


def test_call_now_is_refused_for_a_suppressed_number(make_user):
    user = make_user(phone=NUMBER)
    suppression.suppression_add(number=NUMBER)
    with time_machine.travel(MORNING, tick=False), pytest.raises(manual.CallNowRefused, match="do-not-call"):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert not Call.objects.exists()


# --- The API --------------------------------------------------------------------------------


def test_put_adds_then_finds_it_there_and_delete_removes_it(client, db):
    url = f"/api/suppressions/{NUMBER}"
    added = client.put(url, data=json.dumps({"reason": "asked"}), content_type="application/json", **TOKEN)
    assert added.status_code == 201
    assert added.json()["suppression"]["number"] == NUMBER
    again = client.put(url, **TOKEN)
    assert (again.status_code, again.json()["result"]) == (200, "exists")
    assert Suppression.objects.get().reason == "asked"
    assert Suppression.objects.get().created_by == "api token"
    assert client.delete(url, **TOKEN).status_code == 204
    assert client.delete(url, **TOKEN).status_code == 404
    assert not Suppression.objects.exists()


def test_the_number_may_come_percent_encoded(client, db):
    assert client.put("/api/suppressions/%2B14155550123", **TOKEN).status_code == 201
    assert Suppression.objects.get().number == NUMBER


@pytest.mark.parametrize(
    ("number", "body", "field"),
    [
        ("4155550123", None, "number"),
        ("+1415555", None, "number"),
        (NUMBER, {"why": "x"}, "why"),
        (NUMBER, {"reason": 5}, "reason"),
        (NUMBER, {"reason": "x" * 201}, "reason"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field_and_changes_nothing(client, db, number, body, field):
    answer = client.put(
        f"/api/suppressions/{number}",
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        **TOKEN,
    )
    assert answer.status_code == 400 and field in answer.json()["errors"]
    assert not Suppression.objects.exists()


def test_the_api_wants_an_operator(client, db):
    assert client.put(f"/api/suppressions/{NUMBER}").status_code == 401
    assert not Suppression.objects.exists()


# --- The admin ------------------------------------------------------------------------------


def test_an_operator_adds_and_removes_a_number_in_the_admin(admin_client, admin_user, make_user):
    user = make_user(phone=NUMBER)
    answer = admin_client.post(
        reverse("admin:users_suppression_add"), {"number": NUMBER, "reason": "complaint"}
    )
    assert answer.status_code == 302
    row = Suppression.objects.get()
    assert (row.number, row.created_by, row.source) == (NUMBER, admin_user.get_username(), "admin")
    page = admin_client.get(reverse("admin:users_user_change", args=[user.pk])).content.decode()
    assert "do-not-call list" in page
    again = admin_client.post(reverse("admin:users_suppression_add"), {"number": NUMBER})
    assert again.status_code == 200 and "already on the list" in again.content.decode()
    bad = admin_client.post(reverse("admin:users_suppression_add"), {"number": "12345"})
    assert "E.164" in bad.content.decode()
    answer = admin_client.post(reverse("admin:users_suppression_delete", args=[row.pk]), {"post": "yes"})
    assert answer.status_code == 302 and not Suppression.objects.exists()


def test_a_csv_import_adds_numbers_after_a_preview_with_each_rows_error(admin_client, admin_user):
    suppression.suppression_add(number="+919876500001", reason="old")
    text = "number,reason\n+14155550123,complaint\n12345,typo\n+919876500001,asked again\n"
    upload = SimpleUploadedFile("dnc.csv", text.encode(), content_type="text/csv")
    shown = admin_client.post(
        reverse("admin:users_suppression_import"), {"import_file": upload, "format": "0"}
    )
    assert shown.status_code == 200
    assert "E.164" in shown.content.decode()  # the bad row's error; nothing imported from that file
    assert Suppression.objects.count() == 1
    text = "number,reason\n+14155550123,complaint\n+919876500001,asked again\n"
    upload = SimpleUploadedFile("dnc.csv", text.encode(), content_type="text/csv")
    shown = admin_client.post(
        reverse("admin:users_suppression_import"), {"import_file": upload, "format": "0"}
    )
    form = shown.context["confirm_form"]
    admin_client.post(
        reverse("admin:users_suppression_process_import"),
        {name: form.initial.get(name, "") for name in form.fields},
        follow=True,
    )
    added = Suppression.objects.get(number="+14155550123")
    assert (added.source, added.created_by, added.reason) == (
        "import",
        admin_user.get_username(),
        "complaint",
    )
    assert added.number_hash == suppression.number_hash("+14155550123")
    assert Suppression.objects.get(number="+919876500001").reason == "asked again"
    assert suppression.number_is_suppressed(number="+14155550123")
