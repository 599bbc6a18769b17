"""The people pages as an operator meets them (issue 17): the people list shows the people
who are called and the operators have a list of their own, each at 1366 and 1920 px."""

from __future__ import annotations

from datetime import time

import pytest
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.browser

PEOPLE_PATH = "/admin/users/user/"
OPERATORS_PATH = "/admin/users/operator/"
WIDTHS = [(1366, 768), (1920, 1080)]


def no_sideways_scroll(browser) -> None:
    scroll, client = browser.driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"{browser.path} scrolls sideways: {scroll} px wide in {client} px"


def window_id(window) -> str:
    return f"{window[0]}px"


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_the_people_list_shows_people_and_operators_have_their_own_list(
    request, browser, operator, make_user, window
):
    browser.driver.set_window_size(*window)
    make_user(name="Asha Rao", local_tz="Asia/Kolkata", call_time=time(20, 30))
    make_user(username="desk", name="Front Desk", is_staff=True)
    browser.log_in_as(operator)

    browser.open(PEOPLE_PATH)
    rows = [row.text for row in browser.find_all("#result_list tbody tr")]
    assert len(rows) == 1 and "Asha Rao" in rows[0]
    assert "Ops Person" not in browser.page_text() and "Front Desk" not in browser.page_text()
    no_sideways_scroll(browser)
    browser.screenshot(f"people-{window[0]}")

    browser.open(OPERATORS_PATH)
    names = {cell.text for cell in browser.find_all("#result_list tbody td.field-name")}
    assert names == {"Ops Person", "Front Desk"}
    assert "Asha Rao" not in browser.page_text()
    no_sideways_scroll(browser)


# --- Item 15: no "Now" on a call time -------------------------------------------------------


def shortcuts_beside(browser, css: str) -> list[str]:
    """The admin's date/time shortcuts ("Now", the clock) next to the input ``css`` selects."""
    field = browser.find(css)
    return [
        link.text or link.get_attribute("title") or "clock"
        for link in field.find_elements(By.XPATH, "./following-sibling::span[@class='datetimeshortcuts']//a")
    ]


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_no_call_time_input_offers_the_operators_clock(browser, operator, make_user, window):
    browser.driver.set_window_size(*window)
    asha = make_user(name="Asha Rao", call_time=time(20, 30))
    browser.log_in_as(operator)

    browser.open(PEOPLE_PATH)
    browser.find("#result_list")
    assert browser.find_all(".datetimeshortcuts") == []
    assert shortcuts_beside(browser, "input[name='form-0-call_time']") == []
    assert "Now" not in [link.text for link in browser.find_all("#result_list a")]
    no_sideways_scroll(browser)

    browser.open(f"{PEOPLE_PATH}{asha.pk}/change/")
    assert browser.find("input[name=call_time]").get_attribute("value") == "20:30:00"
    assert browser.find_all(".datetimeshortcuts") == []
    browser.screenshot(f"change-{window[0]}")

    browser.open(f"{PEOPLE_PATH}add/")
    browser.find("input[name=call_time]")
    assert browser.find_all(".datetimeshortcuts") == []
    # Typing a time still works as before.
    field = browser.find("input[name=call_time]")
    assert field.get_attribute("placeholder") == "20:30"


# --- Item 9: adding a person asks for what calling them needs --------------------------------


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_adding_a_person_asks_for_name_phone_zone_and_call_time_not_a_login(
    browser, operator, window
):
    browser.driver.set_window_size(*window)
    browser.log_in_as(operator)
    browser.open(f"{PEOPLE_PATH}add/")
    form = browser.find("#user_form")
    visible = [field.get_attribute("name") for field in form.find_elements(By.CSS_SELECTOR, "input, select")
               if field.is_displayed() and field.get_attribute("type") not in ("hidden", "submit")]
    assert visible == ["name", "phone", "local_tz", "call_time", "call_enabled"]
    assert browser.find_all("input[name=username], input[name=password1], input[name=usable_password]") == []
    # The time zone suggests every IANA zone as one types (a datalist tied to the input).
    zone = browser.find("input[name=local_tz]")
    zones = browser.driver.execute_script(
        "return Array.from(arguments[0].list.options, option => option.value)", zone
    )
    assert "Asia/Kolkata" in zones and len(zones) > 400
    no_sideways_scroll(browser)
    browser.screenshot(f"add-{window[0]}")

    browser.find("input[name=name]").send_keys("Asha Rao")
    browser.find("input[name=phone]").send_keys("+91 98765 43210")
    zone.clear()
    zone.send_keys("Asia/Kolkata")
    browser.find("input[name=call_time]").clear()
    browser.find("input[name=call_time]").send_keys("20:30")
    browser.find("input[name=_save]").click()
    browser.find("ul.messagelist li.success")

    from users.models import User

    asha = User.objects.get(phone="+919876543210")
    assert (asha.name, asha.username, asha.local_tz) == ("Asha Rao", "asha-rao", "Asia/Kolkata")
    assert not asha.has_usable_password() and asha.next_call_at is not None
