"""The capacity forecast: how many users fall due in each 15-minute slot of the next day,
how many calls the provider can take in their windows, and how many will be missed.

Reads only (selectors). Fast on a million users: the users are grouped in SQL by
(local_tz, call_time, next_call_at), a few tens of thousands of groups at most (zones x
minutes of the day), and each group's slots are placed in UTC in Python with the tick's
own rules (calls/slots.py).

Who counts as due is who the tick would call: calls enabled, a phone, a zone this host
knows, and ``next_call_at``, which the tick and ``User.save`` keep at the next slot whose
local day has no first attempt yet (so a user already called today counts tomorrow). A
slot outside the policy's calling hours is left out (the tick records it missed, it is never
dialed); a slot whose window closed before ``now`` too. The pause is not applied: a pause is
the operator's to lift, and the forecast says what the load is when calling.

The capacity model (docs/operating/capacity.md, "Capacity forecast"). The provider is
``PROVIDER_MAX_LIVE_CALLS`` lines, each busy ``average_call_seconds`` per call, so it starts at most
``cap / average`` calls a second (and at most ``PROVIDER_MAX_CALLS_PER_SECOND`` when that is
set). Every call may be started from its slot until its window closes (``slot + window``);
what waits is started earliest deadline first, as the dispatcher does. The forecast runs that
as a fluid simulation over the due instants in time order: a slot's users take whatever the
earlier slots, whose windows close first, leave of the lines inside their own windows, and
whatever is still waiting when its window closes is missed. Per 15-minute slot:

* ``capacity``: the calls the provider could start for this slot's users inside their
  windows, given what the earlier slots take: the rate times the length of their windows,
  less the time the earlier slots' calls hold the lines inside them. One slot on its own,
  all at one instant: ``cap x window / average``. None when the provider has no cap.
* ``will_miss``: the slot's due users the simulation cannot start in their windows (0 with
  no cap).

Left out on purpose: retries and manual calls (they take lines too), calls already queued or
live at ``now``, ``CALL_SPREAD_MINUTES`` (it releases a slot's calls later inside their window
and calling hours, never after: calls/slots.py spread_span_seconds), and agent variants on
another provider (all users are counted against ``CALL_PROVIDER``). The tick's cadence needs
no term: it claims each slot before its time and releases the call at it. A fluid model also
rounds in the provider's favour by less than one call per line per window.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count

from users.calendar import day_off_reason
from users.models import PEOPLE, CallSkip

from .models import Call, CallStatus
from .policy import Policy, policy_current
from .slots import slot_for_date, slot_local_date, zone_or_none

User = get_user_model()

SLOT_MINUTES = 15
# Measured call lengths are averaged over this long...
DURATION_LOOKBACK = timedelta(days=7)
# ... and over at most this many of the latest calls, so the read stays an index range scan
# on calls_call's created_at index however many calls a week holds.
DURATION_SAMPLE = 10_000
# No zone moves its clocks by more than 2 hours: a slot earlier than end - 22 h cannot have
# a second slot before end, and the next day's slot is not computed for it.
SHORTEST_DAY = timedelta(hours=22)


@dataclass(frozen=True)
class ForecastSlot:
    start: datetime  # UTC, on a 15-minute boundary
    due: int
    capacity: int | None  # None: the provider has no cap
    will_miss: int
    # Users whose slot here falls on a day off for them: not due, not missed.
    skipped: int = 0


@dataclass(frozen=True)
class CapacityForecast:
    provider: str
    max_live_calls: int  # 0: no cap
    max_calls_per_second: int  # 0: no cap
    average_call_seconds: float
    window: timedelta
    paused: bool
    slots: list[ForecastSlot]  # the slots with users due, in time order


def slot_start(instant: datetime) -> datetime:
    """The start of the 15-minute slot (UTC) that ``instant`` falls in."""
    instant = instant.astimezone(UTC)
    return instant.replace(minute=instant.minute - instant.minute % SLOT_MINUTES, second=0, microsecond=0)


def _due_instants(*, now: datetime, hours: int, rules: Policy) -> list[tuple[datetime, int]]:
    """(slot instant in UTC, users) for every slot in [slot_start(now), +hours) that the tick
    would call, in time order."""
    return _due_and_skipped(now=now, hours=hours, rules=rules)[0]


def _due_and_skipped(
    *, now: datetime, hours: int, rules: Policy
) -> tuple[list[tuple[datetime, int]], dict[datetime, int]]:
    """The due instants (as _due_instants) and {slot instant: users} whose slot in the range
    falls on a local date that is off for them (users/calendar.py: not a call day, paused,
    skipped, a policy skip date or holiday): counted apart, never as due nor as missed."""
    start = slot_start(now)
    end = start + timedelta(hours=hours)
    # Every scheduled person, not only those due in the range: a day off in the range can
    # come before a next call after it.
    people = User.objects.filter(PEOPLE, call_enabled=True, phone__isnull=False, next_call_at__isnull=False)
    if rules.require_consent:
        # The tick passes over those without a consent (calls/claim.py): nobody to dial.
        people = people.filter(consented_at__isnull=False)
    groups = (
        people.exclude(phone="")
        .values_list("local_tz", "call_time", "next_call_at", "call_days", "pause_until")
        .annotate(users=Count("id"))
        .order_by()
    )
    counts: dict[datetime, int] = {}
    skipped: dict[datetime, int] = {}
    zones: dict[str, ZoneInfo | None] = {}  # a few dozen names for tens of thousands of groups

    def in_range(slot: datetime, tz: ZoneInfo) -> bool:
        return start <= slot < end and slot + rules.window > now and rules.allows_hour(slot, tz)

    def off(call_days: int, pause_until, local_date) -> bool:
        return (
            day_off_reason(
                call_days=call_days, pause_until=pause_until, skips=(), local_date=local_date, rules=rules
            )
            is not None
        )

    for local_tz, call_time, next_call_at, call_days, pause_until, users in groups:
        if local_tz not in zones:
            zones[local_tz] = zone_or_none(local_tz)
        tz = zones[local_tz]
        if tz is None:
            continue  # parked by the tick, never called
        # The days before the next call that the range covers: off days are skipped ones
        # (days already called are neither).
        first_local = start.astimezone(tz).date() - timedelta(days=1)
        day = first_local
        while True:
            slot = slot_for_date(local_date=day, call_time=call_time, tz=tz)
            if slot >= next_call_at or slot >= end:
                break
            if in_range(slot, tz) and off(call_days, pause_until, day):
                skipped[slot] = skipped.get(slot, 0) + users
            day += timedelta(days=1)
        slot = next_call_at
        while slot < end:
            local_date = slot_local_date(slot=slot, call_time=call_time, tz=tz)
            if in_range(slot, tz):
                tally = skipped if off(call_days, pause_until, local_date) else counts
                tally[slot] = tally.get(slot, 0) + users
            if slot + SHORTEST_DAY >= end:
                break
            # A short day (spring forward) can bring the next local day's slot inside the range.
            slot = slot_for_date(local_date=local_date + timedelta(days=1), call_time=call_time, tz=tz)
    _count_skipped_days(start=start, end=end, rules=rules, counts=counts, skipped=skipped, in_range=in_range)
    return sorted(counts.items()), skipped


def _count_skipped_days(*, start, end, rules: Policy, counts, skipped, in_range) -> None:
    """The days skipped for one person (CallSkip) in the range: few rows, one query. A day
    the group's rules already made off is counted there; one still counted due moves."""
    rows = CallSkip.objects.filter(
        local_date__gte=start.date() - timedelta(days=1),
        local_date__lte=end.date() + timedelta(days=1),
        user__call_enabled=True,
        user__phone__isnull=False,
        user__next_call_at__isnull=False,
        user__is_staff=False,
        user__is_superuser=False,
    ).values_list(
        "local_date",
        "user__local_tz",
        "user__call_time",
        "user__call_days",
        "user__pause_until",
        "user__next_call_at",
    )
    for local_date, local_tz, call_time, call_days, pause_until, next_call_at in rows:
        tz = zone_or_none(local_tz)
        if tz is None:
            continue
        slot = slot_for_date(local_date=local_date, call_time=call_time, tz=tz)
        if not in_range(slot, tz):
            continue
        if day_off_reason(
            call_days=call_days, pause_until=pause_until, skips=(), local_date=local_date, rules=rules
        ):
            continue
        if slot < next_call_at or counts.get(slot, 0) > 0:
            if slot >= next_call_at:
                counts[slot] -= 1
                if not counts[slot]:
                    del counts[slot]
            skipped[slot] = skipped.get(slot, 0) + 1


