"""The admin operators use every day: users, calls, and the way to the queues dashboard."""

from datetime import UTC, date, datetime, time

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls.models import Call, CallStatus
from tests.test_user_validation import add_form_data
from users.models import User

# Asia/Kolkata is UTC+5:30 with no DST: 20:30 local on 2026-11-28 is 15:00 UTC.
MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)

USERS_URL = reverse("admin:users_user_changelist")
CALLS_URL = reverse("admin:calls_call_changelist")


def at(moment):
    return time_machine.travel(moment, tick=False)


def user_url(user):
    return reverse("admin:users_user_change", args=[user.pk])


def call_url(call):
    return reverse("admin:calls_call_change", args=[call.pk])


def listed(response):
    return {obj.pk for obj in response.context["cl"].result_list}


def count_queries(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def list_editable_post(user, *, call_enabled, call_time):
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(user.pk),
        "form-0-call_time": call_time,
        "_save": "Save",
    }
    if call_enabled:
        data["form-0-call_enabled"] = "on"
    return data


# --- Users: changelist --------------------------------------------------------------------


def test_the_user_list_shows_masked_phone_zone_next_call_in_both_zones_and_todays_outcome(
    admin_client, make_user, make_call
):
    with at(MORNING):
        user = make_user(
            name="Asha Rao", phone="+919876543210", local_tz="Asia/Kolkata", call_time=time(20, 30)
        )
        make_call(user=user, attempt=1, status=CallStatus.NO_ANSWER)
        make_call(user=user, attempt=2, status=CallStatus.COMPLETED)
        response = admin_client.get(USERS_URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Asha Rao" in html
    assert "********3210" in html
    assert "+919876543210" not in html
    assert "Asia/Kolkata" in html
    # The user's wall clock to the second, the zone and UTC in its tooltip.
    assert ">2026-11-28 20:30:00 IST</time>" in html
    assert 'title="Asia/Kolkata; 2026-11-28 15:00:00 UTC"' in html
    # The user's local today, from all its attempts: answered on the second.
    row = next(u for u in response.context["cl"].result_list if u.pk == user.pk)
    assert row.today.outcome == "answered"
    assert ">Answered · 2</span>" in html
    # call_enabled and call_time are edited in the list itself.
    assert 'name="form-0-call_time"' in html and 'name="form-0-call_enabled"' in html


def test_the_user_list_does_not_query_once_per_user(admin_client, make_user, make_call):
    for _ in range(2):
        make_call(user=make_user(), status=CallStatus.COMPLETED)
    few = count_queries(admin_client, USERS_URL)
    for _ in range(6):
        make_call(user=make_user(), status=CallStatus.FAILED)
    many = count_queries(admin_client, USERS_URL)
    assert many == few


@pytest.mark.parametrize(
    "query",
    ["Asha", "+919876543210", "3210", "asha@example.com", "asha_r", "crm:7781"],
    ids=["name", "phone", "last-four", "email", "username", "external-id"],
)
def test_the_user_list_searches_name_phone_email_username_and_external_id(admin_client, make_user, query):
    asha = make_user(
        username="asha_r",
        name="Asha Rao",
        phone="+919876543210",
        email="asha@example.com",
        external_id="crm:7781",
    )
    other = make_user(username="bilal", name="Bilal Khan", phone="+14155550123", email="bilal@example.com")
    response = admin_client.get(USERS_URL, {"q": query})
    assert response.status_code == 200
    assert asha.pk in listed(response)
    assert other.pk not in listed(response)


def test_the_user_list_filters_by_calls_enabled_and_time_zone(admin_client, make_user):
    on = make_user(local_tz="Asia/Kolkata")
    off = make_user(local_tz="Asia/Kolkata", call_enabled=False)
    london = make_user(local_tz="Europe/London")

    disabled = admin_client.get(USERS_URL, {"call_enabled__exact": "0"})
    assert off.pk in listed(disabled) and on.pk not in listed(disabled)

    in_london = admin_client.get(USERS_URL, {"local_tz": "Europe/London"})
    assert listed(in_london) == {london.pk}
    # The zone filter offers the zones users actually have.
    assert "?local_tz=Asia%2FKolkata" in in_london.content.decode()


def test_turning_calls_off_in_the_list_clears_the_next_call(admin_client, make_user):
    with at(MORNING):
        user = make_user(call_time=time(20, 30))
        assert user.next_call_at == SLOT
        response = admin_client.post(
            USERS_URL, list_editable_post(user, call_enabled=False, call_time="20:30:00")
        )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.call_enabled is False
    assert user.next_call_at is None


def test_turning_calls_on_in_the_list_schedules_the_next_call_at_the_new_time(admin_client, make_user):
    with at(MORNING):
        user = make_user(call_time=time(20, 30), call_enabled=False)
        assert user.next_call_at is None
        response = admin_client.post(
            USERS_URL, list_editable_post(user, call_enabled=True, call_time="09:00:00")
        )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.call_enabled is True
    assert user.call_time == time(9, 0)
    # 09:00 IST on the 28th has passed at 06:00 UTC (11:30 IST): the next one is the 29th's.
    assert user.next_call_at == datetime(2026, 11, 29, 3, 30, tzinfo=UTC)


# --- Users: bulk actions ------------------------------------------------------------------


def test_disable_calls_action_disables_the_selected_users_and_says_how_many_changed(admin_client, make_user):
    with at(MORNING):
        a, b = make_user(), make_user()
        already_off = make_user(call_enabled=False)
        untouched = make_user()
        response = admin_client.post(
            USERS_URL,
            {"action": "disable_calls", "_selected_action": [a.pk, b.pk, already_off.pk]},
            follow=True,
        )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Calls disabled for 2 users; 1 already had calls disabled."]
    for user in (a, b, already_off):
        user.refresh_from_db()
        assert (user.call_enabled, user.next_call_at) == (False, None)
    untouched.refresh_from_db()
    assert untouched.call_enabled is True and untouched.next_call_at == SLOT


def test_enable_calls_action_enables_and_schedules_the_selected_users(admin_client, make_user):
    with at(MORNING):
        user = make_user(call_enabled=False)
        response = admin_client.post(
            USERS_URL, {"action": "enable_calls", "_selected_action": [user.pk]}, follow=True
        )
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Calls enabled for 1 user."]
    user.refresh_from_db()
    assert user.call_enabled is True
    assert user.next_call_at == SLOT


# --- Users: add and change pages ----------------------------------------------------------


def test_the_user_change_page_has_the_daily_call_fieldset_next_call_and_recent_calls(
    admin_client, make_user, make_call
):
    with at(MORNING):
        user = make_user(phone="+919876543210")
        call = make_call(user=user, status=CallStatus.BUSY)
        response = admin_client.get(user_url(user))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Person to call" in html
    for field in (
        "external_id",
        "phone",
        "local_tz",
        "call_enabled",
        "call_time",
        "max_retries",
        "retry_delay_minutes",
        "name",
    ):
        assert f'name="{field}"' in html
    assert 'value="+919876543210"' in html
    assert ">2026-11-28 20:30:00 IST</time>" in html and "2026-11-28 15:00:00 UTC" in html
    assert f'href="{call_url(call)}"' in html
    assert f"{CALLS_URL}?user__id__exact={user.pk}" in html
    # Time zones are suggested from the IANA list.
    assert 'list="id_local_tz_zones"' in html and '<option value="America/New_York">' in html


def test_the_user_add_page_asks_for_what_calling_a_person_needs_and_no_login(admin_client):
    response = admin_client.get(reverse("admin:users_user_add"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Person to call" in html
    fields = response.context["adminform"].form.fields
    assert not {"username", "password", "password1", "usable_password"} & set(fields)
    assert 'name="password1"' not in html and 'name="usable_password"' not in html
    assert 'name="username"' not in html
    for field in (
        "name",
        "phone",
        "local_tz",
        "call_time",
        "call_enabled",
        "external_id",
        "max_retries",
        "retry_delay_minutes",
    ):
        assert f'name="{field}"' in html
    assert fields["name"].required


def test_adding_a_user_in_the_admin_schedules_the_first_call(admin_client):
    with at(MORNING):
        response = admin_client.post(reverse("admin:users_user_add"), add_form_data(phone="+91 98765-43210"))
    assert response.status_code == 302
    user = User.objects.get(username="new-comer")
    assert user.phone == "+919876543210"  # separators a person pasted are dropped
    assert user.next_call_at == SLOT


# --- Calls --------------------------------------------------------------------------------


def test_the_call_list_shows_status_badges_and_masked_numbers(admin_client, make_user, make_call):
    user = make_user(name="Asha Rao", phone="+919876543210")
    make_call(user=user, status=CallStatus.FAILED, provider_call_id="ck-123")
    response = admin_client.get(CALLS_URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="call-status"' in html and ">Failed</span>" in html
    assert "Asha Rao" in html and "********3210" in html
    assert f'href="{user_url(user)}"' in html


def test_the_call_list_does_not_query_once_per_call(admin_client, make_call):
    for _ in range(2):
        make_call()
    few = count_queries(admin_client, CALLS_URL)
    for _ in range(6):
        make_call()
    many = count_queries(admin_client, CALLS_URL)
    assert many == few


@pytest.mark.parametrize(
    "query",
    ["ck-abc-123", "+919876543210", "Asha", "asha_r"],
    ids=["provider-call-id", "to-number", "user-name", "username"],
)
def test_the_call_list_searches_numbers_provider_ids_and_users(admin_client, make_user, make_call, query):
    asha = make_user(username="asha_r", name="Asha Rao", phone="+919876543210")
    wanted = make_call(user=asha, provider_call_id="ck-abc-123")
    other = make_call(user=make_user(username="bilal", name="Bilal Khan", phone="+14155550123"))
    response = admin_client.get(CALLS_URL, {"q": query})
    assert wanted.pk in listed(response) and other.pk not in listed(response)


def test_the_call_list_filters_by_status_provider_local_date_and_attempt(admin_client, make_user, make_call):
    user = make_user()
    first = make_call(user=user, status=CallStatus.NO_ANSWER, local_date=date(2026, 11, 28))
    retry = make_call(
        user=user, attempt=2, retry_of=first, status=CallStatus.COMPLETED, local_date=date(2026, 11, 28)
    )
    next_day = make_call(user=user, local_date=date(2026, 11, 29), provider="simulator")

    assert listed(admin_client.get(CALLS_URL, {"status__exact": "no_answer"})) == {first.pk}
    assert listed(admin_client.get(CALLS_URL, {"provider": "simulator"})) == {next_day.pk}
    assert listed(admin_client.get(CALLS_URL, {"attempt": "retry"})) == {retry.pk}
    on_the_28th = admin_client.get(
        CALLS_URL, {"local_date__year": "2026", "local_date__month": "11", "local_date__day": "28"}
    )
    assert listed(on_the_28th) == {first.pk, retry.pk}
    assert listed(admin_client.get(CALLS_URL, {"user__id__exact": user.pk})) == {
        first.pk,
        retry.pk,
        next_day.pk,
    }


def test_calls_cannot_be_added_or_edited_in_the_admin(admin_client, make_call):
    call = make_call(status=CallStatus.QUEUED)
    assert admin_client.get(reverse("admin:calls_call_add")).status_code == 403
    assert "Add call" not in admin_client.get(CALLS_URL).content.decode()

    page = admin_client.get(call_url(call))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = admin_client.post(
        call_url(call), {"status": CallStatus.COMPLETED, "to_number": "+10000000000"}
    )
    assert response.status_code == 403
    call.refresh_from_db()
    assert call.status == CallStatus.QUEUED


def test_only_superusers_may_delete_calls(client, make_user, make_call):
    call = make_call()
    operator = make_user(is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="calls", codename__in=["view_call", "delete_call"])
    )
    client.force_login(operator)
    assert client.get(call_url(call)).status_code == 200
    assert client.get(reverse("admin:calls_call_delete", args=[call.pk])).status_code == 403
    assert Call.objects.filter(pk=call.pk).exists()


def test_a_superuser_can_delete_a_call(admin_client, make_call):
    call = make_call()
    response = admin_client.post(reverse("admin:calls_call_delete", args=[call.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Call.objects.filter(pk=call.pk).exists()


def test_the_call_page_shows_payloads_error_transcript_and_recording(admin_client, make_call):
    call = make_call(
        status=CallStatus.COMPLETED,
        provider_payloads=[{"placed": {"call_id": "ck-1", "status": "queued"}}, {"status": "completed"}],
        error="Provider said: <b>boom</b>",
        transcript="Agent: Hello\nUser: Hi there",
        recording_url="https://recordings.example.com/ck-1.mp3",
    )
    html = admin_client.get(call_url(call)).content.decode()
    # Pretty-printed (indented) and escaped, inside a <pre>.
    assert "<pre" in html
    assert "&quot;placed&quot;: {\n      &quot;call_id&quot;: &quot;ck-1&quot;," in html
    assert "Provider said: &lt;b&gt;boom&lt;/b&gt;" in html
    assert "User: Hi there" in html
    assert '<audio controls preload="none" src="https://recordings.example.com/ck-1.mp3">' in html
    assert ">2026-11-28 20:30:00 IST</time>" in html  # scheduled_for in the user's own time


def test_a_recording_url_that_is_not_http_is_never_a_link(admin_client, make_call):
    call = make_call(recording_url="javascript:alert(1)")
    html = admin_client.get(call_url(call)).content.decode()
    assert "javascript:alert(1)" in html
    assert 'href="javascript:' not in html and 'src="javascript:' not in html


def test_the_call_page_shows_the_retry_chain_of_that_user_and_day(admin_client, make_user, make_call):
    user = make_user()
    first = make_call(user=user, attempt=1, status=CallStatus.NO_ANSWER)
    second = make_call(user=user, attempt=2, retry_of=first, status=CallStatus.BUSY)
    third = make_call(user=user, attempt=3, retry_of=second, status=CallStatus.COMPLETED)
    other_day = make_call(user=user, local_date=date(2026, 11, 29))
    other_user = make_call()

    html = admin_client.get(call_url(second)).content.decode()
    chain = html[html.index('class="retry-chain"') :]
    chain = chain[: chain.index("</ol>")]
    assert f'href="{call_url(first)}"' in chain and f'href="{call_url(third)}"' in chain
    assert f"Call {second.pk} · attempt 2 (this call)" in chain
    assert f'href="{call_url(second)}"' not in chain
    assert (
        chain.index(f"Call {first.pk} ")
        < chain.index(f"Call {second.pk} ")
        < chain.index(f"Call {third.pk} ")
    )
    assert call_url(other_day) not in chain and call_url(other_user) not in chain


# --- Queues dashboard ---------------------------------------------------------------------


def test_the_admin_index_links_to_the_queues_dashboard(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/django-rq/">Queues dashboard</a>' in html
    # django-rq's own entry (its Dashboard model) is still in the app list.
    assert 'href="/admin/django_rq/dashboard/"' in html
    # And the usual app list is still there.
    assert f'href="{USERS_URL}"' in html and f'href="{CALLS_URL}"' in html


def test_staff_reach_the_queues_dashboard(admin_client):
    response = admin_client.get("/django-rq/")
    assert response.status_code == 200
    assert "daily-calls" in response.content.decode()


@pytest.mark.parametrize("path", ["/django-rq/", "/admin/django_rq/dashboard/"])
def test_a_logged_in_user_who_is_not_staff_is_sent_to_the_admin_login(client, make_user, path):
    client.force_login(make_user(is_staff=False))
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/django-rq/queues/0/").status_code == 302


def test_an_anonymous_visitor_cannot_see_the_queues_dashboard(client):
    response = client.get("/django-rq/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/django-rq/"


def test_the_call_list_shows_filters_and_searches_the_providers_end_reason(admin_client, make_call):
    no_answer = make_call(status=CallStatus.NO_ANSWER, end_reason="USER_UNAVAILABLE")
    answered = make_call(status=CallStatus.COMPLETED, end_reason="CLIENT_INITIATED")
    response = admin_client.get(CALLS_URL)
    assert "USER_UNAVAILABLE" in response.text and "CLIENT_INITIATED" in response.text
    assert "?end_reason=USER_UNAVAILABLE" in response.text  # offered as a filter choice
    assert listed(admin_client.get(CALLS_URL, {"end_reason": "USER_UNAVAILABLE"})) == {no_answer.pk}
    assert listed(admin_client.get(CALLS_URL, {"q": "CLIENT_INIT"})) == {answered.pk}


def test_the_call_page_shows_the_end_reason_and_what_callkaro_reported(admin_client, make_call):
    call = make_call(
        status=CallStatus.COMPLETED,
        end_reason="CLIENT_INITIATED",
        provider_payloads=[
            {
                "event": "call_ended",
                "data": {
                    "hangup_reason": "CLIENT_INITIATED",
                    "post_call": {"lead_status": "interested"},
                    "disposition_reason": "Customer requested callback",
                    "conversion_status": True,
                },
            }
        ],
    )
    page = admin_client.get(call_url(call)).text
    assert "CLIENT_INITIATED" in page
    assert "Customer requested callback" in page and "lead_status" in page and "conversion_status" in page


def test_an_unconfirmed_call_has_its_own_badge(admin_client, make_call):
    make_call(status=CallStatus.UNCONFIRMED)
    assert ">Unconfirmed</span>" in admin_client.get(CALLS_URL).text
