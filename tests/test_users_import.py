"""CSV import and export of users in the admin (issue 10), with django-import-export: a
preview with each row's errors, the confirm step, validation as the users API's, keyed on
external_id, next_call_at kept current, and profile changes canceling queued calls."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta

import pytest
import tablib
import time_machine
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls.models import Call, CallStatus
from calls.policy import policy_cache_clear
from tests.test_profile_changes import EVENING
from users.models import User
from users.resources import COLUMNS, UserResource

pytestmark = pytest.mark.django_db

MORNING = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
IMPORT_URL = reverse("admin:users_user_import")
CONFIRM_URL = reverse("admin:users_user_process_import")
EXPORT_URL = reverse("admin:users_user_export")
HEADER = ",".join(COLUMNS)


@pytest.fixture(autouse=True)
def morning():
    with time_machine.travel(MORNING, tick=False):
        yield


def csv_file(text: str, name: str = "users.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def preview(client, text):
    response = client.post(IMPORT_URL, {"import_file": csv_file(text), "format": "0"})
    assert response.status_code == 200
    return response


def confirm(client, preview_response, **ticked):
    form = preview_response.context["confirm_form"]
    assert form is not None, "the preview offers no confirmation"
    data = {name: form.initial.get(name, "") for name in form.fields if name != "skip_invalid"}
    return client.post(CONFIRM_URL, {**data, **ticked}, follow=True)


def import_csv(client, text):
    return confirm(client, preview(client, text))


def stored():
    return list(User.objects.order_by("pk").values())


ASHA = "crm-42,Asha Rao,+91 98765 43210,Asia/Kolkata,20:30,true,1,45"


# --- Import: preview and confirm -----------------------------------------------------------


def test_the_import_previews_the_rows_then_creates_the_users_on_confirm(admin_client):
    text = f"{HEADER}\n{ASHA}\ncrm-43,Bilal,+1 (415) 555-0123,America/Los_Angeles,09:00:00,1,,\n"
    shown = preview(admin_client, text)
    html = shown.content.decode()
    assert "2 new, 0 changed, 0 unchanged (of 2 rows)" in html
    assert "+91 98765 43210" in html and "Confirm import" in html
    assert not User.objects.filter(external_id__isnull=False).exists()  # a preview writes nothing

    done = confirm(admin_client, shown)
    assert [str(m) for m in done.context["messages"]] == ["Import finished: 2 new, 0 changed, 0 unchanged."]
    asha = User.objects.get(external_id="crm-42")
    assert (asha.username, asha.name, asha.phone, asha.local_tz) == (
        "ext-crm-42",
        "Asha Rao",
        "+919876543210",
        "Asia/Kolkata",
    )
    assert (asha.call_time, asha.call_enabled, asha.max_retries, asha.retry_delay_minutes) == (
        time(20, 30),
        True,
        1,
        45,
    )
    assert not asha.has_usable_password()
    assert asha.next_call_at == SLOT
    bilal = User.objects.get(external_id="crm-43")
    assert (bilal.phone, bilal.max_retries, bilal.next_call_at) == (
        "+14155550123",
        None,
        datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
    )


def test_an_import_updates_users_by_external_id_with_only_the_columns_given(admin_client, make_user):
    user = make_user(external_id="crm-42", name="Asha", phone="+919876543210", call_time=time(20, 30))
    done = import_csv(admin_client, "external_id,call_time,max_retries\ncrm-42,21:00,0\n")
    assert "0 new, 1 changed" in str(list(done.context["messages"])[0])
    user.refresh_from_db()
    assert (user.name, user.phone, user.call_time, user.max_retries) == ("Asha", "+919876543210", time(21), 0)
    assert user.next_call_at == datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


def test_importing_the_same_file_twice_changes_nothing_the_second_time(admin_client):
    text = f"{HEADER}\n{ASHA}\n"
    import_csv(admin_client, text)
    before = stored()
    shown = preview(admin_client, text)
    assert "0 new, 0 changed, 1 unchanged" in shown.content.decode()
    with CaptureQueriesContext(connection) as queries:
        confirm(admin_client, shown)
    assert stored() == before
    assert not [q for q in queries if q["sql"].startswith('UPDATE "users_user"')]


# --- Import: per-row errors, nothing written -----------------------------------------------

BAD_ROWS = [
    ("crm-1,A,98765,Asia/Kolkata,20:30,true,,", "phone", "98765 is not a valid phone number"),
    ("crm-1,A,+919876543210,Mars/Olympus,20:30,true,,", "local_tz", "Mars/Olympus is not an IANA time zone"),
    ("crm-1,A,+919876543210,Asia/Kolkata,8pm,true,,", "call_time", "Enter a time between 00:00 and 23:59"),
    ("crm-1,A,+919876543210,Asia/Kolkata,20:30,ture,,", "call_enabled", "Enter true or false."),
    ("crm-1,A,+919876543210,Asia/Kolkata,20:30,true,11,", "max_retries", "less than or equal to 10"),
    ("crm-1,A,+919876543210,Asia/Kolkata,20:30,true,,0", "retry_delay_minutes", "greater than or equal to 1"),
    ("crm 1,A,+919876543210,Asia/Kolkata,20:30,true,,", "external_id", "is not a valid external id"),
    (",A,+919876543210,Asia/Kolkata,20:30,true,,", "external_id", "This field is required."),
]


@pytest.mark.parametrize(
    ("row", "field", "message"), BAD_ROWS, ids=[f"{r[1]}-{i}" for i, r in enumerate(BAD_ROWS)]
)
def test_a_bad_row_is_shown_with_its_field_and_line_and_only_the_valid_rows_may_be_imported(
    admin_client, row, field, message
):
    shown = preview(admin_client, f"{HEADER}\n{ASHA}\n{row}\n")
    html = shown.content.decode()
    assert "1 of 2 rows are invalid" in html
    [invalid] = shown.context["result"].invalid_rows
    assert invalid.number == 3  # the file's line: the header is line 1
    assert set(invalid.field_specific_errors) == {field}
    assert message in " ".join(invalid.field_specific_errors[field])
    [problem] = shown.context["problems"][0]["problems"]
    assert (problem["column"], shown.context["problems"][0]["line"]) == (field, 3)
    # The valid row is offered, without the invalid one, and only once the box is ticked.
    form = shown.context["confirm_form"]
    assert form.initial["invalid_lines"] == "3"
    assert "leave out the 1 invalid one (line 3)" in form.fields["skip_invalid"].label
    refused = confirm(admin_client, shown)
    assert "Tick this box" in refused.content.decode()
    assert not User.objects.filter(external_id__isnull=False).exists()


def test_confirming_with_the_box_ticked_imports_the_valid_rows_only(admin_client):
    shown = preview(admin_client, f"{HEADER}\n{ASHA}\n{BAD_ROWS[0][0]}\n")
    done = confirm(admin_client, shown, skip_invalid="on")
    assert [str(m) for m in done.context["messages"]] == [
        "Import finished: 1 new, 0 changed, 0 unchanged. 1 invalid row left out (line 3)."
    ]
    assert list(User.objects.filter(external_id__isnull=False).values_list("external_id", flat=True)) == [
        "crm-42"
    ]


def test_a_file_whose_invalid_rows_changed_since_the_preview_writes_nothing(admin_client, make_user):
    text = f"{HEADER}\n{ASHA}\n{BAD_ROWS[0][0]}\ncrm-43,B,+919876000002,Asia/Kolkata,20:30,true,,\n"
    shown = preview(admin_client, text)
    make_user(external_id="meanwhile", phone="+919876000002")  # line 4 becomes invalid too
    before = stored()
    done = confirm(admin_client, shown, skip_invalid="on")
    [message] = [str(m) for m in done.context["messages"]]
    assert message.startswith("Nothing was imported: the file no longer imports cleanly (line 3: phone:")
    assert "line 4: phone: Another user already has this phone number" in message
    assert stored() == before


def test_a_file_with_no_valid_row_offers_no_confirmation(admin_client):
    shown = preview(admin_client, f"{HEADER}\n{BAD_ROWS[0][0]}\n")
    assert shown.context.get("confirm_form") is None
    assert "1 of 1 rows are invalid; nothing will be imported" in shown.content.decode()


def test_ids_and_phones_repeated_in_the_file_or_held_by_another_user_are_row_errors(admin_client, make_user):
    other = make_user(external_id="other", phone="+919876000007")
    text = (
        f"{HEADER}\n"
        "crm-1,A,+919876000001,Asia/Kolkata,20:30,true,,\n"
        "crm-2,B,+91 98760 00001,Asia/Kolkata,20:30,true,,\n"
        "crm-1,C,+919876000003,Asia/Kolkata,20:30,true,,\n"
        "crm-4,D,+919876000007,Asia/Kolkata,20:30,true,,\n"
    )
    shown = preview(admin_client, text)
    errors = {row.number: row.field_specific_errors for row in shown.context["result"].invalid_rows}
    assert errors == {
        3: {"phone": ["The same phone number is given for line 2."]},
        4: {"external_id": ["The same external id is given for line 2."]},
        5: {"phone": [f"Another user already has this phone number: user {other.pk} (external_id 'other')."]},
    }
    assert shown.context["confirm_form"].initial["invalid_lines"] == "3 4 5"  # line 2 may be imported


def test_an_unknown_column_is_one_error_for_the_file(admin_client):
    shown = preview(admin_client, "external_id,phone_number\ncrm-1,+919876543210\n")
    html = shown.content.decode()
    assert "Unknown column(s): phone_number. The columns are external_id, name, phone, local_tz" in html
    assert "Traceback" not in html
    assert shown.context.get("confirm_form") is None
    assert shown.context["result"].rows == [] and not shown.context["result"].invalid_rows


def test_a_file_without_an_external_id_column_is_refused(admin_client):
    shown = preview(admin_client, "name,phone\nA,+919876543210\n")
    assert "external_id" in shown.content.decode()
    assert shown.context.get("confirm_form") is None


def test_a_row_that_became_invalid_since_the_preview_writes_nothing_on_confirm(admin_client, make_user):
    shown = preview(admin_client, f"{HEADER}\n{ASHA}\ncrm-43,B,+919876000002,Asia/Kolkata,20:30,true,,\n")
    make_user(external_id="meanwhile", phone="+919876000002")  # takes line 3's phone
    before = stored()
    done = confirm(admin_client, shown)
    [message] = [str(m) for m in done.context["messages"]]
    assert message.startswith(
        "Nothing was imported: the file no longer imports cleanly (line 3: phone: Another"
    )
    assert stored() == before


# --- Import: profile changes, next_call_at, bulk --------------------------------------------


def test_an_import_that_changes_the_schedule_cancels_the_queued_calls(admin_client, make_user, make_call):
    users = [
        make_user(external_id=f"crm-{n}", call_time=time(20, 30), local_tz="Asia/Kolkata") for n in range(5)
    ]
    # Due a minute ago, not taken by a worker yet (one claimed ahead is released instead).
    calls = [
        make_call(user=user, status=CallStatus.QUEUED, scheduled_for=MORNING - timedelta(minutes=1))
        for user in users
    ]
    ringing = make_call(user=users[0], attempt=2, status=CallStatus.RINGING)
    text = (
        "external_id,phone,local_tz,call_time,call_enabled\n"
        f"crm-0,{users[0].phone},Asia/Kolkata,20:30,false\n"
        "crm-1,,Asia/Kolkata,20:30,true\n"
        f"crm-2,{users[2].phone},Asia/Kolkata,09:00,true\n"
        f"crm-3,{users[3].phone},Europe/London,20:30,true\n"
        f"crm-4,{users[4].phone},Asia/Kolkata,20:30:00,yes\n"
    )
    with time_machine.travel(EVENING, tick=False):
        import_csv(admin_client, text)
    assert [tuple(Call.objects.values_list("status", "error").get(pk=c.pk)) for c in calls] == [
        (CallStatus.CANCELED, "User disabled calls."),
        (CallStatus.CANCELED, "User removed their phone number."),
        (CallStatus.CANCELED, "User changed call time from 20:30 to 09:00."),
        (CallStatus.CANCELED, "User changed time zone from Asia/Kolkata to Europe/London."),
        (CallStatus.QUEUED, ""),
    ]
    assert Call.objects.get(pk=ringing.pk).status == CallStatus.RINGING


def test_next_call_at_after_an_import_is_what_saving_each_user_gives(make_user, make_call):
    # Zones on both sides of UTC, a 30-minute DST zone, a user already called today.
    called = make_user(external_id="called", phone="+919876000001", call_time=time(10, 0))
    make_call(user=called, attempt=1, local_date="2026-11-28", status=CallStatus.COMPLETED)
    rows = [
        ("called", "+919876000001", "Asia/Kolkata", "20:30"),
        ("ny", "+12125550123", "America/New_York", "02:30"),
        ("lh", "+61255501234", "Australia/Lord_Howe", "02:15"),
        ("off", "", "Europe/London", "09:00"),
    ]
    dataset = tablib.Dataset(*rows, headers=["external_id", "phone", "local_tz", "call_time"])
    result = UserResource().import_data(dataset, dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors()
    for user in User.objects.filter(external_id__isnull=False):
        assert user.next_call_at == user.compute_next_call_at(), user.external_id
    assert User.objects.get(external_id="called").next_call_at == datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
    assert User.objects.get(external_id="off").next_call_at is None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's inserts are batched by its parameter limit"
)
def test_an_import_takes_a_few_queries_whatever_the_number_of_rows():
    def queries_for(count, start):
        rows = [
            (f"crm-{n}", f"+9198760{n:05d}", "Asia/Kolkata", f"{8 + n % 12:02d}:30")
            for n in range(start, start + count)
        ]
        dataset = tablib.Dataset(*rows, headers=["external_id", "phone", "local_tz", "call_time"])
        policy_cache_clear()  # each measure reads the call policy once, as a new process would
        with CaptureQueriesContext(connection) as queries:
            result = UserResource().import_data(dataset, dry_run=False)
        assert result.totals["new"] == count
        return len(queries)

    assert queries_for(300, start=1000) == queries_for(10, start=0)


# --- Export ---------------------------------------------------------------------------------


def export(client) -> bytes:
    """The export as the admin's Export button gives it (every column, CSV)."""
    form = client.get(EXPORT_URL).context["form"]
    data = {
        "format": "0",
        **{name: "on" for name, field in form.fields.items() if getattr(field, "is_selectable_field", False)},
    }
    if "resource" in form.fields:
        data["resource"] = "0"
    response = client.post(EXPORT_URL, data)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return response.content