def users_due_per_slot(*, now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """(slot start in UTC, users due) for every 15-minute slot in [slot_start(now), +hours),
    empty slots included, in time order."""
    start = slot_start(now)
    counts = dict.fromkeys((start + timedelta(minutes=SLOT_MINUTES * i) for i in range(hours * 4)), 0)
    for instant, users in _due_instants(now=now, hours=hours, rules=policy_current()):
        counts[slot_start(instant)] += users
    return list(counts.items())


def average_call_seconds(*, now: datetime) -> float:
    """The mean length of the calls completed in the last 7 days that have a length (the
    latest DURATION_SAMPLE of them), else the CALL_AVERAGE_DURATION_SECONDS guess."""
    recent = Call.objects.filter(
        status=CallStatus.COMPLETED,
        duration_seconds__gt=0,
        completed_at__gt=now - DURATION_LOOKBACK,
        completed_at__lte=now,
        # A call is completed within hours of being created: this bound lets the created_at
        # index stop at the week's first calls when there are fewer than the sample.
        created_at__gt=now - DURATION_LOOKBACK - timedelta(days=1),
    ).order_by("-created_at")[:DURATION_SAMPLE]
    mean = recent.aggregate(mean=Avg("duration_seconds"))["mean"]
    return float(mean) if mean else float(settings.CALL_AVERAGE_DURATION_SECONDS)


def _calls_per_second(*, provider: str, average: float) -> float | None:
    """How many calls a second the provider can start, or None when nothing caps it."""
    limits = []
    if cap := settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0):
        limits.append(cap / average)
    if rate := settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider, 0):
        limits.append(float(rate))
    return min(limits) if limits else None


