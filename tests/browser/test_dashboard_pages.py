"""The operator dashboard (/dashboard/, each chart an <svg data-chart="NAME"> with a table of
its numbers) and the user's record, in the browser."""

from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rq import SimpleWorker
from selenium.webdriver.common.by import By

from calls.models import AgentVariant, CallResult, CallStatus
from calls.queues import calls_queue
from dashboard import rollups
from dashboard.selectors import CHART_SLUGS

pytestmark = pytest.mark.browser

DAYS_SEEDED = 7
# One day's outcomes for the seeded users: answered, answered on the retry, never answered,
# missed (its window closed before a worker took it).
DAY_OUTCOMES = [
    [CallStatus.COMPLETED],
    [CallStatus.NO_ANSWER, CallStatus.COMPLETED],
    [CallStatus.BUSY, CallStatus.VOICEMAIL, CallStatus.FAILED],
    [CallStatus.MISSED],
]
MISSED_ERROR = "Its window, 08:00 to 08:15 UTC, had closed when a worker took it at 08:20 UTC."
COMPUTING = "Computing the last 30 days… reload in a minute."
# Every mark a chart draws for its data (bars, lines, their dots); an empty chart has only
# its grid, axes and text.
MARKS = "rect, path, polyline, circle"


def seed_calls_over_days(make_user, make_call, *, days: int = DAYS_SEEDED) -> list:
    """A user per DAY_OUTCOMES called every day for ``days`` days up to today, each attempt a
    day's outcome from it (so every chart has completions, retries, failures and a missed
    call), the calls shared between two agent variants."""
    now = timezone.now()
    users = [make_user(local_tz="UTC", call_time=time(9, 0)) for _ in DAY_OUTCOMES]
    variants = [
        AgentVariant.objects.create(name=name, provider="callkaro", agent_id=f"agent-{name}")
        for name in ("warm-intro", "short-intro")
    ]
    calls = []
    for days_ago in range(days):
        when = now - timedelta(days=days_ago, hours=1)
        for user, outcomes in zip(users, DAY_OUTCOMES, strict=True):
            previous = None
            for attempt, status in enumerate(outcomes, start=1):
                at = when + timedelta(minutes=30 * (attempt - 1))
                missed = status == CallStatus.MISSED
                previous = make_call(
                    user=user,
                    attempt=attempt,
                    local_date=when.date(),
                    scheduled_for=at,
                    dialed_at=None if missed else at + timedelta(seconds=2 + attempt + days_ago),
                    last_status_at=at + timedelta(minutes=2),
                    completed_at=at + timedelta(minutes=2),
                    duration_seconds=95 if status == CallStatus.COMPLETED else None,
                    status=status,
                    error=MISSED_ERROR if missed else "",
                    variant=None if missed else variants[(days_ago + attempt) % 2],
                    retry_of=previous,
                )
                calls.append(previous)
                if status == CallStatus.COMPLETED:
                    # The analysis job's result (calls.results): sentiment and cost charts.
                    CallResult.objects.create(
                        call=previous,
                        summary="Walked 20 minutes.",
                        sentiment="positive" if attempt == 1 else "negative",
                        sentiment_score=0.6 if attempt == 1 else -0.3,
                        cost_amount=Decimal("0.12"),
                        cost_currency="USD",
                        user_talk_seconds=40,
                    )
    return calls


def charts_without_marks(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('svg[data-chart]'))"
        f".filter(svg => !svg.querySelector('{MARKS}')).map(svg => svg.dataset.chart)"
    )


def run_a_worker() -> None:
    """What a worker does with the jobs waiting on the calls queue, the dashboard's among them."""
    queue = calls_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_dashboard_shows_every_chart_with_data(logged_in, make_user, make_call):
    seed_calls_over_days(make_user, make_call)
    browser = logged_in
    # The first view finds no rollup: it says the days are being computed and asks a worker
    # to compute them (the job it enqueues), as on a new deployment.
    browser.open("/dashboard/")
    assert browser.find("#dashboard-computing").text == COMPUTING
    assert rollups.REFRESH_JOB_ID in calls_queue().job_ids
    # Today is on the charts at once (computed by the page, cheaply); the days before it wait
    # for the worker.
    assert not rollups.RollupDay.objects.filter(day__lt=timezone.localdate()).exists()

    run_a_worker()
    browser.reload()

    charts = [chart.get_attribute("data-chart") for chart in browser.find_all("svg[data-chart]")]
    assert sorted(charts) == sorted(CHART_SLUGS)  # the variants' chart too: two variants exist
    assert charts_without_marks(browser.driver) == [], f"charts with no marks drawn (of {charts})"
    text = browser.page_text()
    assert "No data yet" not in text and COMPUTING not in text
    assert "not computed yet" not in text
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
    assert "Person to call" in text
    assert "attempt 1" in text and "attempt 2" in text  # the recent calls
    assert browser.driver.get_window_size()["width"] == 1366
    browser.screenshot("1366px")


@pytest.mark.parametrize("width", [1366, 1920])
def test_a_first_run_shows_todays_calls_in_the_numbers_and_on_every_chart(
    logged_in, make_user, make_call, width
):
    # A first run: calls of today only, no rollup, no snapshot, no worker yet.
    seed_calls_over_days(make_user, make_call, days=1)
    browser = logged_in
    browser.driver.set_window_size(width, 1000)
    browser.open("/dashboard/")

    numbers = {tile.get_attribute("data-glance"): tile for tile in browser.find_all("[data-glance]")}
    value = {
        slug: int(tile.find_element(By.CSS_SELECTOR, ".dash-number").text) for slug, tile in numbers.items()
    }
    assert (value["due"], value["answered"], value["missed"]) == (4, 2, 1)
    # Every chart draws today's calls at once, before a worker computed the days before it.
    assert charts_without_marks(browser.driver) == []
    last_row = browser.find("#chart-placement-lag-table tbody tr:last-child td")
    assert last_row.get_attribute("textContent") == timezone.localdate().isoformat()  # its table too
    # One line above the numbers; what they mean is one click away.
    intro = browser.find("#dashboard-help")
    assert intro.text.startswith("Today, ") and intro.size["height"] < 30
    definitions = browser.find("#dashboard-definitions")
    assert not definitions.get_attribute("open")
    definitions.find_element(By.CSS_SELECTOR, "summary").click()
    assert "local date" in definitions.text
    browser.screenshot(f"{width}px")
