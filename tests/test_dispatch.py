"""Capacity-aware dispatch (calls/dispatch.py): never more live calls than the provider
allows, across processes; lines of a dead worker come back; refusals wait; earliest
deadline first; nobody rung after their window closed."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time as wall
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from calls import capacity, dispatch, placement, policy, policy_changes, queues, scheduling
from calls.models import Call, CallStatus
from tests.clock import midday_user_fields
from tests.provider_fakes import fixture, vapi_server
from tests.test_faults import ROOT, burst_worker_command, child_env, postgres_only

pytestmark = pytest.mark.django_db(transaction=True)


def cap(settings, provider: str, *, live: int = 0, per_second: int = 0) -> None:
    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, provider: live}
    settings.PROVIDER_MAX_CALLS_PER_SECOND = {**settings.PROVIDER_MAX_CALLS_PER_SECOND, provider: per_second}


def most_live_at_once(spans: list[tuple[float, float]]) -> int:
    """The most [sent, ended) spans open at one instant (an end before a send at a tie)."""
    events = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1])
    )
    live = most = 0
    for _, step in events:
        live += step
        most = max(most, live)
    return most


class CallEnder:
    """The provider's side of a live call, seen from relevel: each call the fake accepted
    ends ``hold`` seconds later (its outcome recorded, its line freed), as a webhook would."""

    def __init__(self, fake, *, provider: str, hold: float) -> None:
        self.fake, self.provider, self.hold = fake, provider, hold
        self.spans: list[tuple[float, float]] = []
        self._ended: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CallEnder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for index, request in enumerate(list(self.fake.requests)):
                    if index in self._ended or wall.monotonic() < request["at"] + self.hold:
                        continue
                    call_id = int(request["json"]["metadata"]["call_id"])
                    Call.objects.filter(pk=call_id).update(status=CallStatus.COMPLETED)
                    # The span ends before the line is freed: spans lie inside leases.
                    self.spans.append((request["at"], wall.monotonic()))
                    self._ended.add(index)
                    capacity.live_call_ended(provider=self.provider, call_id=call_id)
                wall.sleep(0.01)
        finally:
            connection.close()


def due_users(make_user, count: int) -> list:
    fields = midday_user_fields(timezone.now())
    return [make_user(**fields) for _ in range(count)]


# --- The leases themselves ------------------------------------------------------------------


def test_lines_go_to_the_earliest_deadlines_and_never_beyond_the_cap(settings, redis_conn):
    cap(settings, "callkaro", live=2)
    now = wall.time()
    capacity.capacity_admit("callkaro", {1: now + 300, 2: now + 100, 3: now + 200, 4: now + 50})
    first = capacity.capacity_take("callkaro", now=now, want=10, lease_seconds=60)
    assert list(first.taken) == [4, 2]
    assert capacity.capacity_take("callkaro", now=now, want=10, lease_seconds=60).taken == {}

    capacity.live_call_ended(provider="callkaro", call_id=4)
    assert list(capacity.capacity_take("callkaro", now=now, want=10, lease_seconds=60).taken) == [3]
    assert capacity.capacity_counts("callkaro", now=now) == capacity.CapacityCounts(live=2, waiting=1)


def test_a_call_whose_window_closes_while_it_waits_is_taken_out_as_missed(settings, redis_conn):
    cap(settings, "callkaro", live=1)
    now = wall.time()
    capacity.capacity_admit("callkaro", {1: now - 1, 2: now + 0.5, 3: now + 60})
    took = capacity.capacity_take("callkaro", now=now, want=5, lease_seconds=60, send_margin=1.0)
    assert sorted(took.missed) == [1, 2]
    assert list(took.taken) == [3]


def test_calls_per_second_are_capped_over_a_sliding_second(settings, redis_conn):
    cap(settings, "callkaro", per_second=3)
    now = wall.time()
    capacity.capacity_admit("callkaro", {pk: now + 600 for pk in range(1, 11)})
    assert len(capacity.capacity_take("callkaro", now=now, want=10, lease_seconds=60).taken) == 3
    assert len(capacity.capacity_take("callkaro", now=now + 0.5, want=10, lease_seconds=60).taken) == 0
    assert len(capacity.capacity_take("callkaro", now=now + 1.01, want=10, lease_seconds=60).taken) == 3


def test_the_lines_of_a_sigkilled_worker_come_back_when_their_lease_runs_out(settings, redis_conn):
    cap(settings, "callkaro", live=2)
    now = wall.time()
    capacity.capacity_admit("callkaro", {pk: now + 600 for pk in range(1, 5)})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, django; django.setup(); from calls import capacity; "
            "took = capacity.capacity_take('callkaro', now=time.time(), want=5, lease_seconds=3); "
            "print(len(took.taken), flush=True); time.sleep(600)",
        ],
        cwd=ROOT,
        env=child_env(PROVIDER_MAX_LIVE_CALLS="callkaro=2"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "2"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert capacity.capacity_take("callkaro", now=wall.time(), want=5, lease_seconds=60).taken == {}
        wall.sleep(3.1)  # (3 s leases: room for a loaded machine between the take and the kill)
        assert len(capacity.capacity_take("callkaro", now=wall.time(), want=5, lease_seconds=60).taken) == 2
    finally:
        holder.kill()
        holder.wait()


def test_a_dispatcher_is_alone_until_its_lock_runs_out(redis_conn):
    # A second's lock: room for a loaded CI machine to stall between the steps.
    assert capacity.dispatcher_claim("callkaro", "a", ttl_seconds=1.0)
    assert not capacity.dispatcher_claim("callkaro", "b", ttl_seconds=1.0)
    assert not capacity.dispatcher_renew("callkaro", "b", ttl_seconds=1.0)
    capacity.dispatcher_release("callkaro", "b")  # not b's to release
    assert capacity.dispatcher_is_running("callkaro")
    wall.sleep(1.05)
    assert capacity.dispatcher_claim("callkaro", "b", ttl_seconds=1.0)


# --- Dispatching --------------------------------------------------------------------------


def test_a_capped_providers_batch_waits_for_lines_and_is_sent_as_they_come_free(
    settings, fake_callkaro, make_user, redis_conn
):
    cap(settings, "callkaro", live=2)
    users = due_users(make_user, 7)
    scheduling.calls_schedule_due()
    batch = list(Call.objects.values_list("pk", flat=True))
    assert dispatch.calls_dispatch_batch(call_ids=batch) == {"waiting_for_capacity": 7}
    assert fake_callkaro.requests == []  # nothing sent by the batch itself

    with CallEnder(fake_callkaro, provider="callkaro", hold=0.2) as ender:
        counts = dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=20)
        deadline = wall.monotonic() + 5
        while len(ender.spans) < 7 and wall.monotonic() < deadline:
            wall.sleep(0.05)
    assert counts["placed"] == 7
    assert sorted(r["json"]["metadata"]["user_id"] for r in fake_callkaro.requests) == sorted(
        str(u.pk) for u in users
    )
    assert most_live_at_once(ender.spans) == 2


@postgres_only
def test_the_cap_holds_with_several_worker_processes(settings, fake_callkaro, make_user, redis_conn):
    cap(settings, "callkaro", live=3)
    settings.CALL_BATCH_SIZE = 4  # several batch jobs, admitted by several processes
    due_users(make_user, 24)
    scheduling.calls_schedule_due()
    env = child_env(
        CALLKARO_BASE_URL=fake_callkaro.url, PROVIDER_MAX_LIVE_CALLS="callkaro=3", CALL_BATCH_SIZE="4"
    )
    with CallEnder(fake_callkaro, provider="callkaro", hold=0.3) as ender:
        workers = [subprocess.Popen(burst_worker_command(), cwd=ROOT, env=env) for _ in range(3)]
        for worker in workers:
            worker.wait(timeout=60)
        deadline = wall.monotonic() + 5
        while len(ender.spans) < 24 and wall.monotonic() < deadline:
            wall.sleep(0.05)
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    assert len(fake_callkaro.requests) == 24
    assert len({r["json"]["metadata"]["call_id"] for r in fake_callkaro.requests}) == 24
    assert most_live_at_once(ender.spans) == 3


def test_the_earliest_deadline_is_sent_first(settings, fake_callkaro, make_call, redis_conn):
    cap(settings, "callkaro", live=1)
    now = timezone.now()
    window = policy.policy_current().window
    # Three slots due now: the one whose window closes first goes first, whatever its id.
    calls = [
        make_call(scheduled_for=now - window + timedelta(minutes=m), local_date=now.date()) for m in (9, 3, 6)
    ]
    dispatch.calls_dispatch_batch(call_ids=[c.pk for c in calls])
    with CallEnder(fake_callkaro, provider="callkaro", hold=0.05):
        dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=10)
    sent = [int(r["json"]["metadata"]["call_id"]) for r in fake_callkaro.requests]
    assert sent == [calls[1].pk, calls[2].pk, calls[0].pk]


def test_a_call_that_cannot_get_a_line_before_its_window_closes_is_missed_not_dialed_late(
    settings, fake_callkaro, make_call, redis_conn
):
    cap(settings, "callkaro", live=1)
    now = timezone.now()
    window = policy.policy_current().window
    closing = make_call(scheduled_for=now - window + timedelta(seconds=2.5), local_date=now.date())
    # The one line is taken by a call that never ends, and this call's window closes.
    redis_conn.zadd("relevel:capacity:callkaro:live", {"999999": wall.time() + 600})
    dispatch.calls_dispatch_batch(call_ids=[closing.pk])
    counts = dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=4)
    closing.refresh_from_db()
    assert counts == {"missed": 1}
    assert fake_callkaro.requests == []
    assert closing.status == CallStatus.MISSED
    assert closing.error.startswith("Provider capacity: its window closed while it waited for a free")
    assert closing.dialed_at is None


def test_a_providers_concurrency_refusal_waits_and_is_sent_again_inside_the_window(
    settings, make_call, redis_conn
):
    with vapi_server(settings) as fake:
        cap(settings, "vapi", live=5)
        refused = (400, fixture("vapi", "error_400_concurrency_legacy.json"))
        fake.respond_with(refused, refused, (201, fixture("vapi", "create_call_response.json")))
        now = timezone.now()
        call = make_call(scheduled_for=now, local_date=now.date(), provider="vapi")
        dispatch.calls_dispatch_batch(call_ids=[call.pk])
        counts = dispatch.calls_dispatch_waiting(provider="vapi", budget_seconds=10)
    call.refresh_from_db()
    assert counts == {"refused_for_capacity": 2, "placed": 1}
    assert len(fake.requests) == 3
    assert fake.requests[1]["at"] - fake.requests[0]["at"] >= dispatch.FULL_HOLD_SECONDS * 0.9
    assert call.status == CallStatus.RINGING
    assert call.dialed_at < call.scheduled_for + policy.policy_current().window
    assert capacity.capacity_counts("vapi", now=wall.time()) == capacity.CapacityCounts(live=1, waiting=0)


def test_while_paused_waiting_calls_stay_waiting(settings, fake_callkaro, make_call, redis_conn):
    cap(settings, "callkaro", live=2)
    now = timezone.now()
    call = make_call(scheduled_for=now, local_date=now.date())
    dispatch.calls_dispatch_batch(call_ids=[call.pk])
    policy_changes.policy_update(changes={"paused": True}, user_id=None, actor="test")
    assert dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=0.5) == {}
    assert fake_callkaro.requests == []
    assert capacity.capacity_counts("callkaro", now=wall.time()) == capacity.CapacityCounts(live=0, waiting=1)


def test_an_uncapped_provider_is_placed_at_once(fake_callkaro, make_call, redis_conn):
    now = timezone.now()
    call = make_call(scheduled_for=now, local_date=now.date())
    assert dispatch.calls_dispatch_batch(call_ids=[call.pk]) == {"placed": 1}
    assert django_settings.PROVIDER_MAX_LIVE_CALLS["callkaro"] == 0


def test_a_second_dispatcher_returns_at_once(settings, redis_conn):
    cap(settings, "callkaro", live=1)
    assert capacity.dispatcher_claim("callkaro", "someone-else", ttl_seconds=5)
    assert dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=5) == {"another_dispatcher": 1}


def test_a_rush_of_batches_enqueues_one_dispatcher(settings, make_call, redis_conn):
    cap(settings, "callkaro", live=5)
    now = timezone.now()
    for _ in range(4):  # four batch jobs of the same slot, one after the other
        dispatch.calls_dispatch_batch(call_ids=[make_call(scheduled_for=now, local_date=now.date()).pk])
    jobs = queues.calls_queue().get_jobs()
    assert [job.func_name for job in jobs] == [capacity.DISPATCH_CALLS_JOB]
    assert capacity.capacity_counts("callkaro", now=wall.time()).waiting == 4


# --- The tick's sweep and calls waiting for a line -------------------------------------------


def test_the_tick_leaves_waiting_calls_alone_and_starts_a_dispatcher_if_none_runs(
    settings, make_call, redis_conn
):
    cap(settings, "callkaro", live=1)
    settings.CALL_STRANDED_AFTER_SECONDS = 0
    now = timezone.now()
    call = make_call(scheduled_for=now - timedelta(minutes=3), local_date=now.date())
    dispatch.calls_dispatch_batch(call_ids=[call.pk])
    redis_conn.delete("relevel:capacity:callkaro:dispatch-enqueued")
    queues.calls_queue().empty()  # the dispatcher's job is gone (its worker was killed)

    summary = scheduling.calls_schedule_due()

    assert summary.reenqueued == 0  # it waits for a line: not a stranded call
    assert [job.func_name for job in queues.calls_queue().get_jobs()] == [capacity.DISPATCH_CALLS_JOB]
    assert capacity.capacity_counts("callkaro", now=wall.time()).waiting == 1


def test_a_waiting_call_whose_window_closed_with_no_dispatcher_is_missed_for_capacity(
    settings, make_call, redis_conn
):
    cap(settings, "callkaro", live=1)
    now = timezone.now()
    window = policy.policy_current().window
    call = make_call(scheduled_for=now - window - timedelta(minutes=1), local_date=now.date())
    capacity.capacity_admit("callkaro", {call.pk: (call.scheduled_for + window).timestamp()})

    summary = scheduling.calls_schedule_due()

    call.refresh_from_db()
    assert summary.missed == 1 and call.status == CallStatus.MISSED
    assert call.error.startswith("Provider capacity:")


def test_the_dispatcher_goes_ahead_of_the_batches_still_queued(settings, make_call, redis_conn):
    """Behind a rush's other batch jobs the lines would stay idle until all were admitted."""
    cap(settings, "callkaro", live=5)
    now = timezone.now()
    queued_batch = make_call(scheduled_for=now, local_date=now.date())
    queues.enqueue_call_batches({"place-calls-later": [queued_batch.pk]})
    dispatch.calls_dispatch_batch(call_ids=[make_call(scheduled_for=now, local_date=now.date()).pk])
    assert [job.func_name for job in queues.calls_queue().get_jobs()] == [
        capacity.DISPATCH_CALLS_JOB,
        queues.PLACE_CALLS_JOB,
    ]


