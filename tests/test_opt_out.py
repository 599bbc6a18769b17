"""One opt-out state per person (users/consent.py): it stops every call at once, whatever
asked for it, and no path but an explicit opt-in switches the person back on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.urls import reverse

from calls import dispatch, manual, outcomes, placement, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from tests.test_dispatch import cap, due_users
from tests.test_users_import import ASHA as ASHA_ROW
from tests.test_users_import import HEADER, preview
from users import consent
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
# 11:30 IST on 2026-11-28; make_user's 20:30 Asia/Kolkata slot is 15:00 UTC that day.
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


def opted_out_user(make_user, **fields) -> User:
    user = make_user(**fields)
    assert consent.user_opt_out(user_id=user.pk, source="app")
    user.refresh_from_db()
    return user


# --- The opt-out itself ---------------------------------------------------------------------


def test_an_opt_out_cancels_what_is_queued_saying_why_and_records_when_how_and_which_call(
    make_user, make_call
):
    with time_machine.travel(MORNING, tick=False):
        user = make_user()
        heard_on = make_call(user=user, status=CallStatus.COMPLETED)
        retry = make_call(user=user, attempt=2, retry_of=heard_on, status=CallStatus.QUEUED)
        assert consent.user_opt_out(user_id=user.pk, source="call", call_id=heard_on.pk)
    user.refresh_from_db()
    retry.refresh_from_db()
    assert (user.opted_out_at, user.opt_out_source, user.opt_out_call_id) == (MORNING, "call", heard_on.pk)
    assert (user.call_enabled, user.next_call_at) == (False, None)
    assert (retry.status, retry.error) == (CallStatus.CANCELED, "The user opted out (on a call).")


def test_a_second_opt_out_keeps_the_first(make_user):
    user = opted_out_user(make_user)
    first = user.opted_out_at
    assert not consent.user_opt_out(user_id=user.pk, source="sms")
    user.refresh_from_db()
    assert (user.opted_out_at, user.opt_out_source) == (first, "app")


def test_no_path_switches_an_opted_out_person_back_on_but_an_opt_in(make_user):
    user = opted_out_user(make_user)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=user.pk).update(call_enabled=True)  # a raw UPDATE
    assert consent.user_opt_in(user_id=user.pk)
    user.refresh_from_db()
    assert user.call_enabled and user.opted_out_at is None and user.next_call_at is not None


# --- Every path to a dial -------------------------------------------------------------------


def test_the_tick_never_claims_an_opted_out_person(make_user):
    with time_machine.travel(MORNING, tick=False):
        opted_out_user(make_user)
        called = make_user()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.claimed == 1
    assert list(Call.objects.values_list("user_id", flat=True)) == [called.pk]


def test_a_call_in_flight_when_they_opt_out_gets_no_retry(make_user, make_call, redis_conn):
    with time_machine.travel(SLOT + timedelta(minutes=1), tick=False):
        user = make_user()
        make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-1")
        consent.user_opt_out(user_id=user.pk, source="app")
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-1", status=CallStatus.NO_ANSWER)
        )
    assert not result.retry_scheduled
    assert Call.objects.count() == 1


def test_call_now_is_refused(make_user):
    user = opted_out_user(make_user)
    with time_machine.travel(MORNING, tick=False), pytest.raises(manual.CallNowRefused):
        manual.user_call_now(user_id=user.pk, requested_by="test")


def test_a_call_still_queued_somehow_is_canceled_when_a_worker_takes_it(make_user, make_call, fake_callkaro):
    user = opted_out_user(make_user)
    # Queued behind the opt-out's back (a row restored from a backup, say).
    call = make_call(user=user, status=CallStatus.QUEUED)
    with time_machine.travel(SLOT + timedelta(minutes=1), tick=True):
        assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert (call.status, call.error) == (CallStatus.CANCELED, "User opted out of calls.")
    assert fake_callkaro.requests == []


def test_a_call_waiting_for_a_line_is_not_sent_once_they_opt_out(settings, fake_callkaro, make_user):
    cap(settings, "callkaro", live=1)
    [user] = due_users(make_user, 1)
    scheduling.calls_schedule_due()
    call_ids = list(Call.objects.values_list("pk", flat=True))
    assert dispatch.calls_dispatch_batch(call_ids=call_ids) == {"waiting_for_capacity": 1}
    consent.user_opt_out(user_id=user.pk, source="api")
    dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=1)
    assert fake_callkaro.requests == []
    assert Call.objects.get().status == CallStatus.CANCELED


# --- The users API --------------------------------------------------------------------------


def put(client, external_id, body):
    return client.put(
        f"/api/users/{external_id}", data=json.dumps(body), content_type="application/json", **TOKEN
    )


def test_the_api_opts_out_and_shows_it(client, make_user):
    user = make_user(external_id="crm-7")
    with time_machine.travel(MORNING, tick=False):
        answer = client.post(
            "/api/users/crm-7/opt-out", data={"source": "app"}, content_type="application/json", **TOKEN
        )
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] == "opted_out"
    assert body["user"]["opted_out"] == {"at": "2026-11-28T06:00:00Z", "source": "app", "call_id": None}
    assert body["user"]["call_enabled"] is False
    user.refresh_from_db()
    assert user.opted_out_at == MORNING
    shown = client.get("/api/users/crm-7", **TOKEN).json()["user"]
    assert shown["opted_out"]["source"] == "app"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"source": "call"}, "source"), ({"source": "app", "why": "x"}, "why")],
)
def test_a_bad_opt_out_is_a_400_naming_the_field_and_changes_nothing(client, make_user, body, field):
    user = make_user(external_id="crm-8")
    answer = client.post("/api/users/crm-8/opt-out", data=body, content_type="application/json", **TOKEN)
    assert answer.status_code == 400 and field in answer.json()["errors"]
    user.refresh_from_db()
    assert user.opted_out_at is None and user.call_enabled


def test_an_unknown_person_is_a_404(client, db):
    answer = client.post("/api/users/nobody/opt-out", content_type="application/json", **TOKEN)
    assert answer.status_code == 404


def test_a_put_turning_calls_on_for_an_opted_out_person_is_a_409_and_changes_nothing(client, make_user):
    user = opted_out_user(make_user, external_id="crm-9")
    answer = put(client, "crm-9", {"call_enabled": True, "name": "Renamed"})
    assert answer.status_code == 409
    assert "opted out of calls" in answer.json()["error"]
    user.refresh_from_db()
    assert not user.call_enabled and user.name != "Renamed"
    # Other fields may still change, as long as calls stay off.
    assert put(client, "crm-9", {"name": "Renamed"}).status_code == 200


def test_a_bulk_write_turning_calls_on_for_an_opted_out_person_is_that_rows_error(client, make_user):
    opted_out_user(make_user, external_id="crm-10")
    answer = client.post(
        "/api/users/bulk",
        data=json.dumps(
            {"users": [{"external_id": "crm-11"}, {"external_id": "crm-10", "call_enabled": True}]}
        ),
        content_type="application/json",
        **TOKEN,
    )
    assert answer.status_code == 400
    assert "opted out" in answer.json()["errors"]["1"]["call_enabled"]
    assert not User.objects.filter(external_id="crm-11").exists()


# --- The admin and the import ---------------------------------------------------------------


def test_a_csv_import_cannot_turn_calls_back_on(admin_client, make_user):
    opted_out_user(make_user, external_id="crm-42")
    with time_machine.travel(MORNING, tick=False):
        shown = preview(admin_client, f"{HEADER}\n{ASHA_ROW}\n")
    [invalid] = shown.context["result"].invalid_rows
    assert "opted out" in " ".join(invalid.field_specific_errors["call_enabled"])


def test_the_admins_enable_action_leaves_an_opted_out_person_off_and_says_so(admin_client, make_user):
    user = opted_out_user(make_user)
    answer = admin_client.post(
        reverse("admin:users_user_changelist"),
        {"action": "enable_calls", "_selected_action": [user.pk]},
        follow=True,
    )
    assert "1 opted out, left off" in answer.content.decode()
    user.refresh_from_db()
    assert not user.call_enabled


def test_the_admin_records_an_opt_out_and_an_opt_in_and_shows_the_state(admin_client, make_user):
    user = make_user()
    changelist = reverse("admin:users_user_changelist")
    admin_client.post(changelist, {"action": "opt_out", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.opt_out_source == "admin" and not user.call_enabled
    page = admin_client.get(reverse("admin:users_user_change", args=[user.pk])).content.decode()
    assert "through admin" in page and "Not called again until an opt-in is recorded" in page
    admin_client.post(changelist, {"action": "opt_in", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.opted_out_at is None and user.call_enabled
