"""At a laptop's 1366 px, the lists operators read all day show every column without
scrolling sideways."""

from datetime import UTC, date, datetime, time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from calls.models import CallStatus

pytestmark = pytest.mark.browser

# Each header's box against what is on screen: the page's width, narrowed by every ancestor
# that clips what overflows it. Django wraps the list in ".results" (overflow-x: auto), so a
# header can sit inside the page's width and still be scrolled out of that box's view.
HEADERS_OFF_SCREEN = """
const visibleRight = (element) => {
  let right = document.documentElement.clientWidth;
  for (let node = element.parentElement; node; node = node.parentElement) {
    if (getComputedStyle(node).overflowX !== 'visible') {
      right = Math.min(right, node.getBoundingClientRect().right);
    }
  }
  return right;
};
return Array.from(document.querySelectorAll('#result_list thead th')).flatMap(th => {
  const box = th.getBoundingClientRect();
  const right = visibleRight(th);
  const name = th.innerText.trim() || th.className;
  return box.left < 0 || box.right > right + 0.5
    ? [`${name} (${Math.round(box.left)}..${Math.round(box.right)} px, visible up to ${Math.round(right)})`]
    : [];
});
"""


def seed_users_and_calls(make_user, make_call) -> None:
    # Values as wide as real ones: a long name, a long zone, both call states, a retry.
    long_name = make_user(
        name="Maria Fernanda Gonçalves de Albuquerque", local_tz="America/Argentina/Buenos_Aires"
    )
    other = make_user(name="Asha Rao", local_tz="Asia/Kolkata", call_time=time(7, 5), call_enabled=False)
    slot = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
    first = make_call(
        user=long_name,
        attempt=1,
        local_date=date(2026, 11, 28),
        scheduled_for=slot,
        status=CallStatus.NO_ANSWER,
        end_reason="customer-did-not-answer",
        last_status_at=slot,
        completed_at=slot,
    )
    make_call(
        user=long_name,
        attempt=2,
        local_date=date(2026, 11, 28),
        scheduled_for=slot,
        status=CallStatus.COMPLETED,
        retry_of=first,
        end_reason="customer-ended-call",
        last_status_at=slot,
        completed_at=slot,
    )
    make_call(user=other, status=CallStatus.QUEUED)


def assert_every_header_visible(browser, path: str, *, width: int) -> None:
    browser.open(path)
    assert browser.find_all("#result_list thead th"), f"no list table on {path}"
    assert browser.driver.get_window_size()["width"] == width
    off_screen = browser.driver.execute_script(HEADERS_OFF_SCREEN)
    assert not off_screen, f"headers off screen at {width} px on {path}: {'; '.join(off_screen)}"


def test_every_users_list_column_header_is_visible_at_1366_px(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    assert_every_header_visible(logged_in, "/admin/users/user/", width=1366)


def test_every_calls_list_column_header_is_visible_at_1366_px(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    assert_every_header_visible(logged_in, "/admin/calls/call/", width=1366)


@pytest.mark.browser(window=(1920, 1080))
def test_every_users_list_column_header_is_visible_at_1920_px(logged_in, make_user, make_call):
    # The same check passing on a wide screen: what the 1366 px tests ask is reachable.
    seed_users_and_calls(make_user, make_call)
    assert_every_header_visible(logged_in, "/admin/users/user/", width=1920)


@pytest.mark.browser(window=(1920, 1080))
def test_every_calls_list_column_header_is_visible_at_1920_px(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    assert_every_header_visible(logged_in, "/admin/calls/call/", width=1920)


# --- What makes room at 1366 px: the filters in a panel, times on two lines -------------------


def filter_panel_shown(browser) -> bool:
    return browser.find("#changelist-filter").is_displayed()


def test_at_1366_px_the_filters_open_from_a_button_and_still_filter(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    browser = logged_in
    browser.open("/admin/users/user/")
    assert not filter_panel_shown(browser)  # folded: the columns get the room
    toggle = browser.find(".changelist-filter-toggle")
    assert (toggle.text, toggle.get_attribute("aria-expanded")) == ("FILTER", "false")

    toggle.click()
    assert filter_panel_shown(browser) and toggle.get_attribute("aria-expanded") == "true"
    calls_filter = browser.find("#changelist-filter details[data-filter-title='calls']")
    calls_filter.find_element(By.CSS_SELECTOR, "a[href*='call_enabled__exact=0']").click()

    assert "call_enabled__exact=0" in browser.path
    names = [cell.text.splitlines()[0] for cell in browser.find_all("#result_list .field-user_display")]
    # The one person with calls off (the operator, whose calls are off too, has a list of
    # their own).
    assert sorted(names) == ["Asha Rao"]
    # The button says what the list is filtered by, and the panel stays shut until asked.
    assert browser.find(".changelist-filter-toggle").text == "FILTER: DISABLED"
    assert not filter_panel_shown(browser)
    browser.find(".changelist-filter-toggle").click()
    assert filter_panel_shown(browser)
    browser.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not filter_panel_shown(browser)


@pytest.mark.browser(window=(1920, 1080))
def test_at_1920_px_the_filters_are_a_sidebar_beside_the_list(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    browser = logged_in
    browser.open("/admin/calls/call/")
    assert filter_panel_shown(browser)
    assert not browser.find(".changelist-filter-toggle").is_displayed()
    panel = browser.find("#changelist-filter").rect
    results = browser.find("#changelist .results").rect
    assert panel["x"] >= results["x"] + results["width"]  # beside the list, not over it


# Each listed time as the lines it is laid out in on screen (its characters grouped by the
# line box they sit in).
TIME_LINES = """
return Array.from(document.querySelectorAll('#result_list td time.admin-time')).map(time => {
  const text = time.firstChild;
  const lines = new Map();
  for (let i = 0; i < text.length; i++) {
    const range = document.createRange();
    range.setStart(text, i);
    range.setEnd(text, i + 1);
    const rect = range.getClientRects()[0];
    if (!rect) continue;
    const top = Math.round(rect.top);
    lines.set(top, (lines.get(top) || '') + text.data[i]);
  }
  return [time.title, Array.from(lines.values()).map(line => line.trim())];
});
"""


def test_at_1366_px_a_listed_time_shows_its_date_over_its_time_and_zone(logged_in, make_user, make_call):
    seed_users_and_calls(make_user, make_call)
    browser = logged_in
    browser.open("/admin/calls/call/")
    times = browser.driver.execute_script(TIME_LINES)
    # Scheduled and ended of both Buenos Aires calls, scheduled of Asha's; the zone and UTC
    # in the tooltip.
    buenos_aires = ["America/Argentina/Buenos_Aires; 2026-11-28 23:30:00 UTC", ["2026-11-28", "20:30:00 -03"]]
    assert times.count(buenos_aires) == 4, times
    assert ["Asia/Kolkata; 2026-11-28 15:00:00 UTC", ["2026-11-28", "20:30:00 IST"]] in times