# --- Switching CALL_PROVIDER while calls wait (issue 16, defect 4) ---------------------------


def test_calls_waiting_for_a_provider_are_placed_through_it_after_call_provider_changes(
    settings, fake_callkaro, make_call, redis_conn
):
    """A call's provider is fixed when it is admitted to wait: the old provider's dispatcher
    never sends it through the new one (past the new one's cap), and the line it leased is
    the line its outcome frees."""
    cap(settings, "callkaro", live=3)
    cap(settings, "vapi", live=1)
    now = timezone.now()
    calls = [make_call(scheduled_for=now, local_date=now.date(), agent_id="") for _ in range(3)]
    assert dispatch.calls_dispatch_batch(call_ids=[c.pk for c in calls]) == {"waiting_for_capacity": 3}
    with vapi_server(settings) as vapi:  # the operator switches CALL_PROVIDER to vapi
        counts = dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=5)
        assert vapi.requests == []
    assert counts == {"placed": 3}
    assert len(fake_callkaro.requests) == 3
    for call in Call.objects.filter(pk__in=[c.pk for c in calls]):
        assert (call.provider, call.agent_id) == ("callkaro", django_settings.CALLKARO_AGENT_ID)
        capacity.live_call_ended(provider=call.provider, call_id=call.pk)  # as its webhook does
    assert capacity.capacity_counts("callkaro", now=wall.time()) == capacity.CapacityCounts(live=0, waiting=0)
    # Calls admitted after the switch wait for the new provider's lines.
    later = make_call(scheduled_for=now, local_date=now.date(), agent_id="")
    dispatch.calls_dispatch_batch(call_ids=[later.pk])
    later.refresh_from_db()
    assert later.provider == "vapi"
    assert capacity.capacity_counts("vapi", now=wall.time()).waiting == 1


