"""Profile changes take effect at once (issue 10): when a user disables calls, loses the
phone, or changes call time or time zone, the calls queued for the old schedule are
canceled in the same transaction, saying why, by whichever path the user was changed.

The users API and the CSV import are covered in tests/test_users_api.py and
tests/test_users_import.py; here: the admin (change form, list_editable, bulk action) and
save() itself.
"""

from datetime import UTC, datetime, time, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls.models import Call, CallStatus
from events.endpoints import endpoints_want
from events.models import EventType
from notifications.wanted import notifications_wanted
from tests.test_admin import list_editable_post
from tests.test_user_validation import change_form_data
from users import services
from users.models import User

pytestmark = pytest.mark.django_db

# 19:00 IST on 2026-11-28: the 20:30 slot's first attempt is claimed and queued, an earlier
# call of the day is in progress, a retry waits for its time.
EVENING = datetime(2026, 11, 28, 13, 30, tzinfo=UTC)
USERS_URL = reverse("admin:users_user_changelist")


@pytest.fixture
def queued_day(make_user, make_call):
    """A user with a queued first attempt, a queued retry, and calls that are past queueing."""
    with time_machine.travel(EVENING, tick=False):
        user = make_user(phone="+919876543210", local_tz="Asia/Kolkata", call_time=time(20, 30))
        other = make_user()
        calls = {
            # Due a minute ago, not taken by a worker yet. (One claimed ahead of its time is
            # released instead: tests/test_on_time.py.)
            "first": make_call(
                user=user, attempt=1, status=CallStatus.QUEUED, scheduled_for=EVENING - timedelta(minutes=1)
            ),
            "retry": make_call(user=user, attempt=2, status=CallStatus.QUEUED),
            "ringing": make_call(user=user, attempt=1, status=CallStatus.RINGING, local_date="2026-11-27"),
            "done": make_call(user=user, attempt=2, status=CallStatus.COMPLETED, local_date="2026-11-27"),
            "other": make_call(user=other, attempt=1, status=CallStatus.QUEUED),
        }
    return user, calls


def states(calls):
    return {
        name: tuple(Call.objects.values_list("status", "error").get(pk=c.pk)) for name, c in calls.items()
    }


def assert_canceled(calls, reason):
    assert states(calls) == {
        "first": (CallStatus.CANCELED, reason),
        "retry": (CallStatus.CANCELED, reason),
        "ringing": (CallStatus.RINGING, ""),
        "done": (CallStatus.COMPLETED, ""),
        "other": (CallStatus.QUEUED, ""),
    }
    for name in ("first", "retry"):
        call = Call.objects.get(pk=calls[name].pk)
        assert call.completed_at == call.last_status_at is not None


def assert_untouched(calls):
    assert {name: state[0] for name, state in states(calls).items()} == {
        "first": CallStatus.QUEUED,
        "retry": CallStatus.QUEUED,
        "ringing": CallStatus.RINGING,
        "done": CallStatus.COMPLETED,
        "other": CallStatus.QUEUED,
    }


CHANGES = [
    ({"call_enabled": False}, "User disabled calls."),
    ({"phone": ""}, "User removed their phone number."),
    ({"call_time": "09:00"}, "User changed call time from 20:30 to 09:00."),
    ({"call_time": "21:15:30"}, "User changed call time from 20:30 to 21:15:30."),
    ({"local_tz": "Europe/London"}, "User changed time zone from Asia/Kolkata to Europe/London."),
    (
        {"call_enabled": False, "call_time": "09:00"},
        "User disabled calls. User changed call time from 20:30 to 09:00.",
    ),
]
CHANGE_IDS = ["disabled", "phone-removed", "call-time", "call-time-seconds", "time-zone", "two-at-once"]


def change_form_post(user, change):
    data = change_form_data(user)
    for field, value in change.items():
        if field == "call_enabled":
            data.pop("call_enabled", None)
        else:
            data[field] = value
    return data


# --- The admin's change form --------------------------------------------------------------


