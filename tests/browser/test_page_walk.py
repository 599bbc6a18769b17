"""Every page relevel adds or changes, at a laptop's 1366 px and a desktop's 1920 px: none
scrolls sideways, and no word is broken across lines (the admin index once set "Open the
dashboard" one letter per line in a column narrower than a word). Each page leaves a
screenshot in tests/browser/screenshots/ (page-walk-<width>-<page>.png), kept by CI."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from rq.job import Job

from calls.models import AgentVariant, AnsweredBy, CallResult, CallStatus, Sentiment
from calls.policy import policy_row
from calls.policy_changes import policy_update
from calls.queues import calls_queue, enqueue_place_call, enqueue_tick
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event, EventType
from notifications.models import Channel, Notification, NotificationStatus, SmsOptOut
from tests.browser.test_people_pages import IMPORT_PATH, MIXED_FILE, upload
from users.consent import user_consent_record
from users.suppression import suppression_add

pytestmark = pytest.mark.browser

# What the page looks like to this check: the page wider than the window, and each run of
# three or more letters (a word, or most of one) whose characters sit on more than one line,
# told by the tops of the boxes the browser gives a range over the word. A word broken at
# its hyphen, a wrapped sentence or a clipped (ellipsis) cell are all fine; "O/p/e/n" is not.
# Code and payloads (<pre>) may break long tokens on purpose, and SVG text does not wrap.
LAYOUT_PROBLEMS = r"""
const problems = [];
const page = document.documentElement;
if (page.scrollWidth > page.clientWidth) {
  problems.push(`the page is ${page.scrollWidth} px wide in a ${page.clientWidth} px window`);
}
const describe = (element) => {
  let name = element.tagName.toLowerCase();
  if (element.id) name += '#' + element.id;
  else if (typeof element.className === 'string' && element.className.trim()) {
    name += '.' + element.className.trim().split(/\s+/).join('.');
  }
  return name;
};
const range = document.createRange();
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest('svg, pre, script, style, noscript, textarea, select, template')) continue;
  for (const match of node.data.matchAll(/\p{L}{3,}/gu)) {
    range.setStart(node, match.index);
    range.setEnd(node, match.index + match[0].length);
    const boxes = Array.from(range.getClientRects()).filter((box) => box.width > 0 && box.height > 0);
    const lines = new Set(boxes.map((box) => Math.round(box.top)));
    if (lines.size > 1) {
      const width = Math.round(parent.getBoundingClientRect().width);
      const problem = `"${match[0]}" broken over ${lines.size} lines in ${describe(parent)}` +
        ` (${width} px wide)`;
      if (!seen.has(problem)) { seen.add(problem); problems.push(problem); }
    }
  }
}
return problems;
"""


def queue_index(name: str) -> int:
    return list(settings.RQ_QUEUES).index(name)


def seed_every_kind_of_row(make_user, make_call) -> dict[str, object]:
    """A person with answered, unanswered, missed and retried calls, an agent variant, the
    policy with every rule set and calls paused, and jobs in each of the queues' lists."""
    variant = AgentVariant.objects.create(name="warm-intro", provider="callkaro", agent_id="agent-warm")
    person = make_user(
        name="Maria Fernanda Gonçalves de Albuquerque",
        local_tz="America/Argentina/Buenos_Aires",
        call_time=time(9, 30),
    )
    slot = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    first = make_call(
        user=person,
        local_date=date(2026, 11, 28),
        scheduled_for=slot,
        dialed_at=slot + timedelta(seconds=3),
        status=CallStatus.NO_ANSWER,
        end_reason="customer-did-not-answer",
        last_status_at=slot + timedelta(minutes=1),
        completed_at=slot + timedelta(minutes=1),
        variant=variant,
        provider_payloads=[{"event": "call_ended", "data": {"hangup_reason": "no_answer"}}],
    )
    answered = make_call(
        user=person,
        attempt=2,
        retry_of=first,
        local_date=date(2026, 11, 28),
        scheduled_for=slot + timedelta(minutes=30),
        dialed_at=slot + timedelta(minutes=30, seconds=2),
        status=CallStatus.COMPLETED,
        end_reason="customer-ended-call",
        duration_seconds=95,
        transcript="Agent: Good morning! User: Morning, all is well today.",
        last_status_at=slot + timedelta(minutes=32),
        completed_at=slot + timedelta(minutes=32),
        variant=variant,
    )
    missed = make_call(
        user=make_user(name="Asha Rao", local_tz="Asia/Kolkata"),
        local_date=date(2026, 11, 28),
        status=CallStatus.MISSED,
        error="Its window, 20:30 to 20:45 IST, had closed when a worker took it at 20:50 IST.",
        completed_at=slot,
    )
    queued = make_call(user=make_user(name="Li Wei", local_tz="Asia/Shanghai"), status=CallStatus.QUEUED)
    # What the answered call yielded: the call's "Result" box and the person's recent results.
    CallResult.objects.create(
        call=answered,
        summary="Maria is well and slept better; she asked to be called back after her doctor's visit.",
        data={"mood": "good", "medication_taken": True, "wants_callback_after": "doctor's appointment"},
        sentiment=Sentiment.POSITIVE,
        sentiment_score=0.64,
        sentiment_source="computed",
        answered_by=AnsweredBy.HUMAN,
        user_talk_seconds=41,
        cost_amount="0.1275",
        cost_currency="USD",
        turns=[
            {"role": "agent", "text": "Good morning!"},
            {"role": "user", "text": "Morning, all is well today."},
        ],
        transcript="Agent: Good morning! User: Morning, all is well today.",
        callback_requested_for=slot + timedelta(days=1),
        callback_note="Asked for a call-back tomorrow at 10:00 ART; placed as a manual call.",
    )
    # Today's calls, so that the dashboard draws every chart with data, legends and all.
    now = timezone.now()
    for status in (CallStatus.COMPLETED, CallStatus.NO_ANSWER, CallStatus.MISSED):
        make_call(
            user=person,
            manual=True,
            local_date=timezone.localdate(now),
            scheduled_for=now - timedelta(minutes=5),
            dialed_at=None if status == CallStatus.MISSED else now - timedelta(minutes=4),
            completed_at=now - timedelta(minutes=3),
            status=status,
            variant=variant,
            error="Calls were paused until the window closed." if status == CallStatus.MISSED else "",
        )

    row = policy_row()
    row.calling_hours_start, row.calling_hours_end = time(8, 0), time(21, 0)
    row.max_retries, row.retry_delays_minutes, row.retry_statuses = 2, [30, 60], ["busy", "no_answer"]
    row.window_minutes = 15
    row.save()
    # Paused: every page carries the pause banner, which must fit too.
    policy_update(changes={"paused": True}, user_id=None, actor="test")

    # The queues' lists: a waiting call, a scheduled retry, a tick, a failed and a finished job.
    enqueue_place_call(queued.pk)
    enqueue_place_call(first.pk, at=datetime.now(UTC) + timedelta(hours=1))
    enqueue_tick()
    queue = calls_queue()
    failed = Job.create(
        "calls.jobs.place_call",
        args=(missed.pk,),
        description=f"Call {missed.pk} for user {missed.user_id} (…0005), attempt 1 of 3",
        connection=queue.connection,
        origin=queue.name,
    )
    failed.save()
    queue.failed_job_registry.add(failed, ttl=3600, exc_string="Traceback: the provider answered 500")
    finished = Job.create(
        "calls.jobs.place_call", args=(answered.pk,), connection=queue.connection, origin=queue.name
    )
    finished.save()
    queue.finished_job_registry.add(finished, ttl=3600)

    # One row of each kind the other admin pages list (message templates come with a data
    # migration): a message that failed, an SMS opt-out, an endpoint with an event delivered
    # after a failed try, a recorded consent and a suppressed number.
    Notification.objects.create(
        user=person,
        channel=Channel.SMS,
        local_date=date(2026, 11, 28),
        status=NotificationStatus.FAILED,
        due_at=slot + timedelta(hours=1),
        recipient=person.phone,
        error="Twilio answered 400: the 'To' number is not a valid mobile number (error 21614).",
    )
    SmsOptOut.objects.create(
        user=missed.user, opted_out_at=slot, source="sms", keyword="STOP", also_calls=True
    )
    endpoint = Endpoint.objects.create(
        name="product-app",
        url="https://app.example.com/hooks/relevel/events/with/a/rather/long/path",
        event_types=[EventType.CALL_ENDED],
    )
    event = Event.objects.create(
        webhook_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        type=EventType.CALL_ENDED,
        user=person,
        external_id="crm-000123",
        sequence=1,
        local_date=date(2026, 11, 28),
        occurred_at=slot + timedelta(minutes=32),
        data={"call_id": answered.pk, "status": "answered", "duration_seconds": 95},
        fanned_out_at=slot + timedelta(minutes=32),
    )
    delivery = Delivery.objects.create(
        event=event, endpoint=endpoint, status=DeliveryStatus.DELIVERED, attempts=2, delivered_at=slot
    )
    DeliveryAttempt.objects.create(
        delivery=delivery,
        attempted_at=slot + timedelta(minutes=32),
        status_code=503,
        latency_ms=1200,
        response_excerpt="<html><body>Service Temporarily Unavailable</body></html>",
    )
    DeliveryAttempt.objects.create(
        delivery=delivery, attempted_at=slot + timedelta(minutes=33), status_code=204, latency_ms=80
    )
    user_consent_record(
        user_id=person.pk,
        source="web",
        text="Yes, call me each morning to check in; I can say stop at any time.",
        given_at=slot - timedelta(days=3),
        recorded_by="operator",
    )
    suppression_add(
        number="+14155550123", reason="Asked on the phone never to be called again", created_by="operator"
    )
    return {"person": person, "call": answered, "missed": missed, "variant": variant, "job": failed.id}


