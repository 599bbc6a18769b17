"""Capacity-aware dispatch: never more live calls than the provider allows, earliest
deadline first, nobody rung after their window closed.

Providers cap live calls, not requests (Vapi: 10 concurrent by default; Retell: 429
``concurrency_limit_reached``; CallKaro queues what it cannot start and dials it late). For
a provider with ``PROVIDER_MAX_LIVE_CALLS`` or ``PROVIDER_MAX_CALLS_PER_SECOND`` set, a call
due is not sent by the job that carries it: the job puts it in the provider's waiting set
in Redis, scored by when its window closes, and one dispatcher at a time sends the waiting
calls as lines come free, earliest deadline first. A line is a lease in Redis
(calls/capacity.py): taken when the call is sent, freed when its outcome arrives
(calls/outcomes.py), and given back by itself when its lease runs out, so a worker that
dies holding lines loses nothing but the lease's time. A call whose window
closes while it waits becomes missed ("provider capacity"), never dialed late.

Providers without a cap are placed straight away by calls/placement.py, as before.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from . import capacity, days, placement, queues
from .models import Call, CallStatus
from .placement import DialResult
from .policy import policy_current
from .providers import default_agent_id
from .providers.base import PlaceCallRequest, PlacedCall, ProviderCapacityError, ProviderNotSentError
from .providers.http import threads_per_process
from .slots import zone_or_none

logger = logging.getLogger("relevel.calls")

# How often a dispatcher looks for free lines (a line freed by a webhook is taken within
# that time), how long its lock lives without renewal (a dispatcher whose worker died is
# replaced within that time), and how often it renews it.
POLL_SECONDS = 0.02
LOCK_SECONDS = 15.0
RENEW_SECONDS = 3.0
# A call is not sent in the last moments of its window: it would ring after it closed.
SEND_MARGIN_SECONDS = 1.0
# How long nobody sends to a provider that said it is full (its own count of live calls is
# above ours: calls from elsewhere on the account, or calls longer than their lease).
FULL_HOLD_SECONDS = 1.0


def _dial_lease_seconds() -> float:
    # A line taken for sending is held at most as long as the request can take; a worker
    # that died mid-request gives it back then.
    return (
        max(
            settings.CALLKARO_CONNECT_TIMEOUT + settings.CALLKARO_READ_TIMEOUT,
            settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT,
        )
        + 5.0
    )


def _deadline(call: Call, *, window: timedelta) -> datetime:
    """When a call's window closes: its slot plus the window, and for a retry no later than
    the end of its local day (a retry belongs to its day)."""
    closes = call.scheduled_for + window
    tz = zone_or_none(call.user.local_tz)
    if call.attempt > 1 and tz is not None:
        day_ends = datetime.combine(call.local_date + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        closes = min(closes, day_ends)
    return closes


def calls_dispatch_batch(*, call_ids: list[int]) -> dict[str, int]:
    """Place a batch of calls: those of a capped provider wait for a line (in Redis, by
    deadline); the others are placed at once (placement.calls_place_batch)."""
    waiting, early = _admit_capped(call_ids)
    direct = [call_id for call_id in call_ids if call_id not in waiting and call_id not in early]
    counts = placement.calls_place_batch(call_ids=direct) if direct else {}
    if waiting:
        counts = {**counts, "waiting_for_capacity": len(waiting)}
    if early:
        counts = {**counts, "early": len(early)}
    return counts


def call_dispatch_one(*, call_id: int, is_last_try: bool) -> str:
    """Place one call (a retry, a manual call, a call whose job was lost): in the waiting set
    if its provider is capped, else at once (placement.call_place)."""
    waiting, early = _admit_capped([call_id])
    if waiting:
        return "waiting_for_capacity"
    if early:
        return "early"
    return placement.call_place(call_id=call_id, is_last_try=is_last_try)


def _admit_capped(call_ids: list[int]) -> tuple[set[int], set[int]]:
    """Put the queued calls of capped providers in their waiting sets and make sure a
    dispatcher runs for each; returns the ids admitted, and those not admitted because
    their time has not come.

    A call waits for a line only once it is due: the dispatcher sends whatever waits as soon
    as a line is free. The tick claims calls before their time and releases each at it, so
    a job that carries one early (a clock running behind the scheduler's) gets it a job of
    its own at its time instead."""
    capped = capacity.capped_providers()
    if not capped or not call_ids:
        return set(), set()
    rules = policy_current()
    window = rules.window
    now = timezone.now()
    deadlines: dict[str, dict[int, float]] = defaultdict(dict)
    early: set[int] = set()
    fixing: dict[str, list[int]] = defaultdict(list)
    for call in (
        Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED)
        .select_related("user")
        .only(
            "pk",
            "scheduled_for",
            "attempt",
            "local_date",
            "provider",
            "agent_id",
            "variant_id",
            "user__local_tz",
        )
    ):
        provider = placement.provider_for(call)
        if provider not in capped:
            continue
        if call.scheduled_for > now:
            queues.enqueue_place_call(call.pk, at=call.scheduled_for)
            early.add(call.pk)
            continue
        deadlines[provider][call.pk] = _deadline(call, window=window).timestamp()
        if provider != call.provider or not call.agent_id:
            fixing[provider].append(call.pk)
    # The provider a call waits for is the one it is placed through, whatever CALL_PROVIDER
    # says by the time a line comes free: written on the row before it waits, so that its
    # line (leased from this provider) is the one its outcome frees (by the call's provider).
    for provider, pks in fixing.items():
        Call.objects.filter(pk__in=pks, status=CallStatus.QUEUED, variant__isnull=True).update(
            provider=provider, agent_id=default_agent_id(provider)
        )
    for provider, by_call in deadlines.items():
        capacity.capacity_admit(provider, by_call)
        if not rules.paused:
            # (While paused nobody dispatches: the tick that resuming enqueues starts one.)
            capacity.dispatcher_ensure(provider)
        logger.info("%s calls wait for a free %s line", len(by_call), provider)
    return {call_id for by_call in deadlines.values() for call_id in by_call}, early


def calls_dispatch_waiting(*, provider: str, budget_seconds: float | None = None) -> dict[str, int]:
    """Be the provider's dispatcher for a while: send its waiting calls as lines come free,
    earliest deadline first, and record each answer; hand over to a fresh job at the end of
    the budget if calls still wait. Returns what happened, counted."""
    token = uuid.uuid4().hex
    if not capacity.dispatcher_claim(provider, token, ttl_seconds=LOCK_SECONDS):
        return {"another_dispatcher": 1}
    dispatcher = _Dispatcher(provider, token)
    budget = capacity.DISPATCHER_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    try:
        dispatcher.run(until=time.monotonic() + budget)
    finally:
        dispatcher.give_back_unsent()
        capacity.dispatcher_release(provider, token)
    # Paused, it hands over to nobody: resuming enqueues a tick, whose sweep starts a
    # dispatcher for the calls still waiting (sweeps.dispatchers_ensure).
    # Nor does one that lost its lock: another dispatcher has the calls.
    if (
        not (dispatcher.paused or dispatcher.lost)
        and capacity.capacity_counts(provider, now=time.time()).waiting
    ):
        capacity.enqueue_dispatch(provider)
    if dispatcher.counts:
        logger.info("Dispatched %s calls: %s", provider, dict(dispatcher.counts))
    return dict(dispatcher.counts)


class _Dispatcher:
    """One dispatcher's loop: take lines, send on the placement pool, record answers on this
    thread (the job's database connection), as placement.calls_place_batch does.

    Its lock (LOCK_SECONDS, renewed every RENEW_SECONDS between steps) can run out during
    one slow step (recording answers on a slow or locked database) and another dispatcher
    take over. Taking calls checks the lock in the same atomic step (capacity_take with the
    token): a dispatcher that lost it takes nothing more, records what it has in flight and
    settles their lines (those calls are its own), and stops."""

    def __init__(self, provider: str, token: str) -> None:
        self.provider = provider
        self.token = token
        self.pool = placement.placement_pool()
        self.threads = threads_per_process()
        self.in_flight: dict[Future, tuple[PlaceCallRequest, float]] = {}
        self.not_sent_tries: dict[int, int] = defaultdict(int)
        self.counts: dict[str, int] = defaultdict(int)
        self.paused = False
        self.lost = False

    def run(self, *, until: float) -> None:
        renewed = time.monotonic()
        while True:
            if time.monotonic() - renewed > RENEW_SECONDS:
                if not capacity.dispatcher_renew(self.provider, self.token, ttl_seconds=LOCK_SECONDS):
                    self.lost = True
                renewed = time.monotonic()
            if self.lost:
                logger.warning("Dispatcher for %s lost its lock; stopping", self.provider)
                break
            self._record_finished()
            if policy_current().paused:
                # Nothing is sent while paused: rather than poll for the whole pause, stop
                # once the calls in flight are recorded. The waiting calls stay in Redis.
                self.paused = True
                if not self.in_flight:
                    break
            taking = time.monotonic() < until and not self.paused
            if taking and len(self.in_flight) < self.threads:
                self._take_and_send()
            if not self.in_flight and (
                not taking or not capacity.capacity_counts(self.provider, now=time.time()).waiting
            ):
                break
            if self.in_flight:
                wait(self.in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            else:
                time.sleep(POLL_SECONDS)
        while self.in_flight:
            wait(self.in_flight, return_when=FIRST_COMPLETED)
            self._record_finished()

    def _take_and_send(self) -> None:
        if policy_current().paused:
            # Held in the waiting set; the tick records them missed ("paused") if their
            # window closes first.
            return
        now = time.time()
        took = capacity.capacity_take(
            self.provider,
            now=now,
            want=self.threads - len(self.in_flight),
            lease_seconds=_dial_lease_seconds(),
            send_margin=SEND_MARGIN_SECONDS,
            token=self.token,
        )
        if took.lost:
            self.lost = True
            return
        if took.missed:
            self.counts["missed"] += calls_mark_missed_for_capacity(took.missed, provider=self.provider)
        if not took.taken:
            return
        requests, _, waiting_for_user = placement.take_calls_for_dialing(
            list(took.taken), provider=self.provider
        )
        sending = {request.call_id for request in requests}
        not_sending = [call_id for call_id in took.taken if call_id not in sending]
        if not_sending:
            self._put_back_held(not_sending, took.taken, waiting_for_user=set(waiting_for_user))
        for request in requests:
            future = self.pool.submit(placement.dial, request)
            self.in_flight[future] = (request, took.taken[request.call_id])

    def _put_back_held(self, call_ids: list[int], deadlines: dict[int, float], *, waiting_for_user) -> None:
        """Taken but not sent: canceled or missed calls just free their line, and so do calls
        whose user is on another call (a job of their own admits them again shortly: here
        they would be taken again every few milliseconds); calls left queued (paused
        meanwhile, or early) go back to wait."""
        still_queued = set(
            Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED)
            .exclude(pk__in=list(waiting_for_user))
            .values_list("pk", flat=True)
        )
        capacity.capacity_free(self.provider, [pk for pk in call_ids if pk not in still_queued])
        capacity.capacity_give_back(self.provider, {pk: deadlines[pk] for pk in still_queued})

    def _record_finished(self) -> None:
        finished = [(future, *self.in_flight.pop(future)) for future in list(self.in_flight) if future.done()]
        placed = [(request, future.result()) for future, request, _ in finished if _was_placed(future)]
        outcomes = dict(
            zip(
                (request.call_id for request, _ in placed),
                placement.record_dial_results(placed, is_last_try=False),
                strict=True,
            )
        )
        for future, request, deadline in finished:
            dialed = future.result()
            outcome = outcomes.get(request.call_id) or self._record_one(request, dialed)
            self._settle_line(request, deadline, dialed, outcome)

    def _record_one(self, request: PlaceCallRequest, dialed: DialResult) -> str:
        """An answer other than "placed": a refusal for capacity never counts as a try; any
        other not-sent error does, up to the tries a lone call gets."""
        if isinstance(dialed.result, ProviderCapacityError):
            is_last_try = False
        else:
            if isinstance(dialed.result, ProviderNotSentError):
                self.not_sent_tries[request.call_id] += 1
            is_last_try = self.not_sent_tries[request.call_id] > len(settings.CALL_PLACE_RETRY_INTERVALS)
        return placement.record_dial_results([(request, dialed)], is_last_try=is_last_try)[0]

    def _settle_line(
        self, request: PlaceCallRequest, deadline: float, dialed: DialResult, outcome: str
    ) -> None:
        refused_for_capacity = isinstance(dialed.result, ProviderCapacityError)
        self.counts["refused_for_capacity" if refused_for_capacity else outcome] += 1
        if outcome == "transient":
            # Not sent: it waits again (its deadline unchanged), and nobody sends to this
            # provider for a moment, as it is full or unreachable.
            hold = (
                FULL_HOLD_SECONDS if refused_for_capacity else (settings.CALL_PLACE_RETRY_INTERVALS or [1])[0]
            )
            capacity.capacity_give_back(self.provider, {request.call_id: deadline}, hold_seconds=hold)
        elif outcome in ("placed", "unconfirmed", "error"):
            # Live (or maybe live) at the provider: its line is held until its outcome.
            until = time.time() + settings.PROVIDER_LIVE_CALL_TIMEOUT_SECONDS
            capacity.capacity_extend(self.provider, request.call_id, until=until)
        else:
            capacity.capacity_free(self.provider, [request.call_id])

    def give_back_unsent(self) -> None:
        """Cut short (RQ's timeout, a shutdown): calls not yet sent go back to wait."""
        unsent = {
            request.call_id: deadline
            for future, (request, deadline) in self.in_flight.items()
            if future.cancel()
        }
        if unsent:
            Call.objects.filter(pk__in=list(unsent), status=CallStatus.DIALING).update(
                status=CallStatus.QUEUED
            )
            capacity.capacity_give_back(self.provider, unsent)


def _was_placed(future: Future) -> bool:
    return isinstance(future.result().result, PlacedCall)


def calls_mark_missed_for_capacity(call_ids: list[int], *, provider: str) -> int:
    """Record queued calls missed because no line came free before their windows closed
    (conditional on their still being queued: a worker that took one meanwhile wins)."""
    now = timezone.now()
    lines = settings.PROVIDER_MAX_LIVE_CALLS.get(provider) or "unlimited"
    per_second = settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider) or "unlimited"
    error = (
        f"Provider capacity: its window closed while it waited for a free {provider} line "
        f"({lines} live calls, {per_second} calls per second allowed)."
    )
    missed = days.calls_end(
        Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED),
        status=CallStatus.MISSED,
        error=error,
        last_status_at=now,
        completed_at=now,
    )
    if missed:
        logger.warning("%s %s calls missed: no free line before their window closed", missed, provider)
    return missed