# --- The pause (issue 16, defect 6) -----------------------------------------------------------


def test_while_paused_the_dispatcher_stops_at_once_and_resuming_starts_it_again(
    settings, make_call, redis_conn, monkeypatch
):
    cap(settings, "callkaro", live=2)
    now = timezone.now()
    call = make_call(scheduled_for=now, local_date=now.date())
    dispatch.calls_dispatch_batch(call_ids=[call.pk])
    policy_changes.policy_update(changes={"paused": True}, user_id=None, actor="test")
    queues.calls_queue().empty()
    redis_conn.delete("relevel:capacity:callkaro:dispatch-enqueued")
    polls = []
    counts = capacity.capacity_counts
    monkeypatch.setattr(capacity, "capacity_counts", lambda *a, **k: polls.append(1) or counts(*a, **k))

    assert dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=2) == {}
    assert len(polls) <= 1  # not ~47 a second for the whole budget
    assert queues.calls_queue().get_jobs() == []  # and no fresh job to go on polling
    assert not capacity.dispatcher_is_running("callkaro")
    # Nor does a tick during the pause start one; the call still waits for its line.
    scheduling.calls_schedule_due()
    assert queues.calls_queue().get_jobs() == []
    assert capacity.capacity_counts("callkaro", now=wall.time()).waiting == 1

    policy_changes.policy_update(changes={"paused": False}, user_id=None, actor="test")
    [tick] = queues.tick_queue().get_jobs()  # resuming enqueues a tick, which starts it
    assert tick.func_name == queues.SCHEDULE_CALLS_JOB
    scheduling.calls_schedule_due()
    assert [job.func_name for job in queues.calls_queue().get_jobs()] == [capacity.DISPATCH_CALLS_JOB]


