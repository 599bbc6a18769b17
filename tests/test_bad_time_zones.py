"""Whatever a raw UPDATE or an import leaves in ``local_tz``, validation refuses it and the
engine survives it: the tick, the repair of unscheduled users, saving, and the admin pages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from calls.claim import users_schedule_unscheduled
from calls.models import Call, CallStatus
from calls.scheduling import calls_schedule_due
from calls.slots import zone_or_none
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

# Asia/Kolkata: 20:30 local on 2026-11-28 is 15:00 UTC.
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)

# Folders of tzdata (ZoneInfo raises IsADirectoryError), path tricks (ValueError), names too
# long for a file name (OSError), near misses (ZoneInfoNotFoundError), and plain junk.
FOLDERS = ["America", "US", "Europe", "Etc"]
BAD_ZONES = [
    *FOLDERS,
    "",
    " ",
    "America/",
    "America//New_York",
    "/etc/passwd",
    "../../../../etc/passwd",
    "Mars/Olympus",
    "utc",
    "UTC ",
    "Asia/Kolkata\n",
    "a" * 64,
]


def at(moment):
    return time_machine.travel(moment, tick=False)


@pytest.mark.parametrize("zone", [*BAD_ZONES, "\x00", None])
def test_no_stored_value_is_taken_for_a_zone(zone):
    assert zone_or_none(zone) is None


def test_a_real_zone_is_a_zone():
    assert str(zone_or_none("Asia/Kolkata")) == "Asia/Kolkata"


@pytest.mark.parametrize("zone", FOLDERS)
def test_validation_refuses_a_tzdata_folder(zone):
    user = User(username="folder", phone="+919876543210", local_tz=zone, call_time=time(20, 30))
    with pytest.raises(ValidationError) as excinfo:
        user.full_clean(exclude=["password"])
    assert set(excinfo.value.message_dict) == {"local_tz"}
    assert f"{zone} is not an IANA time zone" in excinfo.value.message_dict["local_tz"][0]


@pytest.mark.parametrize("zone", BAD_ZONES)
def test_a_due_user_with_a_bad_zone_does_not_stop_the_tick_for_anyone_else(make_user, zone, caplog):
    with at(SLOT - timedelta(hours=1)):
        broken, good = make_user(), make_user()
    User.objects.filter(pk=broken.pk).update(local_tz=zone)  # next_call_at stays due
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        summary = calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert summary.claimed == 1
    assert list(Call.objects.values_list("user_id", flat=True)) == [good.pk]
    assert f"User {broken.pk} has an unknown time zone {zone!r}: not scheduled" in caplog.text
    broken.refresh_from_db()
    assert broken.next_call_at is None


@pytest.mark.parametrize("zone", BAD_ZONES)
def test_an_unscheduled_user_with_a_bad_zone_does_not_stop_the_repair_or_the_tick(make_user, zone):
    with at(SLOT - timedelta(hours=1)):
        broken, imported = make_user(), make_user()
    User.objects.filter(pk=broken.pk).update(local_tz=zone, next_call_at=None)
    User.objects.filter(pk=imported.pk).update(next_call_at=None)  # bulk-imported: never scheduled
    summary = calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert (summary.repaired, summary.claimed) == (1, 1)
    assert list(Call.objects.values_list("user_id", flat=True)) == [imported.pk]


def test_the_repair_alone_survives_a_folder_zone(make_user):
    with at(SLOT - timedelta(hours=1)):
        broken = make_user()
    User.objects.filter(pk=broken.pk).update(local_tz="America", next_call_at=None)
    assert users_schedule_unscheduled(now=SLOT) == 0


@pytest.mark.parametrize("zone", BAD_ZONES)
def test_saving_a_user_with_a_bad_zone_parks_them_instead_of_failing(make_user, zone):
    """An import that calls save() without full_clean(): the row is stored, never called."""
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
        user.local_tz = zone
        user.save()
        assert user.compute_next_call_at() is None
    user.refresh_from_db()
    assert (user.local_tz, user.next_call_at) == (zone, None)


@pytest.mark.parametrize("zone", [*FOLDERS, "Mars/Olympus", "../../../../etc/passwd"])
def test_the_admin_user_list_and_change_page_show_a_user_with_a_bad_zone(admin_client, make_user, zone):
    with at(SLOT - timedelta(hours=1)):
        user = make_user(name="Broken Zone")
    # The next call is kept (a zone changed behind the model's back) so the list renders it.
    User.objects.filter(pk=user.pk).update(local_tz=zone)
    response = admin_client.get(reverse("admin:users_user_changelist"))
    assert response.status_code == 200
    assert "Broken Zone" in response.content.decode()
    assert ">2026-11-28 15:00:00 UTC</time>" in response.content.decode()
    assert admin_client.get(reverse("admin:users_user_change", args=[user.pk])).status_code == 200


def test_the_admin_call_page_shows_a_call_whose_user_has_a_bad_zone(admin_client, make_call):
    call = make_call(status=CallStatus.MISSED)
    User.objects.filter(pk=call.user_id).update(local_tz="Europe")
    response = admin_client.get(reverse("admin:calls_call_change", args=[call.pk]))
    assert response.status_code == 200
    assert admin_client.get(reverse("admin:calls_call_changelist")).status_code == 200


# --- Parked means parked ------------------------------------------------------------------


def unknown_zone_lines(caplog) -> int:
    return sum("has an unknown time zone" in record.getMessage() for record in caplog.records)


def test_parked_users_do_not_hold_up_the_users_after_them(caplog):
    """1,000 imported users with a bad zone, then one good one: the repair's page is full of
    parked users only until they are parked, once."""
    User.objects.bulk_create(
        User(username=f"parked{i}", phone=f"+9197{i:08d}", local_tz="America", call_time=time(20, 30))
        for i in range(1000)
    )
    good = User.objects.create(username="good", phone="+919811111111", local_tz="Asia/Kolkata")
    User.objects.filter(pk=good.pk).update(next_call_at=None)  # as bulk_create leaves it
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        for n in range(14):
            calls_schedule_due(now=SLOT - timedelta(hours=2) + timedelta(minutes=5 * n))
    good.refresh_from_db()
    assert good.next_call_at == SLOT
    assert unknown_zone_lines(caplog) == 1000  # one line per user, not one per user per tick
    parked = User.objects.exclude(pk=good.pk)
    assert parked.filter(next_call_at=None, schedule_error__contains="'America'").count() == 1000


def test_a_due_user_parked_by_the_tick_is_logged_once(make_user, caplog):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
    User.objects.filter(pk=user.pk).update(local_tz="US")
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        for n in range(3):
            calls_schedule_due(now=SLOT + timedelta(minutes=1 + 5 * n))
    assert unknown_zone_lines(caplog) == 1
    user.refresh_from_db()
    assert user.next_call_at is None
    assert user.schedule_error == "Time zone 'US' is not an IANA time zone this host knows."


def test_saving_a_parked_user_with_a_valid_zone_schedules_them_again(make_user):
    with at(SLOT - timedelta(hours=1)):
        user = make_user()
        User.objects.filter(pk=user.pk).update(local_tz="Europe", next_call_at=None)
        calls_schedule_due()
        user.refresh_from_db()
        assert user.schedule_error
        user.local_tz = "Asia/Kolkata"
        user.save(update_fields=["local_tz"])
    user.refresh_from_db()
    assert (user.schedule_error, user.next_call_at) == (None, SLOT)


def test_saving_a_user_with_a_bad_zone_records_why_they_are_parked(make_user):
    user = make_user()
    user.local_tz = "Etc"
    user.save()
    user.refresh_from_db()
    assert user.schedule_error == "Time zone 'Etc' is not an IANA time zone this host knows."
    user.call_enabled = False  # not callable: nothing to park
    user.save()
    user.refresh_from_db()
    assert user.schedule_error is None


def test_the_admin_shows_why_a_user_is_parked_and_lists_parked_users(admin_client, make_user):
    parked, fine = make_user(name="Parked Person"), make_user(name="Fine Person")
    User.objects.filter(pk=parked.pk).update(local_tz="America", next_call_at=None)
    users_schedule_unscheduled(now=SLOT)
    page = admin_client.get(reverse("admin:users_user_change", args=[parked.pk])).content.decode()
    assert "Time zone &#x27;America&#x27; is not an IANA time zone this host knows." in page
    response = admin_client.get(reverse("admin:users_user_changelist") + "?parked=yes")
    assert {user.pk for user in response.context["cl"].result_list} == {parked.pk}
    response = admin_client.get(reverse("admin:users_user_changelist") + "?parked=no")
    assert fine.pk in {user.pk for user in response.context["cl"].result_list}
    assert parked.pk not in {user.pk for user in response.context["cl"].result_list}