@pytest.mark.parametrize(("change", "reason"), CHANGES, ids=CHANGE_IDS)
def test_a_schedule_change_in_the_admin_cancels_the_queued_calls_saying_why(
    admin_client, queued_day, change, reason
):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        response = admin_client.post(
            reverse("admin:users_user_change", args=[user.pk]), change_form_post(user, change)
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert_canceled(calls, reason)


@pytest.mark.parametrize(
    "change",
    [{"name": "Renamed"}, {"phone": "+919876500000"}, {"external_id": "crm-42"}, {"max_retries": "1"}],
    ids=["name", "another-phone", "external-id", "max-retries"],
)
def test_changes_that_keep_the_schedule_cancel_nothing(admin_client, queued_day, change):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        response = admin_client.post(
            reverse("admin:users_user_change", args=[user.pk]), change_form_post(user, change)
        )
    assert response.status_code == 302
    assert_untouched(calls)


def test_turning_calls_back_on_cancels_nothing(admin_client, make_user, make_call):
    with time_machine.travel(EVENING, tick=False):
        user = make_user(call_enabled=False)
        # Left queued by a raw UPDATE, say: the worker's own check cancels it when it takes it.
        call = make_call(user=user, status=CallStatus.QUEUED)
        data = change_form_data(user, call_enabled="on")
        assert admin_client.post(reverse("admin:users_user_change", args=[user.pk]), data).status_code == 302
    assert Call.objects.get(pk=call.pk).status == CallStatus.QUEUED


# --- The changelist: list_editable and the bulk action ------------------------------------


def test_turning_calls_off_in_the_list_cancels_the_queued_calls(admin_client, queued_day):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        response = admin_client.post(
            USERS_URL, list_editable_post(user, call_enabled=False, call_time="20:30:00")
        )
    assert response.status_code == 302
    assert_canceled(calls, "User disabled calls.")


def test_changing_the_call_time_in_the_list_cancels_the_queued_calls(admin_client, queued_day):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        response = admin_client.post(
            USERS_URL, list_editable_post(user, call_enabled=True, call_time="09:00")
        )
    assert response.status_code == 302
    assert_canceled(calls, "User changed call time from 20:30 to 09:00.")


def test_the_disable_calls_action_cancels_the_queued_calls(admin_client, queued_day):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        response = admin_client.post(USERS_URL, {"action": "disable_calls", "_selected_action": [user.pk]})
    assert response.status_code == 302
    assert_canceled(calls, "User disabled calls.")


def test_a_canceled_call_shows_its_reason_in_the_admin(admin_client, queued_day):
    user, calls = queued_day
    with time_machine.travel(EVENING, tick=False):
        admin_client.post(USERS_URL, {"action": "disable_calls", "_selected_action": [user.pk]})
        page = admin_client.get(reverse("admin:calls_call_change", args=[calls["first"].pk]))
    assert "User disabled calls." in page.content.decode()


# --- user_save, the one-user write ------------------------------------------------------------------------


def test_the_cancellation_is_one_update_in_the_transaction_of_the_change(queued_day):
    user, calls = queued_day
    user.call_time = time(9, 0)
    with time_machine.travel(EVENING, tick=False), CaptureQueriesContext(connection) as queries:
        services.user_save(user=user)
    call_updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "calls_call"')]
    assert len(call_updates) == 1
    assert_canceled(calls, "User changed call time from 20:30 to 09:00.")


def test_when_the_cancellation_fails_the_change_is_not_saved_either(queued_day):
    user, calls = queued_day
    user.call_enabled = False
    with (
        time_machine.travel(EVENING, tick=False),
        mock.patch.object(services, "users_cancel_pending_calls", side_effect=RuntimeError("db gone")),
        pytest.raises(RuntimeError),
    ):
        services.user_save(user=user)
    assert User.objects.get(pk=user.pk).call_enabled is True
    assert_untouched(calls)


def test_the_change_is_described_against_the_stored_values_not_a_stale_instance(queued_day):
    user, calls = queued_day
    stale = User.objects.get(pk=user.pk)
    with time_machine.travel(EVENING, tick=False):
        User.objects.filter(pk=user.pk).update(call_time=time(21, 0))  # another process
        stale.call_time = time(9, 0)
        services.user_save(user=stale)
    assert_canceled(calls, "User changed call time from 21:00 to 09:00.")


def test_saving_fields_outside_the_schedule_reads_and_cancels_nothing(queued_day):
    user, calls = queued_day
    user.name = "Renamed"
    with CaptureQueriesContext(connection) as queries:
        services.user_save(user=user, update_fields=["name"])
    assert len(queries) == 1
    assert_untouched(calls)


def test_a_new_user_cancels_nothing_and_reads_no_old_values(make_call, queued_day):
    with time_machine.travel(EVENING, tick=False), CaptureQueriesContext(connection) as queries:
        services.user_save(user=User(username="fresh", phone="+919800000001", call_time=time(9, 0)))
    assert not [q for q in queries if "FOR UPDATE" in q["sql"] or q["sql"].startswith('UPDATE "calls_call"')]
    assert_untouched(queued_day[1])


def test_many_users_are_canceled_in_one_statement_each_with_its_reason(make_user, make_call):
    with time_machine.travel(EVENING, tick=False):
        users = [make_user() for _ in range(3)]
        calls = [make_call(user=u, status=CallStatus.QUEUED) for u in users]
        reasons = {users[0].pk: "User disabled calls.", users[1].pk: "User removed their phone number."}
        assert not endpoints_want(EventType.USER_SCHEDULE_CHANGED)  # no endpoint (the list is read now)
        assert not notifications_wanted()  # nor anyone wanting messages (read now, once a while)
        with CaptureQueriesContext(connection) as queries:
            assert services.users_cancel_pending_calls(reasons=reasons) == 2
    assert len(queries) == 1 or connection.vendor != "postgresql"
    assert [tuple(Call.objects.values_list("status", "error").get(pk=c.pk)) for c in calls] == [
        (CallStatus.CANCELED, "User disabled calls."),
        (CallStatus.CANCELED, "User removed their phone number."),
        (CallStatus.QUEUED, ""),
    ]
