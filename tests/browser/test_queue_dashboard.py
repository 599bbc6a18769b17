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
    # The window is 1920 px wide (the page, four queues long, may take a scrollbar of it).
    assert browser.driver.execute_script("return window.innerWidth") == 1920
    rows = {}
    for row in browser.find_all("#results_list tbody tr"):
        cells = [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        rows[cells[0]] = cells
    queues = {settings.CALLS_QUEUE, settings.TICK_QUEUE, settings.NOTIFICATIONS_QUEUE, settings.EVENTS_QUEUE}
    assert set(rows) == queues == {"daily-calls", "daily-calls-tick", "notifications", "relevel-events"}
    assert rows["daily-calls-tick"][1] == "1"  # Queued Jobs
    assert rows["daily-calls"][1] == "0" and rows["notifications"][1] == "0"

    # The count leads to the waiting job itself.
    tick_row = next(
        row for row in browser.find_all("#results_list tbody tr") if row.text.startswith("daily-calls-tick")
    )
    tick_row.find_elements(By.CSS_SELECTOR, "th a")[1].click()
    assert "calls.jobs.schedule_calls" in browser.find("#content").text


@pytest.mark.parametrize("width", [1366, 1920])
def test_the_job_lists_say_which_call_each_job_is_for(logged_in, make_call, width):
    from datetime import UTC, datetime, timedelta

    from calls.queues import enqueue_place_call

    waiting = make_call()
    retry = make_call(attempt=2)
    enqueue_place_call(waiting.pk)
    enqueue_place_call(retry.pk, at=datetime.now(UTC) + timedelta(hours=1))
    calls_index = list(settings.RQ_QUEUES).index(settings.CALLS_QUEUE)
    browser = logged_in
    browser.driver.set_window_size(width, 900)

    for path, call in (("", waiting), ("scheduled/", retry)):
        browser.open(f"/django-rq/queues/{calls_index}/{path}")
        headers = [th.text for th in browser.find_all("#result_list thead th")]
        assert headers[-1] == "DESCRIPTION", headers
        [description] = [cell.text for cell in browser.find_all("#result_list td.rq-job-description")]
        assert description.startswith(f"Call {call.pk} for user {call.user_id} (…"), description
        assert f"attempt {call.attempt} of" in description
        assert browser.driver.execute_script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    browser.screenshot(f"{width}px")


def test_a_workers_page_says_which_call_it_is_placing(logged_in, make_call, redis_conn):
    from rq import Worker

    from calls.queues import calls_queue, enqueue_place_call

    call = make_call()
    enqueue_place_call(call.pk)
    queue = calls_queue()
    worker = Worker([queue], connection=queue.connection)
    worker.register_birth()
    worker.prepare_execution(queue.fetch_job(f"call-{call.pk}"))  # as a worker does when it takes it
    calls_index = list(settings.RQ_QUEUES).index(settings.CALLS_QUEUE)

    browser = logged_in
    browser.open(f"/django-rq/workers/{calls_index}/{worker.key}/")
    running = browser.find("#worker-current-job").text
    assert running.startswith(f"Running now: Call {call.pk} for user {call.user_id} (…"), running
    browser.screenshot()