def pages(seeded: dict[str, object]) -> list[tuple[str, str]]:
    """(name, path) of every page relevel adds or whose template or admin it changes."""
    calls, tick = queue_index(settings.CALLS_QUEUE), queue_index(settings.TICK_QUEUE)
    person, call, variant = seeded["person"].pk, seeded["call"].pk, seeded["variant"].pk
    return [
        ("admin-index", "/admin/"),
        ("dashboard", "/dashboard/"),
        ("users", "/admin/users/user/"),
        ("users-filtered", "/admin/users/user/?call_enabled__exact=1"),
        ("user-add", "/admin/users/user/add/"),
        ("user-change", f"/admin/users/user/{person}/change/"),
        ("user-history", f"/admin/users/user/{person}/history/"),
        ("users-import", "/admin/users/user/import/"),
        ("users-export", "/admin/users/user/export/"),
        ("calls", "/admin/calls/call/"),
        ("calls-not-reached-today", "/admin/calls/call/?outcome=not_reached_today"),
        ("call-answered", f"/admin/calls/call/{call}/change/"),
        ("call-missed", f"/admin/calls/call/{seeded['missed'].pk}/change/"),
        ("policy", "/admin/calls/callpolicy/1/change/"),
        ("variants", "/admin/calls/agentvariant/"),
        ("variant-add", "/admin/calls/agentvariant/add/"),
        ("variant-change", f"/admin/calls/agentvariant/{variant}/change/"),
        ("groups", "/admin/auth/group/"),
        ("group-add", "/admin/auth/group/add/"),
        ("password-change", "/admin/password_change/"),
        ("queues-in-admin", "/admin/django_rq/dashboard/"),
        ("queues", "/django-rq/"),
        ("queue-calls", f"/django-rq/queues/{calls}/"),
        ("queue-tick", f"/django-rq/queues/{tick}/"),
        ("queue-scheduled", f"/django-rq/queues/{calls}/scheduled/"),
        ("queue-failed", f"/django-rq/queues/{calls}/failed/"),
        ("queue-finished", f"/django-rq/queues/{calls}/finished/"),
        ("queue-started", f"/django-rq/queues/{calls}/started/"),
        ("queue-deferred", f"/django-rq/queues/{calls}/deferred/"),
        ("queue-details", f"/django-rq/queues/{calls}/details/"),
        ("job", f"/django-rq/queues/{calls}/{seeded['job']}/"),
        ("workers", f"/django-rq/workers/{calls}/"),
    ]


