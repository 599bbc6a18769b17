"""The call results' and the monthly cost's admin lists at a laptop's 1366 px: every column
on screen, the times with their zone, the phone masked, links to the call and the user, the
filters, and the summary search."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from calls.models import CallPolicy, CallResult, CallStatus, MonthlyCost
from calls.policy import policy_cache_clear
from tests.browser.test_column_headers import assert_every_header_visible

pytestmark = pytest.mark.browser

ENDED = datetime(2026, 11, 28, 15, 5, 30, tzinfo=UTC)  # 20:35:30 in Kolkata


def seed_results(make_user, make_call) -> tuple:
    asha = make_user(name="Asha Raghunathan Venkataraman", phone="+919876543210", local_tz="Asia/Kolkata")
    ben = make_user(name="Ben Okafor", phone="+14155550147", local_tz="America/Los_Angeles")
    walked = make_call(user=asha, status=CallStatus.COMPLETED, completed_at=ENDED, provider="vapi")
    CallResult.objects.create(
        call=walked,
        summary="Asha walked for twenty minutes before breakfast and plans the same tomorrow.",
        transcript="Agent: Did you walk today? User: I walked twenty minutes, it felt great.",
        sentiment="positive",
        sentiment_score=0.8,
        sentiment_source="provider",
        answered_by="human",
        user_talk_seconds=41,
        cost_amount=Decimal("0.1234"),
        cost_currency="USD",
    )
    machine = make_call(user=ben, status=CallStatus.VOICEMAIL, completed_at=ENDED, provider="callkaro")
    CallResult.objects.create(call=machine, answered_by="voicemail", summary="Reached a voicemail greeting.")
    return walked, machine


def test_the_results_list_shows_every_column_with_zones_masked_phones_and_links(
    logged_in, make_user, make_call
):
    walked, machine = seed_results(make_user, make_call)
    assert_every_header_visible(logged_in, "/admin/calls/callresult/", width=1366)
    text = logged_in.page_text()
    assert "Asha Raghunathan Venkataraman" in text and "Ben Okafor" in text
    assert "2026-11-28 20:35:30 IST" in text  # in Asha's zone, with it
    assert "2026-11-28 07:05:30 PST" in text  # in Ben's
    assert "*********3210" in text
    assert "+919876543210" not in text and "9876543210" not in text  # masked
    assert "Positive +0.80" in text and "0.1234 USD" in text
    links = {a.get_attribute("pathname") for a in logged_in.find_all("#result_list a")}
    assert f"/admin/calls/call/{walked.pk}/change/" in links
    assert f"/admin/users/user/{walked.user_id}/change/" in links
    filters = logged_in.find("#changelist-filter").get_attribute("textContent")  # folded at 1366 px
    assert "By sentiment" in filters and "By answered by" in filters and "By provider" in filters
    width = logged_in.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1366
    logged_in.screenshot("list")

    # What was said, searched (PostgreSQL's full text; a plain contains on SQLite).
    logged_in.open("/admin/calls/callresult/?q=twenty+minutes")
    rows = logged_in.find_all("#result_list tbody tr")
    assert len(rows) == 1 and "Asha" in rows[0].text
    logged_in.open("/admin/calls/callresult/?answered_by=voicemail")
    rows = logged_in.find_all("#result_list tbody tr")
    assert len(rows) == 1 and "Ben Okafor" in rows[0].text


def test_the_monthly_cost_list_shows_the_month_the_cost_and_the_budget(logged_in):
    MonthlyCost.objects.create(month=date(2026, 11, 1), currency="USD", amount=Decimal("412.5"))
    MonthlyCost.objects.create(month=date(2026, 12, 1), currency="INR", amount=Decimal("90"))
    CallPolicy.objects.update_or_create(
        pk=1, defaults={"monthly_budget": Decimal("500"), "budget_currency": "USD"}
    )
    policy_cache_clear()
    assert_every_header_visible(logged_in, "/admin/calls/monthlycost/", width=1366)
    text = logged_in.page_text()
    assert "2026-11" in text and "412.5 USD" in text and "500 USD (82% used)" in text
    assert "90 INR" in text
    logged_in.screenshot("list")


@pytest.mark.browser(window=(1920, 1080))
def test_the_results_and_cost_lists_at_1920_px(logged_in, make_user, make_call):
    # A wide screen: every header still on screen, the filters beside the list, no scroll.
    seed_results(make_user, make_call)
    MonthlyCost.objects.create(month=date(2026, 11, 1), currency="USD", amount=Decimal("412.5"))
    assert_every_header_visible(logged_in, "/admin/calls/callresult/", width=1920)
    assert "2026-11-28 20:35:30 IST" in logged_in.page_text()
    logged_in.screenshot("results")
    assert_every_header_visible(logged_in, "/admin/calls/monthlycost/", width=1920)
    assert "412.5 USD" in logged_in.page_text()
    width = logged_in.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1920
    logged_in.screenshot("costs")
