"""The dial record (Call.dial_*, written when a worker takes a call) and the dial log
export (manage.py export_dial_log)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from calls import placement, policy, policy_changes
from calls.dial_log import dial_log_rows
from calls.models import Call, CallStatus
from tests.conftest import CALL_SLOT
from users import consent

pytestmark = pytest.mark.django_db(transaction=True)


def set_policy(**changes) -> None:
    policy_changes.policy_update(changes=changes, user_id=None, actor="test")
    policy.policy_cache_clear()


def export(*args: str) -> tuple[list[list[str]], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_dial_log", *args, stdout=out, stderr=err)
    return list(csv.reader(io.StringIO(out.getvalue()))), err.getvalue()


@pytest.fixture
def dialed(make_call, fake_callkaro, on_the_calls_day):
    """A call dialed a minute into its slot (20:31 IST on 2026-11-28), with consent and
    calling hours in force."""
    call = make_call()
    given = consent.user_consent_record(
        user_id=call.user_id,
        source="app",
        text="Terms v3",
        given_at=CALL_SLOT - timedelta(days=1),
        recorded_by="t",
    )
    set_policy(calling_hours={"start": "09:00", "end": "21:00"}, require_consent=True)
    assert placement.call_place(call_id=call.pk) == "placed"
    call.refresh_from_db()
    return call, given


def test_a_dial_records_the_local_time_the_hours_the_consent_and_the_suppression_check(dialed):
    call, given = dialed
    assert call.dial_local_time == "2026-11-28T20:31:00+05:30 Asia/Kolkata"
    assert call.dial_calling_hours == "09:00-21:00 local time"
    assert call.dial_consent_id == given.pk
    assert call.dial_suppression_checked is True


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_not_dialed_has_no_dial_record(make_call):
    call = make_call(user=None)
    set_policy(require_consent=True)
    assert placement.call_place(call_id=call.pk) == "canceled"
    call.refresh_from_db()
    assert (call.dial_local_time, call.dial_consent_id, call.dial_suppression_checked) == ("", None, False)


def test_the_export_writes_one_row_per_dial_with_the_persons_local_time(dialed, make_call):
    call, given = dialed
    # Never dialed, and dialed on another day: neither is in the day's log.
    make_call(status=CallStatus.CANCELED)
    other = make_call(local_date=CALL_SLOT.date() - timedelta(days=3))
    Call.objects.filter(pk=other.pk).update(dialed_at=CALL_SLOT - timedelta(days=3))
    rows, err = export("--from", "2026-11-28", "--to", "2026-11-28")
    header, *lines = rows
    assert header[:6] == [
        "call_id",
        "user_id",
        "external_id",
        "to_number",
        "dialed_at_utc",
        "local_time_at_dial",
    ]
    assert len(lines) == 1
    row = dict(zip(header, lines[0], strict=True))
    assert row["call_id"] == str(call.pk)
    assert row["to_number"] == call.user.phone  # an E.164 number stays itself
    assert row["local_time_at_dial"] == "2026-11-28T20:31:00+05:30 Asia/Kolkata"
    assert row["calling_hours"] == "09:00-21:00 local time"
    assert (row["consent_id"], row["consent_source"]) == (str(given.pk), "app")
    assert row["consent_given_at_utc"] == "2026-11-27T15:00:00Z"
    assert row["suppression_checked"] == "yes"
    assert "1 dials from 2026-11-28 to 2026-11-28" in err


def test_every_cell_is_safe_to_open_in_a_spreadsheet(dialed):
    call, _ = dialed
    call.user.external_id = "-cmd"
    call.user.save(update_fields=["external_id"])
    Call.objects.filter(pk=call.pk).update(dial_calling_hours="=HYPERLINK(1)")
    _, line = export("--from", "2026-11-28", "--to", "2026-11-28")[0]
    assert "'-cmd" in line and "'=HYPERLINK(1)" in line


def test_the_export_goes_to_a_file_when_asked(dialed, tmp_path):
    target = tmp_path / "dials.csv"
    rows, err = export("--from", "2026-11-28", "--to", "2026-11-29", "--output", str(target))
    assert rows == []
    assert len(list(csv.reader(target.open()))) == 2
    assert f"written to {target}" in err


def test_the_rows_stream_from_a_generator_not_a_list(dialed):
    # The command writes each row as it comes: a month of dials never sits in memory.
    rows = dial_log_rows(first_day=CALL_SLOT.date(), last_day=CALL_SLOT.date())
    assert iter(rows) is rows
    assert len(list(rows)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01", "--to", "2026-12-01"], "--from must be a date such as 2026-12-01"),
        (["--from", "2026-12-01", "--to", "tomorrow"], "--to must be a date"),
        (["--from", "2026-12-02", "--to", "2026-12-01"], "--to (2026-12-01) is before --from (2026-12-02)"),
    ],
)
def test_a_bad_date_is_one_readable_error(db, args, message):
    with pytest.raises(CommandError) as raised:
        call_command("export_dial_log", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert message in str(raised.value)


def test_an_unwritable_output_is_one_readable_error(db, tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        call_command(
            "export_dial_log",
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-01",
            "--output",
            str(tmp_path / "no" / "x.csv"),
        )