def _simulate(
    instants: list[tuple[float, int]], *, rate: float, window: float
) -> tuple[list[float], list[tuple[float, float, int]]]:
    """Earliest deadline first, fluid: the calls started for each instant, and the busy
    stretches (from, to, instant index) in time order.

    Times are seconds. Every window has the same length, so the earliest deadline is the
    earliest instant, and the waiting calls form one line in instant order.
    """
    started = [0.0] * len(instants)
    busy: list[tuple[float, float, int]] = []
    waiting: deque[list] = deque()  # [deadline, calls left, instant index]
    clock = 0.0

    def run_until(until: float) -> None:
        nonlocal clock
        while waiting and clock < until:
            deadline, left, index = waiting[0]
            if deadline <= clock:
                waiting.popleft()  # the rest of this instant's calls are missed
                continue
            stop = min(until, deadline)
            possible = (stop - clock) * rate
            taken = min(left, possible)
            finish = clock + taken / rate if taken < possible else stop
            started[index] += taken
            busy.append((clock, finish, index))
            clock = finish
            if taken >= left or finish >= deadline:
                waiting.popleft()
            else:
                waiting[0][1] = left - taken

    for index, (at, users) in enumerate(instants):
        run_until(at)
        clock = max(clock, at)
        waiting.append([at + window, float(users), index])
    run_until(math.inf)
    return started, busy


def _window_length(windows: list[tuple[float, float]]) -> float:
    """The length of the union of windows given in order of their start."""
    total, reach = 0.0, -math.inf
    for begin, end in windows:
        total += max(0.0, end - max(begin, reach))
        reach = max(reach, end)
    return total


def _earlier_busy_inside(
    busy: list[tuple[float, float, int]],
    busy_indexes: list[int],
    first_index: int,
    windows: list[tuple[float, float]],
) -> float:
    """How long the instants before ``first_index`` hold the lines inside ``windows``.

    They are served first (their windows close first), so their stretches are a prefix of
    ``busy`` (``busy_indexes``: each stretch's instant), and only the prefix's end can reach
    into these windows."""
    end_of_prefix = bisect.bisect_left(busy_indexes, first_index)
    total = 0.0
    for begin, end, _ in reversed(busy[:end_of_prefix]):
        if end <= windows[0][0]:
            break
        total += sum(max(0.0, min(end, w_end) - max(begin, w_begin)) for w_begin, w_end in windows)
    return total


def capacity_summary(*, now: datetime, hours: int = 24) -> CapacityForecast:
    """The forecast of the next ``hours`` from ``now``, with the figures it rests on."""
    rules = policy_current()
    provider = settings.CALL_PROVIDER
    average = average_call_seconds(now=now)
    rate = _calls_per_second(provider=provider, average=average)
    instants, skipped_at = _due_and_skipped(now=now, hours=hours, rules=rules)
    skipped: dict[datetime, int] = {}
    for instant, users in skipped_at.items():
        skipped[slot_start(instant)] = skipped.get(slot_start(instant), 0) + users

    per_slot: dict[datetime, list[int]] = {}  # slot start -> indexes of its instants
    for index, (instant, _) in enumerate(instants):
        per_slot.setdefault(slot_start(instant), []).append(index)

    slots: list[ForecastSlot] = []
    if rate is None:
        for start, indexes in per_slot.items():
            slots.append(
                ForecastSlot(start, sum(instants[i][1] for i in indexes), None, 0, skipped.pop(start, 0))
            )
    else:
        window = rules.window.total_seconds()
        origin = instants[0][0] if instants else now
        seconds = [((at - origin).total_seconds(), users) for at, users in instants]
        started, busy = _simulate(seconds, rate=rate, window=window)
        busy_indexes = [stretch[2] for stretch in busy]
        for start, indexes in per_slot.items():
            due = sum(seconds[i][1] for i in indexes)
            windows = [(seconds[i][0], seconds[i][0] + window) for i in indexes]
            free = _window_length(windows) - _earlier_busy_inside(busy, busy_indexes, indexes[0], windows)
            taken = math.floor(sum(started[i] for i in indexes) + 1e-6)
            slots.append(
                ForecastSlot(
                    start, due, math.floor(rate * free + 1e-6), max(0, due - taken), skipped.pop(start, 0)
                )
            )
    # Slots where everyone is off: nobody due, only skipped.
    none_due = None if rate is None else 0
    slots += [ForecastSlot(start, 0, none_due, 0, users) for start, users in skipped.items()]
    slots.sort(key=lambda slot: slot.start)
    return CapacityForecast(
        provider=provider,
        max_live_calls=settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0),
        max_calls_per_second=settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider, 0),
        average_call_seconds=average,
        window=rules.window,
        paused=rules.paused,
        slots=slots,
    )


def capacity_forecast(*, now: datetime, hours: int = 24) -> list[ForecastSlot]:
    """The 15-minute slots of the next ``hours`` that have users due, in time order, each
    with the calls the provider can take in their windows and how many will be missed."""
    return capacity_summary(now=now, hours=hours).slots