# Apps whose admin pages are django's own, unchanged: auth's groups are in the list above.
NOT_RELEVELS = {"auth", "contenttypes", "sessions", "admin", "messages", "staticfiles"}
# Admin views of relevel's own on a URL without an argument, opened with a GET: a form or
# a list (the pause banner's "resume" only answers a POST).
CUSTOM_VIEWS = {
    "users_user_import",
    "users_user_export",
    "users_suppression_import",
    "users_suppression_export",
    "events_event_replay",
}


def relevels_apps() -> set[str]:
    """The labels of the apps in this repository (not in a library's package)."""
    here = str(settings.BASE_DIR)
    return {
        config.label
        for config in apps.get_app_configs()
        if config.path.startswith(here) and ".venv" not in config.path and "site-packages" not in config.path
    }


def registered_pages(operator) -> list[tuple[str, str]]:
    """(name, path) of every model admin of relevel's apps: the list, the add form when
    adding is allowed, the first row's page when there is a row, and relevel's own views."""
    request = RequestFactory().get("/admin/")
    request.user = operator
    local = relevels_apps() - NOT_RELEVELS
    found = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        if meta.app_label not in local:
            continue
        prefix = f"{meta.app_label}-{meta.model_name}"
        info = f"admin:{meta.app_label}_{meta.model_name}"
        found.append((prefix, reverse(f"{info}_changelist")))
        if model_admin.has_add_permission(request):
            found.append((f"{prefix}-add", reverse(f"{info}_add")))
        row = model_admin.get_queryset(request).order_by("pk").first()
        if row is not None:
            found.append((f"{prefix}-change", reverse(f"{info}_change", args=[row.pk])))
        for pattern in model_admin.get_urls():
            if pattern.name in CUSTOM_VIEWS:
                try:
                    found.append((pattern.name.replace("_", "-"), reverse(f"admin:{pattern.name}")))
                except NoReverseMatch:
                    pass
    return found


