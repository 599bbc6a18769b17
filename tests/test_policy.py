"""The call policy: one row, edited in the admin and through /api/policy (issue 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from calls import forms, policy, policy_changes
from calls.models import CallPolicy

TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}


@pytest.fixture(autouse=True)
def fresh_policy(settings):
    settings.QUEUE_API_TOKEN = "t" * 40
    policy.policy_cache_clear()
    yield
    policy.policy_cache_clear()


def patch(client, body, **extra):
    return client.patch(
        "/api/policy", data=json.dumps(body), content_type="application/json", **{**TOKEN, **extra}
    )


@pytest.mark.django_db
def test_a_blank_policy_means_the_settings_apply(client, settings):
    response = client.get("/api/policy", **TOKEN)
    assert response.status_code == 200
    body = response.json()["policy"]
    assert body["paused"] is False and body["max_retries"] is None and body["calling_hours"] is None
    assert body["effective"]["max_retries"] == settings.CALL_MAX_RETRIES
    assert body["effective"]["retry_delays_minutes"] == [settings.CALL_RETRY_DELAY_SECONDS / 60]
    # Voicemail too: voicemail_retry defaults to yes.
    assert body["effective"]["retry_statuses"] == ["busy", "failed", "no_answer", "voicemail"]
    assert body["effective"]["window_minutes"] == settings.CALL_TIME_WINDOW_MINUTES


@pytest.mark.django_db
def test_patch_changes_only_what_it_names_and_the_rules_in_force_follow(client):
    response = patch(
        client,
        {
            "calling_hours": {"start": "09:00", "end": "21:00"},
            "retry_delays_minutes": [30, 60],
            "max_retries": 3,
        },
    )
    assert response.status_code == 200, response.json()
    effective = policy.policy_current()
    assert effective.calling_hours == (time(9), time(21))
    assert effective.max_retries == 3
    assert [effective.retry_delay_seconds(retry_number=n) for n in (1, 2, 3)] == [1800, 3600, 3600]
    assert patch(client, {"paused": True}).json()["policy"]["max_retries"] == 3  # untouched
    assert policy.policy_current().paused


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"pause": True}, "pause"),
        ({"paused": "yes"}, "paused"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 99}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"retry_delays_minutes": [30, 0]}, "retry_delays_minutes"),
        ({"retry_delays_minutes": "30"}, "retry_delays_minutes"),
        ({"retry_statuses": ["completed"]}, "retry_statuses"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"calling_hours": {"start": "09:00"}}, "calling_hours"),
        ({"calling_hours": {"start": "25:00", "end": "21:00"}}, "calling_hours"),
        ({"calling_hours": {"start": "09:00", "end": "09:00"}}, "calling_hours"),
    ],
)
def test_an_unknown_key_or_a_bad_value_is_a_400_naming_it_and_nothing_changes(client, body, key):
    before = policy.policy_as_dict()
    response = patch(client, {"max_retries": 1, **body} if key != "max_retries" else body)
    assert response.status_code == 400
    assert key in response.json()["errors"] and key in response.json()["error"]
    assert policy.policy_as_dict() == before


@pytest.mark.django_db
def test_the_policy_api_needs_an_operator(client, make_user):
    assert client.get("/api/policy").status_code == 401
    assert client.patch("/api/policy", data="{}", content_type="application/json").status_code == 401
    assert client.get("/api/policy", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.django_db
def test_a_change_through_the_api_by_staff_is_in_the_admin_history(admin_client, admin_user):
    response = admin_client.patch(
        "/api/policy",
        data=json.dumps({"paused": True}),
        content_type="application/json",
    )
    assert response.status_code == 200
    entry = LogEntry.objects.get(object_id="1")
    assert entry.user == admin_user and entry.get_change_message() == "Changed paused."


@pytest.mark.django_db
def test_the_admin_policy_page_edits_the_one_row_and_records_who_changed_it(admin_client, admin_user):
    response = admin_client.get(reverse("admin:calls_callpolicy_changelist"))
    assert response.status_code == 302 and response.url == reverse("admin:calls_callpolicy_change", args=[1])
    page = admin_client.get(response.url)
    assert page.status_code == 200 and "Calling hours" in page.text
    form = {
        "paused": "on",
        "calling_hours_start": "09:00",
        "calling_hours_end": "21:00",
        "max_retries": "",
        "retry_delays_minutes": "30, 60",
        "retry_statuses": ["no_answer", "busy", "failed"],  # as shown: all three, the default
        "window_minutes": "",
        "voicemail_retry": "on",
        "voicemail_message": "",
        "monthly_budget": "",
        "budget_currency": "USD",
    }
    saved = admin_client.post(reverse("admin:calls_callpolicy_change", args=[1]), form)
    assert saved.status_code == 302
    row = CallPolicy.objects.get()
    assert row.paused and row.retry_delays_minutes == [30, 60]
    assert row.retry_statuses is None  # left as it was: blank, the default
    assert policy.policy_current().paused  # every process's copy is dropped on a change
    history = LogEntry.objects.get(object_id="1")
    assert history.user == admin_user
    assert admin_client.get(reverse("admin:calls_callpolicy_history", args=[1])).status_code == 200


@pytest.mark.django_db
def test_the_admin_refuses_calling_hours_with_one_end_and_names_the_field(admin_client):
    form = {
        "calling_hours_start": "09:00",
        "calling_hours_end": "",
        "retry_delays_minutes": "",
    }
    response = admin_client.post(
        reverse("admin:calls_callpolicy_change", args=[policy.policy_row().pk]), form
    )
    assert response.status_code == 200
    assert "give both a start and an end" in response.text


@pytest.mark.django_db
def test_the_admin_index_links_to_the_call_policy(admin_client):
    assert reverse("admin:calls_callpolicy_changelist") in admin_client.get(reverse("admin:index")).text


@pytest.mark.django_db
def test_the_policy_page_counts_and_links_the_users_called_outside_the_hours(admin_client, make_user):
    make_user(call_time=time(8, 0))
    make_user(call_time=time(22, 30))
    make_user(call_time=time(12, 0))
    make_user(call_time=time(7, 0), call_enabled=False)  # not called at all: not counted
    patch_hours = {"calling_hours": {"start": "09:00", "end": "21:00"}}
    policy_changes.policy_update(changes=patch_hours, user_id=None, actor="test")
    page = admin_client.get(reverse("admin:calls_callpolicy_change", args=[1])).text
    assert "2 users</a>" in page and "outside_calling_hours=1" in page
    listed = admin_client.get(reverse("admin:users_user_changelist"), {"outside_calling_hours": "1"})
    assert sorted(u.call_time for u in listed.context["cl"].result_list) == [time(8, 0), time(22, 30)]


@pytest.mark.parametrize(
    ("hours", "local", "inside"),
    [
        ((time(9), time(21)), time(9, 0), True),
        ((time(9), time(21)), time(20, 59), True),
        ((time(9), time(21)), time(21, 0), False),
        ((time(9), time(21)), time(8, 59), False),
        ((time(21), time(6)), time(23, 0), True),  # overnight hours
        ((time(21), time(6)), time(5, 59), True),
        ((time(21), time(6)), time(12, 0), False),
    ],
)
def test_calling_hours_are_read_on_the_users_wall_clock(hours, local, inside):
    rules = policy.Policy(
        paused=False,
        calling_hours=hours,
        max_retries=2,
        retry_delays_seconds=(1800,),
        retry_statuses=frozenset(),
        window=policy.timedelta(minutes=15),
    )
    for zone in ("Asia/Kolkata", "America/Los_Angeles", "Pacific/Chatham"):
        tz = ZoneInfo(zone)
        instant = datetime(2026, 11, 28, local.hour, local.minute, tzinfo=tz).astimezone(UTC)
        assert rules.allows_hour(instant, tz) is inside
    assert rules.allows_call_time(local) is inside


@pytest.mark.django_db
def test_a_change_with_the_api_token_is_in_the_admin_history_too(client):
    assert patch(client, {"paused": True}).status_code == 200
    entry = LogEntry.objects.get(object_id="1")
    assert entry.user.username == policy_changes.API_HISTORY_USERNAME and not entry.user.is_active
    assert not entry.user.call_enabled  # a login standing for the token, not a person to call
    assert not entry.user.has_usable_password()
    assert patch(client, {"paused": False}).status_code == 200
    assert LogEntry.objects.filter(object_id="1").count() == 2


POLICY_URL = reverse("admin:calls_callpolicy_change", args=[1])  # the one row's


def policy_page(admin_client):
    return admin_client.get(POLICY_URL)


@pytest.mark.django_db
def test_the_policy_form_has_plain_inputs_and_says_the_values_in_force_not_setting_names(
    admin_client, settings
):
    settings.CALL_MAX_RETRIES, settings.CALL_TIME_WINDOW_MINUTES = 2, 15
    settings.CALL_RETRY_DELAY_SECONDS = 1800
    policy_changes.policy_update(changes={"retry_delays_minutes": [30, 60]}, user_id=None, actor="test")
    response = policy_page(admin_client)
    form, page = response.context["adminform"].form, response.text

    assert 'name="retry_delays_minutes" value="30, 60"' in page
    assert [(box.data["value"], box.data["selected"]) for box in form["retry_statuses"]] == [
        ("no_answer", True),
        ("busy", True),
        ("failed", True),
    ]
    assert 'type="checkbox" name="retry_statuses"' in page
    help_texts = " ".join(field.help_text for field in form.fields.values())
    assert "Blank: 2, this deployment's default" in help_texts
    assert "Blank: 30 minutes before every retry" in help_texts
    assert "Blank: 15 minutes" in help_texts
    assert "CALL_" not in page  # no setting's name on the page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "stored"),
    [("30, 60", [30, 60]), ("30 60", [30, 60]), ("45", [45]), ("", None)],
)
def test_the_delays_are_typed_as_a_list_of_minutes(admin_client, typed, stored):
    form = {"retry_delays_minutes": typed, "retry_statuses": ["no_answer", "busy", "failed"]}
    policy.policy_row()  # the one row, as the list page's redirect makes it
    response = admin_client.post(POLICY_URL, form)
    assert response.status_code == 302
    assert CallPolicy.objects.get().retry_delays_minutes == stored


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["30, 0", "thirty", "30, 2000", "2.5", "[30, 60"])
def test_delays_that_are_not_whole_minutes_are_refused_naming_the_field(admin_client, typed):
    form = {"retry_delays_minutes": typed, "retry_statuses": ["no_answer"]}
    policy.policy_row()  # the one row, as the list page's redirect makes it
    response = admin_client.post(POLICY_URL, form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["retry_delays_minutes"] == [forms.DELAYS_MESSAGE]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("checked", "stored", "retried"),
    [
        (["no_answer"], ["no_answer"], frozenset({"no_answer"})),
        (["busy", "no_answer"], ["busy", "no_answer"], frozenset({"busy", "no_answer"})),
        ([], [], frozenset()),  # none checked: no call is retried
    ],
)
def test_the_retried_outcomes_are_check_boxes(admin_client, checked, stored, retried):
    form = {"retry_delays_minutes": "", "retry_statuses": checked}
    policy.policy_row()  # the one row, as the list page's redirect makes it
    response = admin_client.post(POLICY_URL, form)
    assert response.status_code == 302
    assert CallPolicy.objects.get().retry_statuses == stored
    assert policy.policy_current().retry_statuses == retried


@pytest.mark.django_db
def test_the_rules_in_force_read_as_a_table(admin_client, settings):
    settings.CALL_MAX_RETRIES, settings.CALL_TIME_WINDOW_MINUTES = 3, 15
    policy_changes.policy_update(
        changes={"retry_delays_minutes": [30, 60], "retry_statuses": ["busy", "no_answer"]},
        user_id=None,
        actor="test",
    )
    assert policy.policy_in_force_rows() == [
        ("Calls", "Running", "set here"),
        ("Calling hours", "any hour", "this deployment's default (none)"),
        ("Retries a day", "3", "this deployment's default"),
        (
            "Delays",
            "30 min before the 1st retry, 60 min before the 2nd retry, 60 min before each later one",
            "set here",
        ),
        ("Outcomes retried", "No answer, busy", "set here"),
        ("Window", "15 minutes after each person's call time", "this deployment's default"),
        ("Days off", "None: every day may be a call day", "this deployment's default (none)"),
    ]
    page = policy_page(admin_client).text
    assert '<table class="policy-in-force" id="policy-in-force">' in page
    assert '<th scope="row">Outcomes retried</th><td>No answer, busy</td>' in page
    assert "<pre" not in page.split('id="policy-in-force"')[0].rsplit("<fieldset", 1)[-1]


# --- The window must fit the spread (CALL_SPREAD_MINUTES) --------------------------------------


@pytest.mark.django_db
def test_a_window_the_spread_does_not_fit_is_a_400_naming_it_and_nothing_changes(client, settings):
    settings.CALL_SPREAD_MINUTES = 10
    before = policy.policy_as_dict()
    for minutes in (5, 10):
        response = patch(client, {"window_minutes": minutes})
        assert response.status_code == 400
        message = response.json()["errors"]["window_minutes"]
        assert "at least 11 minutes" in message and "CALL_SPREAD_MINUTES" in message
        assert "window_minutes" in response.json()["error"]
    assert policy.policy_as_dict() == before
    assert patch(client, {"window_minutes": 11}).status_code == 200
    assert policy.policy_current().window.total_seconds() == 11 * 60


@pytest.mark.django_db
def test_the_admin_refuses_a_window_the_spread_does_not_fit_with_the_same_error(admin_client, settings):
    settings.CALL_SPREAD_MINUTES = 10
    form = {
        "calling_hours_start": "",
        "calling_hours_end": "",
        "retry_delays_minutes": "",
        "retry_statuses": "",
        "window_minutes": "5",
    }
    page = reverse("admin:calls_callpolicy_change", args=[policy.policy_row().pk])
    response = admin_client.post(page, form)
    assert response.status_code == 200
    assert "at least 11 minutes" in response.text
    assert CallPolicy.objects.get().window_minutes is None
