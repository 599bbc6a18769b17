"""Bad schedule values are refused with a clear message: in full_clean() and in every admin form."""

import re
from datetime import UTC, datetime, time

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import strip_tags

from users.models import User

pytestmark = pytest.mark.django_db

MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)

# (field, bad value, what the operator is told)
BAD_VALUES = [
    ("local_tz", "Mars/Olympus", "Mars/Olympus is not an IANA time zone"),
    ("call_time", "25:00", "Enter a time between 00:00 and 23:59, such as 20:30."),
    # The form's message and the model's (E.164 only) both start so.
    ("phone", "98765", "98765 is not a valid phone number"),
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


def text_errors(response, field) -> list[str]:
    """The field's errors as an operator reads them (without the links in them)."""
    return [strip_tags(error) for error in field_errors(response, field)]


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
            reverse("admin:users_user_add"), add_form_data(name=username.title(), phone="")
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
    assert User.objects.filter(username="new-comer").exists()


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=BAD_IDS)
def test_the_add_form_shows_the_error_and_saves_nothing(admin_client, field, value, message):
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(**{field: value}))
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert message in response.content.decode().replace("&quot;", '"')
    assert not User.objects.filter(username="new-comer").exists()


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
    assert formset.forms[0].errors["call_time"] == ["Enter a time between 00:00 and 23:59, such as 20:30."]
    assert "Enter a time between 00:00 and 23:59, such as 20:30." in response.content.decode()
    assert User.objects.values().get(pk=user.pk) == before


def test_a_phone_another_user_has_is_refused_naming_that_user(admin_client, make_user):
    owner = make_user(phone="+919876543210", name="Asha Rao")
    with pytest.raises(ValidationError) as refused:
        valid_user().full_clean()  # valid_user's phone is +919876543210 too
    assert refused.value.message_dict["phone"] == ["User with this Phone already exists."]
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone="+919876543210"))
    assert response.status_code == 200
    owner_url = reverse("admin:users_user_change", args=[owner.pk])
    assert text_errors(response, "phone") == [f"This phone number belongs to Asha Rao (user {owner.pk})."]
    assert f'belongs to <a href="{owner_url}">Asha Rao</a> (user {owner.pk})' in response.content.decode()
    assert not User.objects.filter(username="new-comer").exists()

    # Saving the owner's own page with their own number is no conflict.
    response = admin_client.post(owner_url, change_form_data(owner))
    assert response.status_code == 302, field_errors(response, "phone")


# --- Phones as people type them -------------------------------------------------------------

# (typed, stored): what a person pastes from a contact card is read whole and stored as E.164.
TYPED_PHONES = [
    ("+49 30 1234 56789", "+4930123456789"),
    ("+1 (312) 555-0147", "+13125550147"),
    ("+91 98765-43210", "+919876543210"),
    ("+44 (0)20 7946 0958", "+442079460958"),
    ("+33 1.23.45.67.89", "+33123456789"),
    ("+919876543210", "+919876543210"),
]
# Refused, with an error quoting exactly what was typed, never stored as some other number.
UNTYPABLE_PHONES = [
    "+1 (312) 555-014",  # what a maxlength=16 input made of the number above: one digit short
    "+49 30 1234 56789 ext. 12",  # an extension: calling without it reaches someone else
    "+1 800 FLOWERS",  # letters: phonenumbers would dial them as a keypad
    "0049 30 1234 56789",  # no "+": which country's number is it?
    "919876543210",
]


def phone_input(html: str) -> str:
    [tag] = re.findall(r"<input[^>]*\bname=\"phone\"[^>]*>", html)
    return tag


def test_the_phone_inputs_never_cut_what_is_pasted(admin_client, make_user):
    pages = [reverse("admin:users_user_add"), reverse("admin:users_user_change", args=[make_user().pk])]
    for page in pages:
        tag = phone_input(admin_client.get(page).content.decode())
        # A browser silently truncates a paste at maxlength; the input has none (so it
        # takes at least 32 characters), and the server reads what is typed whole.
        maxlength = re.search(r'maxlength="(\d+)"', tag)
        assert maxlength is None or int(maxlength[1]) >= 32, tag
        assert 'inputmode="tel"' in tag


