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


def full_page_screenshot(browser, label: str) -> None:
    """The whole page, not only the window's height, at the window's width."""
    width, height = browser.driver.get_window_size().values()
    page_height = browser.driver.execute_script("return document.documentElement.scrollHeight")
    browser.driver.set_window_size(width, max(height, page_height + 150))
    browser.screenshot(label)
    browser.driver.set_window_size(width, height)


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
    full_page_screenshot(browser, f"people-{window[0]}")

    browser.open(OPERATORS_PATH)
    names = {cell.text for cell in browser.find_all("#result_list tbody td.field-name")}
    assert names == {"Ops Person", "Front Desk"}
    assert "Asha Rao" not in browser.page_text()
    no_sideways_scroll(browser)

    # An operator is added with a login, and nothing about calls.
    browser.open(f"{OPERATORS_PATH}add/")
    names = {field.get_attribute("name") for field in browser.find_all("#operator_form input")}
    assert {"username", "password1", "password2"} <= names
    assert not {"phone", "call_time", "local_tz"} & names
    no_sideways_scroll(browser)
    full_page_screenshot(browser, f"operator-add-{window[0]}")


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
    full_page_screenshot(browser, f"change-{window[0]}")

    browser.open(f"{PEOPLE_PATH}add/")
    browser.find("input[name=call_time]")
    assert browser.find_all(".datetimeshortcuts") == []
    # Typing a time still works as before.
    field = browser.find("input[name=call_time]")
    assert field.get_attribute("placeholder") == "20:30"


# --- Item 9: adding a person asks for what calling them needs --------------------------------


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_adding_a_person_asks_for_name_phone_zone_and_call_time_not_a_login(browser, operator, window):
    browser.driver.set_window_size(*window)
    browser.log_in_as(operator)
    browser.open(f"{PEOPLE_PATH}add/")
    form = browser.find("#user_form")
    visible = [
        field.get_attribute("name")
        for field in form.find_elements(By.CSS_SELECTOR, "input, select")
        if field.is_displayed() and field.get_attribute("type") not in ("hidden", "submit")
    ]
    assert visible == ["name", "phone", "local_tz", "call_time", "call_enabled"]
    assert browser.find_all("input[name=username], input[name=password1], input[name=usable_password]") == []
    # The time zone suggests every IANA zone as one types (a datalist tied to the input).
    zone = browser.find("input[name=local_tz]")
    zones = browser.driver.execute_script(
        "return Array.from(arguments[0].list.options, option => option.value)", zone
    )
    assert "Asia/Kolkata" in zones and len(zones) > 400
    no_sideways_scroll(browser)
    full_page_screenshot(browser, f"add-{window[0]}")

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


# --- Item 5: an import with bad rows ------------------------------------------------------------

IMPORT_PATH = "/admin/users/user/import/"
# Lines 3 and 5 are bad (line 1 is the header): a phone, and a zone and a time.
MIXED_FILE = (
    "external_id,name,phone,local_tz,call_time,call_enabled,max_retries,retry_delay_minutes\n"
    "crm-1,Asha Rao,+91 98765 43210,Asia/Kolkata,20:30,true,1,45\n"
    "crm-2,Bilal Khan,98765,Asia/Kolkata,20:30,true,,\n"
    "crm-3,Chidi Okafor,+234 802 123 4567,Africa/Lagos,19:00,true,,\n"
    "crm-4,Diya Sharma,+91 98765 43211,Mars/Olympus,8pm,true,,\n"
    "crm-5,Emma Brown,+44 20 7946 0958,Europe/London,18:15,false,,\n"
)