@pytest.mark.parametrize("paused", [True, False])
def test_the_tick_takes_out_of_the_waiting_set_the_calls_it_records_missed(
    settings, make_call, redis_conn, paused
):
    cap(settings, "callkaro", live=1)
    now = timezone.now()
    window = policy.policy_current().window
    call = make_call(scheduled_for=now - window - timedelta(minutes=1), local_date=now.date())
    capacity.capacity_admit("callkaro", {call.pk: (call.scheduled_for + window).timestamp()})
    if paused:
        policy_changes.policy_update(changes={"paused": True}, user_id=None, actor="test")

    assert scheduling.calls_schedule_due().missed == 1

    call.refresh_from_db()
    assert call.status == CallStatus.MISSED
    assert call.error.startswith("Calls were paused" if paused else "Provider capacity:")
    assert capacity.capacity_counts("callkaro", now=wall.time()).waiting == 0


# --- The dispatcher's lock (issue 16, suspicion) ----------------------------------------------


def test_a_dispatcher_whose_lock_ran_out_during_slow_database_work_takes_no_more_calls(
    settings, fake_callkaro, make_call, redis_conn, monkeypatch
):
    """Recording an answer outlives the lock (a slow or locked database) and another
    dispatcher takes over: the first must not take another waiting call."""
    cap(settings, "callkaro", live=10)
    settings.PROVIDER_MAX_CONCURRENCY, settings.QUEUE_CONCURRENCY = 1, 1  # one call at a time
    monkeypatch.setattr(dispatch, "LOCK_SECONDS", 0.5)
    monkeypatch.setattr(dispatch, "RENEW_SECONDS", 0.1)
    now = timezone.now()
    calls = [make_call(scheduled_for=now, local_date=now.date()) for _ in range(3)]
    dispatch.calls_dispatch_batch(call_ids=[c.pk for c in calls])
    queues.calls_queue().empty()  # (the dispatcher job admission enqueued: this test runs it)
    record = placement.record_dial_results
    took_over = []

    def slow_record(dialed, **kwargs):
        outcomes = record(dialed, **kwargs)
        if dialed and not took_over:
            wall.sleep(0.8)  # the lock (0.5 s) runs out meanwhile
            took_over.append(capacity.dispatcher_claim("callkaro", "successor", ttl_seconds=30))
        return outcomes

    monkeypatch.setattr(placement, "record_dial_results", slow_record)
    counts = dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=10)

    assert took_over == [True]
    assert len(fake_callkaro.requests) == 1, "it went on taking calls without its lock"
    assert counts == {"placed": 1}
    assert capacity.capacity_counts("callkaro", now=wall.time()).waiting == 2  # left to the successor
    assert queues.calls_queue().get_jobs() == []  # and no job of its own to follow it


def test_calls_admitted_just_after_a_short_dispatcher_stopped_get_a_new_one(settings, make_call, redis_conn):
    # A dispatcher that starts and stops within the "just enqueued" mark's 5 s (its waiting
    # set momentarily empty between two batch jobs) must not keep the next batch's calls
    # from getting a dispatcher of their own.
    cap(settings, "callkaro", live=1)
    now = timezone.now()
    first, second = (make_call(scheduled_for=now, local_date=now.date()) for _ in range(2))
    Call.objects.filter(pk=first.pk).update(status=CallStatus.CANCELED)  # nothing to send
    assert capacity.dispatcher_ensure("callkaro")  # the first batch's ensure: a job is enqueued
    queues.calls_queue().empty()
    assert dispatch.calls_dispatch_waiting(provider="callkaro", budget_seconds=1) == {}  # it ran, stopped

    dispatch.calls_dispatch_batch(call_ids=[second.pk])  # the next batch, a moment later

    assert [job.func_name for job in queues.calls_queue().get_jobs()] == [capacity.DISPATCH_CALLS_JOB]
