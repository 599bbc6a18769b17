"""The README's screenshots, taken from a realistic month: 200 users in seven zones called
daily for 30 days, with the outcomes, retries, placement lag and missed calls a real month
has (one bad day with lost jobs among them), shared between two agent variants.

Each test checks the page shows that month and saves a picture of it at 1366 px wide in
tests/browser/screenshots/ (readme-dashboard.png, readme-user-record.png);
``python docs/screenshots/make.py`` runs this file and copies them to docs/screenshots/.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

from calls.models import AgentVariant, Call, CallResult, CallStatus
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_dashboard_pages import charts_without_marks, run_a_worker
from users.models import User

pytestmark = pytest.mark.browser

DAYS = 30
ZONES = {  # users per zone: 200 in all
    "Asia/Kolkata": 62,
    "America/New_York": 34,
    "Europe/London": 30,
    "America/Sao_Paulo": 24,
    "Asia/Tokyo": 20,
    "Africa/Lagos": 16,
    "Australia/Sydney": 14,
}
FIRST_NAMES = (
    "Aarav Ananya Arjun Diya Ishaan Kavya Rohan Saanvi Vikram Priya Emma Liam Olivia Noah "
    "Ava Lucas Sofia Mateus Yuki Haruto Sakura Chidi Amara Tunde Grace Jack Chloe Oliver"
).split()
LAST_NAMES = (
    "Sharma Iyer Patel Reddy Nair Gupta Smith Johnson Brown Taylor Silva Santos Oliveira "
    "Tanaka Sato Suzuki Okafor Adeyemi Bello Wilson Walker Thompson Kapoor Mehta"
).split()
CALL_TIMES = [time(h, m) for h in range(7, 22) for m in (0, 15, 30, 45)]
# Evenings are when most people asked to be called, and when they answer most.
CALL_TIME_WEIGHTS = [3 if t.hour >= 18 else 1 if t.hour < 9 else 2 for t in CALL_TIMES]
RETRY_DELAY = timedelta(minutes=30)
WINDOW = timedelta(minutes=15)
BAD_DAY = 12  # days ago: Redis lost the morning's jobs, workers ran behind
UNANSWERED = [
    (CallStatus.NO_ANSWER, "USER_UNAVAILABLE", 55),
    (CallStatus.NO_ANSWER, "VOICEMAIL_DETECTED", 15),
    (CallStatus.BUSY, "USER_BUSY", 20),
    (CallStatus.FAILED, "USER_UNRESPONSIVE", 10),
]
# The user whose page is pictured: a month with retries, two days not reached, one missed,
# a day off and the current streak. One letter a day, oldest first, today last:
# a answered, r answered on a retry, n not reached, m missed, - no call (calls were off).
ASHA_MONTH = "araaanaraa-aarmaaaanraaraaaaar"


@dataclass
class Month:
    users: list[User]
    asha: User
    now: datetime


def _slot(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(ZoneInfo("UTC"))


def _lag(rng: random.Random, days_ago: int) -> timedelta:
    median = 40.0 if days_ago == BAD_DAY else 3.0
    return timedelta(seconds=min(rng.lognormvariate(0, 0.8) * median, 600))


def _finished(call: Call, status: str, end_reason: str, rng: random.Random) -> None:
    call.status = status
    call.end_reason = end_reason
    call.duration_seconds = rng.randint(45, 240) if status == CallStatus.COMPLETED else None
    ended = call.dialed_at + timedelta(seconds=(call.duration_seconds or rng.randint(20, 45)) + 8)
    call.last_status_at = call.completed_at = ended


def _unanswered(rng: random.Random) -> tuple[str, str]:
    status, reason, _ = rng.choices(UNANSWERED, weights=[w for *_, w in UNANSWERED])[0]
    return status, reason


def seed_month(rng: random.Random) -> Month:
    """Create the users and their 30 days of calls (the call rows in bulk, as a month of
    ticks and webhooks would have left them)."""
    now = timezone.now()
    variants = [
        AgentVariant.objects.create(name=name, provider="callkaro", agent_id=f"agent-{name}")
        for name in ("warm-intro", "short-intro")
    ]
    users = []
    number = 0
    for zone, count in ZONES.items():
        for _ in range(count):
            number += 1
            users.append(
                User.objects.create(
                    username=f"user{number:03d}",
                    name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    phone=f"+9198765{number:05d}",
                    local_tz=zone,
                    call_time=rng.choices(CALL_TIMES, weights=CALL_TIME_WEIGHTS)[0],
                )
            )
    asha = User.objects.create(
        username="asha",
        name="Asha Rao",
        phone="+919876543210",
        local_tz="Asia/Kolkata",
        call_time=time(20, 30),
    )

    first_attempts: list[Call] = []
    retries: list[tuple[Call, Call]] = []  # (the attempt it retries, the retry)
    for user in users:
        zone = ZoneInfo(user.local_tz)
        today = now.astimezone(zone).date()
        # Some people answer nearly always, some hardly ever.
        reach = rng.choice([0.92, 0.85, 0.75, 0.75, 0.6, 0.35])
        # A day more than the charts show: a zone ahead of UTC is a day ahead, too.
        joined_days_ago = DAYS + 1 if rng.random() > 0.08 else rng.randint(3, DAYS - 5)
        for days_ago in range(joined_days_ago, -1, -1):
            day = today - timedelta(days=days_ago)
            slot = _slot(day, user.call_time, zone)
            if slot > now:
                continue  # not due yet
            answer = reach + (0.06 if user.call_time.hour >= 18 else -0.08 if user.call_time.hour < 9 else 0)
            variant = rng.choice(variants)
            answer += 0.04 if variant.name == "warm-intro" else 0
            first = Call(
                user=user,
                to_number=user.phone,
                agent_id=variant.agent_id,
                provider="callkaro",
                variant=variant,
                attempt=1,
                local_date=day,
                scheduled_for=slot,
            )
            first_attempts.append(first)
            lost = days_ago == BAD_DAY and user.call_time.hour < 11 and rng.random() < 0.5
            if lost or rng.random() < 0.006:
                first.status = CallStatus.MISSED
                first.error = (
                    "Its job was lost (Redis) before a worker took it."
                    if lost
                    else "Its window had closed when a worker took it (workers behind)."
                )
                first.last_status_at = first.completed_at = slot + WINDOW
                continue
            first.dialed_at = slot + _lag(rng, days_ago)
            if rng.random() < answer:
                _finished(first, CallStatus.COMPLETED, "USER_HANGUP", rng)
                continue
            _finished(first, *_unanswered(rng), rng)
            previous = first
            for attempt, chance in ((2, answer - 0.2), (3, answer - 0.3)):
                due = previous.scheduled_for + RETRY_DELAY
                retry = Call(
                    user=user,
                    to_number=user.phone,
                    agent_id=variant.agent_id,
                    provider="callkaro",
                    variant=variant,
                    attempt=attempt,
                    local_date=day,
                    scheduled_for=due,
                )
                retries.append((previous, retry))
                if due > now:
                    break  # still waiting for its time
                retry.dialed_at = due + _lag(rng, days_ago)
                if rng.random() < chance:
                    _finished(retry, CallStatus.COMPLETED, "USER_HANGUP", rng)
                    break
                _finished(retry, *_unanswered(rng), rng)
                previous = retry

    _seed_asha(asha, now, variants[0], first_attempts, retries, rng)
    Call.objects.bulk_create(first_attempts, batch_size=1000)
    # Attempts 2, then 3: each links to the attempt before it, which has its id by then.
    for attempt in (2, 3):
        batch = [retry for _, retry in retries if retry.attempt == attempt]
        for retried, retry in retries:
            if retry.attempt == attempt:
                retry.retry_of = retried
        Call.objects.bulk_create(batch, batch_size=1000)
    # What the analysis job makes of the answered calls (calls.results): sentiment and cost.
    CallResult.objects.bulk_create(
        (
            CallResult(
                call_id=call.pk,
                sentiment=rng.choice(("positive", "positive", "neutral", "negative")),
                sentiment_score=0.5,
                sentiment_source="computed",
                answered_by="human",
                cost_amount=Decimal("0.09"),
                cost_currency="USD",
            )
            for call in Call.objects.filter(status=CallStatus.COMPLETED).only("pk")
        ),
        batch_size=1000,
    )
    return Month(users=users, asha=asha, now=now)


def _seed_asha(asha, now, variant, first_attempts, retries, rng) -> None:
    zone = ZoneInfo(asha.local_tz)
    today = now.astimezone(zone).date()
    for days_ago, letter in zip(range(len(ASHA_MONTH) - 1, -1, -1), ASHA_MONTH, strict=True):
        day = today - timedelta(days=days_ago)
        slot = _slot(day, asha.call_time, zone)
        if letter == "-" or slot > now:
            continue
        first = Call(
            user=asha,
            to_number=asha.phone,
            agent_id=variant.agent_id,
            provider="callkaro",
            variant=variant,
            attempt=1,
            local_date=day,
            scheduled_for=slot,
        )
        first_attempts.append(first)
        if letter == "m":
            first.status, first.error = CallStatus.MISSED, "Calls were paused until the window had closed."
            first.last_status_at = first.completed_at = slot + WINDOW
            continue
        first.dialed_at = slot + timedelta(seconds=3)
        if letter == "a":
            _finished(first, CallStatus.COMPLETED, "USER_HANGUP", rng)
            continue
        _finished(first, CallStatus.NO_ANSWER, "USER_UNAVAILABLE", rng)
        previous = first
        outcomes = [CallStatus.COMPLETED] if letter == "r" else [CallStatus.BUSY, CallStatus.NO_ANSWER]
        for attempt, status in enumerate(outcomes, start=2):
            retry = Call(
                user=asha,
                to_number=asha.phone,
                agent_id=variant.agent_id,
                provider="callkaro",
                variant=variant,
                attempt=attempt,
                local_date=day,
                scheduled_for=slot + RETRY_DELAY * (attempt - 1),
            )
            retry.dialed_at = retry.scheduled_for + timedelta(seconds=4)
            reason = "USER_HANGUP" if status == CallStatus.COMPLETED else "USER_BUSY"
            _finished(retry, status, reason, rng)
            retries.append((previous, retry))
            previous = retry


def save_page(driver, path: Path, *, top: float = 0, height: float | None = None) -> Path:
    """The page from ``top`` down ``height`` CSS pixels (to its end by default), at the
    window's width, as a PNG (Chromium's own capture beyond the viewport)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    full = metrics["cssContentSize"]["height"]
    width = driver.execute_script("return window.innerWidth")
    clip = {"x": 0, "y": top, "width": width, "height": min(height or full, full - top), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    SCREENSHOTS.mkdir(exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@pytest.fixture
def month(transactional_db) -> Month:
    return seed_month(random.Random(2026))


def test_the_dashboard_of_a_month_of_calls(logged_in, month):
    browser = logged_in
    browser.open("/dashboard/")
    run_a_worker()  # the rollup job the first view enqueued
    browser.reload()

    assert charts_without_marks(browser.driver) == []
    assert "not computed yet" not in browser.page_text()
    called_today = int(browser.find("#glance-called .dash-number").text.replace(",", ""))
    assert (
        called_today
        == Call.objects.filter(local_date=timezone.localdate(month.now), dialed_at__isnull=False).count()
    )
    # The bad day's lost jobs are there, under their reason.
    assert "Job lost (Redis)" in browser.find("#chart-missed-by-reason").text
    assert browser.driver.get_window_size()["width"] == 1366
    # Today at a glance and the first three charts (the page goes on with three more).
    bottom = browser.driver.execute_script(
        "return arguments[0].getBoundingClientRect().bottom + window.scrollY",
        browser.find("#chart-retry-recovery"),
    )
    save_page(browser.driver, SCREENSHOTS / "readme-dashboard.png", height=bottom + 16)


def test_a_users_page_with_their_30_day_record(logged_in, month):
    browser = logged_in
    browser.open(f"/admin/users/user/{month.asha.pk}/change/")

    days = browser.find_all("#call-record li.call-day")
    assert len(days) == DAYS
    outcomes = [day.get_attribute("data-outcome") for day in days]
    assert outcomes.count("missed") == 1 and outcomes.count("not_reached") == 2
    assert outcomes[-1] in ("due", "answered")  # today: before or after her 20:30
    assert browser.find("#call-record-streak").text.isdigit()
    assert browser.driver.get_window_size()["width"] == 1366
    # From the top of the page down to the end of the record and the recent calls.
    record = browser.find("#call-record").find_element(By.XPATH, "./ancestor::fieldset")
    bottom = browser.driver.execute_script(
        "return arguments[0].getBoundingClientRect().bottom + window.scrollY", record
    )
    save_page(browser.driver, SCREENSHOTS / "readme-user-record.png", height=bottom + 20)
