"""What a new operator tripped over in the admin: columns that did not fit at 1366 px, times
to the minute in three formats, raw status names, a password to add a person to call, the
superuser counted as called, and filters that did not match the questions."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.contrib.admin.templatetags.admin_list import result_headers
from django.urls import reverse
from django.utils.text import capfirst

from calls.models import Call, CallStatus
from tests.test_user_validation import add_form_data
from users.models import User

pytestmark = pytest.mark.django_db

USERS_URL = reverse("admin:users_user_changelist")
CALLS_URL = reverse("admin:calls_call_changelist")
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 IST


def headers(response) -> list[str]:
    """The column headers as the page shows them (the template capitalises them)."""
    return [
        capfirst(header["text"])
        for header in result_headers(response.context["cl"])
        if "action-checkbox-column" not in header["class_attrib"]
    ]


# --- Columns that fit at 1366 px ---------------------------------------------------------------


def test_the_user_list_has_seven_short_columns(admin_client, make_user):
    make_user()
    response = admin_client.get(USERS_URL)
    assert headers(response) == [
        "User",
        "Phone",
        "Time zone",
        "Call time",
        "Calls enabled",
        "Next call",
        "Today",
    ]
    html = response.content.decode()
    for column in (
        "user_display",
        "masked_phone",
        "local_tz",
        "call_time",
        "call_enabled",
        "next_call",
        "today_display",
    ):
        assert f'class="column-{column}' in html or f"field-{column}" in html


def test_the_call_list_has_nine_short_columns(admin_client, make_call):
    make_call(status=CallStatus.NO_ANSWER, end_reason="USER_UNAVAILABLE", manual=False)
    response = admin_client.get(CALLS_URL)
    assert headers(response) == [
        "ID",
        "User",
        "To",
        "Try",
        "Status",
        "Scheduled (UTC)",
        "Scheduled",
        "Ended",
        "Provider / why it ended",
    ]
    html = response.content.decode()
    # The provider's word in words, its own in the tooltip.
    words = '<span title="USER_UNAVAILABLE">User unavailable</span>'
    assert f'callkaro<br><span class="quiet">{words}</span>' in html


# --- One datetime format, to the second, with the zone -----------------------------------------


def test_the_call_page_shows_every_time_to_the_second_in_the_users_zone(admin_client, make_call):
    call = make_call(status=CallStatus.NO_ANSWER)
    Call.objects.filter(pk=call.pk).update(
        created_at=SLOT - timedelta(seconds=55),
        dialed_at=SLOT + timedelta(seconds=1),
        last_status_at=SLOT + timedelta(seconds=31),
        completed_at=SLOT + timedelta(seconds=32),
    )
    response = admin_client.get(reverse("admin:calls_call_change", args=[call.pk]))
    html = response.content.decode()
    for shown in ("2026-11-28 20:29:05 IST", "2026-11-28 20:30:00 IST", "2026-11-28 20:30:01 IST",
                  "2026-11-28 20:30:31 IST", "2026-11-28 20:30:32 IST"):  # fmt: skip
        assert f">{shown}</time>" in html
    assert 'title="Asia/Kolkata; 2026-11-28 15:00:32 UTC"' in html
    assert "Timing (in the user&#x27;s time zone, Asia/Kolkata" in html
    # Nobody answered: the call ended, it was not "completed".
    assert "<label>Ended:</label>" in html and "Completed at" not in html
    # The status's label everywhere, the page title too.
    assert f"<title>Call {call.pk} (attempt 1, No answer) |" in html
    assert "no_answer)" not in html


def test_a_call_that_has_not_ended_shows_no_end_time(admin_client, make_call):
    call = make_call(status=CallStatus.RINGING)
    Call.objects.filter(pk=call.pk).update(completed_at=SLOT)  # not final: not shown as its end
    response = admin_client.get(CALLS_URL)
    row = response.content.decode().split(f"call/{call.pk}/change/")[1]
    assert '<td class="field-ended_local">-</td>' in row


# --- Adding a person to call --------------------------------------------------------------------


def test_adding_a_person_to_call_asks_for_no_password_and_sets_an_unusable_one(admin_client):
    with time_machine.travel(SLOT - timedelta(hours=9), tick=False):
        response = admin_client.post(reverse("admin:users_user_add"), add_form_data())
    assert response.status_code == 302
    user = User.objects.get(username="new-comer")
    assert not user.has_usable_password()
    assert (user.name, user.phone, user.next_call_at) == ("New Comer", "+919876543210", SLOT)


def test_the_add_and_change_pages_group_the_fields_the_same_way(admin_client, make_user):
    def groups(response):
        return {
            fieldset.name: [field for line in fieldset for field in line.fields]
            for fieldset in response.context["adminform"]
        }

    added = groups(admin_client.get(reverse("admin:users_user_add")))
    changed = groups(admin_client.get(reverse("admin:users_user_change", args=[make_user().pk])))
    assert list(added) == ["Person to call", "Call days", "More"]
    readonly = {
        "next_call",
        "schedule_error",
        "opt_out_display",
        "consent_display",
        "username",
        "skipped_days",
    }
    for name, add_fields in added.items():
        assert add_fields == [field for field in changed[name] if field not in readonly], name


def test_a_person_added_in_the_admin_gets_a_username_made_from_their_name(admin_client, make_user):
    make_user(username="asha-rao")
    for data in (
        add_form_data(name="Asha Rao", phone="+919876543211"),
        add_form_data(name="José", phone="+919876543212"),
        add_form_data(name="Bilal", phone="+919876543213", external_id="crm-7"),
    ):
        assert admin_client.post(reverse("admin:users_user_add"), data).status_code == 302
    added = User.objects.filter(phone__in=["+919876543211", "+919876543212", "+919876543213"])
    usernames = dict(added.values_list("phone", "username"))
    assert usernames["+919876543211"].startswith("asha-rao-")  # "asha-rao" was taken
    assert usernames["+919876543212"] == "jose"
    assert usernames["+919876543213"] == "ext-crm-7"  # as an import names an external id


def test_a_login_without_a_phone_is_not_counted_among_the_users_called(admin_client, make_user, admin_user):
    called = make_user()
    make_user(phone=None)  # calls enabled by default, never called
    off = make_user(call_enabled=False)
    assert admin_user.call_enabled  # pytest-django's superuser: the field's default

    response = admin_client.get(USERS_URL, {"call_enabled__exact": "1"})  # the index's link
    assert {user.pk for user in response.context["cl"].result_list} == {called.pk}
    assert "1 user" in response.content.decode()
    response = admin_client.get(USERS_URL, {"call_enabled__exact": "0"})
    assert {user.pk for user in response.context["cl"].result_list} == {off.pk}


def test_the_first_runs_admin_login_is_created_with_calls_off():
    from relevel.management.commands.runall import admin_ensure

    admin_ensure(password="pw-for-the-test")
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and not admin.call_enabled and admin.next_call_at is None


# --- Filters that match the questions ----------------------------------------------------------


def test_the_outcome_filter_finds_who_was_not_reached_today_missed_or_answered(
    admin_client, make_user, make_call
):
    now = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)  # 00:30 on the 29th in Kolkata, 14:00 in New York
    kolkata = make_user(local_tz="Asia/Kolkata")
    new_york = make_user(local_tz="America/New_York")
    calls = {
        "kolkata yesterday": make_call(
            user=kolkata, local_date=date(2026, 11, 28), status=CallStatus.NO_ANSWER
        ),
        "kolkata today": make_call(user=kolkata, local_date=date(2026, 11, 29), status=CallStatus.BUSY),
        "new york today missed": make_call(
            user=new_york, local_date=date(2026, 11, 28), status=CallStatus.MISSED
        ),
        "new york today answered": make_call(
            user=new_york, local_date=date(2026, 11, 28), attempt=2, status=CallStatus.COMPLETED
        ),
        "new york today canceled": make_call(
            user=new_york, local_date=date(2026, 11, 28), attempt=3, status=CallStatus.CANCELED
        ),
    }

    def found(outcome):
        with time_machine.travel(now, tick=False):
            response = admin_client.get(CALLS_URL, {"outcome": outcome})
        assert response.status_code == 200
        return {
            name
            for name, call in calls.items()
            if call.pk in {c.pk for c in response.context["cl"].result_list}
        }

    assert found("not_reached_today") == {"kolkata today", "new york today missed"}
    assert found("not_reached") == {"kolkata yesterday", "kolkata today", "new york today missed"}
    assert found("missed") == {"new york today missed"}
    assert found("answered") == {"new york today answered"}


def test_the_calls_list_filters_by_end_reason_and_provider(admin_client, make_call):
    voicemail = make_call(status=CallStatus.NO_ANSWER, end_reason="VOICEMAIL_DETECTED", provider="simulator")
    make_call(status=CallStatus.NO_ANSWER, end_reason="USER_UNAVAILABLE", provider="callkaro")
    for params in ({"end_reason": "VOICEMAIL_DETECTED"}, {"provider": "simulator"}):
        response = admin_client.get(CALLS_URL, params)
        assert [call.pk for call in response.context["cl"].result_list] == [voicemail.pk]


def test_the_admin_index_leads_to_the_calls_not_reached_not_only_the_failed_ones(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "?status__exact=failed" not in page
    for link in ("?outcome=not_reached_today", "?outcome=not_reached"):
        assert link in page
        assert admin_client.get(f"/admin/calls/call/{link}").status_code == 200


# --- A person's page opens on the next call and the record ---------------------------------------


def test_a_persons_page_opens_on_the_next_call_and_the_record_and_says_why_when_parked(
    admin_client, make_user
):
    def first_group(user):
        response = admin_client.get(reverse("admin:users_user_change", args=[user.pk]))
        fieldset = next(iter(response.context["adminform"]))
        return fieldset.name, [field for line in fieldset for field in line.fields]

    assert first_group(make_user()) == (
        "Next call and the last 30 days",
        ["next_call", "off_today", "call_record"],
    )
    parked = make_user()
    User.objects.filter(pk=parked.pk).update(
        local_tz="Mars/Olympus", next_call_at=None, schedule_error="Time zone 'Mars/Olympus' is unknown."
    )
    assert first_group(parked) == (
        "Next call and the last 30 days",
        ["next_call", "schedule_error", "off_today", "call_record"],
    )


# --- One word for one thing on the people pages -------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("USER_UNAVAILABLE", "User unavailable"),
        ("customer-did-not-answer", "Customer did not answer"),
        ("dial_no_answer", "Dial no answer"),
        ("voicemail", "Voicemail"),
    ],
)
def test_a_providers_end_reason_reads_as_words(reason, words):
    from web.display import end_reason_text

    assert end_reason_text(reason) == words


def test_a_call_someone_picked_up_is_answered_on_the_persons_page(admin_client, make_user, make_call):
    from web.display import status_label

    assert status_label(CallStatus.COMPLETED) == "Answered"
    person = make_user(local_tz="Asia/Kolkata")
    make_call(user=person, local_date=date(2026, 11, 27), status=CallStatus.COMPLETED)
    make_call(user=person, status=CallStatus.NO_ANSWER, end_reason="USER_UNAVAILABLE")
    html = admin_client.get(reverse("admin:users_user_change", args=[person.pk])).content.decode()
    recent = html[html.index('<ul class="recent-calls"') :]
    recent = recent[: recent.index("</ul>")]
    assert "Answered" in recent and "Completed" not in recent
    assert 'No answer</span> <span class="quiet">User unavailable</span>' in recent
    assert "USER_UNAVAILABLE" not in recent
    # One date format: each call's time, as every time on the page, "YYYY-MM-DD HH:MM:SS zone".
    assert ">2026-11-28 20:30:00 IST</time> · <a href=" in recent


def test_the_export_names_its_columns_as_the_admin_names_the_fields(admin_client):
    html = admin_client.get(reverse("admin:users_user_export")).content.decode()
    for label in ("Time zone (local_tz)", "Calls enabled (call_enabled)", "External id", "Call time"):
        assert label in html
    assert "Local Tz" not in html and "Call Enabled" not in html


def test_a_missed_calls_reason_is_in_the_list_and_sorts_on_one_clock(admin_client, make_call, settings):
    reason = (
        "Its window, 20:30 to 20:45 IST, had closed when a worker took it at 20:50 IST: the workers "
        "were behind (a queue of 12,000 jobs)."
    )
    missed = make_call(status=CallStatus.MISSED, error=reason, provider="")
    other = make_call(scheduled_for=SLOT + timedelta(hours=1))
    response = admin_client.get(CALLS_URL, {"o": "6"})  # sorted by "Scheduled (UTC)"
    html = response.content.decode()
    assert f'<span class="call-why" title="{reason}">{reason[:89]}…</span>' in html
    assert [call.pk for call in response.context["cl"].result_list] == [missed.pk, other.pk]
    assert f"Scheduled ({settings.TIME_ZONE})&quot; is one clock for every call" in html


def test_a_calls_local_date_reads_in_the_one_date_format(admin_client, make_call):
    call = make_call(local_date=date(2026, 11, 28))
    html = admin_client.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert '<div class="readonly">2026-11-28</div>' in html and "Nov. 28, 2026" not in html
