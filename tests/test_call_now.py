"""Call now (issue 10): one call placed on an operator's request, outside the daily schedule."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.urls import reverse

from calls import manual, placement, policy, policy_changes, scheduling
from calls.models import Call, CallStatus
from calls.queues import calls_queue

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 IST
MORNING = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)  # 11:00 IST


def at(moment, *, tick=False):
    return time_machine.travel(moment, tick=tick)


def test_a_manual_call_is_queued_now_with_a_job_of_its_own_and_marked_manual(make_user, redis_conn):
    user = make_user()
    with at(MORNING):
        call = manual.user_call_now(user_id=user.pk, requested_by="test")
    assert (call.manual, call.status, call.attempt, call.scheduled_for) == (
        True,
        CallStatus.QUEUED,
        1,
        MORNING,
    )
    assert str(call.local_date) == "2026-11-28"
    assert calls_queue().fetch_job(f"call-{call.pk}") is not None


def test_a_manual_call_never_counts_as_nor_blocks_the_days_scheduled_call(
    fake_callkaro, make_user, redis_conn
):
    with at(MORNING - timedelta(hours=1)):
        user = make_user()
    with at(MORNING, tick=True):
        manual_call = manual.user_call_now(user_id=user.pk, requested_by="test")
        assert placement.call_place(call_id=manual_call.pk) == "placed"
    manual_call.refresh_from_db()
    manual_call.status = CallStatus.COMPLETED  # answered
    manual_call.save()
    # The 20:30 slot is still claimed, and its retry is not dropped as "already answered".
    assert scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1)).claimed == 1
    first = Call.objects.get(manual=False)
    assert first.attempt == 1 and first.local_date == manual_call.local_date
    with at(SLOT + timedelta(minutes=2), tick=True):
        assert placement.call_place(call_id=first.pk) == "placed"
    user.refresh_from_db()
    assert user.next_call_at == SLOT + timedelta(days=1)


def test_a_manual_call_is_never_retried(make_user, redis_conn):
    from calls import outcomes
    from calls.providers.base import CallEvent

    user = make_user()
    with at(MORNING):
        call = manual.user_call_now(user_id=user.pk, requested_by="test")
        Call.objects.filter(pk=call.pk).update(status=CallStatus.RINGING, provider_call_id="ck-manual")
        result = outcomes.call_apply_event(
            event=CallEvent(provider_call_id="ck-manual", status=CallStatus.NO_ANSWER)
        )
    assert not result.retry_scheduled and Call.objects.count() == 1


def test_one_manual_call_per_user_every_ten_minutes(make_user, redis_conn):
    user = make_user()
    with at(MORNING):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    with at(MORNING + timedelta(minutes=9)), pytest.raises(manual.CallNowRefused) as refused:
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert refused.value.retry_after == 61 and "try again in 61 s" in str(refused.value)
    with at(MORNING + timedelta(minutes=10)):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert Call.objects.filter(manual=True).count() == 2


@pytest.mark.parametrize(
    ("changes", "user_fields", "said"),
    [
        ({"paused": True}, {}, "calls are paused"),
        ({"calling_hours": {"start": "12:00", "end": "21:00"}}, {}, "11:00 IST is outside the calling hours"),
        ({}, {"call_enabled": False}, "calls disabled or no phone number"),
        ({}, {"phone": None}, "calls disabled or no phone number"),
    ],
)
def test_a_manual_call_obeys_the_pause_the_calling_hours_and_the_users_switch(
    make_user, redis_conn, changes, user_fields, said
):
    if changes:
        policy_changes.policy_update(changes=changes, user_id=None, actor="test")
    user = make_user(**user_fields)
    with at(MORNING), pytest.raises(manual.CallNowRefused, match=said):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert not Call.objects.exists()


def test_the_admin_action_calls_the_selected_users_now_and_says_who_was_not(
    admin_client, make_user, redis_conn
):
    callable_user = make_user(call_time=time(9, 0))
    disabled = make_user(call_enabled=False)
    with at(MORNING, tick=True):
        response = admin_client.post(
            reverse("admin:users_user_changelist"),
            {"action": "call_now", "_selected_action": [callable_user.pk, disabled.pk]},
            follow=True,
        )
    text = response.text
    assert f"Calling now: {callable_user.username} (call" in text
    assert f"Not called: {disabled.username}, the user cannot be called" in text
    call = Call.objects.get()
    assert call.manual and call.user == callable_user
    page = admin_client.get(reverse("admin:calls_call_changelist"), {"manual__exact": "1"})
    assert [c.pk for c in page.context["cl"].result_list] == [call.pk]


def test_the_api_calls_a_user_now_and_answers_each_refusal_with_its_status(
    client, make_user, settings, redis_conn
):
    settings.QUEUE_API_TOKEN = "t" * 40
    auth = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 40}
    make_user(external_id="crm-1")
    make_user(external_id="crm-off", call_enabled=False)
    with at(MORNING):
        placed = client.post("/api/users/crm-1/call", **auth)
        assert placed.status_code == 202, placed.json()
        assert placed.json()["manual"] is True and Call.objects.get().manual
        again = client.post("/api/users/crm-1/call", **auth)
        assert again.status_code == 429 and int(again["Retry-After"]) > 0
        assert client.post("/api/users/crm-off/call", **auth).status_code == 409
        assert client.post("/api/users/nobody/call", **auth).status_code == 404
        assert client.get("/api/users/crm-1/call", **auth).status_code == 405
        assert client.post("/api/users/crm-1/call").status_code == 401
    assert Call.objects.count() == 1


def test_a_stranded_manual_call_is_enqueued_again_at_once_not_at_a_spread_offset(
    make_user, settings, redis_conn
):
    """Issue 16's suspicion: the stranded sweep re-sends first attempts at their step of the
    spread, and a manual call is attempt 1 too. Call now means now."""
    from rq.registry import ScheduledJobRegistry

    from calls import slots, sweeps

    settings.CALL_SPREAD_MINUTES = 10
    settings.CALL_STRANDED_AFTER_SECONDS = 0
    now = MORNING
    # A user whose step of a spread slot at the manual call's time is still to come.
    user = make_user()
    while slots.spread_release(slot=now - timedelta(seconds=1), user_id=user.pk, spread_minutes=10) <= now:
        user = make_user()
    call = Call.objects.create(
        user=user,
        to_number=user.phone,
        manual=True,
        local_date=now.date(),
        scheduled_for=now - timedelta(seconds=1),  # its job was lost (Redis down at the time)
        provider="callkaro",
    )
    with at(now):
        reenqueued, _ = sweeps.calls_reenqueue_stranded(now=now, window=policy.policy_current().window)
    call.refresh_from_db()
    assert reenqueued == 1
    assert calls_queue().job_ids == [f"call-{call.pk}"]  # queued now, on a job of its own
    assert ScheduledJobRegistry(queue=calls_queue()).get_job_ids(cleanup=False) == []
