"""A pause, seen in the browser: set on the policy page, shown on every operator page with
who and when, ended with the banner's own button."""

import pytest
from selenium.webdriver.common.by import By

from calls import policy, policy_changes

pytestmark = pytest.mark.browser


def test_a_pause_set_on_the_policy_page_shows_everywhere_until_resumed(logged_in):
    browser = logged_in
    browser.open("/admin/calls/callpolicy/")
    browser.find("#id_paused").click()
    browser.find("input[name=_save]").click()
    browser.find(".messagelist li.success")
    assert browser.find("#banner-paused")
    policy.policy_cache_clear()
    assert policy.policy_current().paused

    for path in ("/admin/", "/dashboard/", "/django-rq/", "/admin/calls/call/"):
        browser.open(path)
        banner = browser.find("#banner-paused").text
        assert banner.startswith("Calls are paused since 20"), (path, banner)
        assert "Paused by Ops Person" in banner
    browser.screenshot("1366px")

    browser.find("#banner-paused button[type=submit]").click()
    assert "Calls resumed" in browser.find(".messagelist li.success").text  # the page after it
    assert browser.path == "/admin/calls/call/"  # back where it was pressed
    assert not browser.find_all("#banner-paused")
    policy.policy_cache_clear()
    assert not policy.policy_current().paused


@pytest.mark.browser(window=(1920, 1080))
def test_the_pause_banner_at_1920_px(logged_in, operator):
    policy_changes.policy_update(changes={"paused": True}, user_id=operator.pk, actor="test")
    browser = logged_in
    browser.open("/dashboard/")
    banner = browser.find("#banner-paused")
    assert banner.find_element(By.CSS_SELECTOR, "button").text == "Resume calls"
    assert banner.rect["width"] > 1000  # across the page, not squeezed into a column
    browser.screenshot("1920px")
