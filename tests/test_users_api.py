"""The users API (issue 10): PUT/GET /api/users/<external_id> and POST /api/users/bulk."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from calls.models import Call, CallStatus
from tests.test_profile_changes import EVENING
from users import upsert
from users.models import User

pytestmark = pytest.mark.django_db

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
# 11:30 IST on 2026-11-28: a 20:30 Asia/Kolkata user's next call is 15:00 UTC that day.
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
# A first attempt due a minute ago and still queued: what a schedule change cancels.
DUE = MORNING - timedelta(minutes=1)

ASHA = {
    "phone": "+91 98765 43210",
    "name": "Asha Rao",
    "local_tz": "Asia/Kolkata",
    "call_time": "20:30",
    "call_enabled": True,
    "max_retries": 1,
    "retry_delay_minutes": 45,
}


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


@pytest.fixture(autouse=True)
def morning():
    with time_machine.travel(MORNING, tick=False):
        yield


def put(client, external_id, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.put(
        f"/api/users/{external_id}", data=data, content_type="application/json", **{**TOKEN, **extra}
    )


def bulk(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/users/bulk", data=data, content_type="application/json", **{**TOKEN, **extra})


def stored():
    return list(User.objects.order_by("pk").values())


# --- PUT: create and update -----------------------------------------------------------------


def test_put_creates_a_user_with_a_generated_username_and_no_usable_password(client):
    response = put(client, "crm-42", ASHA)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["success"] is True and body["result"] == "created"
    assert body["user"] == {
        "external_id": "crm-42",
        "username": "ext-crm-42",
        "name": "Asha Rao",
        "phone": "+919876543210",  # as typed, stored as E.164
        "local_tz": "Asia/Kolkata",
        "call_time": "20:30:00",
        "call_enabled": True,
        "max_retries": 1,
        "retry_delay_minutes": 45,
        "email": None,
        "notify_sms": False,
        "notify_email": False,
        "next_call": {
            "utc": "2026-11-28T15:00:00Z",
            "local": "2026-11-28T20:30:00+05:30",
            "time_zone": "Asia/Kolkata",
        },
        "context": {},
        "parked_because": None,
        "opted_out": None,
        "call_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "pause_until": None,
        "skipped_dates": [],
        "off_today": None,
        "consent": None,
    }
    user = User.objects.get(external_id="crm-42")
    assert not user.has_usable_password()
    assert user.next_call_at == SLOT


def test_the_same_put_twice_leaves_the_same_state_and_answers_200(client):
    assert put(client, "crm-42", ASHA).status_code == 201
    before = stored()
    with CaptureQueriesContext(connection) as queries:
        again = put(client, "crm-42", ASHA)
    assert again.status_code == 200 and again.json()["result"] == "unchanged"
    assert stored() == before
    assert not [q for q in queries if q["sql"].startswith('UPDATE "users_user"')]


def test_put_updates_only_the_fields_it_gives(client):
    put(client, "crm-42", ASHA)
    response = put(client, "crm-42", {"call_time": "09:15:30", "max_retries": None})
    assert response.status_code == 200 and response.json()["result"] == "updated"
    user = User.objects.get(external_id="crm-42")
    assert (user.call_time, user.max_retries, user.retry_delay_minutes) == (time(9, 15, 30), None, 45)
    assert (user.name, user.phone, user.local_tz) == ("Asha Rao", "+919876543210", "Asia/Kolkata")
    # 09:15:30 IST on the 28th has passed at 11:30 IST: the 29th's.
    assert user.next_call_at == datetime(2026, 11, 29, 3, 45, 30, tzinfo=UTC)


def test_a_new_user_given_only_an_id_gets_the_defaults(client, settings):
    response = put(client, "bare", {})
    assert response.status_code == 201
    user = User.objects.get(external_id="bare")
    assert (user.local_tz, user.call_enabled, user.phone) == (settings.DEFAULT_TIMEZONE, True, None)
    assert user.next_call_at is None  # no phone: never called


def test_put_with_a_null_phone_removes_it(client):
    put(client, "crm-42", ASHA)
    assert put(client, "crm-42", {"phone": None}).status_code == 200
    user = User.objects.get(external_id="crm-42")
    assert user.phone is None and user.next_call_at is None


def test_put_may_repeat_the_external_id_in_the_body(client):
    assert put(client, "crm-42", {**ASHA, "external_id": "crm-42"}).status_code == 201


def test_a_user_made_in_the_admin_is_reached_once_it_has_an_external_id(client, make_user):
    user = make_user(external_id="crm-7", phone="+919876543210")
    response = put(client, "crm-7", {"name": "Renamed", "phone": "+91 98765 43210"})
    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.name, user.phone) == ("Renamed", "+919876543210")  # its own phone is no conflict


def test_generated_usernames_stay_unique(client, make_user):
    make_user(username="ext-crm_1")
    put(client, "crm:1", {})  # ':' is no username character; "ext-crm_1" is taken
    put(client, "crm_1", {})
    names = dict(User.objects.filter(external_id__isnull=False).values_list("external_id", "username"))
    assert names["crm:1"].startswith("ext-crm_1-") and names["crm_1"].startswith("ext-crm_1-")
    assert len({*names.values(), "ext-crm_1"}) == 3


# --- PUT: bad input is a 400 naming the field, and nothing is written -------------------------

BAD_FIELDS = [
    ({"phone": "98765"}, "phone", "is not a valid phone number"),
    ({"phone": "+1 800 FLOWERS"}, "phone", "is not a valid phone number"),
    ({"phone": 919876543210}, "phone", "must be a string or null"),
    ({"local_tz": "Mars/Olympus"}, "local_tz", "is not an IANA time zone"),
    ({"local_tz": ""}, "local_tz", "required"),
    ({"local_tz": None}, "local_tz", "must be a string"),
    ({"call_time": "25:00"}, "call_time", "Enter a time between 00:00 and 23:59, such as 20:30."),
    ({"call_time": "8pm"}, "call_time", "Enter a time between 00:00 and 23:59, such as 20:30."),
    ({"call_time": 2030}, "call_time", "must be a string"),
    ({"call_enabled": "yes"}, "call_enabled", "true or false"),
    ({"call_enabled": 1}, "call_enabled", "true or false"),
    ({"max_retries": 11}, "max_retries", "less than or equal to 10"),
    ({"max_retries": -1}, "max_retries", "greater than or equal to 0"),
    ({"max_retries": 2.5}, "max_retries", "whole number"),
    ({"max_retries": True}, "max_retries", "whole number"),
    ({"retry_delay_minutes": 0}, "retry_delay_minutes", "greater than or equal to 1"),
    ({"retry_delay_minutes": 1441}, "retry_delay_minutes", "less than or equal to 1440"),
    ({"name": 42}, "name", "must be a string"),
    ({"name": "x" * 151}, "name", "at most 150 characters"),
    ({"nickname": "Ash"}, "nickname", "unknown field"),
    ({"external_id": "crm-43"}, "external_id", "must be the one in the URL"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_FIELDS, ids=[f[1] for f in BAD_FIELDS])
def test_a_bad_value_is_a_400_naming_the_field_and_nothing_is_written(client, change, field, message):
    put(client, "crm-42", ASHA)
    before = stored()
    response = put(client, "crm-42", {"name": "Renamed", **change})
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and field in body["error"]
    assert set(body["errors"]) == {field} and message in body["errors"][field], body
    assert stored() == before
    # Nor is a new user created with it.
    assert put(client, "crm-new", {**ASHA, "phone": None, **change}).status_code == 400
    assert stored() == before


@pytest.mark.parametrize(
    ("external_id", "message"),
    [
        ("has%20space", "is not a valid external id"),
        ("x" * 129, "is not a valid external id"),
        ("caf%C3%A9", "is not a valid external id"),
    ],
)
def test_a_bad_external_id_in_the_url_is_a_400_naming_it(client, external_id, message):
    response = put(client, external_id, ASHA)
    assert response.status_code == 400
    assert message in response.json()["errors"]["external_id"]
    assert not User.objects.exists()


def test_every_allowed_character_makes_an_external_id(client):
    assert put(client, "Crm.2026_07:a-9", {}).status_code == 201
    assert put(client, "x" * 128, {}).status_code == 201


def test_a_phone_another_user_has_is_a_400_that_says_whose_by_id_never_the_number(client, make_user):
    bilal = make_user(username="bilal", external_id="crm-bilal", phone="+919876543210")
    response = put(client, "crm-42", ASHA)
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "phone": f"Another user already has this phone number: user {bilal.pk} (external_id 'crm-bilal')."
    }
    assert "+919876543210" not in response.content.decode()
    assert not User.objects.filter(external_id="crm-42").exists()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{", 400, "not valid JSON"),
        ("[1, 2]", 400, "must be a JSON object"),
        ('{"name": "a\\u0000b"}', 400, "NUL"),
        (json.dumps({"name": "x" * (17 * 1024)}), 413, "body larger than 16 KB"),
    ],
    ids=["not-json", "not-an-object", "nul", "too-big"],
)
def test_a_body_that_is_not_a_user_is_refused(client, body, status, message):
    response = put(client, "crm-42", body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not User.objects.exists()


def test_a_concurrent_change_that_takes_the_id_or_phone_is_a_409_and_writes_nothing(client):
    with mock.patch.object(upsert, "users_write", side_effect=IntegrityError("duplicate key")):
        response = put(client, "crm-42", ASHA)
    assert response.status_code == 409 and "nothing was written" in response.json()["error"]
    assert not User.objects.exists()


# --- GET --------------------------------------------------------------------------------------


def test_get_shows_the_user_their_next_call_and_the_calls_of_their_local_day(client, make_user, make_call):
    # 06:00 UTC is still the 27th in Los Angeles (22:00 PST): "today" is the user's day.
    user = make_user(
        external_id="crm-la", phone="+14155550123", local_tz="America/Los_Angeles", call_time=time(9, 0)
    )
    la_slot = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    make_call(
        user=user,
        attempt=1,
        local_date=date(2026, 11, 27),
        status=CallStatus.NO_ANSWER,
        scheduled_for=la_slot,
        end_reason="USER_UNAVAILABLE",
    )
    make_call(
        user=user,
        attempt=2,
        local_date=date(2026, 11, 27),
        status=CallStatus.CANCELED,
        scheduled_for=datetime(2026, 11, 27, 17, 30, tzinfo=UTC),
        error="User disabled calls.",
    )
    make_call(user=user, attempt=1, local_date=date(2026, 11, 26), status=CallStatus.COMPLETED)
    response = client.get("/api/users/crm-la", **TOKEN)
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["phone"] == "+14155550123"
    assert body["user"]["next_call"] == {
        "utc": "2026-11-28T17:00:00Z",
        "local": "2026-11-28T09:00:00-08:00",
        "time_zone": "America/Los_Angeles",
    }
    assert body["today"] == {
        "local_date": "2026-11-27",
        "calls": [
            {"attempt": 1, "status": "no_answer", "scheduled_for": "2026-11-27T17:00:00Z",
             "end_reason": "USER_UNAVAILABLE", "error": ""},
            {"attempt": 2, "status": "canceled", "scheduled_for": "2026-11-27T17:30:00Z",
             "end_reason": "", "error": "User disabled calls."},
        ],
    }  # fmt: skip
    assert "no-cache" in response["Cache-Control"]


def test_get_of_an_unknown_user_is_a_json_404(client):
    response = client.get("/api/users/nobody", **TOKEN)
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "no user with external_id 'nobody'"}


def test_get_of_a_user_who_is_not_called_has_no_next_call(client, make_user):
    make_user(external_id="off", call_enabled=False)
    body = client.get("/api/users/off", **TOKEN).json()
    assert body["user"]["next_call"] is None and body["today"]["calls"] == []


# --- Authentication, methods ----------------------------------------------------------------


def test_the_users_api_needs_an_operator(client, make_user):
    def send(method, path, **extra):
        if method == "get":
            return client.get(path, **extra)
        return getattr(client, method)(path, data="{}", content_type="application/json", **extra)

    for method, path in (("get", "/api/users/x"), ("put", "/api/users/x"), ("post", "/api/users/bulk")):
        assert send(method, path).status_code == 401
        assert send(method, path, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(make_user(is_staff=False))
    assert client.get("/api/users/x").status_code == 403
    assert not User.objects.filter(external_id="x").exists()


def test_staff_may_use_it_with_a_session_and_the_csrf_token(make_user):
    from django.test import Client

    staff = make_user(is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    refused = browser.put("/api/users/crm-42", data=json.dumps(ASHA), content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    browser.get("/admin/")  # sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    response = browser.put(
        "/api/users/crm-42", data=json.dumps(ASHA), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("post", "/api/users/crm-42", "GET, PUT, DELETE"),
        ("patch", "/api/users/crm-42", "GET, PUT, DELETE"),
        ("get", "/api/users/bulk", "POST"),
        ("put", "/api/users/bulk", "POST"),
    ],
)
def test_other_methods_are_a_json_405(client, method, path, allowed):
    response = getattr(client, method)(path, **TOKEN)
    assert response.status_code == 405
    assert response["Allow"] == allowed and response.json()["success"] is False


# --- Profile changes through the API cancel the queued calls ----------------------------------

API_CHANGES = [
    ({"call_enabled": False}, "User disabled calls."),
    ({"phone": None}, "User removed their phone number."),
    ({"call_time": "09:00"}, "User changed call time from 20:30 to 09:00."),
    ({"local_tz": "Europe/London"}, "User changed time zone from Asia/Kolkata to Europe/London."),
]


@pytest.fixture
def queued_user(make_user, make_call):
    user = make_user(
        external_id="crm-42", phone="+919876543210", local_tz="Asia/Kolkata", call_time=time(20, 30)
    )
    # Due a minute ago, not taken by a worker yet (one claimed ahead of its time is released
    # instead: tests/test_on_time.py).
    first = make_call(user=user, attempt=1, status=CallStatus.QUEUED, scheduled_for=DUE)
    retry = make_call(user=user, attempt=2, status=CallStatus.QUEUED)
    ringing = make_call(user=user, attempt=1, status=CallStatus.RINGING, local_date=date(2026, 11, 27))
    return user, (first, retry, ringing)


def call_states(calls):
    return [tuple(Call.objects.values_list("status", "error").get(pk=c.pk)) for c in calls]


@pytest.mark.parametrize(("change", "reason"), API_CHANGES, ids=["disabled", "phone", "call-time", "zone"])
def test_a_schedule_change_through_put_cancels_the_queued_calls(client, queued_user, change, reason):
    user, calls = queued_user
    with time_machine.travel(EVENING, tick=False):
        assert put(client, "crm-42", change).status_code == 200
    assert call_states(calls) == [
        (CallStatus.CANCELED, reason),
        (CallStatus.CANCELED, reason),
        (CallStatus.RINGING, ""),
    ]


@pytest.mark.parametrize(("change", "reason"), API_CHANGES, ids=["disabled", "phone", "call-time", "zone"])
def test_a_schedule_change_through_bulk_cancels_the_queued_calls(client, queued_user, change, reason):
    user, calls = queued_user
    with time_machine.travel(EVENING, tick=False):
        response = bulk(client, {"users": [{"external_id": "crm-42", **change}]})
    assert response.status_code == 200 and response.json()["canceled_calls"] == 2
    assert call_states(calls) == [
        (CallStatus.CANCELED, reason),
        (CallStatus.CANCELED, reason),
        (CallStatus.RINGING, ""),
    ]


def test_a_put_that_keeps_the_schedule_cancels_nothing(client, queued_user):
    user, calls = queued_user
    with time_machine.travel(EVENING, tick=False):
        assert (
            put(client, "crm-42", {"name": "Renamed", "max_retries": 0, "call_time": "20:30:00"}).status_code
            == 200
        )
    assert [state[0] for state in call_states(calls)] == [
        CallStatus.QUEUED,
        CallStatus.QUEUED,
        CallStatus.RINGING,
    ]


# --- Bulk -------------------------------------------------------------------------------------


def people(count, *, start=0, **fields):
    return [
        {
            "external_id": f"crm-{n}",
            "phone": f"+9198760{n:05d}",
            "name": f"Person {n}",
            "local_tz": ("Asia/Kolkata", "America/New_York", "Australia/Lord_Howe")[n % 3],
            "call_time": f"{8 + n % 12:02d}:{n % 60:02d}",
            **fields,
        }
        for n in range(start, start + count)
    ]


def test_bulk_creates_and_updates_in_one_request(client, make_user):
    make_user(external_id="crm-1", phone="+919876000001", call_time=time(7, 0))
    response = bulk(client, {"users": people(3)})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"]) == (2, 1, 0)
    assert body["results"] == [
        {"external_id": "crm-0", "result": "created"},
        {"external_id": "crm-1", "result": "updated"},
        {"external_id": "crm-2", "result": "created"},
    ]
    for user in User.objects.filter(external_id__startswith="crm-"):
        # The same next call as saving the user one by one would give.
        assert user.next_call_at == user.compute_next_call_at() is not None
        assert user.username == f"ext-{user.external_id}" or user.external_id == "crm-1"


def test_the_same_bulk_twice_changes_nothing_the_second_time(client):
    assert bulk(client, {"users": people(20)}).status_code == 200
    before = stored()
    with CaptureQueriesContext(connection) as queries:
        again = bulk(client, {"users": people(20)})
    assert again.json()["unchanged"] == 20
    assert stored() == before
    assert not [q for q in queries if q["sql"].startswith(("UPDATE", "INSERT"))]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's inserts are batched by its parameter limit"
)
def test_bulk_takes_a_few_queries_whatever_the_number_of_users(client, make_user, make_call):
    def queries_for(users):
        from calls.policy import policy_cache_clear

        policy_cache_clear()  # each measure reads the call policy once, as a new process would
        with CaptureQueriesContext(connection) as queries:
            assert bulk(client, {"users": users}).status_code == 200
        return len(queries)

    small = queries_for(people(5))
    large = queries_for(people(200, start=100))
    assert large == small
    # Updates with schedule changes (and calls to cancel) too.
    for user in User.objects.filter(external_id__in=["crm-100", "crm-101"]):
        make_call(user=user, status=CallStatus.QUEUED)
    changed = queries_for(people(200, start=100, call_time="06:00"))
    assert changed <= small + 5  # one of them reads the changed users' skipped days (users.calendar)


def test_bulk_takes_up_to_a_thousand_users(client):
    too_many = bulk(client, {"users": people(1001)})
    assert too_many.status_code == 400 and "at most 1,000" in too_many.json()["error"]
    assert not User.objects.exists()
    assert bulk(client, {"users": people(1000)}).json()["created"] == 1000


def test_an_invalid_row_writes_nothing_and_the_400_lists_each_bad_row_by_index(client, make_user):
    other = make_user(external_id="other", phone="+919876000007")
    users = people(6)
    users[1]["phone"] = "12345"
    users[1]["call_time"] = "noon"
    users[3]["local_tz"] = "Mars/Olympus"
    users[4]["phone"] = users[0]["phone"]  # twice in the request
    users[5]["external_id"] = "crm-2"  # twice in the request
    users.append({"external_id": "crm-6", "phone": "+91 98760 00007"})  # the other user's
    users.append({"phone": "+919876000099"})  # no id
    users.append("crm-9")
    before = stored()
    response = bulk(client, {"users": users})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "7 of 9 users are invalid; nothing was written"
    errors = body["errors"]
    assert sorted(errors, key=int) == ["1", "3", "4", "5", "6", "7", "8"]
    assert set(errors["1"]) == {"phone", "call_time"} and "12345" in errors["1"]["phone"]
    assert set(errors["3"]) == {"local_tz"}
    assert errors["4"] == {"phone": "The same phone number is given for user 0."}
    assert errors["5"] == {"external_id": "The same external id is given for user 2."}
    assert errors["6"] == {
        "phone": f"Another user already has this phone number: user {other.pk} (external_id 'other')."
    }
    assert errors["7"] == {"external_id": "This field is required."}
    assert errors["8"] == {"user": "must be a JSON object"}
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"people": []}, 'one key, "users"'),
        ({"users": [], "dry_run": True}, 'one key, "users"'),
        ({"users": {"crm-1": {}}}, "must be a list"),
        ([], 'one key, "users"'),
    ],
)
def test_a_bulk_body_of_the_wrong_shape_is_a_400(client, body, message):
    response = bulk(client, body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_a_bulk_body_over_its_limit_is_a_413(client):
    response = bulk(client, {"users": [{"external_id": "x", "name": "y" * (2 * 1024 * 1024)}]})
    assert response.status_code == 413


def test_a_bulk_that_loses_a_race_for_an_id_or_phone_is_a_409_and_writes_nothing(client):
    real_write = upsert.users_write

    def write_then_conflict(**kwargs):
        real_write(**kwargs)
        raise IntegrityError("duplicate key value violates unique constraint")

    with mock.patch.object(upsert, "users_write", side_effect=write_then_conflict):
        response = bulk(client, {"users": people(3)})
    assert response.status_code == 409
    assert not User.objects.exists()


def test_bulk_cancels_each_changed_users_queued_calls_with_its_own_reason(client, make_user, make_call):
    users = [make_user(external_id=f"crm-{n}", call_time=time(20, 30)) for n in range(3)]
    calls = [make_call(user=user, status=CallStatus.QUEUED, scheduled_for=DUE) for user in users]
    with time_machine.travel(EVENING, tick=False), CaptureQueriesContext(connection) as queries:
        response = bulk(
            client,
            {
                "users": [
                    {"external_id": "crm-0", "call_enabled": False},
                    {"external_id": "crm-1", "call_time": "21:00"},
                    {"external_id": "crm-2", "name": "Renamed"},
                ]
            },
        )
    assert response.json()["canceled_calls"] == 2
    assert call_states(calls) == [
        (CallStatus.CANCELED, "User disabled calls."),
        (CallStatus.CANCELED, "User changed call time from 20:30 to 21:00."),
        (CallStatus.QUEUED, ""),
    ]
    if connection.vendor == "postgresql":
        assert len([q for q in queries if q["sql"].startswith('UPDATE "calls_call"')]) == 1


# --- One form, two ways to run it ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"external_id": "crm-1", "phone": "+91 98765 43210", "call_time": "9:05", "call_enabled": "yes"},
        {"external_id": "crm-1", "phone": "", "max_retries": "", "retry_delay_minutes": "30", "name": " A "},
        {"external_id": "crm 1", "phone": "98765", "local_tz": "Mars/Olympus", "call_time": "24:00"},
        {"external_id": "crm-1", "call_time": "20:30:61", "call_enabled": "ture", "max_retries": "2.5"},
        {"external_id": "", "local_tz": "", "call_time": ""},
    ],
)
def test_clean_row_gives_what_the_form_gives(data):
    from users.forms import UserProfileForm

    form = UserProfileForm(data, given=data.keys())
    expected = (form.cleaned_data, {}) if form.is_valid() else ({}, form.error_dict())
    assert UserProfileForm.clean_row(data, given=data.keys()) == expected
