"""The queues dashboard (django-rq) as an operator opens it."""

import pytest
from django.conf import settings
from selenium.webdriver.common.by import By

from calls.queues import enqueue_tick

pytestmark = pytest.mark.browser


@pytest.mark.browser(window=(1920, 1080))
def test_the_dashboard_lists_both_queues_with_their_waiting_jobs(logged_in):
    enqueue_tick()  # what "trigger the scheduler now" does: one job waiting on the tick queue
    browser = logged_in
    browser.open("/django-rq/")

    assert browser.find("#content h1").text == "Queues"
    assert browser.viewport()[0] == 1920
    rows = {}
    for row in browser.find_all("#results_list tbody tr"):
        cells = [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        rows[cells[0]] = cells
    assert (
        set(rows)
        == {settings.CALLS_QUEUE, settings.TICK_QUEUE, settings.NOTIFICATIONS_QUEUE}
        == {"daily-calls", "daily-calls-tick", "notifications"}
    )
    assert rows["daily-calls-tick"][1] == "1"  # Queued Jobs
    assert rows["daily-calls"][1] == "0" and rows["notifications"][1] == "0"

    # The count leads to the waiting job itself.
    tick_row = next(
        row for row in browser.find_all("#results_list tbody tr") if row.text.startswith("daily-calls-tick")
    )
    tick_row.find_elements(By.CSS_SELECTOR, "th a")[1].click()
    assert "calls.jobs.schedule_calls" in browser.find("#content").text
