"""The users list: editing the daily call in place, and the bulk enable/disable actions."""

from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

pytestmark = pytest.mark.browser

USERS_PATH = "/admin/users/user/"


def user_row(browser, user) -> WebElement:
    """The list's row of ``user``, found by its selection box (whose value is the user's id)."""
    box = browser.find(f'#result_list input.action-select[value="{user.pk}"]')
    return box.find_element(By.XPATH, "./ancestor::tr")


def cell(row: WebElement, column: str) -> WebElement:
    return row.find_element(By.CSS_SELECTOR, f"td.field-{column}")


def calls_enabled_box(browser, user) -> WebElement:
    return cell(user_row(browser, user), "call_enabled").find_element(By.CSS_SELECTOR, "input[type=checkbox]")


def call_time_input(browser, user) -> WebElement:
    return cell(user_row(browser, user), "call_time").find_element(By.CSS_SELECTOR, "input[type=text]")


def success_messages(browser) -> list[str]:
    return [item.text for item in browser.find_all("ul.messagelist li.success, ul.messagelist li.info")]


def run_action(browser, action: str, users) -> None:
    for user in users:
        box = user_row(browser, user).find_element(By.CSS_SELECTOR, "input.action-select")
        assert not box.is_selected()
        box.click()
    Select(browser.find("select[name=action]")).select_by_value(action)
    browser.find("button[name=index]").click()
    browser.find("ul.messagelist")


def test_calls_enabled_and_call_time_edited_in_the_list_are_saved(logged_in, make_user):
    asha = make_user(username="asha", local_tz="Asia/Kolkata", call_time=time(20, 30), call_enabled=True)
    ravi = make_user(username="ravi", local_tz="Asia/Kolkata", call_time=time(20, 30), call_enabled=True)
    browser = logged_in
    browser.open(USERS_PATH)

    calls_enabled_box(browser, asha).click()
    time_field = call_time_input(browser, ravi)
    time_field.clear()
    time_field.send_keys("08:15")
    browser.find("#changelist-form input[name=_save]").click()

    assert "2 users were changed successfully." in success_messages(browser)
    browser.reload()
    assert browser.find_all("ul.messagelist") == []  # a reload, not the page the save returned

    assert not calls_enabled_box(browser, asha).is_selected()
    assert call_time_input(browser, asha).get_attribute("value") == "20:30:00"
    assert cell(user_row(browser, asha), "next_call").text == "-"  # calls off: no next call

    assert calls_enabled_box(browser, ravi).is_selected()
    assert call_time_input(browser, ravi).get_attribute("value") == "08:15:00"
    # The next call moved with the new time: 08:15 on the user's clock (today's or
    # tomorrow's, whenever the test runs), 02:45 UTC in its tooltip.
    next_call = cell(user_row(browser, ravi), "next_call").find_element(By.TAG_NAME, "time")
    shown = " ".join(next_call.text.split())  # the list shows the date over the time
    ist_today = timezone.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    assert shown in {f"{day:%Y-%m-%d} 08:15:00 IST" for day in (ist_today, ist_today + timedelta(days=1))}
    utc_day = date.fromisoformat(shown[:10])  # 08:15 IST is 02:45 UTC the same day
    assert next_call.get_attribute("title") == f"Asia/Kolkata; {utc_day:%Y-%m-%d} 02:45:00 UTC"


def test_bulk_enable_then_disable_says_what_changed_and_the_list_shows_it(logged_in, make_user):
    off_1 = make_user(username="off-1", call_enabled=False)
    off_2 = make_user(username="off-2", call_enabled=False)
    on_1 = make_user(username="on-1", call_enabled=True)
    browser = logged_in
    browser.open(USERS_PATH)

    run_action(browser, "enable_calls", [off_1, off_2, on_1])
    assert success_messages(browser) == ["Calls enabled for 2 users; 1 already had calls enabled."]
    browser.reload()
    assert [calls_enabled_box(browser, user).is_selected() for user in (off_1, off_2, on_1)] == [True] * 3
    assert all(cell(user_row(browser, user), "next_call").text != "-" for user in (off_1, off_2, on_1))

    run_action(browser, "disable_calls", [off_1, on_1])
    assert success_messages(browser) == ["Calls disabled for 2 users."]
    browser.reload()
    assert [calls_enabled_box(browser, user).is_selected() for user in (off_1, off_2, on_1)] == [
        False,
        True,
        False,
    ]
    assert cell(user_row(browser, off_1), "next_call").text == "-"
    assert cell(user_row(browser, on_1), "next_call").text == "-"