def test_the_export_has_the_import_columns(admin_client, make_user):
    make_user(
        external_id="crm-42", name="Asha, Rao", phone="+919876543210", call_time=time(20, 30), max_retries=1
    )
    make_user(
        external_id="crm-43", phone=None, call_enabled=False, local_tz="Europe/London", retry_delay_minutes=5
    )
    text = export(admin_client).decode("utf-8-sig")
    rows = {row["external_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert list(next(csv.reader(io.StringIO(text)))) == list(COLUMNS)
    assert rows["crm-42"] == {
        "external_id": "crm-42",
        "phone": "+919876543210",
        "name": "Asha, Rao",
        "local_tz": "Asia/Kolkata",
        "call_time": "20:30:00",
        "call_enabled": "true",
        "max_retries": "1",
        "retry_delay_minutes": "",
        "email": "",
        "notify_sms": "false",
        "notify_email": "false",
        "context": "{}",
        "call_days": "mon tue wed thu fri sat sun",
        "pause_until": "",
    }
    assert (rows["crm-43"]["phone"], rows["crm-43"]["call_enabled"]) == ("", "false")


def test_an_export_imports_back_as_it_is_and_changes_nothing(admin_client, admin_user, make_user):
    """The file just as the browser saved it, imported back: the
    people without an external id got one on export, the operators are not in it, and the
    import reports "0 changed"."""
    make_user(external_id="crm-42", name="Asha, Rao", max_retries=1)
    made_in_the_admin = make_user(name="Ravi Kumar", phone="+919876500001")  # no external id
    make_user(name="José Ñúñez", external_id=None, phone=None, call_enabled=False, local_tz="Europe/Madrid")
    make_user(username="desk", is_staff=True)  # an operator
    made_in_the_admin.refresh_from_db()
    assert made_in_the_admin.external_id is None

    file = export(admin_client)
    text = file.decode("utf-8-sig")
    ids = [row["external_id"] for row in csv.DictReader(io.StringIO(text))]
    made_in_the_admin.refresh_from_db()
    assert made_in_the_admin.external_id == f"relevel-{made_in_the_admin.pk}"
    assert sorted(ids) == sorted(User.objects.filter(is_staff=False).values_list("external_id", flat=True))
    assert len(ids) == 3 and "desk" not in text and admin_user.username not in text

    before = stored()
    shown = admin_client.post(
        IMPORT_URL, {"import_file": SimpleUploadedFile("users.csv", file, "text/csv"), "format": "0"}
    )
    assert "0 new, 0 changed, 3 unchanged (of 3 rows)" in shown.content.decode()
    done = confirm(admin_client, shown)
    assert [str(m) for m in done.context["messages"]] == ["Import finished: 0 new, 0 changed, 3 unchanged."]
    assert stored() == before
    # A second export gives the same file: the ids given stay.
    assert export(admin_client) == file


def test_a_person_added_in_the_admin_gets_an_external_id(admin_client):
    from tests.test_user_validation import add_form_data

    assert admin_client.post(reverse("admin:users_user_add"), add_form_data()).status_code == 302
    person = User.objects.get(name="New Comer")
    assert person.external_id == f"relevel-{person.pk}"


def test_an_external_id_the_product_uses_is_not_given_twice(make_user):
    from users.upsert import users_give_external_ids

    first = make_user()
    make_user(external_id=f"relevel-{first.pk}")  # the product's own id, by chance the same
    assert users_give_external_ids(users=User.objects.filter(pk=first.pk)) == 1
    first.refresh_from_db()
    assert first.external_id.startswith(f"relevel-{first.pk}-")


# --- Who may -------------------------------------------------------------------------------


def test_importing_needs_the_add_and_change_permissions_and_exporting_the_view_one(client, make_user):
    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(staff)
    assert client.get(IMPORT_URL).status_code == 403
    assert client.get(EXPORT_URL).status_code == 200
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_user", "change_user"]))
    assert client.get(IMPORT_URL).status_code == 200


def test_the_user_list_links_to_import_and_export(admin_client):
    html = admin_client.get(reverse("admin:users_user_changelist")).content.decode()
    assert f"href='{IMPORT_URL}'" in html and f'href="{EXPORT_URL}' in html


def test_the_import_records_who_added_or_changed_each_user_in_the_admin_history(
    admin_client, admin_user, make_user
):
    from django.contrib.admin.models import LogEntry

    changed = make_user(external_id="crm-1", phone="+919876000001", call_time=time(20, 30))
    import_csv(
        admin_client,
        "external_id,phone,call_time\ncrm-1,+919876000001,21:00\ncrm-2,+919876000002,09:00\n",
    )
    added = User.objects.get(external_id="crm-2")
    entries = {entry.object_id: entry for entry in LogEntry.objects.filter(user=admin_user)}
    assert entries[str(added.pk)].get_change_message() == "Added."
    assert entries[str(changed.pk)].get_change_message() == "Changed Call time."
    history = admin_client.get(reverse("admin:users_user_history", args=[changed.pk])).content.decode()
    assert "Changed Call time." in history


# --- The command, for files too big for a web request ------------------------------------------


def test_the_import_users_command_imports_a_file_as_the_admin_does(tmp_path):
    from django.core.management import call_command

    path = tmp_path / "users.csv"
    path.write_text(f"{HEADER}\n{ASHA}\n", encoding="utf-8")
    out = io.StringIO()
    call_command("import_users", str(path), "--dry-run", stdout=out)
    assert (
        out.getvalue().strip()
        == "import_users: 1 rows: 1 new, 0 changed, 0 unchanged (dry run: nothing written)"
    )
    assert not User.objects.filter(external_id="crm-42").exists()
    call_command("import_users", str(path), stdout=io.StringIO())
    assert User.objects.get(external_id="crm-42").next_call_at == SLOT


def test_the_import_users_command_lists_the_bad_rows_and_writes_nothing(tmp_path):
    from django.core.management import CommandError, call_command

    path = tmp_path / "users.csv"
    path.write_text(f"{HEADER}\n{ASHA}\ncrm-43,B,98765,Asia/Kolkata,20:30,true,,\n", encoding="utf-8")
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 problem\(s\); nothing was imported"):
        call_command("import_users", str(path), stderr=err)
    assert err.getvalue().startswith("line 3: phone: 98765 is not a valid phone number")
    assert not User.objects.filter(external_id__isnull=False).exists()
