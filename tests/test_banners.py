"""A pause shows on every operator page: who paused, when, and a button to resume (issue 17)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from calls import policy, policy_changes
from calls.models import CallPolicy
from users.models import User

PAUSED_AT = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
TOKEN = "t" * 40
OPERATOR_PAGES = [
    "/admin/",
    "/dashboard/",
    "/admin/calls/call/",
    "/admin/users/user/",
    "/admin/calls/callpolicy/1/change/",
    "/django-rq/",
]


@pytest.fixture(autouse=True)
def fresh_policy(settings):
    settings.QUEUE_API_TOKEN = TOKEN
    policy.policy_cache_clear()
    yield
    policy.policy_cache_clear()


@pytest.fixture
def operator(db):
    return User.objects.create_superuser(
        username="ops", password="x", name="Ops Person", call_enabled=False, phone=""
    )


def pause_by(user) -> None:
    with time_machine.travel(PAUSED_AT, tick=False):
        policy_changes.policy_update(changes={"paused": True}, user_id=user.pk, actor=f"user:{user.pk}")


@pytest.mark.django_db
@pytest.mark.parametrize("path", OPERATOR_PAGES)
def test_a_pause_shows_on_every_operator_page_with_who_and_when(client, operator, path):
    pause_by(operator)
    client.force_login(operator)
    page = client.get(path).content.decode()
    assert 'id="banner-paused"' in page
    assert "Calls are paused" in page and "Paused by Ops Person" in page
    assert "2026-11-28 09:15:00 UTC" in page
    assert reverse("admin:calls_callpolicy_resume") in page and "Resume calls" in page


@pytest.mark.django_db
def test_no_banner_while_calls_run(client, operator):
    pause_by(operator)
    policy_changes.policy_update(changes={"paused": False}, user_id=operator.pk, actor="test")
    client.force_login(operator)
    assert "banner-paused" not in client.get("/admin/").content.decode()
    row = CallPolicy.objects.get(pk=1)
    assert (row.paused_at, row.paused_by) == (None, "")


@pytest.mark.django_db
def test_a_pause_through_the_api_token_says_so(client, operator):
    with time_machine.travel(PAUSED_AT, tick=False):
        response = client.patch(
            "/api/policy",
            data=json.dumps({"paused": True}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        )
    assert response.status_code == 200
    body = response.json()["policy"]
    assert (body["paused_by"], body["paused_at"]) == ("the API token", PAUSED_AT.isoformat())
    client.force_login(operator)
    assert "Paused by the API token" in client.get("/dashboard/").content.decode()


@pytest.mark.django_db
def test_pausing_in_the_policy_form_records_who(client, operator):
    client.force_login(operator)
    url = reverse("admin:calls_callpolicy_change", args=[policy.policy_row().pk])
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["paused"] = "on"
    for name in ("retry_delays_minutes", "retry_statuses"):
        data.pop(name, None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    row = CallPolicy.objects.get(pk=1)
    assert row.paused and row.paused_by == "Ops Person" and row.paused_at is not None


@pytest.mark.django_db
def test_the_resume_button_resumes_and_goes_back(client, operator, django_capture_on_commit_callbacks):
    pause_by(operator)
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("admin:calls_callpolicy_resume"), {"next": "/dashboard/"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert not policy.policy_current().paused
    page = client.get("/dashboard/").content.decode()
    assert "banner-paused" not in page and "Calls resumed" in page


@pytest.mark.django_db
def test_resuming_needs_post_and_the_permission_to_change_the_policy(client, operator):
    pause_by(operator)
    viewer = User.objects.create_user(username="viewer", password="x", is_staff=True, call_enabled=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_callpolicy"))
    client.force_login(viewer)
    page = client.get("/admin/").content.decode()
    assert "Calls are paused" in page and "Resume calls" not in page  # the link, not the button
    assert client.get(reverse("admin:calls_callpolicy_resume")).status_code == 405
    assert client.post(reverse("admin:calls_callpolicy_resume")).status_code == 403
    assert policy.policy_current().paused


@pytest.mark.django_db
def test_the_resume_button_does_not_send_anyone_off_site(client, operator):
    pause_by(operator)
    client.force_login(operator)
    response = client.post(reverse("admin:calls_callpolicy_resume"), {"next": "https://elsewhere.example/"})
    assert response["Location"] == reverse("admin:index")
