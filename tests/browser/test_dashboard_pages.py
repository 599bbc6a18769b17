"""Browser tests for pages still on other branches: the operator dashboard (/dashboard/,
each chart an <svg data-chart="NAME"> with a table of its numbers) and the user's record.

Not in the repo yet: once those pages are merged, save this file as
tests/browser/test_dashboard.py (it uses tests/browser/conftest.py's fixtures).
"""

from datetime import time, timedelta

import pytest
from django.utils import timezone
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from calls.models import CallStatus
from tests.browser.conftest import WAIT_SECONDS

pytestmark = pytest.mark.browser

DAYS_SEEDED = 7
# One day's outcomes for the seeded users: answered, answered on the retry, never answered.
DAY_OUTCOMES = [
    [CallStatus.COMPLETED],
    [CallStatus.NO_ANSWER, CallStatus.COMPLETED],
    [CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED],
]


def seed_calls_over_days(make_user, make_call, *, days: int = DAYS_SEEDED) -> list:
    """Three users called every day for ``days`` days up to today, each attempt a day's
    outcome from DAY_OUTCOMES (so every chart has completions, retries and failures)."""
    now = timezone.now()
    users = [make_user(local_tz="UTC", call_time=time(9, 0)) for _ in DAY_OUTCOMES]
    calls = []
    for days_ago in range(days):
        when = now - timedelta(days=days_ago, hours=1)
        for user, outcomes in zip(users, DAY_OUTCOMES, strict=True):
            previous = None
            for attempt, status in enumerate(outcomes, start=1):
                at = when + timedelta(minutes=30 * (attempt - 1))
                previous = make_call(
                    user=user,
                    attempt=attempt,
                    local_date=when.date(),
                    scheduled_for=at,
                    dialed_at=at,
                    last_status_at=at + timedelta(minutes=2),
                    completed_at=at + timedelta(minutes=2),
                    duration_seconds=95 if status == CallStatus.COMPLETED else None,
                    status=status,
                    retry_of=previous,
                )
                calls.append(previous)
    return calls


def charts_without_marks(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('svg[data-chart]'))"
        ".filter(svg => !svg.querySelector('rect, path')).map(svg => svg.dataset.chart)"
    )


def test_dashboard_shows_every_chart_with_data(logged_in, make_user, make_call):
    seed_calls_over_days(make_user, make_call)
    browser = logged_in
    browser.open("/dashboard/")

    browser.find("svg[data-chart]")  # waits for the first chart
    charts = [chart.get_attribute("data-chart") for chart in browser.find_all("svg[data-chart]")]
    try:  # charts drawn by a script get a moment to draw
        WebDriverWait(browser.driver, WAIT_SECONDS).until(lambda driver: not charts_without_marks(driver))
    except TimeoutException:
        pass
    assert charts_without_marks(browser.driver) == [], f"charts with no marks drawn (of {charts})"
    assert "No data yet" not in browser.page_text()
    assert browser.viewport()[0] <= 1366
    browser.screenshot("1366px")


def test_user_record_screenshot(logged_in, make_user, make_call):
    user = make_user(name="Asha Rao", local_tz="Asia/Kolkata", call_time=time(20, 30))
    make_call(user=user, attempt=1, status=CallStatus.NO_ANSWER)
    make_call(user=user, attempt=2, status=CallStatus.COMPLETED)
    browser = logged_in
    browser.open(f"/admin/users/user/{user.pk}/change/")

    assert browser.find("#content h2").text == str(user)  # Django 5.2: the object's name
    text = browser.page_text()
    assert "Asha Rao" in browser.find("#id_name").get_attribute("value")
    assert "Daily call" in text
    assert "attempt 1" in text and "attempt 2" in text  # the recent calls
    assert browser.driver.get_window_size()["width"] == 1366
    browser.screenshot("1366px")