def every_page(seeded: dict[str, object], operator) -> list[tuple[str, str]]:
    """The fixed list, then each registered page it does not already name."""
    listed = pages(seeded)
    paths = {path for _, path in listed}
    extra = [(name, path) for name, path in registered_pages(operator) if path not in paths]
    person = seeded["person"].pk
    extra.append(("consent-record-for-a-person", f"/admin/users/consent/add/?user={person}"))
    return listed + extra


def walk(browser, operator, make_user, make_call, tmp_path, *, width: int) -> None:
    seeded = seed_every_kind_of_row(make_user, make_call)
    assert browser.viewport()[0] <= width and browser.driver.get_window_size()["width"] == width
    failures = []
    browser.open("/admin/login/")  # the one page an operator sees before logging in
    browser.find("#login-form")
    failures += [f"login: {problem}" for problem in browser.driver.execute_script(LAYOUT_PROBLEMS)]
    browser.screenshot(f"{width}-login")
    browser.log_in_as(operator)
    visited = every_page(seeded, operator)
    # The walk reaches every relevel admin list, not only the ones named above.
    assert {"/admin/events/endpoint/", "/admin/users/consent/", "/admin/notifications/notification/"} <= {
        path for _, path in visited
    }, visited
    for name, path in visited:
        browser.open(path)
        browser.find("#content")
        # A page that answered with an error (a 404, a 500, the login form) is not the page.
        title = browser.driver.title
        assert "login" not in browser.path and not re.search(r"Page not found|Server Error", title), (
            f"{path} did not open: {title!r} at {browser.path}"
        )
        problems = browser.driver.execute_script(LAYOUT_PROBLEMS)
        failures += [f"{name} ({path}): {problem}" for problem in problems]
        browser.screenshot(f"{width}-{name}")
    # The people import with bad rows: the error table and the preview of the good ones.
    upload_file = tmp_path / "people.csv"
    upload_file.write_text(MIXED_FILE)
    upload(browser, upload_file)
    browser.find("table.import-errors")
    problems = browser.driver.execute_script(LAYOUT_PROBLEMS)
    failures += [f"users-import-bad-rows ({IMPORT_PATH}): {problem}" for problem in problems]
    browser.screenshot(f"{width}-users-import-bad-rows")
    assert not failures, f"at {width} px:\n" + "\n".join(failures)


def test_no_page_scrolls_sideways_or_breaks_a_word_at_1366_px(
    browser, operator, make_user, make_call, tmp_path
):
    walk(browser, operator, make_user, make_call, tmp_path, width=1366)


@pytest.mark.browser(window=(1920, 1080))
def test_no_page_scrolls_sideways_or_breaks_a_word_at_1920_px(
    browser, operator, make_user, make_call, tmp_path
):
    walk(browser, operator, make_user, make_call, tmp_path, width=1920)


def test_the_check_sees_a_word_set_one_letter_per_line(browser):
    # The check itself: the admin index's old fault, rebuilt on a blank page, is caught.
    browser.open("/admin/login/")
    browser.driver.execute_script(
        "document.body.insertAdjacentHTML('afterbegin', "
        '\'<div style="width:11px;word-break:break-word"><a id="squeezed">Open the dashboard</a></div>'
        "<p style=\"white-space:nowrap\">' + 'a long sentence '.repeat(200) + '</p>')"
    )
    problems = browser.driver.execute_script(LAYOUT_PROBLEMS)
    assert any(problem.startswith("the page is") for problem in problems), problems
    assert any(
        problem.startswith('"Open" broken over') and "in a#squeezed" in problem for problem in problems
    ), problems