@pytest.mark.parametrize(("typed", "stored"), TYPED_PHONES)
def test_the_add_form_stores_a_formatted_phone_as_e164(admin_client, typed, stored):
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone=typed))
    assert response.status_code == 302, field_errors(response, "phone")
    assert User.objects.get(username="new-comer").phone == stored


@pytest.mark.parametrize(("typed", "stored"), TYPED_PHONES)
def test_the_change_form_stores_a_formatted_phone_as_e164(admin_client, make_user, typed, stored):
    user = make_user(phone="+14155550123")
    response = admin_client.post(
        reverse("admin:users_user_change", args=[user.pk]), change_form_data(user, phone=typed)
    )
    assert response.status_code == 302, field_errors(response, "phone")
    user.refresh_from_db()
    assert user.phone == stored


@pytest.mark.parametrize("typed", UNTYPABLE_PHONES)
def test_a_phone_that_is_not_valid_is_refused_quoting_what_was_typed(admin_client, make_user, typed):
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone=typed))
    assert response.status_code == 200
    [error] = field_errors(response, "phone")
    assert error.startswith(f"{typed} is not a valid phone number: write it with + and its country code")
    assert not User.objects.filter(username="new-comer").exists()

    user = make_user(phone="+14155550123")
    response = admin_client.post(
        reverse("admin:users_user_change", args=[user.pk]), change_form_data(user, phone=typed)
    )
    assert field_errors(response, "phone") == [error]
    user.refresh_from_db()
    assert user.phone == "+14155550123"


def test_a_formatted_phone_another_user_has_is_refused_as_theirs(admin_client, make_user):
    make_user(phone="+919876543210")
    owner = User.objects.get(phone="+919876543210")
    response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone="+91 98765 43210"))
    assert text_errors(response, "phone") == [f"This phone number belongs to {owner} (user {owner.pk})."]


# --- External id and per-user retry settings ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("external_id", "has space", "is not a valid external id"),
        ("external_id", "x" * 129, "at most 128 characters"),
        ("external_id", "bulk", "cannot be an external id"),
        ("max_retries", "11", "less than or equal to 10"),
        ("retry_delay_minutes", "0", "greater than or equal to 1"),
        ("retry_delay_minutes", "1441", "less than or equal to 1440"),
    ],
)
def test_the_change_form_refuses_a_bad_external_id_or_retry_setting(
    admin_client, make_user, field, value, message
):
    user = make_user()
    before = User.objects.values().get(pk=user.pk)
    response = admin_client.post(
        reverse("admin:users_user_change", args=[user.pk]), change_form_data(user, **{field: value})
    )
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field)), field_errors(response, field)
    assert User.objects.values().get(pk=user.pk) == before


def test_the_change_form_stores_the_external_id_and_retry_settings_and_blank_as_null(admin_client, make_user):
    user, other = make_user(), make_user()
    url = reverse("admin:users_user_change", args=[user.pk])
    data = change_form_data(user, external_id="crm:42", max_retries="0", retry_delay_minutes="45")
    assert admin_client.post(url, data).status_code == 302
    user.refresh_from_db()
    assert (user.external_id, user.max_retries, user.retry_delay_minutes) == ("crm:42", 0, 45)
    # Blank: no external id (NULL, which many users may share) and the policy's retries.
    for who in (user, other):
        who.refresh_from_db()
        data = change_form_data(who, external_id="", max_retries="", retry_delay_minutes="")
        assert admin_client.post(reverse("admin:users_user_change", args=[who.pk]), data).status_code == 302
    assert list(
        User.objects.filter(pk__in=[user.pk, other.pk]).values_list("external_id", "max_retries")
    ) == [
        (None, None),
        (None, None),
    ]
