"""Suspicions from the third review (issue 16), each settled by a test: the CSV import's read
and write, a zone change across the date line, and the bulk API's error report."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.db import OperationalError, connection, connections, transaction

from calls.models import Call
from calls.scheduling import calls_schedule_due
from tests.test_users_import import HEADER, import_csv
from users import services, upsert
from users.models import User

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks between connections: PostgreSQL (CI)"
)


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


# --- The CSV import reads and writes in one transaction ---------------------------------------


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_import_holds_its_rows_locked_from_the_read_to_the_write(admin_client, make_user):
    """Ruled out: the import validates (before_import) and writes (import_data_inner) in
    savepoints of one transaction that import_data opens, and the rows it read stay locked
    until it commits, so no change can slip in between and be overwritten."""
    user = make_user(external_id="crm-42", local_tz="Asia/Kolkata", call_time=time(20, 30))
    seen: dict[str, object] = {}
    writing = threading.Event()
    finish = threading.Event()
    real_write = upsert.users_write

    def write_and_wait(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")
            seen["write"] = cursor.fetchone()[0]
        real_write(**kwargs)
        writing.set()
        finish.wait(10)

    real_read = upsert.users_by_external_id

    def read(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")
            seen["read"] = cursor.fetchone()[0]
        return real_read(*args, **kwargs)

    blocked: list[str] = []

    def other_process() -> None:
        writing.wait(10)
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '300ms'")
                User.objects.filter(pk=user.pk).update(local_tz="Europe/London")
        except OperationalError as exc:
            blocked.append(type(exc).__name__)
        finally:
            finish.set()
            connections.close_all()

    with time_machine.travel(MORNING, tick=True):
        services_patch = pytest.MonkeyPatch()
        services_patch.setattr(upsert, "users_write", write_and_wait)
        services_patch.setattr(upsert, "users_by_external_id", read)
        other = threading.Thread(target=other_process)
        other.start()
        try:
            import_csv(admin_client, f"{HEADER}\ncrm-42,Asha,+919876543210,Asia/Kolkata,21:00,true,,\n")
        finally:
            services_patch.undo()
            other.join()
    assert seen["read"] == seen["write"]
    assert blocked, "another process changed the row between the import's read and its write"
    user.refresh_from_db()
    assert (user.call_time, user.local_tz) == (time(21, 0), "Asia/Kolkata")


# --- A zone change across the date line ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["admin", "api"])
def test_moving_from_kiritimati_to_pago_pago_right_after_a_call_brings_no_second_call_within_hours(
    client, make_user, how
):
    """Ruled out: Pacific/Kiritimati is UTC+14 and Pacific/Pago_Pago UTC-11, so right after a
    20:30 call in Kiritimati it is the evening before in Pago Pago, with its own 20:30 an
    hour away. The local date already called (the old zone's) is skipped in the new one,
    so the next call is more than a day later, never within hours."""
    called_at = datetime(2026, 11, 28, 6, 30, tzinfo=UTC)  # 20:30 LINT on 2026-11-28
    with time_machine.travel(called_at - timedelta(hours=1), tick=False):
        user = make_user(external_id="crm-1", local_tz="Pacific/Kiritimati", call_time=time(20, 30))
    assert calls_schedule_due(now=called_at + timedelta(seconds=30)).claimed == 1
    moved_at = called_at + timedelta(minutes=20)  # 19:50 SST on 2026-11-27 in Pago Pago
    with time_machine.travel(moved_at, tick=False):
        if how == "admin":
            user.local_tz = "Pacific/Pago_Pago"
            services.user_save(user=user)
        else:
            answer = client.put(
                "/api/users/crm-1",
                data=json.dumps({"local_tz": "Pacific/Pago_Pago"}),
                content_type="application/json",
                **TOKEN,
            )
            assert answer.status_code == 200
    # A tick every 5 minutes for the next 50 hours.
    for step in range(1, 50 * 12 + 1):
        calls_schedule_due(now=moved_at + timedelta(minutes=5 * step))
    first_attempts = list(
        Call.objects.filter(user=user, attempt=1)
        .order_by("scheduled_for")
        .values_list("scheduled_for", "local_date")
    )
    assert first_attempts[0] == (called_at, date(2026, 11, 28))
    gaps = [
        later - earlier for (earlier, _), (later, _) in zip(first_attempts, first_attempts[1:], strict=False)
    ]
    assert all(gap > timedelta(hours=20) for gap in gaps), first_attempts
    # The next call is the new zone's first local date not called yet: 2026-11-29 20:30 SST
    # (its 2026-11-28 shares its date with the call just made, which the day's unique key
    # allows once).
    assert first_attempts[1:] == [(datetime(2026, 11, 30, 7, 30, tzinfo=UTC), date(2026, 11, 29))]


# --- The bulk API lists every problem of every row --------------------------------------------


@pytest.mark.django_db
def test_a_rows_field_errors_are_kept_beside_other_rows_conflicts(client, make_user):
    """Ruled out: a row with field errors is left out of the conflict checks, so they can
    never replace its errors; and the answer lists both kinds, each by its row."""
    make_user(external_id="crm-held", phone="+919876543210")
    answer = client.post(
        "/api/users/bulk",
        data=json.dumps(
            {
                "users": [
                    {"external_id": "crm-1", "call_time": "25:00", "phone": "+919876543210"},
                    {"external_id": "crm-2", "phone": "+919876543210"},
                    {"external_id": "crm-2"},
                ]
            }
        ),
        content_type="application/json",
        **TOKEN,
    )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert set(errors["0"]) == {"call_time"}
    assert "phone" in errors["1"] and "external_id" in errors["2"]
    assert not User.objects.filter(external_id__in=["crm-1", "crm-2"]).exists()
