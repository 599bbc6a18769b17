"""What the agent knows when it calls (docs/conversation.md, "Variables"): the product's own
context for the user and a memory relevel keeps, as flat string variables that each
provider sends its documented way (Vapi ``assistantOverrides.variableValues``, Retell
``retell_llm_dynamic_variables``, CallKaro ``metadata``).

Built for a whole batch of calls in one query, where the calls are taken for dialing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import NamedTuple

from users.calendar import day_off_reason
from users.selectors import RECORD_DAYS, CallDay, DayOutcome, answered_streak, day_outcome

from .models import Call
from .policy import Policy, policy_current
from .selectors import ANY_KIND

MEMORY_DAYS = 3
# The memory's outcome words, as a prompt reads them.
OUTCOME_WORDS = {
    "answered": "answered",
    "not_reached": "not reached",
    "missed": "missed",
    "in_progress": "in progress",
    "due": "not called yet",
    "not_scheduled": "no call",
    "skipped": "a day off",
}


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class EarlierCall(NamedTuple):
    """What the variables need of an earlier call: its status (the day's outcome) and its
    result's summary (the memory). Rows, not model instances: a batch reads up to
    RECORD_DAYS of calls for each of its people, and building a Call and a CallResult for
    each was most of the CPU a worker spent on a call."""

    status: str
    summary: str


class _BatchDays:
    """What the calls of a batch share: the rules, whether a calendar is off on a date, and
    the record of days without a call (nearly all of a batch's calls are of one local date
    and people with the default calendar)."""

    def __init__(self, rules: Policy) -> None:
        self.rules = rules
        self._off: dict[tuple, bool] = {}
        self._empty: dict[tuple, list[CallDay]] = {}

    def off(self, user, local_date: date) -> bool:
        key = (user.call_days, user.pause_until, local_date)
        found = self._off.get(key)
        if found is None:
            found = self._off[key] = _is_off(user, local_date, self.rules)
        return found

    def empty_record(self, user, local_date: date) -> list[CallDay]:
        """The RECORD_DAYS days before ``local_date``, oldest first, as if without a call."""
        key = (user.call_days, user.pause_until, local_date)
        found = self._empty.get(key)
        if found is None:
            days = (local_date - timedelta(days=offset) for offset in range(RECORD_DAYS, 0, -1))
            found = self._empty[key] = [
                CallDay(day, day_outcome((), off=self.off(user, day)), ()) for day in days
            ]
        return found


def call_variables_for(*, calls: Sequence[Call]) -> dict[int, dict[str, str]]:
    """Each call's variables, by call id; ``call.user`` must be loaded. One query for all."""
    if not calls:
        return {}
    user_ids = {call.user_id for call in calls}
    first = min(call.local_date for call in calls) - timedelta(days=RECORD_DAYS)
    last = max(call.local_date for call in calls)
    by_user_day: dict[int, dict[date, list[EarlierCall]]] = defaultdict(lambda: defaultdict(list))
    earlier = (
        # ANY_KIND: on the user's indexes, not a scan of every call (a retry is a batch of one).
        Call.objects.filter(ANY_KIND, user_id__in=user_ids, local_date__gte=first, local_date__lte=last)
        .order_by("local_date", "manual", "attempt", "pk")
        .values_list("user_id", "local_date", "status", "result__summary")
    )
    for user_id, local_date, status, summary in earlier:
        by_user_day[user_id][local_date].append(EarlierCall(status, summary or ""))
    batch = _BatchDays(policy_current())
    return {
        call.pk: call_variables(call=call, days_of_user=by_user_day[call.user_id], batch=batch)
        for call in calls
    }


def call_variables(
    *, call: Call, days_of_user: dict[date, list[EarlierCall]], batch: _BatchDays | None = None
) -> dict[str, str]:
    """``days_of_user``: the person's earlier calls by local date; ``batch``: what the calls
    of one batch share."""
    user = call.user
    batch = batch or _BatchDays(policy_current())
    days = list(batch.empty_record(user, call.local_date))  # the days before this call's, oldest first
    for local_date, day_calls in days_of_user.items():
        index = RECORD_DAYS - (call.local_date - local_date).days
        if 0 <= index < RECORD_DAYS and day_calls:
            off = batch.off(user, local_date)
            days[index] = CallDay(local_date, day_outcome(day_calls, off=off), tuple(day_calls))
    memory = []
    for day in reversed(days[-MEMORY_DAYS:]):  # newest first
        summaries = [c.summary for c in day.calls if c.summary]
        memory.append(
            {"date": day.local_date.isoformat(), "outcome": str(day.outcome), "summary": " ".join(summaries)}
        )
    context = user.context if isinstance(user.context, dict) else {}
    variables = {
        "name": user.name or user.get_username(),
        "local_date": call.local_date.isoformat(),
        "attempt": str(call.attempt),
        # This call's day is not over: it neither counts nor breaks the streak.
        "streak": str(answered_streak([*days, CallDay(call.local_date, DayOutcome.DUE, ())])),
        "last_days": "\n".join(
            f"{day['date']}: {OUTCOME_WORDS.get(day['outcome'], day['outcome'])}"
            + (f". {day['summary']}" if day["summary"] else "")
            for day in memory
        ),
        "last_days_json": _text(memory),
        "context": _text(context),
    }
    for key, value in context.items():
        variables[f"context_{key}"] = _text(value)
    return variables


def _is_off(user, local_date: date, rules: Policy) -> bool:
    # A day off (the person's call days and pause, the policy's days off; a skipped day is
    # left to the record, which reads them) neither counts for nor breaks the streak.
    return (
        day_off_reason(
            call_days=user.call_days,
            pause_until=user.pause_until,
            skips=(),
            local_date=local_date,
            rules=rules,
        )
        is not None
    )
