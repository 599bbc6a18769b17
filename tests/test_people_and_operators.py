"""Operators and the people who are called are separate (issue 17, item 10): staff and
superusers are operators, listed on their own admin page, never in the people list, the
users API or the export, and never called."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest
import time_machine
from django.urls import reverse

from calls.claim import users_schedule_unscheduled
from calls.models import Call
from calls.scheduling import calls_schedule_due
from users import selectors
from users.models import Operator, User

pytestmark = pytest.mark.django_db

PEOPLE_URL = reverse("admin:users_user_changelist")
OPERATORS_URL = reverse("admin:users_operator_changelist")
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 in Kolkata
TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}


def listed(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


@pytest.fixture
def staff_with_a_phone(make_user):
    """An operator whose call fields would have them called, were they a person."""
    return make_user(username="desk", is_staff=True, call_enabled=True, call_time=time(20, 30))


def test_the_people_list_shows_people_and_the_operators_list_shows_logins(
    admin_client, admin_user, make_user, staff_with_a_phone
):
    person = make_user(name="Asha Rao")
    people = admin_client.get(PEOPLE_URL)
    assert listed(people) == {person.pk}
    assert "1 user" in people.content.decode()
    operators = admin_client.get(OPERATORS_URL)
    assert listed(operators) == {admin_user.pk, staff_with_a_phone.pk}
    # An operator's page is on the operators' list, not the people's.
    assert admin_client.get(reverse("admin:users_user_change", args=[admin_user.pk])).status_code == 302
    assert admin_client.get(reverse("admin:users_operator_change", args=[admin_user.pk])).status_code == 200


def test_a_persons_page_asks_for_no_permissions_and_an_operators_page_does(admin_client, make_user):
    person = make_user()
    form = admin_client.get(reverse("admin:users_user_change", args=[person.pk])).context["adminform"].form
    assert not {"is_staff", "is_superuser", "groups", "user_permissions"} & set(form.fields)
    operator = make_user(is_staff=True)
    page = admin_client.get(reverse("admin:users_operator_change", args=[operator.pk]))
    assert {"is_staff", "is_superuser", "groups", "password"} <= set(page.context["adminform"].form.fields)


def test_adding_an_operator_makes_a_staff_login_that_is_never_called(admin_client):
    response = admin_client.post(
        reverse("admin:users_operator_add"),
        {
            "username": "night-desk",
            "usable_password": "true",
            "password1": "a-long-Passphrase-42",
            "password2": "a-long-Passphrase-42",
            "name": "Night desk",
            "email": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    operator = User.objects.get(username="night-desk")
    assert operator.is_staff and operator.is_operator and operator.check_password("a-long-Passphrase-42")
    assert (operator.call_enabled, operator.next_call_at) == (False, None)
    assert Operator.objects.filter(pk=operator.pk).exists()


def test_the_tick_never_schedules_or_calls_an_operator(make_user, staff_with_a_phone):
    with time_machine.travel(MORNING, tick=False):
        person = make_user(call_time=time(20, 30))
    assert person.next_call_at == SLOT
    assert staff_with_a_phone.next_call_at is None  # saved: no next call for an operator
    # Even with a next call put there by hand (an old row, a raw UPDATE), the tick and the
    # repair sweep leave them alone.
    User.objects.filter(pk=staff_with_a_phone.pk).update(next_call_at=SLOT)
    with time_machine.travel(SLOT, tick=False):
        calls_schedule_due()
    assert list(Call.objects.values_list("user_id", flat=True)) == [person.pk]
    User.objects.filter(pk=staff_with_a_phone.pk).update(next_call_at=None)
    assert users_schedule_unscheduled(now=MORNING) == 0
    assert User.objects.get(pk=staff_with_a_phone.pk).next_call_at is None


def test_a_person_made_staff_is_no_longer_scheduled(make_user):
    with time_machine.travel(MORNING, tick=False):
        user = make_user()
        assert user.next_call_at == SLOT
        user.is_staff = True
        user.save()
    assert user.next_call_at is None


def test_the_selectors_tell_people_from_operators(make_user, admin_user, staff_with_a_phone):
    person = make_user()
    assert set(selectors.people().values_list("pk", flat=True)) == {person.pk}
    assert set(selectors.operators().values_list("pk", flat=True)) == {admin_user.pk, staff_with_a_phone.pk}


def test_the_users_api_neither_shows_nor_changes_an_operator(client, settings, make_user):
    settings.QUEUE_API_TOKEN = "t" * 40
    operator = make_user(is_staff=True, external_id="ops-1")
    url = reverse("user-detail", args=["ops-1"])
    assert client.get(url, **TOKEN).status_code == 404
    response = client.put(url, json.dumps({"name": "Changed"}), content_type="application/json", **TOKEN)
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "external_id": "This external id belongs to an operator's login, not to a person to call."
    }
    operator.refresh_from_db()
    assert operator.name != "Changed"


def test_the_api_tokens_history_login_is_an_operator():
    from calls.policy_changes import _history_user_id

    token_login = User.objects.get(pk=_history_user_id(None))
    assert token_login.is_operator and not token_login.is_active
    assert not selectors.people().filter(pk=token_login.pk).exists()
