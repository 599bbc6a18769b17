"""The call policy page as an operator fills it in: plain inputs, the rules in force as a table."""

import pytest
from selenium.webdriver.common.by import By

from calls import policy
from calls.models import CallPolicy

pytestmark = pytest.mark.browser


def fill_in_the_policy(browser) -> None:
    browser.open("/admin/calls/callpolicy/")
    delays = browser.find("#id_retry_delays_minutes")
    delays.clear()
    delays.send_keys("20, 40")
    boxes = {box.get_attribute("value"): box for box in browser.find_all("input[name=retry_statuses]")}
    assert list(boxes) == ["no_answer", "busy", "failed"]
    assert all(box.is_selected() for box in boxes.values())  # blank: all three, shown as such
    boxes["failed"].click()
    browser.find("input[name=_continue]").click()
    browser.find(".messagelist li.success")  # the page after saving, not the one before


def rules_in_force(browser) -> dict[str, list[str]]:
    rows = browser.find_all("#policy-in-force tr")
    return {
        row.find_element(By.TAG_NAME, "th").text: [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in rows
    }


def test_an_operator_types_delays_ticks_outcomes_and_reads_the_rules_in_force(logged_in):
    browser = logged_in
    fill_in_the_policy(browser)

    row = CallPolicy.objects.get()
    assert (row.retry_delays_minutes, row.retry_statuses) == ([20, 40], ["busy", "no_answer"])
    policy.policy_cache_clear()
    assert policy.policy_current().retry_delay_seconds(retry_number=2) == 2400
    assert browser.find("#id_retry_delays_minutes").get_attribute("value") == "20, 40"
    rules = rules_in_force(browser)
    assert rules["Outcomes retried"] == ["No answer, busy", "set here"]
    assert rules["Delays"][0].startswith("20 min before the 1st retry, 40 min before the 2nd retry")
    assert rules["Calls"] == ["Running", "set here"]
    assert "CALL_" not in browser.page_text()
    browser.scroll_to("#policy-in-force")
    browser.screenshot("1366px")


@pytest.mark.browser(window=(1920, 1080))
def test_the_policy_page_at_1920_px(logged_in):
    browser = logged_in
    fill_in_the_policy(browser)
    assert rules_in_force(browser)["Outcomes retried"] == ["No answer, busy", "set here"]
    browser.scroll_to("#id_retry_statuses")
    browser.screenshot("1920px")