def upload(browser, path) -> None:
    browser.open(IMPORT_PATH)
    browser.find("input[type=file][name=import_file]").send_keys(str(path))
    browser.find("form input[type=submit]").click()


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_an_import_with_bad_rows_shows_every_row_and_imports_the_valid_ones_once_confirmed(
    browser, operator, tmp_path, window
):
    from users.models import User

    browser.driver.set_window_size(*window)
    browser.log_in_as(operator)
    path = tmp_path / "people.csv"
    path.write_text(MIXED_FILE)
    upload(browser, path)

    errors = browser.find("table.import-errors")
    assert [cell.text for cell in errors.find_elements(By.CSS_SELECTOR, "tbody td.line")] == ["3", "5"]
    assert [cell.text for cell in errors.find_elements(By.CSS_SELECTOR, "tbody td.column")] == [
        "phone",
        "local_tz",
        "call_time",
    ]
    assert "98765 is not a valid phone number" in errors.text
    assert "Mars/Olympus is not an IANA time zone" in errors.text
    preview = browser.find("table.import-valid")
    assert [cell.text for cell in preview.find_elements(By.CSS_SELECTOR, "tbody td.line")] == ["2", "4", "6"]
    no_sideways_scroll(browser)
    full_page_screenshot(browser, f"mixed-{window[0]}")

    # Confirming needs the box that says the invalid rows are left out.
    button = browser.find("input[name=confirm]")
    button.click()
    assert browser.find(".errorlist").is_displayed()
    assert not User.objects.filter(external_id__startswith="crm-").exists()
    browser.find("input[name=skip_invalid]").click()
    browser.find("input[name=confirm]").click()
    message = browser.find("ul.messagelist li").text
    assert message.startswith("Import finished: 3 new, 0 changed, 0 unchanged.")
    assert "2 invalid rows left out (lines 3, 5)" in message
    assert set(User.objects.filter(external_id__startswith="crm-").values_list("external_id", flat=True)) == {
        "crm-1",
        "crm-3",
        "crm-5",
    }


# --- Item 13: a person's page opens on the record and the next call -------------------------------


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_a_persons_page_shows_the_next_call_and_the_last_30_days_first(
    browser, operator, make_user, make_call, window
):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from calls.models import CallStatus

    browser.driver.set_window_size(*window)
    asha = make_user(name="Asha Rao", local_tz="Asia/Kolkata", call_time=time(20, 30))
    today = timezone.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    for days_ago, status in ((1, CallStatus.COMPLETED), (2, CallStatus.NO_ANSWER), (3, CallStatus.COMPLETED)):
        make_call(user=asha, local_date=today - timedelta(days=days_ago), status=status)
    browser.log_in_as(operator)
    browser.open(f"{PEOPLE_PATH}{asha.pk}/change/")

    headings = [heading.text for heading in browser.find_all("#user_form fieldset h2")]
    assert headings[:2] == ["Next call and the last 30 days", "Person to call"]
    first = browser.find("#user_form fieldset")
    assert (
        first.find_element(By.CSS_SELECTOR, ".field-next_call time").text.replace("\n", " ").endswith("IST")
    )
    assert len(first.find_elements(By.CSS_SELECTOR, "#call-record li.call-day")) == 30
    # The record is on the first screen, above the fields to change.
    record = browser.find("#call-record").rect
    name_input = browser.find("input[name=name]").rect
    assert record["y"] < name_input["y"]
    assert record["y"] + record["height"] <= browser.viewport()[1]
    no_sideways_scroll(browser)
    full_page_screenshot(browser, f"person-{window[0]}")


# --- Item 11: one word for one thing ------------------------------------------------------------


@pytest.mark.parametrize("window", WIDTHS, ids=window_id)
def test_the_people_pages_say_answered_time_zone_and_end_reasons_in_words(
    browser, operator, make_user, make_call, window
):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from calls.models import CallStatus

    browser.driver.set_window_size(*window)
    asha = make_user(name="Asha Rao", local_tz="Asia/Kolkata")
    today = timezone.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    make_call(user=asha, local_date=today - timedelta(days=2), status=CallStatus.COMPLETED)
    make_call(
        user=asha,
        local_date=today - timedelta(days=1),
        status=CallStatus.NO_ANSWER,
        end_reason="USER_UNAVAILABLE",
    )
    browser.log_in_as(operator)

    browser.open(f"{PEOPLE_PATH}{asha.pk}/change/")
    recent = browser.find("ul.recent-calls").text
    assert "Answered" in recent and "No answer User unavailable" in recent
    assert "Completed" not in browser.page_text() and "USER_UNAVAILABLE" not in browser.page_text()
    cell = browser.find(f'#call-record li[data-date="{today - timedelta(days=1)}"]')
    assert "attempt 1: No answer (user unavailable)" in cell.get_attribute("title")
    browser.scroll_to("ul.recent-calls")
    browser.screenshot(f"recent-{window[0]}")

    browser.open(f"{PEOPLE_PATH}export/")
    labels = browser.find("#content form").text
    assert "Time zone (local_tz)" in labels and "Local Tz" not in labels
    no_sideways_scroll(browser)
