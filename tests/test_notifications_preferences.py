"""Per-user notification preferences (issue 19): email, notify_sms and notify_email in the
users API, the CSV import and the admin; off unless turned on."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from users.models import User

pytestmark = pytest.mark.django_db

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


def put(client, external_id, body):
    return client.put(
        f"/api/users/{external_id}", data=json.dumps(body), content_type="application/json", **TOKEN
    )


def test_preferences_are_off_for_a_new_user_and_the_api_shows_them(client):
    assert put(client, "crm-1", {"phone": "+919876543210"}).status_code == 201
    user = client.get("/api/users/crm-1", **TOKEN).json()["user"]
    assert (user["email"], user["notify_sms"], user["notify_email"]) == (None, False, False)


def test_put_sets_the_three_and_get_shows_them(client):
    body = {"phone": "+919876543210", "email": "Asha@Example.com", "notify_sms": True, "notify_email": True}
    response = put(client, "crm-1", body)
    assert response.status_code == 201
    shown = client.get("/api/users/crm-1", **TOKEN).json()["user"]
    assert (shown["email"], shown["notify_sms"], shown["notify_email"]) == ("Asha@Example.com", True, True)
    # Only what is given changes; null removes the address.
    assert put(client, "crm-1", {"notify_sms": False, "email": None}).status_code == 200
    user = User.objects.get(external_id="crm-1")
    assert (user.email, user.notify_sms, user.notify_email) == ("", False, True)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("notify_sms", "yes", "must be true or false"),
        ("notify_email", 1, "must be true or false"),
        ("email", "not-an-address", "Enter a valid email address."),
        ("email", 42, "must be a string or null"),
        ("notify_push", True, "unknown field"),
    ],
)
def test_a_malformed_or_unknown_preference_is_a_400_naming_the_field(client, field, value, message):
    response = put(client, "crm-1", {"phone": "+919876543210", field: value})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == f"invalid user: {field}" and message in body["errors"][field]
    assert not User.objects.filter(external_id="crm-1").exists()


def test_the_csv_import_takes_the_preferences(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = (
        "external_id,phone,email,notify_sms,notify_email\n"
        "crm-1,+919876543210,asha@example.com,yes,false\n"
        "crm-2,+919876543211,,,\n"
    )
    preview = admin_client.post(
        reverse("admin:users_user_import"),
        {"import_file": SimpleUploadedFile("u.csv", text.encode(), content_type="text/csv"), "format": "0"},
    )
    assert preview.status_code == 200
    form = preview.context["confirm_form"]
    done = admin_client.post(reverse("admin:users_user_process_import"), {**form.initial, "format": "0"})
    assert done.status_code == 302
    asha, bilal = User.objects.filter(external_id__in=["crm-1", "crm-2"]).order_by("external_id")
    assert (asha.email, asha.notify_sms, asha.notify_email) == ("asha@example.com", True, False)
    assert (bilal.email, bilal.notify_sms, bilal.notify_email) == ("", False, False)


def test_a_bad_preference_in_the_csv_is_a_row_error(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = "external_id,phone,notify_sms\ncrm-1,+919876543210,maybe\n"
    preview = admin_client.post(
        reverse("admin:users_user_import"),
        {"import_file": SimpleUploadedFile("u.csv", text.encode(), content_type="text/csv"), "format": "0"},
    )
    html = preview.content.decode()
    assert "notify_sms" in html and "Enter true or false." in html
    assert not User.objects.filter(external_id="crm-1").exists()


def test_the_admin_sets_the_preferences(admin_client, make_user):
    user = make_user()
    url = reverse("admin:users_user_change", args=[user.pk])
    page = admin_client.get(url).content.decode()
    assert "SMS when a day is missed" in page and "E-mail when a day is missed" in page
