"""Consent (users/consent.py): a record per person with its history; with the policy's
require_consent on, nobody without one is dialed (the tick, the worker, call now); a new
consent ends an opt-out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from calls import manual, placement, policy, policy_changes, scheduling
from calls.models import Call, CallStatus
from calls.providers.base import agent_variables
from users import consent
from users.models import Consent, User

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
# make_user's 20:30 Asia/Kolkata slot on 2026-11-28.
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


def set_policy(**changes) -> None:
    policy_changes.policy_update(changes=changes, user_id=None, actor="test")
    policy.policy_cache_clear()


def consented(user: User, *, given_at: datetime = MORNING, source: str = "app") -> Consent:
    row = consent.user_consent_record(
        user_id=user.pk,
        source=source,
        text="Yes, call me daily (terms v3)",
        given_at=given_at,
        recorded_by="test",
    )
    user.refresh_from_db()
    return row


# --- The tick, the worker and call now ------------------------------------------------------


def test_with_consent_required_the_tick_claims_only_people_with_one(make_user):
    with time_machine.travel(MORNING, tick=False):
        without = make_user()
        agreed = make_user()
        consented(agreed)
    set_policy(require_consent=True)
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.claimed == 1
    assert list(Call.objects.values_list("user_id", flat=True)) == [agreed.pk]
    # Moved on to tomorrow's slot, not left due for every tick to read again; no row written.
    without.refresh_from_db()
    assert without.next_call_at == SLOT + timedelta(days=1)


def test_without_the_requirement_nothing_changes(make_user):
    with time_machine.travel(MORNING, tick=False):
        make_user()
        make_user()
    summary = scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.claimed == 2


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_queued_call_is_canceled_at_dial_time_when_the_person_has_no_consent(make_call, fake_callkaro):
    call = make_call()
    set_policy(require_consent=True)
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert (call.status, call.error) == (
        CallStatus.CANCELED,
        "No consent recorded, and the call policy requires one.",
    )
    assert fake_callkaro.requests == []


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_with_consent_is_dialed_when_consent_is_required(make_call, fake_callkaro):
    call = make_call()
    consented(call.user)
    set_policy(require_consent=True)
    assert placement.call_place(call_id=call.pk) == "placed"
    assert len(fake_callkaro.requests) == 1


def test_call_now_is_refused_without_consent_when_required(make_user):
    user = make_user()
    set_policy(require_consent=True)
    with time_machine.travel(MORNING, tick=False), pytest.raises(manual.CallNowRefused, match="no consent"):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert not Call.objects.exists()


# --- The record and the opt-out -------------------------------------------------------------


def test_a_new_consent_ends_an_opt_out_and_becomes_current(make_user):
    user = make_user()
    consented(user)
    assert consent.user_opt_out(user_id=user.pk, source="app")
    user.refresh_from_db()
    assert user.consented_at is None and consent.user_consent_current(user=user) is None
    later = MORNING + timedelta(days=2)
    row = consented(user, given_at=later, source="verbal")
    assert user.opted_out_at is None and user.call_enabled and user.next_call_at is not None
    assert user.consented_at == later
    assert consent.user_consent_current(user=user) == row
    assert user.consents.count() == 2  # the history stays


def test_an_older_consent_recorded_later_does_not_replace_the_current_one(make_user):
    user = make_user()
    current = consented(user, given_at=MORNING)
    consented(user, given_at=MORNING - timedelta(days=30), source="import")
    assert user.consented_at == MORNING
    assert consent.user_consent_current(user=user) == current


# --- The API --------------------------------------------------------------------------------


def put_consent(client, external_id: str, body) -> object:
    return client.put(
        f"/api/users/{external_id}/consent", data=json.dumps(body), content_type="application/json", **TOKEN
    )


def test_the_api_records_consent_ends_the_opt_out_and_shows_it(client, make_user):
    user = make_user(external_id="crm-1")
    consent.user_opt_out(user_id=user.pk, source="app")
    answer = put_consent(
        client, "crm-1", {"source": "app", "text": "Terms v3, section 2", "given_at": "2026-11-28T06:00:00Z"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["user"]["opted_out"] is None and body["user"]["call_enabled"] is True
    assert body["consent"]["source"] == "app" and body["consent"]["given_at"] == "2026-11-28T06:00:00Z"
    shown = client.get("/api/users/crm-1", **TOKEN).json()["user"]
    assert shown["consent"]["text"] == "Terms v3, section 2"
    assert shown["consent"]["recorded_by"] == "api token"


def test_a_person_without_consent_shows_null(client, make_user):
    make_user(external_id="crm-2")
    assert client.get("/api/users/crm-2", **TOKEN).json()["user"]["consent"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x"}, "source"),
        ({"source": "fax", "text": "x"}, "source"),
        ({"source": "app"}, "text"),
        ({"source": "app", "text": "  "}, "text"),
        ({"source": "app", "text": 5}, "text"),
        ({"source": "app", "text": "x", "given_at": "yesterday"}, "given_at"),
        ({"source": "app", "text": "x", "given_at": "2026-11-28T06:00:00"}, "given_at"),
        ({"source": "app", "text": "x", "given_at": "2999-01-01T00:00:00Z"}, "given_at"),
        ({"source": "app", "text": "x", "given_at": 1764309600}, "given_at"),
        ({"source": "app", "text": "x", "by": "me"}, "by"),
    ],
)
def test_a_bad_consent_is_a_400_naming_the_field_and_changes_nothing(client, make_user, body, field):
    user = make_user(external_id="crm-3")
    consent.user_opt_out(user_id=user.pk, source="app")
    answer = put_consent(client, "crm-3", body)
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    user.refresh_from_db()
    assert not Consent.objects.exists() and user.opted_out_at is not None


def test_a_consent_for_an_unknown_person_is_a_404(client, db):
    assert put_consent(client, "nobody", {"source": "app", "text": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"require_consent": "yes"}, "require_consent"), ({"disclosure_text": 3}, "disclosure_text")],
)
def test_the_policy_api_checks_the_new_fields(client, db, changes, field):
    answer = client.patch("/api/policy", data=json.dumps(changes), content_type="application/json", **TOKEN)
    assert answer.status_code == 400 and field in answer.json()["errors"]
    answer = client.patch(
        "/api/policy",
        data=json.dumps({"require_consent": True, "disclosure_text": "An automated call from Acme."}),
        content_type="application/json",
        **TOKEN,
    )
    assert answer.status_code == 200
    policy.policy_cache_clear()
    rules = policy.policy_current()
    assert rules.require_consent and rules.disclosure_text == "An automated call from Acme."


# --- The disclosure ------------------------------------------------------------------------


@pytest.mark.usefixtures("on_the_calls_day")
def test_every_request_carries_the_disclosure_line(make_call):
    set_policy(disclosure_text="This is an automated call from Acme.")
    call = make_call()
    [request], _, _ = placement.take_calls_for_dialing([call.pk])
    assert agent_variables(request) == {"disclosure": "This is an automated call from Acme."}
    # and among the variables each provider sends (tests/test_providers_vapi.py)
    assert request.variables["disclosure"] == "This is an automated call from Acme."


# --- The admin ------------------------------------------------------------------------------


def test_the_admin_says_why_a_person_is_not_called_and_filters_them(admin_client, make_user):
    without = make_user(name="Nobody Agreed")
    agreed = make_user(name="Said Yes")
    consented(agreed)
    set_policy(require_consent=True)
    page = admin_client.get(reverse("admin:users_user_change", args=[without.pk])).content.decode()
    assert "No consent recorded, and the call policy requires one" in page
    listed = admin_client.get(reverse("admin:users_user_changelist") + "?consent=no").content.decode()
    assert "Nobody Agreed" in listed and "Said Yes" not in listed
    page = admin_client.get(reverse("admin:users_user_change", args=[agreed.pk])).content.decode()
    assert "Yes, call me daily (terms v3)" in page and "No consent recorded" not in page


def test_an_operator_records_a_consent_in_the_admin_which_ends_the_opt_out(
    admin_client, admin_user, make_user
):
    user = make_user()
    consent.user_opt_out(user_id=user.pk, source="admin")
    answer = admin_client.post(
        reverse("admin:users_consent_add"),
        {
            "user": user.pk,
            "given_at_0": "2026-11-28",
            "given_at_1": "06:00:00",
            "source": "verbal",
            "text": "Said yes on the phone to the support desk",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    user.refresh_from_db()
    row = user.consents.get()
    assert (row.source, row.recorded_by) == ("verbal", admin_user.get_username())
    assert user.opted_out_at is None and user.consented_at == row.given_at
