"""GET /api/users/<external_id>/calls, the call page's result, the admin's search, the
cost guard and /metrics' new gauges (docs/conversation.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from calls import policy
from calls.analysis import call_analyse
from calls.budget import budget_state, month_cost
from calls.models import CallPolicy, CallStatus
from calls.policy_changes import policy_update
from tests.provider_fakes import configure_retell, fixture, post_retell

pytestmark = pytest.mark.django_db
TOKEN = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


@pytest.fixture
def analysed(settings, make_user, make_call, client):
    """A Retell call answered on the calls' day, its call_analyzed (with a cost) analysed."""
    configure_retell(settings)
    doc = fixture("retell", "webhook_call_ended.json")
    user = make_user(external_id="crm-42")
    call = make_call(
        user=user, status=CallStatus.RINGING, provider="retell", provider_call_id=doc["call"]["call_id"]
    )
    post_retell(client, doc)
    post_retell(client, fixture("retell", "webhook_call_analyzed_with_cost.json"))
    call_analyse(call_id=call.pk)
    return call


@pytest.mark.usefixtures("on_the_calls_day")
def test_the_calls_api_lists_the_users_calls_newest_first_with_their_results(analysed, make_call, client):
    older = make_call(user=analysed.user, local_date=date(2026, 11, 27), status=CallStatus.VOICEMAIL)

    response = client.get("/api/users/crm-42/calls?days=7", **TOKEN)

    assert response.status_code == 200
    calls = response.json()["calls"]
    assert [call["call_id"] for call in calls] == [str(analysed.pk), str(older.pk)]
    assert calls[0]["status"] == "completed" and calls[0]["local_date"] == "2026-11-28"
    assert calls[0]["result"]["summary"].startswith("The user walked")
    assert calls[0]["result"]["cost"] == {"amount": "0.0375", "currency": "USD"}
    assert (calls[1]["status"], calls[1]["result"]) == ("voicemail", None)
    one_day = client.get("/api/users/crm-42/calls?days=1", **TOKEN).json()["calls"]
    assert [call["call_id"] for call in one_day] == [str(analysed.pk)]


@pytest.mark.parametrize("days", ["0", "91", "x", "-1"])
def test_a_bad_days_is_a_400_naming_it(client, make_user, days):
    make_user(external_id="crm-1")

    response = client.get(f"/api/users/crm-1/calls?days={days}", **TOKEN)

    assert response.status_code == 400 and set(response.json()["errors"]) == {"days"}


def test_the_calls_api_needs_the_operator_token(client, make_user):
    make_user(external_id="crm-1")

    assert client.get("/api/users/crm-1/calls").status_code in (401, 403)
    assert client.get("/api/users/nobody/calls", **TOKEN).status_code == 404


@pytest.mark.usefixtures("on_the_calls_day")
def test_the_call_page_shows_the_result_and_the_admin_finds_calls_by_what_was_said(analysed, admin_client):
    page = admin_client.get(reverse("admin:calls_call_change", args=[analysed.pk])).content.decode()

    assert "The user walked for 20 minutes" in page
    assert page.index("The user walked for 20 minutes") < page.index("call_analyzed")  # above the payloads
    found = admin_client.get(reverse("admin:calls_call_changelist") + "?q=walking").content.decode()
    assert f"/admin/calls/call/{analysed.pk}/change/" in found  # "walked" stems like "walking"
    nothing = admin_client.get(reverse("admin:calls_call_changelist") + "?q=swimming").content.decode()
    assert f"/admin/calls/call/{analysed.pk}/change/" not in nothing


@pytest.mark.usefixtures("on_the_calls_day")
def test_reaching_the_monthly_budget_pauses_calls_and_raising_it_resumes(analysed):
    policy_update(changes={"monthly_budget": "0.05"}, user_id=None, actor="test")
    assert not policy.policy_current().paused

    call_analyse(call_id=analysed.pk)  # run again: the month's cost stays one call's
    assert month_cost(currency="USD", now=analysed.scheduled_for) == Decimal("0.0375")

    policy_update(changes={"monthly_budget": "0.03"}, user_id=None, actor="test")
    state = budget_state()
    assert policy.policy_current().paused and policy.policy_current().budget_reached
    assert state.reached and state.describe().startswith("Calls are paused: the monthly budget is reached")

    policy_update(changes={"monthly_budget": None}, user_id=None, actor="test")
    assert not policy.policy_current().paused
    assert CallPolicy.objects.get().budget_reached_at is None


@pytest.mark.usefixtures("on_the_calls_day")
def test_metrics_export_the_months_cost_voicemails_opt_outs_and_the_budget(analysed, client, make_call):
    make_call(user=analysed.user, attempt=2, status=CallStatus.VOICEMAIL)

    text = client.get("/metrics", **TOKEN).content.decode()

    assert 'relevel_call_cost_month{currency="USD"} 0.0375' in text
    assert "relevel_voicemails_24h 1.0" in text
    assert "relevel_opt_outs_heard_24h 0.0" in text
    assert "relevel_budget_reached 0.0" in text
