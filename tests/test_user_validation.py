"""Bad schedule values are refused with a clear message: in full_clean() and in every admin form."""

from datetime import UTC, datetime, time

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from users.models import User

pytestmark = pytest.mark.django_db

MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)

# (field, bad value, what the operator is told)
BAD_VALUES = [
    ("local_tz", "Mars/Olympus", "Mars/Olympus is not an IANA time zone"),
    ("call_time", "25:00", "Enter a valid time."),
    ("phone", "98765", "98765 is not a valid phone number in E.164 format"),
]
# full_clean() parses the time itself and words its error differently from the form field.
MODEL_MESSAGES = {"call_time": "is an invalid time"}
BAD_IDS = [field for field, _, _ in BAD_VALUES]


def valid_user(**fields) -> User:
    user = User(
        username="valid",
        name="Valid User",
        phone="+919876543210",
        local_tz="Asia/Kolkata",
        call_time=time(20, 30),
        **fields,
    )
    user.set_password("a-long-Passphrase-42")
    return user


def add_form_data(**overrides) -> dict:
    return {
        "username": "newcomer",
        "usable_password": "true",
        "password1": "a-long-Passphrase-42",
        "password2": "a-long-Passphrase-42",
        "email": "newcomer@example.com",
        "name": "New Comer",
        "phone": "+919876543210",
        "local_tz": "Asia/Kolkata",
        "call_enabled": "on",
        "call_time": "20:30",
        **overrides,
    }


def change_form_data(user: User, **overrides) -> dict:
    data = {
        "username": user.username,
        "name": user.name,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "phone": user.phone or "",
        "local_tz": user.local_tz,
        "call_time": user.call_time.strftime("%H:%M"),
        "is_active": "on",
        **overrides,
    }
    if user.call_enabled:
        data.setdefault("call_enabled", "on")
    return data


def field_errors(response, field) -> list[str]:
    return list(response.context["adminform"].form.errors.get(field, []))


# --- full_clean() -------------------------------------------------------------------------


def test_a_valid_user_passes_full_clean():
    valid_user().full_clean()


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=BAD_IDS)
def test_full_clean_rejects_a_bad_value_on_its_field(field, value, message):
    user = valid_user()
    setattr(user, field, value)
    with pytest.raises(ValidationError) as excinfo:
        user.full_clean()
    errors = excinfo.value.message_dict
    assert set(errors) == {field}
    assert MODEL_MESSAGES.get(field, message) in " ".join(errors[field])
    assert not User.objects.exists()


def test_a_blank_phone_is_stored_as_null_so_many_users_can_have_none(admin_client):
    for username in ("first", "second"):
        response = admin_client.post(
            reverse("admin:users_user_add"), add_form_data(username=username, phone="")
        )
        assert response.status_code == 302
    assert list(User.objects.filter(username__in=["first", "second"]).values_list("phone", flat=True)) == [
        None,
        None,
    ]


# --- The admin add form -------------------------------------------------------------------


def test_the_add_form_accepts_good_values(admin_client):
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data())
    assert response.status_code == 302
    assert User.objects.filter(username="newcomer").exists()


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=BAD_IDS)
def test_the_add_form_shows_the_error_and_saves_nothing(admin_client, field, value, message):
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(**{field: value}))
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert message in response.content.decode().replace("&quot;", '"')
    assert not User.objects.filter(username="newcomer").exists()


# --- The admin change form ----------------------------------------------------------------


def test_the_change_form_accepts_good_values(admin_client, make_user):
    with time_machine.travel(MORNING, tick=False):
        user = make_user(local_tz="Asia/Kolkata")
        response = admin_client.post(
            reverse("admin:users_user_change", args=[user.pk]),
            change_form_data(user, local_tz="Europe/London", call_time="18:00"),
        )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.local_tz, user.call_time) == ("Europe/London", time(18, 0))
    assert user.next_call_at == datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=BAD_IDS)
def test_the_change_form_shows_the_error_and_saves_nothing(admin_client, make_user, field, value, message):
    with time_machine.travel(MORNING, tick=False):
        user = make_user(phone="+919876543210", local_tz="Asia/Kolkata", call_time=time(20, 30))
    before = User.objects.values().get(pk=user.pk)
    # A second, valid change alongside the bad one must not be saved either.
    data = change_form_data(user, name="Renamed", **{field: value})
    response = admin_client.post(reverse("admin:users_user_change", args=[user.pk]), data)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert User.objects.values().get(pk=user.pk) == before


# --- The changelist's inline editing ------------------------------------------------------


def test_a_bad_call_time_in_the_list_shows_the_error_and_saves_nothing(admin_client, make_user):
    with time_machine.travel(MORNING, tick=False):
        user = make_user(call_time=time(20, 30))
    before = User.objects.values().get(pk=user.pk)
    response = admin_client.post(
        reverse("admin:users_user_changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(user.pk),
            "form-0-call_time": "25:00",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    formset = response.context["cl"].formset
    assert formset.forms[0].errors["call_time"] == ["Enter a valid time."]
    assert "Enter a valid time." in response.content.decode()
    assert User.objects.values().get(pk=user.pk) == before


def test_a_phone_another_user_has_is_refused_with_a_clear_message(admin_client, make_user):
    make_user(phone="+919876543210")
    with pytest.raises(ValidationError) as refused:
        valid_user().full_clean()  # valid_user's phone is +919876543210 too
    assert refused.value.message_dict["phone"] == ["User with this Phone already exists."]
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone="+919876543210"))
    assert response.status_code == 200
    assert "User with this Phone already exists." in response.content.decode()
    assert not User.objects.filter(username="newcomer").exists()
