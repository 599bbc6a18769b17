"""Every page relevel adds or changes, at a laptop's 1366 px and a desktop's 1920 px: none
scrolls sideways, and no word is broken across lines (the admin index once set "Open the
dashboard" one letter per line in a column narrower than a word). Each page leaves a
screenshot in tests/browser/screenshots/ (page-walk-<width>-<page>.png), kept by CI."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rq.job import Job

from calls.models import AgentVariant, CallStatus
from calls.policy import policy_row
from calls.policy_changes import policy_update
from calls.queues import calls_queue, enqueue_place_call, enqueue_tick

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


def walk(browser, operator, make_user, make_call, *, width: int) -> None:
    seeded = seed_every_kind_of_row(make_user, make_call)
    assert browser.viewport()[0] <= width and browser.driver.get_window_size()["width"] == width
    failures = []
    browser.open("/admin/login/")  # the one page an operator sees before logging in
    browser.find("#login-form")
    failures += [f"login: {problem}" for problem in browser.driver.execute_script(LAYOUT_PROBLEMS)]
    browser.screenshot(f"{width}-login")
    browser.log_in_as(operator)
    for name, path in pages(seeded):
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
    assert not failures, f"at {width} px:\n" + "\n".join(failures)


def test_no_page_scrolls_sideways_or_breaks_a_word_at_1366_px(browser, operator, make_user, make_call):
    walk(browser, operator, make_user, make_call, width=1366)


@pytest.mark.browser(window=(1920, 1080))
def test_no_page_scrolls_sideways_or_breaks_a_word_at_1920_px(browser, operator, make_user, make_call):
    walk(browser, operator, make_user, make_call, width=1920)


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
