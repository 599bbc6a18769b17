"""GET /api/capacity: the capacity forecast for operators, busiest slots first."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
import time_machine
from django.test import Client

from tests.test_queue_api import TOKEN, bearer

URL = "/api/capacity"
NOW = datetime(2026, 6, 15, 9, 50, tzinfo=UTC)


@pytest.fixture
def at_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def users_at(make_user):
    def make(n: int, hour: int, minute: int, **fields) -> None:
        for _ in range(n):
            make_user(local_tz="UTC", call_time=time(hour, minute), **fields)

    return make


@pytest.fixture
def capped(settings):
    """Vapi with 2 live calls, a minute a call, a 15-minute window: 30 calls per window."""
    settings.CALL_PROVIDER = "vapi"
    settings.PROVIDER_MAX_LIVE_CALLS = {"callkaro": 0, "vapi": 2, "retell": 0, "simulator": 0}
    settings.PROVIDER_MAX_CALLS_PER_SECOND = dict.fromkeys(settings.CALL_PROVIDERS, 0)
    settings.CALL_AVERAGE_DURATION_SECONDS = 60
    settings.CALL_TIME_WINDOW_MINUTES = 15
    return settings


# --- Authentication, as the other operator endpoints ----------------------------------------


def test_anonymous_callers_get_401(client, db):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_logged_in_users_who_are_not_staff_get_403(client, make_user):
    client.force_login(make_user(is_staff=False))
    response = client.get(URL)
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "staff access required"}


def test_a_wrong_token_is_403(client, db):
    response = client.get(URL, **bearer("nope"))
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "invalid API token"}


def test_staff_sessions_and_the_token_are_let_in(client, make_user, db):
    assert client.get(URL, **bearer(TOKEN)).status_code == 200
    staff = Client()
    staff.force_login(make_user(is_staff=True))
    response = staff.get(URL)
    assert response.status_code == 200
    assert response.json()["success"] is True


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_are_405(method, client, db):
    response = getattr(client, method)(URL, **bearer(TOKEN))
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {"success": False, "error": "method not allowed; use GET"}


# --- The answer ---------------------------------------------------------------------------


@pytest.mark.usefixtures("at_now")
def test_the_busiest_slots_come_first_and_empty_ones_are_left_out(client, users_at, capped):
    users_at(40, 10, 10)  # 10:00 slot: 30 fit, 10 missed
    users_at(20, 12, 10)  # 12:00: 20 due, nothing missed
    users_at(45, 14, 5)  # 14:00: 15 missed
    users_at(20, 16, 10)  # 16:00: as many due as 12:00, later
    users_at(5, 18, 0, call_enabled=False)  # nobody due at 18:00

    response = client.get(URL, **bearer(TOKEN))

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json() == {
        "success": True,
        "provider": "vapi",
        "max_live_calls": 2,
        "max_calls_per_second": None,
        "average_call_seconds": 60.0,
        "window_minutes": 15.0,
        "paused": False,
        "slots": [
            {"start": "2026-06-15T14:00:00Z", "due": 45, "capacity": 30, "will_miss": 15, "skipped": 0},
            {"start": "2026-06-15T10:00:00Z", "due": 40, "capacity": 30, "will_miss": 10, "skipped": 0},
            {"start": "2026-06-15T12:00:00Z", "due": 20, "capacity": 30, "will_miss": 0, "skipped": 0},
            {"start": "2026-06-15T16:00:00Z", "due": 20, "capacity": 30, "will_miss": 0, "skipped": 0},
        ],
    }


@pytest.mark.usefixtures("at_now")
def test_without_a_cap_capacity_is_null(client, users_at, capped):
    capped.PROVIDER_MAX_LIVE_CALLS = dict.fromkeys(capped.CALL_PROVIDERS, 0)
    users_at(3, 10, 10)

    body = client.get(URL, **bearer(TOKEN)).json()

    assert body["max_live_calls"] is None
    assert body["slots"] == [
        {"start": "2026-06-15T10:00:00Z", "due": 3, "capacity": None, "will_miss": 0, "skipped": 0}
    ]


@pytest.mark.usefixtures("at_now")
def test_nobody_due_is_an_empty_list(client, db, capped):
    body = client.get(URL, **bearer(TOKEN)).json()
    assert body["slots"] == []
    assert body["provider"] == "vapi"
