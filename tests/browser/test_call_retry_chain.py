"""A call's page and its retry chain: from the calls list to an attempt, and on to the other."""

from datetime import UTC, date, datetime, timedelta

import pytest

from calls.models import CallStatus

pytestmark = pytest.mark.browser

DAY = date(2026, 11, 28)
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 in Asia/Kolkata


def readonly_value(browser, field: str) -> str:
    return browser.find(f".field-{field} .readonly").text


def chain_items(browser) -> list[str]:
    return [item.text for item in browser.find_all("ol.retry-chain > li")]


def test_the_retry_chain_links_a_no_answer_attempt_and_its_completed_retry(logged_in, make_user, make_call):
    user = make_user(username="asha", name="Asha Rao", local_tz="Asia/Kolkata")
    first = make_call(
        user=user,
        attempt=1,
        local_date=DAY,
        scheduled_for=SLOT,
        status=CallStatus.NO_ANSWER,
        end_reason="USER_UNAVAILABLE",
    )
    retry = make_call(
        user=user,
        attempt=2,
        local_date=DAY,
        scheduled_for=SLOT + timedelta(minutes=30),
        status=CallStatus.COMPLETED,
        retry_of=first,
    )
    browser = logged_in
    browser.open("/admin/calls/call/")
    browser.find(f'#result_list th.field-id a[href$="/{first.pk}/change/"]').click()

    assert browser.path == f"/admin/calls/call/{first.pk}/change/"
    assert readonly_value(browser, "attempt") == "1"
    assert readonly_value(browser, "status_display") == "No answer"
    # Each attempt's time in the user's zone (20:30 IST is 15:00 UTC), UTC in its tooltip.
    assert chain_items(browser) == [
        f"Call {first.pk} · attempt 1 (this call) No answer scheduled 2026-11-28 20:30:00 IST",
        f"Call {retry.pk} · attempt 2 Answered scheduled 2026-11-28 21:00:00 IST",
    ]
    assert [time.get_attribute("title") for time in browser.find_all("ol.retry-chain time")] == [
        "Asia/Kolkata; 2026-11-28 15:00:00 UTC",
        "Asia/Kolkata; 2026-11-28 15:30:00 UTC",
    ]
    # Only the other attempt is a link; this one is marked, not linked.
    links = browser.find_all("ol.retry-chain a")
    assert [link.text for link in links] == [f"Call {retry.pk} · attempt 2"]

    links[0].click()
    assert browser.path == f"/admin/calls/call/{retry.pk}/change/"
    assert readonly_value(browser, "attempt") == "2"
    assert readonly_value(browser, "status_display") == "Answered"
    assert chain_items(browser)[1].startswith(f"Call {retry.pk} · attempt 2 (this call)")

    browser.find("ol.retry-chain a").click()
    assert browser.path == f"/admin/calls/call/{first.pk}/change/"
    assert readonly_value(browser, "status_display") == "No answer"
    assert readonly_value(browser, "end_reason_display") == "User unavailable (USER_UNAVAILABLE)"
    assert browser.find(".field-user_link .readonly a").text == "Asha Rao"
    browser.scroll_to(".field-retry_chain")  # what the screenshot shows
