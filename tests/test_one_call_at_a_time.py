"""A user never has two calls live at once (issue 16, defect 3): call now is refused while a
call of theirs is live, and a scheduled attempt that comes due meanwhile waits for it inside
its window, whichever came first."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from calls import capacity, manual, placement, policy
from calls.models import Call, CallStatus
from calls.queues import calls_queue
from tests.conftest import CALL_SLOT

pytestmark = pytest.mark.django_db(transaction=True)

LIVE = [CallStatus.DIALING, CallStatus.UNCONFIRMED, CallStatus.RINGING, CallStatus.IN_PROGRESS]


def live_manual_call(make_call, user, *, status=CallStatus.RINGING, dialed_ago=timedelta(seconds=20)):
    now = timezone.now()
    return make_call(
        user=user, manual=True, status=status, scheduled_for=now - dialed_ago, dialed_at=now - dialed_ago
    )


def scheduled_jobs() -> list[str]:
    return ScheduledJobRegistry(queue=calls_queue()).get_job_ids(cleanup=False)


@pytest.mark.usefixtures("on_the_calls_day")
@pytest.mark.parametrize("status", LIVE)
def test_call_now_is_refused_while_a_call_of_the_user_is_live(make_user, make_call, redis_conn, status):
    user = make_user()
    live = make_call(user=user, status=status, dialed_at=timezone.now())
    with pytest.raises(manual.CallNowRefused, match=rf"the user is on a call now \(call {live.pk}"):
        manual.user_call_now(user_id=user.pk, requested_by="test")
    assert Call.objects.filter(manual=True).count() == 0


@pytest.mark.usefixtures("on_the_calls_day")
def test_call_now_is_accepted_again_once_the_live_call_ended_or_its_lease_ran_out(
    make_user, make_call, redis_conn, settings
):
    user = make_user()
    live = make_call(user=user, status=CallStatus.RINGING, dialed_at=timezone.now())
    live.status = CallStatus.COMPLETED
    live.save()
    assert manual.user_call_now(user_id=user.pk, requested_by="test").manual
    # A call whose outcome never came stops counting as live when a line would be given back.
    other = make_user()
    make_call(
        user=other,
        status=CallStatus.RINGING,
        dialed_at=timezone.now() - timedelta(seconds=settings.PROVIDER_LIVE_CALL_TIMEOUT_SECONDS + 1),
    )
    assert manual.user_call_now(user_id=other.pk, requested_by="test").manual


@pytest.mark.usefixtures("on_the_calls_day")
def test_the_api_answers_409_and_the_admin_says_why_while_a_call_is_live(
    client, admin_client, make_user, make_call, settings, redis_conn
):
    settings.QUEUE_API_TOKEN = "t" * 40
    user = make_user(external_id="crm-live")
    live = make_call(user=user, status=CallStatus.IN_PROGRESS, dialed_at=timezone.now())
    answer = client.post("/api/users/crm-live/call", HTTP_AUTHORIZATION="Bearer " + "t" * 40)
    assert answer.status_code == 409
    assert answer.json()["error"].startswith(f"the user is on a call now (call {live.pk}, in_progress)")
    page = admin_client.post(
        reverse("admin:users_user_changelist"),
        {"action": "call_now", "_selected_action": [user.pk]},
        follow=True,
    )
    assert f"Not called: {user.username}, the user is on a call now (call {live.pk}" in page.text
    assert not Call.objects.filter(manual=True).exists()


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_scheduled_call_due_while_a_manual_call_is_live_waits_and_is_dialed_after_it(
    fake_callkaro, make_user, make_call, redis_conn
):
    user = make_user()
    live = live_manual_call(make_call, user)
    first = make_call(user=user)  # the day's first attempt, due at CALL_SLOT

    assert placement.call_place(call_id=first.pk) == "waiting_for_user"
    first.refresh_from_db()
    assert first.status == CallStatus.QUEUED and fake_callkaro.requests == []
    assert first.error == f"Waiting for the user's call {live.pk} to end."
    # Looked at again shortly, by a job of its own that the stranded sweep sees as live.
    assert first.job_id in scheduled_jobs() and first.job_id.startswith(f"call-{first.pk}-after-")

    Call.objects.filter(pk=live.pk).update(status=CallStatus.COMPLETED)
    assert placement.call_place(call_id=first.pk) == "placed"
    assert [r["json"]["metadata"]["call_id"] for r in fake_callkaro.requests] == [str(first.pk)]


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_batch_leaves_the_busy_users_call_waiting_and_dials_the_others(
    fake_callkaro, make_user, make_call, redis_conn
):
    busy, free = make_user(), make_user()
    live_manual_call(make_call, busy, status=CallStatus.UNCONFIRMED)
    waiting, dialed = make_call(user=busy), make_call(user=free)
    counts = placement.calls_place_batch(call_ids=[waiting.pk, dialed.pk])
    assert counts == {"waiting_for_user": 1, "placed": 1}
    assert [r["json"]["metadata"]["call_id"] for r in fake_callkaro.requests] == [str(dialed.pk)]
    waiting.refresh_from_db()
    assert waiting.status == CallStatus.QUEUED and waiting.job_id in scheduled_jobs()


def test_a_scheduled_call_whose_window_closes_while_the_user_is_on_a_call_is_missed_saying_so(
    fake_callkaro, make_user, make_call, redis_conn
):
    window = policy.policy_current().window
    with time_machine.travel(CALL_SLOT + window - timedelta(seconds=1), tick=False):
        user = make_user()
        live = live_manual_call(make_call, user)
        first = make_call(user=user)
        assert placement.call_place(call_id=first.pk) == "missed"
    first.refresh_from_db()
    assert first.status == CallStatus.MISSED and fake_callkaro.requests == []
    assert first.error == f"Its window closed while the user was on another call (call {live.pk}, ringing)."


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_manual_call_taken_while_the_scheduled_call_is_live_is_not_dialed_on_top(
    fake_callkaro, make_user, make_call, redis_conn
):
    user = make_user()
    scheduled = make_call(user=user, status=CallStatus.RINGING, dialed_at=timezone.now())
    manual_call = make_call(user=user, manual=True, scheduled_for=timezone.now())
    assert placement.call_place(call_id=manual_call.pk) == "canceled"
    manual_call.refresh_from_db()
    assert manual_call.status == CallStatus.CANCELED and fake_callkaro.requests == []
    assert manual_call.error == f"Not placed: the user was on call {scheduled.pk} when a worker took it."


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL")
@pytest.mark.usefixtures("on_the_calls_day")
def test_two_workers_taking_a_users_scheduled_and_manual_call_at_once_dial_one(
    make_user, make_call, redis_conn
):
    """Each worker finds the other call only queued, unless taking is serialised per user."""
    for round_number in range(15):
        user = make_user()
        calls = [make_call(user=user), make_call(user=user, manual=True, scheduled_for=timezone.now())]
        barrier = threading.Barrier(2)
        taken: list[int] = []
        errors: list[Exception] = []

        def take(call_id: int, barrier=barrier, taken=taken, errors=errors) -> None:
            try:
                barrier.wait()
                requests = placement.take_calls_for_dialing([call_id])[0]
                taken.extend(request.call_id for request in requests)
            except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=take, args=(call.pk,)) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        assert len(taken) == 1, f"round {round_number}: both calls of one user were taken for dialing"
        assert Call.objects.filter(user=user, status=CallStatus.DIALING).count() == 1


@pytest.mark.usefixtures("on_the_calls_day")
def test_a_capped_providers_dispatcher_frees_the_line_of_a_call_whose_user_is_busy(
    settings, fake_callkaro, make_user, make_call, redis_conn
):
    """Not put back to wait (it would be taken again every 20 ms): its own job admits it
    again once it is looked at again."""
    from calls import dispatch

    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, "callkaro": 2}
    user = make_user()
    live_manual_call(make_call, user)
    first = make_call(user=user)
    assert dispatch.calls_dispatch_batch(call_ids=[first.pk]) == {"waiting_for_capacity": 1}
    dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=2)
    first.refresh_from_db()
    assert first.status == CallStatus.QUEUED and fake_callkaro.requests == []
    assert capacity.capacity_counts("callkaro", now=timezone.now().timestamp()) == capacity.CapacityCounts(
        live=0, waiting=0
    )
    assert first.job_id in scheduled_jobs()
